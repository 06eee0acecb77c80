"""The host inventory: what a jit-cdi create needs to know about the GPU host, cached.

NVML's initialisation takes from tens of milliseconds to seconds on a host
without persistence mode, and NVIDIA's runtime pays it on every create.  The
inventory (GPUs and MIG devices, driver version, CUDA version, the driver's
files as a CDI spec of every device) is built once through
:mod:`nvshim.host` and kept in a small JSON file in nvshim's cache folder
(``$NVSHIM_CACHE_DIR``, else ``/var/cache/nvshim`` for root, else
``$XDG_CACHE_HOME/nvshim``).  It is never stale: the file holds a *key*,
everything that changes when the host's GPUs or driver change, and a create
recomputes the key (a few ``stat`` calls and small reads, no NVML) and
rebuilds the inventory when it differs:

- the driver version in ``<dev root>/proc/driver/nvidia/version`` (where present);
- the ``libcuda.so.<version>`` file found at build time (it must still
  exist) and the change stamp of its folder and of the driver root's
  ``/etc/ld.so.cache`` (a driver upgrade adds and removes files there);
- every ``/dev/nvidia*``, ``/dev/nvidia-caps*/*`` entry of the dev root with
  its device number and change time (a GPU, a MIG device or an IMEX channel
  appearing or going);
- the boot id (``proc/sys/kernel/random/boot_id``): nodes are renumbered at boot;
- the MIG configuration: the entries under ``proc/driver/nvidia/capabilities``
  and ``proc/driver/nvidia-caps/mig-minors``;
- the hook executables its spec names (``nvshim-ctl``) must still exist.

On a normal host the dev root is ``/``, so ``proc`` is the host's ``/proc``;
a simulated host keeps its own ``proc`` folder under its dev root.

The file is written atomically with mode 0600, and ignored (rebuilt) when it
or its folder is not owned by the user nvshim runs as or may be written by
group or others, by the rules of nvshim's other caches (:mod:`nvshim.cachefile`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from typing import Any, Callable, Optional

import attrs

from nvshim.cachefile import cache_dir, is_safe, read_json, write_json

__all__ = [
    "INVENTORY_VERSION",
    "GpuInfo",
    "HostInventory",
    "InventoryError",
    "InventoryResult",
    "MigInfo",
    "inventory_key",
    "inventory_path",
    "describe",
    "load_inventory",
]

#: Bumped when the file's layout changes; a file of another version is rebuilt.
INVENTORY_VERSION = 1
#: Bound on the entries read for the key (a create's work stays bounded).
_MAX_ENTRIES = 4096


class InventoryError(Exception):
    """The host's inventory cannot be built (no driver, no NVML, a broken ld.so.cache)."""


@attrs.frozen
class MigInfo:
    """A MIG device of a GPU.

    :param index: its position among its GPU's MIG devices (the ``1`` of ``0:1``).
    :param uuid: ``MIG-…``.
    :param gi: the GPU instance id.
    :param ci: the compute instance id.
    """

    index: int
    uuid: str
    gi: int
    ci: int


@attrs.frozen
class GpuInfo:
    """A GPU as NVML sees it.

    :param index: NVML's index (the ``0`` of ``NVIDIA_VISIBLE_DEVICES=0``).
    :param minor: the minor number of ``/dev/nvidia<minor>``.
    :param uuid: ``GPU-…``.
    :param pci_bus_id: e.g. ``0000:07:00.0``.
    :param name: the product name.
    :param compute_capability: e.g. ``"8.0"``; ``""`` when unknown.
    :param brand: e.g. ``"tesla"``; ``""`` when unknown.
    :param mig_enabled: whether MIG mode is on.
    :param migs: its MIG devices, in NVML's order.
    """

    index: int
    minor: int
    uuid: str
    pci_bus_id: str = ""
    name: str = ""
    compute_capability: str = ""
    brand: str = ""
    mig_enabled: bool = False
    migs: tuple[MigInfo, ...] = ()


