"""Building the host inventory from :mod:`nvshim.host` (NVML, ld.so.cache, device nodes)."""

from __future__ import annotations

from typing import Optional

from nvshim.inventory import HostInventory, InventoryError

__all__ = ["build_inventory"]


def build_inventory(driver_root: str, dev_root: str) -> tuple[HostInventory, Optional[str]]:
    """The inventory of the host at ``driver_root``/``dev_root``, and its libcuda path.

    :raises InventoryError: when the driver or NVML cannot be used.
    """
    raise InventoryError("host discovery is not available yet")
