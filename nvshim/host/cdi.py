"""CDI spec generation from the host's driver and devices (``nvshim-ctl cdi generate``).

:func:`generate` returns the spec as a dict ready for :func:`dump`.  The
pieces are public too, for callers that build their own devices (the
runtime's jit-cdi mode): :func:`common_edits`, :func:`gpu_edits`,
:func:`mig_edits`, :func:`hook`, :func:`minimum_version`.

The output follows NVIDIA's ``nvidia-ctk cdi generate``: control nodes,
driver files (read-only bind mounts), ``NVIDIA_VISIBLE_DEVICES=void`` and the
``createContainer`` hooks in the common edits; each GPU's nodes in its
device.  Host paths keep the driver root prefix; container paths drop it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from nvshim.host._devices import DeviceNode, Devices
from nvshim.host._driver import Driver, DriverFile
from nvshim.host._errors import HostError
from nvshim.host._nvml import Gpu, MigDevice

__all__ = [
    "DEFAULT_CSV_FILES",
    "HOOK_ENV",
    "HOOK_NAMES",
    "MODES",
    "MOUNT_OPTIONS",
    "NAME_STRATEGIES",
    "GenerateOptions",
    "common_edits",
    "default_hook_path",
    "dump",
    "format_for",
    "generate",
    "gpu_edits",
    "hook",
    "mig_edits",
    "minimum_version",
    "resolve_mode",
]

#: ``--mode`` values.
MODES = ("auto", "nvml", "csv", "management", "gds", "mofed", "gdrcopy", "nvswitch", "imex")
#: ``--device-name-strategy`` values.
NAME_STRATEGIES = ("index", "uuid", "type-index")
#: Hooks ``--disable-hook`` knows (``all`` disables every one).
HOOK_NAMES = ("create-symlinks", "enable-cuda-compat", "update-ldcache")
#: Options of every driver-file mount.
MOUNT_OPTIONS = ("ro", "nosuid", "nodev", "rbind", "rprivate")
#: The whole environment of every hook written (runc gives a hook only its ``env``).
HOOK_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
#: CSV files read by the csv mode when no ``--csv.file`` is given (under the driver root).
DEFAULT_CSV_FILES = (
    "/etc/nvidia-container-runtime/host-files-for-container.d/devices.csv",
    "/etc/nvidia-container-runtime/host-files-for-container.d/drivers.csv",
)
_MODE_KINDS = {
    "nvml": "nvidia.com/gpu",
    "csv": "nvidia.com/gpu",
    "management": "management.nvidia.com/gpu",
    "gds": "nvidia.com/gds",
    "mofed": "nvidia.com/mofed",
    "gdrcopy": "nvidia.com/gdrcopy",
    "nvswitch": "nvidia.com/nvswitch",
    "imex": "nvidia.com/imex-channel",
}
_VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")


@attrs.frozen
class GenerateOptions:
    """The options of ``nvshim-ctl cdi generate`` (same names as ``nvidia-ctk``).

    ``vendor`` and ``device_class`` are None when not given: each mode then
    uses its own kind (``management.nvidia.com/gpu``, ``nvidia.com/gds``...).
    """

    mode: str = "auto"
    driver_root: str = "/"
    dev_root: str | None = None
    name_strategies: tuple[str, ...] = ("index", "uuid")
    vendor: str | None = None
    device_class: str | None = None
    all_device: bool = True
    device_ids: tuple[str, ...] = ()
    csv_files: tuple[str, ...] = ()
    library_search_paths: tuple[str, ...] = ()
    disabled_hooks: tuple[str, ...] = ()
    hook_path: str | None = None

    def kind(self, mode: str) -> str:
        """The spec's kind in ``mode``."""
        if self.vendor is None and self.device_class is None:
            return _MODE_KINDS[mode]
        return f"{self.vendor or 'nvidia.com'}/{self.device_class or 'gpu'}"


def default_hook_path() -> str:
    """The absolute path of the installed ``nvshim-ctl``.

    Looked for next to the interpreter, in its scripts folder, then in PATH.

    :raises HostError: none found (pass ``--nvidia-cdi-hook-path``).
    """
    import sys
    import sysconfig

    from nvshim._lookup import find_executable

    candidates = [
        os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "nvshim-ctl"),
        os.path.join(sysconfig.get_path("scripts"), "nvshim-ctl"),
    ]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = find_executable("nvshim-ctl")
    if found is None or not os.path.isabs(found):
        raise HostError("nvshim-ctl", "not found: give the hook path with --nvidia-cdi-hook-path")
    return found


