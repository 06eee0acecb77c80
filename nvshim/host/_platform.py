"""Which kind of NVIDIA system a driver root is."""

from __future__ import annotations

import os

from nvshim.rootpath import host_path, normalise_root

__all__ = ["is_tegra"]


def is_tegra(driver_root: str = "/") -> bool:
    """Whether ``driver_root`` holds a Jetson (Tegra) system.

    True when ``/etc/nv_tegra_release`` exists there, or
    ``/sys/devices/soc0/family`` reads ``tegra``, as NVIDIA's platform
    detection decides.
    """
    root = normalise_root(driver_root)
    if os.path.lexists(host_path(root, "/etc/nv_tegra_release")):
        return True
    try:
        with open(host_path(root, "/sys/devices/soc0/family"), encoding="utf-8") as f:
            return f.read(64).strip().lower() == "tegra"
    except (OSError, UnicodeDecodeError):
        return False
