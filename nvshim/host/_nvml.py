"""The host's GPUs through NVML, loaded from the driver root.

NVIDIA's Python binding (``nvidia-ml-py``, module ``pynvml``; install the
``nvml`` extra) does the calls.  pynvml always ``dlopen``s the bare name
``libnvidia-ml.so.1``; to use the driver root's library instead, this module
first loads the file that the root's ld.so.cache names with :mod:`ctypes`.
glibc's ``dlopen`` answers a later request for a name from an already loaded
library whose soname matches, so pynvml gets that very library without any
of its internals being touched.  (Measured: importing pynvml costs about
20 ms, and it is imported only here, when NVML is needed.)
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import attrs

from nvshim.host._errors import NvmlError

if TYPE_CHECKING:
    from nvshim.host._driver import Driver

__all__ = ["Gpu", "MigDevice", "find_nvml_library", "query_gpus"]

_NVML_SONAME = "libnvidia-ml.so.1"
_lock = threading.Lock()
_loaded: dict[str, Any] = {}


@attrs.frozen
class MigDevice:
    """A MIG device of a GPU in MIG mode.

    :ivar index: its index on the parent GPU (0, 1, ...).
    :ivar gpu_instance: the GPU instance id.
    :ivar compute_instance: the compute instance id.
    :ivar uuid: ``MIG-...``.
    """

    index: int
    gpu_instance: int
    compute_instance: int
    uuid: str


@attrs.frozen
class Gpu:
    """A GPU as NVML reports it.

    :ivar index: NVML's index.
    :ivar minor: the minor number of ``/dev/nvidia<minor>``.
    :ivar uuid: ``GPU-...``.
    :ivar pci_bus_id: ``0000:07:00.0`` form (see :func:`~nvshim.host.normalise_bus_id`).
    :ivar name: the product name.
    :ivar mig_enabled: whether the current MIG mode is enabled.
    :ivar mig_devices: the MIG devices, when enabled.
    """

    index: int
    minor: int
    uuid: str
    pci_bus_id: str
    name: str
    mig_enabled: bool = False
    mig_devices: tuple[MigDevice, ...] = ()

    @property
    def is_integrated(self) -> bool:
        """Whether this is a Tegra integrated GPU.

        Told by its name, as NVIDIA's tools do: ``Orin (nvgpu)``, ``NVIDIA Thor``.
        """
        return "(nvgpu)" in self.name or "NVIDIA Thor" in self.name


def find_nvml_library(driver: Driver) -> str:
    """The host path of the driver root's ``libnvidia-ml.so.1``.

    :raises NvmlError: the root has no such library.
    """
    cache = driver.ldcache
    hits = cache.lookup(_NVML_SONAME, arch=driver.arch) if cache is not None else []
    if not hits:
        hits = list(driver.find_libraries(_NVML_SONAME))
    for hit in hits:
        host = driver.host_path(driver.resolve(hit))
        if os.path.isfile(host):
            return host
    raise NvmlError(
        f"driver root {driver.root}", f"{_NVML_SONAME} not found (is the NVIDIA driver installed?)"
    )


def _binding() -> Any:
    try:
        import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise NvmlError(
            "NVML",
            "the Python binding is missing: pip install 'nvshim-runtime[nvml]' (nvidia-ml-py)",
        ) from None
    return pynvml


@contextmanager
def _session(driver: Driver) -> Iterator[Any]:
    pynvml = _binding()
    path = find_nvml_library(driver)
    with _lock:
        other = next((p for p in _loaded if p != path), None)
        if other is not None:
            # pynvml keeps the first library it loaded for the whole process.
            raise NvmlError(
                path, f"another NVML library ({other}) is already loaded in this process"
            )
        if path not in _loaded:
            try:
                _loaded[path] = ctypes.CDLL(path)
            except OSError as exc:
                raise NvmlError(path, f"cannot load: {exc}") from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlError(f"NVML ({path})", f"initialisation failed: {exc}") from None
        try:
            yield pynvml
        except pynvml.NVMLError as exc:
            raise NvmlError(f"NVML ({path})", str(exc)) from None
        finally:
            with suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mig_devices(pynvml: Any, handle: Any) -> tuple[MigDevice, ...]:
    devices: list[MigDevice] = []
    for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
        except pynvml.NVMLError_NotFound:
            continue  # a slot without a MIG device
        devices.append(
            MigDevice(
                index=len(devices),
                gpu_instance=pynvml.nvmlDeviceGetGpuInstanceId(mig),
                compute_instance=pynvml.nvmlDeviceGetComputeInstanceId(mig),
                uuid=_text(pynvml.nvmlDeviceGetUUID(mig)),
            )
        )
    return tuple(devices)


def query_gpus(driver: Driver) -> tuple[Gpu, ...]:
    """Every GPU NVML sees, with its MIG devices, through the driver root's NVML.

    :raises NvmlError: one line: binding or library missing, or an NVML call failed.
    """
    from nvshim.host._devices import normalise_bus_id

    gpus = []
    with _session(driver) as pynvml:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
                mig_enabled = current == pynvml.NVML_DEVICE_MIG_ENABLE
            except pynvml.NVMLError_NotSupported:
                mig_enabled = False
            gpus.append(
                Gpu(
                    index=i,
                    minor=pynvml.nvmlDeviceGetMinorNumber(handle),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    pci_bus_id=normalise_bus_id(_text(pynvml.nvmlDeviceGetPciInfo(handle).busId)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    mig_enabled=mig_enabled,
                    mig_devices=_mig_devices(pynvml, handle) if mig_enabled else (),
                )
            )
    return tuple(gpus)


def nvml_driver_version(driver: Driver) -> str:
    """The driver version NVML reports (``nvmlSystemGetDriverVersion``)."""
    with _session(driver) as pynvml:
        return _text(pynvml.nvmlSystemGetDriverVersion())