@attrs.frozen
class HostInventory:
    """What the jit-cdi mode knows about the host.

    :param driver_root: the driver root it was built for.
    :param dev_root: the dev root it was built for.
    :param driver_version: e.g. ``"550.54.15"``.
    :param cuda_version: the CUDA version the driver supports, e.g. ``"12.4"``.
    :param gpus: the GPUs, by index.
    :param spec: a CDI spec (as its JSON object) of every GPU and MIG device,
        named by index (``0``, ``0:1``) and UUID, plus ``all``; its common
        edits hold every driver file that was found.
    :param capabilities: for each common mount's container path, the driver
        capabilities it belongs to (a mount not listed belongs to all).
    :param key: the key it was built for (see :func:`inventory_key`).
    """

    driver_root: str
    dev_root: str
    driver_version: str
    cuda_version: str
    gpus: tuple[GpuInfo, ...]
    spec: dict[str, Any]
    capabilities: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    key: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The inventory as a JSON object (what the cache file holds)."""
        return {
            "driver_root": self.driver_root,
            "dev_root": self.dev_root,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "gpus": [attrs.asdict(g, recurse=True) for g in self.gpus],
            "spec": self.spec,
            "capabilities": {k: list(v) for k, v in self.capabilities.items()},
            "key": self.key,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostInventory:
        """The inventory from :meth:`to_json`'s object.

        :raises ValueError: when ``data`` is not such an object.
        """
        try:
            gpus = tuple(
                GpuInfo(
                    **{
                        **g,
                        "migs": tuple(MigInfo(**m) for m in g.get("migs", ())),
                    }
                )
                for g in data["gpus"]
            )
            return cls(
                driver_root=str(data["driver_root"]),
                dev_root=str(data["dev_root"]),
                driver_version=str(data["driver_version"]),
                cuda_version=str(data["cuda_version"]),
                gpus=gpus,
                spec=dict(data["spec"]),
                capabilities={str(k): tuple(v) for k, v in data["capabilities"].items()},
                key=dict(data.get("key") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a host inventory: {exc}") from None

    def gpu(self, index: int) -> Optional[GpuInfo]:
        """The GPU of NVML index ``index``, or None."""
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu
        return None

    def device_ids(self) -> list[str]:
        """Every id a container may ask for: ``index (UUID)`` lines, MIG devices included."""
        ids = []
        for gpu in self.gpus:
            ids.append(f"{gpu.index} ({gpu.uuid})")
            ids.extend(f"{gpu.index}:{m.index} ({m.uuid})" for m in gpu.migs)
        return ids


@attrs.frozen
class InventoryResult:
    """What :func:`load_inventory` found.

    :param inventory: the inventory.
    :param cached: whether it came from the cache file (no NVML call).
    :param path: the cache file, or None when caching is off.
    :param reason: why it was rebuilt (``""`` when it came from the cache).
    """

    inventory: HostInventory
    cached: bool
    path: Optional[str]
    reason: str = ""


def _join(root: str, path: str) -> str:
    return os.path.join(root or "/", path.lstrip("/"))


def _read_small(path: str, limit: int = 65536) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def _stamp(path: str) -> Optional[list[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size]


def _entries(folder: str, prefix: str = "") -> list[list[Any]]:
    """``[name, rdev, ctime_ns]`` of each entry of ``folder`` starting with ``prefix``."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(prefix))
    except OSError:
        return []
    rows: list[list[Any]] = []
    for name in names[:_MAX_ENTRIES]:
        try:
            st = os.lstat(os.path.join(folder, name))
        except OSError:
            continue
        rows.append([name, st.st_rdev, st.st_ctime_ns, stat.S_IFMT(st.st_mode)])
    return rows


def _names(folder: str) -> list[str]:
    """The sorted entry names of ``folder`` (bounded), ``[]`` when it cannot be read."""
    try:
        return sorted(os.listdir(folder))[:_MAX_ENTRIES]
    except OSError:
        return []