def hook(hook_path: str, name: str, args: Sequence[str]) -> dict[str, Any]:
    """A ``createContainer`` hook entry running ``<hook_path> [hook] <name> <args>``.

    NVIDIA's ``nvidia-cdi-hook`` takes the hook name first; ``nvshim-ctl``
    and ``nvidia-ctk`` take ``hook <name>``.  The environment is explicit.
    """
    program = os.path.basename(hook_path)
    prefix = [program] if program == "nvidia-cdi-hook" else [program, "hook"]
    return {
        "hookName": "createContainer",
        "path": hook_path,
        "args": [*prefix, name, *args],
        "env": list(HOOK_ENV),
    }


def _node(node: DeviceNode) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": node.path}
    if node.host_path != node.path:
        entry["hostPath"] = node.host_path
    return entry


def _mount(item: DriverFile) -> dict[str, Any]:
    return {
        "hostPath": item.host_path,
        "containerPath": item.path,
        "options": list(MOUNT_OPTIONS),
    }


def common_edits(
    driver: Driver,
    devices: Devices,
    *,
    files: Iterable[DriverFile] | None = None,
    hook_path: str | None = None,
    disabled_hooks: Iterable[str] = (),
    extra_nodes: Iterable[DeviceNode] = (),
) -> dict[str, Any]:
    """The edits every GPU device shares: control nodes, driver files, env, hooks.

    :param files: the driver files to mount (default ``driver.files()``).
    :param hook_path: the hook executable (default :func:`default_hook_path`).
    :param disabled_hooks: names from :data:`HOOK_NAMES`, or ``all``.
    :param extra_nodes: nodes added after the control nodes.
    :raises DriverNotFound: no driver under the driver root.
    """
    chosen = list(driver.files() if files is None else files)
    disabled = set(disabled_hooks)
    path = hook_path or default_hook_path()
    libraries = [f.path for f in chosen if f.kind == "library"]
    hooks = []
    links = driver.dev_symlinks(libraries)
    if links and not disabled & {"all", "create-symlinks"}:
        hooks.append(
            hook(path, "create-symlinks", [a for t, ln in links for a in ("--link", f"{t}::{ln}")])
        )
    if not disabled & {"all", "enable-cuda-compat"}:
        hooks.append(hook(path, "enable-cuda-compat", [f"--host-driver-version={driver.version}"]))
    folders = list(dict.fromkeys(os.path.dirname(p) for p in libraries))
    if folders and not disabled & {"all", "update-ldcache"}:
        hooks.append(hook(path, "update-ldcache", [a for f in folders for a in ("--folder", f)]))
    edits: dict[str, Any] = {
        "env": ["NVIDIA_VISIBLE_DEVICES=void"],
        "deviceNodes": [_node(n) for n in [*devices.control_nodes(), *extra_nodes]],
        "mounts": [_mount(f) for f in chosen],
        "hooks": hooks,
    }
    return {key: value for key, value in edits.items() if value}


def gpu_edits(gpu: Gpu, devices: Devices, *, hook_path: str | None = None) -> dict[str, Any]:
    """A full GPU's edits: ``/dev/nvidia<minor>`` and its DRM nodes.

    :param hook_path: when given, a ``create-symlinks`` hook remakes the
        GPU's ``/dev/dri/by-path`` links in the container.
    :raises HostError: the GPU's node is missing under the device root.
    """
    node = devices.gpu_node(gpu.minor)
    if node is None:
        raise HostError(
            f"GPU {gpu.index} ({gpu.uuid})",
            f"device node {devices.root.rstrip('/')}/dev/nvidia{gpu.minor} is missing",
        )
    edits: dict[str, Any] = {
        "deviceNodes": [_node(n) for n in [node, *devices.drm_nodes(gpu.pci_bus_id)]]
    }
    links = devices.drm_links(gpu.pci_bus_id) if hook_path else []
    if hook_path and links:
        args = [a for target, link in links for a in ("--link", f"{target}::{link}")]
        edits["hooks"] = [hook(hook_path, "create-symlinks", args)]
    return edits


