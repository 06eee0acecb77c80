"""What the host's NVIDIA driver says about itself, asked cheaply and safely.

Every function here answers ``None`` (or ``False``) when the driver, its
libraries or a GPU are missing: nvshim also runs as the default runtime on
hosts with no GPU at all, and a question about the driver must never stop a
plain container.  Nothing here raises.

The libraries are loaded through :mod:`ctypes` by their soname, the way
NVIDIA's own tools do (``dlopen("libcuda.so.1")``), so the dynamic linker's
view of the host decides which driver answers.
"""

from __future__ import annotations

import ctypes

__all__ = [
    "LIBCUDA",
    "LIBNVML",
    "compute_capability",
    "cuda_driver_version",
    "driver_version",
    "nvml_brand",
    "nvml_loadable",
    "parse_driver_version_text",
]

LIBCUDA = "libcuda.so.1"
LIBNVML = "libnvidia-ml.so.1"

# CUdevice_attribute values from cuda.h.
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76

# nvmlBrandType_t values from nvml.h, spelled the way image requirements
# (`brand=tesla`) and NVIDIA's toolkit spell them.
_NVML_BRANDS = {
    1: "quadro",
    2: "tesla",
    3: "nvs",
    4: "grid",
    5: "geforce",
    6: "titan",
    7: "nvidiavapps",
    8: "nvidiavpc",
    9: "nvidiavcs",
    10: "nvidiavws",
    11: "nvidiacloudgaming",
    12: "quadrortx",
    13: "nvidiartx",
    14: "nvidia",
    15: "geforcertx",
    16: "titanrtx",
}

# Files the kernel module publishes its version in; reading one costs far less
# than loading a driver library.
_DRIVER_VERSION_FILES = ("/sys/module/nvidia/version", "/proc/driver/nvidia/version")


def _load(name: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(name)
    except Exception:  # OSError for a missing library; anything else is as bad.
        return None


def cuda_driver_version(library: str = LIBCUDA) -> tuple[int, int] | None:
    """The CUDA version the host's driver supports, as ``(major, minor)``.

    Asks ``cuDriverGetVersion`` in ``libcuda.so.1`` (no ``cuInit`` needed, so
    it is cheap and works without a usable GPU).  ``None`` when the library
    is missing or the call fails.
    """
    lib = _load(library)
    if lib is None:
        return None
    try:
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
        # CUDA encodes 12.4 as 12040.
        return version.value // 1000, (version.value % 1000) // 10
    except Exception:
        return None


def compute_capability(index: int = 0, library: str = LIBCUDA) -> tuple[int, int] | None:
    """The compute capability of CUDA device ``index`` (``(8, 0)`` for an A100).

    This initialises CUDA (``cuInit``), which takes a while on a GPU host:
    call it only when a requirement names ``arch``.  ``None`` when there is
    no such device or anything fails.
    """
    lib = _load(library)
    if lib is None:
        return None
    try:
        if lib.cuInit(0) != 0:
            return None
        device = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(device), index) != 0:
            return None
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        for value, attribute in (
            (major, _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            (minor, _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        ):
            if lib.cuDeviceGetAttribute(ctypes.byref(value), attribute, device) != 0:
                return None
        return major.value, minor.value
    except Exception:
        return None


def nvml_loadable(library: str = LIBNVML) -> bool:
    """Whether ``libnvidia-ml.so.1`` can be loaded (mode auto-detection asks this)."""
    return _load(library) is not None


def nvml_brand(index: int = 0, library: str = LIBNVML) -> str | None:
    """The brand of GPU ``index`` as NVML reports it (``"tesla"``, ``"geforce"``, ...).

    ``None`` when NVML is missing, has no such device, or reports a brand
    this module does not know.
    """
    lib = _load(library)
    if lib is None:
        return None
    try:
        if lib.nvmlInit_v2() != 0:
            return None
        try:
            handle = ctypes.c_void_p()
            if lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                return None
            brand = ctypes.c_int(0)
            if lib.nvmlDeviceGetBrand(handle, ctypes.byref(brand)) != 0:
                return None
            return _NVML_BRANDS.get(brand.value)
        finally:
            lib.nvmlShutdown()
    except Exception:
        return None


def parse_driver_version_text(text: str) -> str | None:
    """The driver version in the text of one of the kernel module's version files.

    ``/sys/module/nvidia/version`` holds just the version; ``/proc/driver/
    nvidia/version`` holds a line like ``NVRM version: NVIDIA UNIX x86_64
    Kernel Module  550.54.15  Tue Mar  5 ...``.
    """
    for line in text.splitlines():
        words = line.split()
        if len(words) == 1 and _looks_like_version(words[0]):
            return words[0]
        if line.startswith("NVRM version:"):
            for word in words:
                if _looks_like_version(word):
                    return word
    return None


def _looks_like_version(word: str) -> bool:
    parts = word.split(".")
    return len(parts) >= 2 and all(p.isdigit() and p.isascii() for p in parts)


def driver_version(files: tuple[str, ...] = _DRIVER_VERSION_FILES) -> str | None:
    """The loaded NVIDIA kernel driver's version (``"550.54.15"``), or ``None``."""
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                version = parse_driver_version_text(f.read(4096))
        except OSError:
            continue
        if version is not None:
            return version
    return None
