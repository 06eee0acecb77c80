"""The errors of :mod:`nvshim.host`: one family under :class:`nvshim.NvshimError`."""

from __future__ import annotations

from nvshim.errors import NvshimError

__all__ = ["DriverNotFound", "HostError", "LdCacheError", "NvmlError"]


class HostError(NvshimError):
    """Discovery of the host's driver or devices failed (``<what>: <why>``)."""


class LdCacheError(HostError):
    """An ``ld.so.cache`` file is unreadable, truncated or corrupt; ``what`` is its path."""


class DriverNotFound(HostError):
    """No NVIDIA driver (no ``libcuda.so.<version>``) under the driver root."""


class NvmlError(HostError):
    """NVML could not be used: binding missing, library missing, or an NVML call failed."""