def _tree(folder: str) -> list[str]:
    """The relative paths under ``folder`` (bounded; links not followed)."""
    found: list[str] = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(top, folder)
        found.extend(os.path.normpath(os.path.join(rel, n)) for n in sorted(files))
        found.extend(os.path.normpath(os.path.join(rel, n)) + "/" for n in dirs)
        if len(found) > _MAX_ENTRIES:
            break
    return found[:_MAX_ENTRIES]


def inventory_key(
    driver_root: str = "/",
    dev_root: Optional[str] = None,
    libcuda: Optional[str] = None,
    files: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Everything that changes when the host's GPUs or driver change (see the module doc).

    :param libcuda: the ``libcuda.so.<version>`` host path found at build time.
    :param files: other paths the inventory names that must still exist (the
        hook executable written into its spec).
    """
    dev_root = dev_root or driver_root or "/"
    driver_root = driver_root or "/"
    dev = _join(dev_root, "/dev")
    nodes = _entries(dev, "nvidia")
    for row in list(nodes):
        if row[0].startswith("nvidia-caps") and stat.S_ISDIR(row[3]):
            # A folder of capability nodes (hundreds on a MIG host): its names
            # and its own stamp, which changes when a node is added, removed
            # or made again with other numbers.
            folder = os.path.join(dev, row[0])
            nodes.append([f"{row[0]}/", _stamp(folder), _names(folder)])
    key: dict[str, Any] = {
        "version": INVENTORY_VERSION,
        "driver_root": driver_root,
        "dev_root": dev_root,
        "proc_version": _read_small(_join(dev_root, "/proc/driver/nvidia/version")),
        "boot_id": (_read_small(_join(dev_root, "/proc/sys/kernel/random/boot_id")) or "").strip(),
        "ld_so_cache": _stamp(_join(driver_root, "/etc/ld.so.cache")),
        "dev": nodes,
        "mig_capabilities": _tree(_join(dev_root, "/proc/driver/nvidia/capabilities")),
        "mig_minors": _stamp(_join(dev_root, "/proc/driver/nvidia-caps/mig-minors")),
    }
    if libcuda is not None:
        key["libcuda"] = [libcuda, os.path.exists(libcuda), _stamp(os.path.dirname(libcuda))]
    if files:
        key["files"] = [[path, os.path.exists(path)] for path in files]
    return key


def _hook_paths(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The executables of the spec's hooks (nvshim-ctl moves when it is reinstalled)."""
    hooks = (spec.get("containerEdits") or {}).get("hooks") or []
    return tuple(sorted({h["path"] for h in hooks if isinstance(h, dict) and "path" in h}))


def inventory_path(
    driver_root: str = "/",
    dev_root: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Optional[str]:
    """The cache file of the inventory for these roots, or None when caching is off."""
    import zlib

    folder = cache_dir(environ)
    if folder is None:
        return None
    name = json.dumps([driver_root or "/", dev_root or driver_root or "/"])
    digest = zlib.crc32(name.encode("utf-8", "surrogateescape"))
    return os.path.join(folder, f"host-inventory-{digest:08x}.json")


Builder = Callable[[str, str], tuple[HostInventory, Optional[str]]]


def _default_builder(driver_root: str, dev_root: str) -> tuple[HostInventory, Optional[str]]:
    from nvshim._inventory_build import build_inventory

    return build_inventory(driver_root, dev_root)


def _cached(path: str, driver_root: str, dev_root: str) -> tuple[Optional[HostInventory], str]:
    """The cached inventory if the file is safe and its key current, else ``(None, why)``."""
    folder = os.path.dirname(path)
    try:
        if not is_safe(os.stat(folder)):
            return None, f"cache folder {folder} is not owned by this user or is writable by others"
    except OSError:
        return None, "no cache yet"
    if not os.path.lexists(path):
        return None, "no cache yet"
    content = read_json(path)
    if not isinstance(content, dict) or content.get("version") != INVENTORY_VERSION:
        return None, f"cache file {path} is unsafe, unreadable or of another version"
    try:
        inventory = HostInventory.from_json(content["inventory"])
    except (KeyError, ValueError, TypeError):
        return None, f"cache file {path} is not an inventory"
    libcuda = inventory.key.get("libcuda")
    files = tuple(f[0] for f in inventory.key.get("files") or ())
    current = inventory_key(driver_root, dev_root, libcuda[0] if libcuda else None, files)
    if current != inventory.key:
        changed = sorted(
            k for k in set(current) | set(inventory.key) if current.get(k) != inventory.key.get(k)
        )
        return None, "the host changed (" + ", ".join(changed) + ")"
    return inventory, ""


def load_inventory(
    driver_root: str = "/",
    dev_root: Optional[str] = None,
    *,
    refresh: bool = False,
    environ: Optional[Mapping[str, str]] = None,
    builder: Optional[Builder] = None,
) -> InventoryResult:
    """The host's inventory: from the cache when its key is current, else built and cached.

    :param driver_root: where the driver's files are (``[nvidia-container-cli] root``).
    :param dev_root: where its device nodes are (default: the driver root).
    :param refresh: rebuild even when the cache is current.
    :param environ: the environment holding ``NVSHIM_CACHE_DIR``.
    :param builder: ``builder(driver_root, dev_root)`` returns the inventory
        (without key) and the ``libcuda.so.<version>`` path it found; the
        default discovers the host through :mod:`nvshim.host` and NVML.
    :raises InventoryError: when the inventory cannot be built.
    """
    driver_root = driver_root or "/"
    dev_root = dev_root or driver_root
    path = inventory_path(driver_root, dev_root, environ)
    reason = "refresh asked for" if refresh else "caching is off"
    if path is not None and not refresh:
        inventory, reason = _cached(path, driver_root, dev_root)
        if inventory is not None:
            return InventoryResult(inventory, True, path)
    build = builder if builder is not None else _default_builder
    # The key first: a change made while NVML is asked shows at the next create.
    key = inventory_key(driver_root, dev_root)
    inventory, libcuda = build(driver_root, dev_root)
    if libcuda is not None:
        key["libcuda"] = [libcuda, os.path.exists(libcuda), _stamp(os.path.dirname(libcuda))]
    hooks = _hook_paths(inventory.spec)
    if hooks:
        key["files"] = [[path, os.path.exists(path)] for path in hooks]
    inventory = attrs.evolve(inventory, key=key)
    if path is not None:
        write_json(
            os.path.dirname(path),
            os.path.basename(path),
            {"version": INVENTORY_VERSION, "inventory": inventory.to_json()},
        )
    return InventoryResult(inventory, False, path, reason)


def describe(result: InventoryResult) -> list[str]:
    """Text lines for ``nvshim-ctl cdi inventory``."""
    inv = result.inventory
    origin = "cache" if result.cached else f"built now ({result.reason})"
    lines = [
        f"cache file: {result.path or 'none (caching is off)'}",
        f"source: {origin}",
        f"driver root: {inv.driver_root}",
        f"dev root: {inv.dev_root}",
        f"driver version: {inv.driver_version or 'unknown'}",
        f"CUDA version: {inv.cuda_version or 'unknown'}",
        f"GPUs: {len(inv.gpus)}",
    ]
    for gpu in inv.gpus:
        mig = " MIG on" if gpu.mig_enabled else ""
        lines.append(
            f"  {gpu.index}: {gpu.uuid} {gpu.pci_bus_id} {gpu.name}"
            f" (cc {gpu.compute_capability or '?'}, /dev/nvidia{gpu.minor}){mig}"
        )
        lines.extend(
            f"    {gpu.index}:{m.index}: {m.uuid} (gi {m.gi}, ci {m.ci})" for m in gpu.migs
        )
    mounts = inv.spec.get("containerEdits", {}).get("mounts", [])
    lines.append(f"driver files: {len(mounts)}")
    return lines
