"""Building the host inventory from :mod:`nvshim.host` (NVML, ld.so.cache, device nodes).

Only a cache miss comes here.  The CDI spec is the one ``nvshim-ctl cdi
generate --mode nvml`` writes (device names by index and UUID, plus ``all``),
of kind ``runtime.nvidia.com/gpu``; the GPU facts that the requirement checks
need and that the spec does not hold (compute capability, brand, the CUDA
version the driver supports) are asked of NVML in the same process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Optional

from nvshim.inventory import GpuInfo, HostInventory, InventoryError, MigInfo

__all__ = ["build_inventory"]

VENDOR = "runtime.nvidia.com"
DEVICE_CLASS = "gpu"


def _extras(count: int) -> tuple[str, list[tuple[str, str]]]:
    """``(cuda version, [(compute capability, brand)] per GPU)``; ``""`` where NVML cannot say.

    NVML is already loaded and initialised once by :func:`nvshim.host.query_gpus`
    (from the driver root), so the binding finds the same library.
    """
    try:
        import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return "", [("", "")] * count
    cuda = ""
    per_gpu: list[tuple[str, str]] = []
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError: no extras, the inventory still stands
        return "", [("", "")] * count
    try:
        with suppress(Exception):
            version = int(pynvml.nvmlSystemGetCudaDriverVersion())
            cuda = f"{version // 1000}.{version % 1000 // 10}"
        for index in range(count):
            capability = brand = ""
            with suppress(Exception):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                with suppress(Exception):
                    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                    capability = f"{major}.{minor}"
                with suppress(Exception):
                    brand = _brand(pynvml, pynvml.nvmlDeviceGetBrand(handle))
            per_gpu.append((capability, brand))
    finally:
        with suppress(Exception):
            pynvml.nvmlShutdown()
    return cuda, per_gpu


def _brand(pynvml: Any, value: int) -> str:
    """NVML's brand constant as the word ``NVIDIA_REQUIRE_*`` compares (``tesla``, …)."""
    for name in dir(pynvml):
        if name.startswith("NVML_BRAND_") and getattr(pynvml, name) == value:
            word = name[len("NVML_BRAND_") :].lower()
            return {"nvidia_rtx": "nvidiartx", "geforce_rtx": "geforcertx"}.get(word, word)
    return ""


@contextmanager
def _nvml_held(driver: Any) -> Iterator[None]:
    """NVML initialised once around the whole build.

    NVML counts its initialisations and only the first one (seconds on a host
    without persistence mode) and the last shutdown do the work: holding one
    here makes the nested sessions of ``generate``, ``query_gpus`` and
    :func:`_extras` cheap.  The driver root's library is loaded first, so the
    binding uses it.  Any problem: no hold, and the steps report it themselves.
    """
    held = False
    binding: Any = None
    try:
        import ctypes

        import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]

        from nvshim.host import find_nvml_library

        ctypes.CDLL(find_nvml_library(driver))
        pynvml.nvmlInit()
        binding, held = pynvml, True
    except Exception:  # ImportError, HostError, OSError, NVMLError
        held = False
    try:
        yield
    finally:
        if held:
            with suppress(Exception):
                binding.nvmlShutdown()


def build_inventory(driver_root: str, dev_root: str) -> tuple[HostInventory, Optional[str]]:
    """The inventory of the host at ``driver_root``/``dev_root``, and its libcuda path.

    :raises InventoryError: when the driver or NVML cannot be used.
    """
    from nvshim.host import Driver, HostError, query_gpus
    from nvshim.host.cdi import GenerateOptions, generate

    driver = Driver(driver_root)
    with _nvml_held(driver):
        try:
            libcuda: Optional[str] = driver.host_path(driver.libcuda)
            version = driver.version
            spec = generate(
                GenerateOptions(
                    mode="nvml",
                    driver_root=driver_root,
                    dev_root=dev_root,
                    vendor=VENDOR,
                    device_class=DEVICE_CLASS,
                )
            )
            gpus = query_gpus(driver)
            files = driver.files()
        except HostError as exc:
            raise InventoryError(str(exc)) from None
        cuda, extras = _extras(len(gpus))
    tags: dict[str, list[str]] = {}
    for item in files:
        caps = tags.setdefault(item.path, [])
        if item.capability not in caps:
            caps.append(item.capability)
    infos = tuple(
        GpuInfo(
            index=gpu.index,
            minor=gpu.minor,
            uuid=gpu.uuid,
            pci_bus_id=gpu.pci_bus_id,
            name=gpu.name,
            compute_capability=extra[0],
            brand=extra[1],
            mig_enabled=gpu.mig_enabled,
            migs=tuple(
                MigInfo(m.index, m.uuid, m.gpu_instance, m.compute_instance)
                for m in gpu.mig_devices
            ),
        )
        for gpu, extra in zip(gpus, extras)
    )
    inventory = HostInventory(
        driver_root=driver_root,
        dev_root=dev_root,
        driver_version=version,
        cuda_version=cuda,
        gpus=infos,
        spec=spec,
        capabilities={k: tuple(v) for k, v in tags.items()},
    )
    return inventory, libcuda