def mig_edits(gpu: Gpu, mig: MigDevice, devices: Devices) -> dict[str, Any]:
    """A MIG device's edits: the parent's node and the MIG capability nodes."""
    parent = devices.gpu_node(gpu.minor)
    if parent is None:
        raise HostError(
            f"GPU {gpu.index} ({gpu.uuid})",
            f"device node {devices.root.rstrip('/')}/dev/nvidia{gpu.minor} is missing",
        )
    caps = devices.mig_nodes(gpu.minor, mig.gpu_instance, mig.compute_instance)
    return {"deviceNodes": [_node(n) for n in [parent, *caps]]}


def _gpu_names(gpu: Gpu, strategies: Sequence[str]) -> list[str]:
    names = {"index": str(gpu.index), "uuid": gpu.uuid, "type-index": f"gpu{gpu.index}"}
    return list(dict.fromkeys(names[s] for s in strategies))


def _mig_names(gpu: Gpu, mig: MigDevice, strategies: Sequence[str]) -> list[str]:
    names = {
        "index": f"{gpu.index}:{mig.index}",
        "uuid": mig.uuid,
        "type-index": f"mig{gpu.index}:{mig.index}",
    }
    return list(dict.fromkeys(names[s] for s in strategies))


def _merge_edits(edits: Iterable[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, list[Any]] = {}
    for item in edits:
        for key, values in item.items():
            bucket = merged.setdefault(key, [])
            for value in values:
                if value not in bucket:
                    bucket.append(value)
    return dict(merged)


def _selected(gpu: Gpu, mig: MigDevice | None, ids: Sequence[str]) -> bool:
    if not ids or "all" in ids:
        return True
    if mig is None:
        return str(gpu.index) in ids or gpu.uuid in ids
    return f"{gpu.index}:{mig.index}" in ids or mig.uuid in ids


def _nvml_devices(
    options: GenerateOptions, driver: Driver, devices: Devices
) -> list[dict[str, Any]]:
    from nvshim.host._nvml import query_gpus

    gpus = query_gpus(driver)
    known = {str(g.index) for g in gpus} | {g.uuid for g in gpus} | {"all"}
    known |= {f"{g.index}:{m.index}" for g in gpus for m in g.mig_devices}
    known |= {m.uuid for g in gpus for m in g.mig_devices}
    for wanted in options.device_ids:
        if wanted not in known:
            raise HostError(f"--device-id {wanted}", "no such GPU or MIG device (by index or UUID)")
    out: list[dict[str, Any]] = []
    link_hook = None
    if not set(options.disabled_hooks) & {"all", "create-symlinks"}:
        link_hook = options.hook_path or default_hook_path()
    for gpu in gpus:
        if _selected(gpu, None, options.device_ids):
            edits = gpu_edits(gpu, devices, hook_path=link_hook)
            out += [
                {"name": n, "containerEdits": edits}
                for n in _gpu_names(gpu, options.name_strategies)
            ]
        for mig in gpu.mig_devices:
            if _selected(gpu, mig, options.device_ids):
                edits = mig_edits(gpu, mig, devices)
                out += [
                    {"name": n, "containerEdits": edits}
                    for n in _mig_names(gpu, mig, options.name_strategies)
                ]
    if not out:
        raise HostError("NVML", "no GPU found")
    return out


def _with_all(options: GenerateOptions, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not options.all_device:
        return devices
    seen: dict[int, dict[str, Any]] = {}
    for device in devices:
        seen.setdefault(id(device["containerEdits"]), device["containerEdits"])
    return [*devices, {"name": "all", "containerEdits": _merge_edits(seen.values())}]


def _csv_spec_parts(
    options: GenerateOptions, driver: Driver, devices: Devices
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import glob
    import logging

    from nvshim_csv_discovery.csvfiles import parse_csv_file
    from nvshim_csv_discovery.discovery import discover

    log = logging.getLogger("nvshim.host.cdi")
    files = list(options.csv_files) or [driver.host_path(p) for p in DEFAULT_CSV_FILES]
    entries = []
    for path in files:
        if not os.path.exists(path):
            if options.csv_files:
                raise HostError(f"--csv.file {path}", "no such file")
            continue
        entries += parse_csv_file(path, log.warning)
    if not entries:
        raise HostError("csv mode", f"no CSV entries found (read: {', '.join(files)})")
    # A CSV file lists every file a board family may have: what this board
    # lacks is normal, so misses are logged at debug level only.
    found = discover([e for e in entries if e.type != "dev"], driver.root, log.debug)
    # Device entries are looked up under the device root, and a path that
    # exists counts whatever it is (its numbers are read where the spec is used).
    nodes: dict[str, DeviceNode] = {}
    for entry in (e for e in entries if e.type == "dev"):
        if entry.is_glob:
            prefix = "" if devices.root == "/" else glob.escape(devices.root)
            paths = [devices.root_relative(h) for h in sorted(glob.glob(prefix + entry.path))]
        else:
            paths = [entry.path]
        for path in paths:
            node = devices.node(path)
            if node is not None:
                nodes.setdefault(node.path, node)
    if not nodes:
        raise HostError("csv mode", "the CSV files name no device node present on this host")
    path = options.hook_path or default_hook_path()
    hooks = []
    disabled = set(options.disabled_hooks)
    if found.links and not disabled & {"all", "create-symlinks"}:
        link_args = [a for t, ln in found.links for a in ("--link", f"{t}::{ln}")]
        hooks.append(hook(path, "create-symlinks", link_args))
    if found.ldcache_folders and not disabled & {"all", "update-ldcache"}:
        folder_args = [a for f in found.ldcache_folders for a in ("--folder", f)]
        hooks.append(hook(path, "update-ldcache", folder_args))
    mounts = [
        {"hostPath": m.source, "containerPath": m.destination, "options": list(MOUNT_OPTIONS)}
        for m in found.mounts
    ]
    common: dict[str, Any] = {
        "env": ["NVIDIA_VISIBLE_DEVICES=void"],
        "mounts": mounts,
        "hooks": hooks,
    }
    names = {"index": "0", "type-index": "gpu0"}
    device_edits = {"deviceNodes": [_node(n) for n in nodes.values()]}
    devs = [
        {"name": names[s], "containerEdits": device_edits}
        for s in dict.fromkeys(options.name_strategies)
        if s in names
    ]
    if not devs and not options.all_device:
        raise HostError(
            "csv mode", "no device name: use --device-name-strategy index or type-index"
        )
    return devs, {k: v for k, v in common.items() if v}


def _gated_nodes(mode: str, devices: Devices) -> list[DeviceNode]:
    return {
        "gds": devices.gds_nodes,
        "mofed": devices.mofed_nodes,
        "gdrcopy": devices.gdrcopy_nodes,
        "nvswitch": devices.nvswitch_nodes,
    }[mode]()


def _gds_mounts(driver: Driver) -> list[dict[str, Any]]:
    mounts = []
    for path in ("/etc/cufile.json", "/run/udev"):
        if os.path.exists(driver.host_path(path)):
            mounts.append(
                {
                    "hostPath": driver.host_path(path),
                    "containerPath": path,
                    "options": list(MOUNT_OPTIONS),
                }
            )
    return mounts


def resolve_mode(options: GenerateOptions, driver: Driver | None = None) -> str:
    """``auto`` made concrete: csv on a Tegra root whose NVML is absent or sees
    only integrated GPUs, nvml otherwise; other modes are returned as given."""
    if options.mode != "auto":
        return options.mode
    from nvshim.host._errors import NvmlError
    from nvshim.host._nvml import query_gpus
    from nvshim.host._platform import is_tegra

    driver = driver or Driver(
        options.driver_root, library_search_paths=options.library_search_paths
    )
    if not is_tegra(driver.root):
        return "nvml"
    try:
        gpus = query_gpus(driver)
    except (NvmlError, HostError):
        return "csv"
    return "csv" if all(g.is_integrated for g in gpus) else "nvml"


def minimum_version(spec: dict[str, Any]) -> str:
    """The lowest ``cdiVersion`` that holds what ``spec`` uses (CDI's own rules)."""
    need = 0

    def at_least(version: str) -> None:
        nonlocal need
        need = max(need, _VERSIONS.index(version))

    _vendor, _, cls = spec["kind"].partition("/")
    if "." in cls or "annotations" in spec:
        at_least("0.6.0")
    all_edits = [spec.get("containerEdits", {})]
    for device in spec["devices"]:
        if device["name"][:1].isdigit():
            at_least("0.5.0")
        if "annotations" in device:
            at_least("0.6.0")
        all_edits.append(device["containerEdits"])
    for edits in all_edits:
        if any("hostPath" in n for n in edits.get("deviceNodes", ())):
            at_least("0.5.0")
        if any("type" in m for m in edits.get("mounts", ())):
            at_least("0.4.0")
        if "additionalGids" in edits or "intelRdt" in edits:
            at_least("0.7.0")
        if "netDevices" in edits:
            at_least("1.1.0")
    return _VERSIONS[need]


def _finish(kind: str, devices: list[dict[str, Any]], common: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"cdiVersion": "", "kind": kind, "devices": devices}
    if common:
        spec["containerEdits"] = common
    spec["cdiVersion"] = minimum_version(spec)
    return spec


def generate(options: GenerateOptions) -> dict[str, Any]:
    """Build the CDI spec ``options`` describe.

    :raises HostError: one line (no driver, NVML missing, no device found,
        a corrupt ld.so.cache, an unknown ``--device-id``...).
    """
    for strategy in options.name_strategies:
        if strategy not in NAME_STRATEGIES:
            raise HostError(
                f"--device-name-strategy {strategy}",
                f"unknown (known: {', '.join(NAME_STRATEGIES)})",
            )
    for name in options.disabled_hooks:
        if name not in (*HOOK_NAMES, "all"):
            raise HostError(
                f"--disable-hook {name}", f"unknown (known: {', '.join(HOOK_NAMES)}, all)"
            )
    driver = Driver(options.driver_root, library_search_paths=options.library_search_paths)
    devices = Devices(options.dev_root if options.dev_root is not None else options.driver_root)
    mode = resolve_mode(options, driver)
    if mode not in MODES:
        raise HostError(f"--mode {mode}", f"unknown (known: {', '.join(MODES)})")
    kind = options.kind(mode)
    if mode == "nvml":
        devs = _nvml_devices(options, driver, devices)
        return _finish(
            kind,
            _with_all(options, devs),
            common_edits(
                driver, devices, hook_path=options.hook_path, disabled_hooks=options.disabled_hooks
            ),
        )
    if mode == "csv":
        devs, common = _csv_spec_parts(options, driver, devices)
        return _finish(kind, _with_all(options, devs), common)
    if mode == "management":
        # Every node in the one device (as nvidia-ctk does); the driver in the common edits.
        if not devices.gpu_nodes():
            raise HostError(f"device root {devices.root}", "no /dev/nvidia<N> node found")
        common = common_edits(
            driver, devices, hook_path=options.hook_path, disabled_hooks=options.disabled_hooks
        )
        common.pop("deviceNodes", None)
        edits = {"deviceNodes": [_node(n) for n in devices.all_nodes()]}
        return _finish(kind, [{"name": "all", "containerEdits": edits}], common)
    if mode == "imex":
        channels = devices.imex_channels()
        ids = [i[len("channel") :] if i.startswith("channel") else i for i in options.device_ids]
        by_id = {os.path.basename(n.path)[len("channel") :]: n for n in channels}
        for wanted in ids:
            if wanted != "all" and wanted not in by_id:
                raise HostError(f"--device-id {wanted}", "no such IMEX channel")
        chosen = [n for i, n in by_id.items() if not ids or "all" in ids or i in ids]
        if not chosen:
            raise HostError(f"device root {devices.root}", "no IMEX channel found")
        devs = [
            {"name": i, "containerEdits": {"deviceNodes": [_node(n)]}}
            for i, n in by_id.items()
            if n in chosen
        ]
        return _finish(kind, _with_all(options, devs), {})
    nodes = _gated_nodes(mode, devices)
    if not nodes:
        raise HostError(f"--mode {mode}", f"no {mode} device node found under {devices.root}")
    gated: dict[str, Any] = {"deviceNodes": [_node(n) for n in nodes]}
    if mode == "gds":
        mounts = _gds_mounts(driver)
        if mounts:
            gated["mounts"] = mounts
    return _finish(kind, [{"name": "all", "containerEdits": gated}], {})


def format_for(output: str | None, requested: str | None) -> str:
    """``json`` or ``yaml``: ``requested`` if given, else from the extension, else yaml.

    :raises HostError: ``requested`` contradicts the output's extension.
    """
    ext = os.path.splitext(output or "")[1].lower()
    by_ext = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(ext)
    if requested and by_ext and requested != by_ext:
        raise HostError(
            f"--output {output}", f"the extension {ext} does not match --format {requested}"
        )
    return requested or by_ext or "yaml"


def dump(spec: dict[str, Any], fmt: str) -> str:
    """The spec as text in ``fmt`` (``json`` or ``yaml``), keys in spec order."""
    if fmt == "json":
        return json.dumps(spec, indent=2) + "\n"
    import yaml

    class _NoAliases(yaml.SafeDumper):
        # Devices share edit lists; anchors would make the file hard to read.
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return "---\n" + yaml.dump(spec, Dumper=_NoAliases, sort_keys=False, default_flow_style=False)
