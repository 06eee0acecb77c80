"""Discovery of the host's NVIDIA driver, device nodes and GPUs (public API).

Used by ``nvshim-ctl cdi generate`` and by the runtime's jit-cdi mode; third
parties may import it too.  Nothing here is imported on the runtime's
pass-through path, and NVML (the optional ``nvml`` extra) is imported only by
:func:`query_gpus`.

- :class:`LdCache` / :func:`read_ldcache`: glibc's ``ld.so.cache`` (both
  layouts), looked up by library name and architecture.
- :class:`Driver`: the driver's files under a driver root, per capability
  (:data:`CAPABILITIES`), its version, library folders and ``.so`` links.
- :class:`Devices`: the device nodes under a device root (control nodes,
  GPUs, MIG capabilities, IMEX channels, DRM, GDS, MOFED, GDRCopy, NVSwitch).
- :func:`query_gpus`: the GPUs and MIG devices NVML reports (:class:`Gpu`,
  :class:`MigDevice`), through the driver root's ``libnvidia-ml.so.1``.
- :func:`is_tegra`: whether a driver root is a Jetson (Tegra) system.
- :mod:`nvshim.host.cdi`: CDI spec generation from all of the above.

Every failure is a :class:`HostError` (a :class:`nvshim.NvshimError`) with
one line naming the file or the step.
"""

from __future__ import annotations

from nvshim.host._devices import CONTROL_NODES, DeviceNode, Devices, normalise_bus_id
from nvshim.host._driver import (
    CAPABILITIES,
    DRIVER_BINARIES,
    DRIVER_CONFIG_FILES,
    DRIVER_LIBRARIES,
    Driver,
    DriverFile,
)
from nvshim.host._errors import DriverNotFound, HostError, LdCacheError, NvmlError
from nvshim.host._ldcache import (
    ARCH_FLAGS,
    DEFAULT_LIBRARY_FOLDERS,
    LdCache,
    LdCacheEntry,
    host_arch,
    parse_ldcache,
    read_ldcache,
)
from nvshim.host._nvml import Gpu, MigDevice, find_nvml_library, query_gpus
from nvshim.host._platform import is_tegra

__all__ = [
    "ARCH_FLAGS",
    "CAPABILITIES",
    "CONTROL_NODES",
    "DEFAULT_LIBRARY_FOLDERS",
    "DRIVER_BINARIES",
    "DRIVER_CONFIG_FILES",
    "DRIVER_LIBRARIES",
    "DeviceNode",
    "Devices",
    "Driver",
    "DriverFile",
    "DriverNotFound",
    "Gpu",
    "HostError",
    "LdCache",
    "LdCacheEntry",
    "LdCacheError",
    "MigDevice",
    "NvmlError",
    "find_nvml_library",
    "host_arch",
    "is_tegra",
    "normalise_bus_id",
    "parse_ldcache",
    "query_gpus",
    "read_ldcache",
]
