"""From a request and the host inventory to the CDI spec that is applied.

The inventory holds a CDI spec of every device with every driver file (what
``nvshim-ctl cdi generate`` writes).  A create picks the requested devices
out of it, keeps the driver files of the requested capabilities, and leaves
out the hooks the config disables.  Nothing here calls NVML.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Collection, Sequence
from typing import Any, Optional

from nvshim.inventory import GpuInfo, HostInventory
from nvshim.modifier import ModifierError

__all__ = ["HOOK_NAMES", "hook_name", "jit_spec", "select_devices"]

#: Hook names of ``nvcdi-disable-hooks`` (NVIDIA's names); ``all`` disables each.
HOOK_NAMES = (
    "create-symlinks",
    "enable-cuda-compat",
    "update-ldcache",
    "disable-device-node-modification",
    "chmod",
    "update-application-profile",
)


def select_devices(
    inventory: HostInventory, ids: Sequence[str], source: str
) -> tuple[list[str], list[GpuInfo]]:
    """``(device names, GPUs)``: the inventory's devices for ``ids``.

    Names are canonical (``0`` for GPU 0 however it was asked for, ``0:1``
    for a MIG device), without duplicates, in request order; the GPUs are
    those the devices live on (for the requirement checks).

    :raises ModifierError: for an id the host does not have, naming it and
        listing what the host has.
    """
    if not ids:
        return [], []
    if tuple(ids) == ("all",):
        if not inventory.gpus:
            raise ModifierError(f"{source}: all GPUs asked for, but this host has none")
        return ["all"], list(inventory.gpus)
    by_id: dict[str, tuple[str, GpuInfo]] = {}
    for gpu in inventory.gpus:
        by_id[str(gpu.index)] = by_id[gpu.uuid] = (str(gpu.index), gpu)
        for mig in gpu.migs:
            name = f"{gpu.index}:{mig.index}"
            by_id[name] = by_id[mig.uuid] = (name, gpu)
    names: list[str] = []
    gpus: list[GpuInfo] = []
    for wanted in ids:
        found = by_id.get(wanted)
        if found is None and wanted.isdigit():
            found = by_id.get(str(int(wanted)))  # "01" is GPU 1, as NVML reads it
        if found is None:
            have = "; ".join(inventory.device_ids()) or "no GPU"
            raise ModifierError(f"{source}: unknown GPU {wanted!r}; this host has: {have}")
        name, gpu = found
        if name not in names:
            names.append(name)
        if gpu not in gpus:
            gpus.append(gpu)
    return names, gpus


def hook_name(args: Sequence[str]) -> str:
    """The hook a CDI hook entry runs: ``nvshim-ctl hook NAME …`` or ``nvidia-cdi-hook NAME …``."""
    if len(args) > 2 and args[1] == "hook":
        return args[2]
    return args[1] if len(args) > 1 else ""


def _keep_mount(
    mount: Any, capabilities: Collection[str], tags: dict[str, tuple[str, ...]]
) -> bool:
    wanted = tags.get(mount.get("containerPath", ""))
    return wanted is None or any(c in capabilities for c in wanted)


def _links_to(value: str, dropped: set[str]) -> bool:
    """Whether ``target::link`` points at (or names) a dropped file."""
    target, _sep, link = value.partition("::")
    for path in dropped:
        if target == path or os.path.basename(target) == os.path.basename(path):
            return True
        # libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so for libcuda.so.<version>
        if link and path.startswith(link + "."):
            return True
    return False


def _filter_links(args: list[str], dropped: set[str]) -> list[str]:
    """``create-symlinks`` arguments without the links to dropped files."""
    kept: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--link" and i + 1 < len(args):
            if not _links_to(args[i + 1], dropped):
                kept.extend(args[i : i + 2])
            i += 2
            continue
        if arg.startswith("--link=") and _links_to(arg[len("--link=") :], dropped):
            i += 1
            continue
        kept.append(arg)
        i += 1
    return kept


def _filter_hooks(edits: dict[str, Any], disabled: Collection[str], dropped: set[str]) -> None:
    """Leave out disabled hooks and the links to ``dropped`` files, in place."""
    if "hooks" not in edits:
        return
    hooks = []
    for hook in edits.get("hooks") or []:
        args = list(hook.get("args") or [])
        name = hook_name(args)
        if "all" in disabled or name in disabled:
            continue
        if name == "create-symlinks" and dropped:
            args = _filter_links(args, dropped)
            if "--link" not in args and not any(a.startswith("--link=") for a in args):
                continue  # every link was to a file left out
            hook = {**hook, "args": args}
        hooks.append(hook)
    edits["hooks"] = hooks
    if not hooks:
        del edits["hooks"]


def jit_spec(
    inventory: HostInventory,
    capabilities: Collection[str],
    disabled_hooks: Collection[str] = (),
    names: Optional[Collection[str]] = None,
) -> dict[str, Any]:
    """The inventory's CDI spec with only the driver files of ``capabilities``.

    Mounts tagged with capabilities none of which is asked for are left out,
    with the ``create-symlinks`` links to them; hooks named in
    ``disabled_hooks`` (or all of them for ``all``) are left out.  With
    ``names``, only those devices are kept (less to check on each create);
    a spec needs one device, so ``all`` stays when none is named.
    """
    source = inventory.spec
    if names is not None:
        wanted = set(names) or {"all"}
        source = {
            **source,
            "devices": [d for d in source.get("devices", []) if d.get("name") in wanted],
        }
    spec = copy.deepcopy(source)
    edits = spec.setdefault("containerEdits", {})
    tags = inventory.capabilities
    mounts = edits.get("mounts") or []
    kept = [m for m in mounts if _keep_mount(m, capabilities, tags)]
    dropped = {m.get("containerPath", "") for m in mounts if m not in kept}
    if mounts:
        edits["mounts"] = kept
    _filter_hooks(edits, disabled_hooks, dropped)
    for device in spec.get("devices", []):
        # Per-device hooks too (a GPU's DRM by-path links).
        _filter_hooks(device.get("containerEdits") or {}, disabled_hooks, set())
    for key in [k for k, v in edits.items() if v == []]:
        del edits[key]
    if not edits:
        del spec["containerEdits"]
    return spec
