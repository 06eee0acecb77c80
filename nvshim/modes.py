"""Resolving ``mode = "auto"`` for one container."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["is_tegra", "resolve_mode"]

TEGRA_RELEASE = "/etc/nv_tegra_release"
SOC_FAMILY = "/sys/devices/soc0/family"


def is_tegra(root: str = "/") -> bool:
    """Whether the host is a Tegra (Jetson) system."""
    if os.path.exists(os.path.join(root, TEGRA_RELEASE.lstrip("/"))):
        return True
    try:
        with open(os.path.join(root, SOC_FAMILY.lstrip("/")), encoding="utf-8") as handle:
            return handle.read().strip().lower().startswith("tegra")
    except OSError:
        return False


def resolve_mode(
    configured: str,
    devices: Sequence[str],
    *,
    tegra: bool | None = None,
    nvml: bool | None = None,
) -> str:
    """The mode for a container that requested ``devices``.

    ``configured`` other than ``auto`` is returned as is.  ``auto`` gives
    ``csv`` on a Tegra host without a loadable ``libnvidia-ml.so.1``, ``cdi``
    when every requested device is a fully qualified CDI name, else
    ``legacy``.  ``tegra`` and ``nvml`` override the host probes (tests).
    """
    if configured != "auto":
        return configured
    from nvshim.requests import is_cdi_name

    if devices and all(is_cdi_name(d) for d in devices):
        return "cdi"
    if tegra is None:
        tegra = is_tegra()
    if tegra:
        if nvml is None:
            from nvshim._cuda import nvml_loadable

            nvml = nvml_loadable()
        if not nvml:
            return "csv"
    return "legacy"
