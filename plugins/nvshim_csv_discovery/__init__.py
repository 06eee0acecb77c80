"""csv-discovery: GPU containers on hosts described by CSV files (Jetson).

In mode ``csv``, a GPU container gets the device nodes, libraries, links and
folders that the host's CSV mount-spec files list (NVIDIA's
``host-files-for-container.d``), looked up under the driver root, plus two
createContainer hooks: ``update-ldcache`` (the library folders) and
``create-symlinks`` (the links of each library's chain).  See
``docs/modifiers/csv-discovery.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvshim import Modifier, hookimpl

if TYPE_CHECKING:
    from nvshim import ModifierContext, Spec

__all__ = ["NAME", "add_csv_devices", "nvshim_modifiers"]

NAME = "csv-discovery"


def add_csv_devices(spec: Spec, context: ModifierContext) -> None:
    """Inject what the host's CSV files list (see :mod:`nvshim_csv_discovery.modifier`).

    The CSV parser and discovery code are imported only in mode ``csv``: this
    plugin is loaded on every create, whatever the mode; the core calls this
    function in mode ``csv`` only.
    """
    from nvshim_csv_discovery.modifier import add_csv_devices as modify

    modify(spec, context)


@hookimpl
def nvshim_modifiers() -> list[Modifier]:
    """The ``csv-discovery`` modifier (order 50, mode ``csv`` only)."""
    return [
        Modifier(
            NAME,
            add_csv_devices,
            description="csv mode: devices, libraries and links listed in the host's CSV files",
            modes=("csv",),
        )
    ]
