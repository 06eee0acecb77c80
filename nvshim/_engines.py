"""Edit container engines' configuration files to register nvshim as a runtime.

Pure functions: each takes the current text of an engine's configuration file
(``""`` for a missing file) and returns the new text. Nothing here touches the
file system; ``nvshim._ctl.runtime_cmd`` reads, backs up and writes.

Every function is idempotent: when the file already registers the runtime as
asked, the text comes back unchanged (byte for byte), so the caller can tell
"nothing to do" by comparing strings. TOML files are edited with tomlkit, which
keeps comments, key order and the formatting of what is not touched; Docker's
``daemon.json`` keeps its key order and is written with an indent of 4, as
NVIDIA's ``nvidia-ctk runtime configure`` writes it.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import tomlkit
import tomlkit.exceptions
from tomlkit.container import Container
from tomlkit.items import Table

from nvshim.spec import JsonConstantError, reject_json_constant

__all__ = [
    "CONTAINERD_CRI_PLUGINS",
    "DEFAULT_CONFIG_PATHS",
    "ENGINES",
    "EngineConfigError",
    "configure",
    "configure_containerd",
    "configure_crio",
    "configure_docker",
    "configure_podman",
]

#: The engines ``nvshim-ctl runtime configure`` knows, in the order the CLI lists them.
ENGINES = ("docker", "containerd", "crio", "podman")

#: Where each engine reads the file that ``configure`` edits by default.
DEFAULT_CONFIG_PATHS = {
    "docker": "/etc/docker/daemon.json",
    "containerd": "/etc/containerd/config.toml",
    # A drop-in of our own rather than crio.conf: CRI-O merges drop-ins over
    # its main file, so the admin's file is never rewritten.
    "crio": "/etc/crio/crio.conf.d/99-nvshim.toml",
    "podman": "/etc/containers/containers.conf",
}

#: containerd's CRI plugin id per config ``version``: the runtimes live under
#: ``plugins.<id>.containerd.runtimes``. Version 3 (containerd 2.x) split the
#: CRI plugin, and runtimes moved to the ``runtime`` half.
CONTAINERD_CRI_PLUGINS = {
    1: "cri",
    2: "io.containerd.grpc.v1.cri",
    3: "io.containerd.cri.v1.runtime",
}

# A missing or empty containerd file becomes a version-2 file, as nvidia-ctk
# does: containerd 1.6 and 1.7 read it, and containerd 2.x migrates it.
_CONTAINERD_NEW_FILE_VERSION = 2
_CONTAINERD_RUNTIME_TYPE = "io.containerd.runc.v2"


class EngineConfigError(ValueError):
    """The engine's configuration file cannot be read as that engine's format.

    The message says why (a parse error, a key of the wrong type); the caller
    adds the file name.
    """


# --- Docker ------------------------------------------------------------------


def configure_docker(text: str, name: str, path: str, set_as_default: bool = False) -> str:
    """Register runtime *name* (binary *path*) in Docker's ``daemon.json`` text.

    Adds ``runtimes.<name> = {"path": path, "args": []}`` (keys the entry
    already has, such as ``runtimeArgs``, are kept) and, with
    *set_as_default*, ``"default-runtime": name``. Every other key keeps its
    value and position. Returns *text* unchanged when nothing would change.
    """
    if text.strip():
        try:
            # A file holding NaN is already broken (dockerd refuses it): not "fixed" silently.
            data = json.loads(text, parse_constant=reject_json_constant)
        except JsonConstantError as exc:
            raise EngineConfigError(f"invalid JSON: {exc.constant} is not allowed") from None
        except json.JSONDecodeError as exc:
            raise EngineConfigError(f"invalid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EngineConfigError(
                f"expected a JSON object at the top level, found {type(data).__name__}"
            )
    else:
        data = {}

    runtimes = data.setdefault("runtimes", {})
    if not isinstance(runtimes, dict):
        raise EngineConfigError(f"'runtimes' must be an object, found {type(runtimes).__name__}")
    entry = runtimes.get(name)
    if entry is None:
        runtimes[name] = {"path": path, "args": []}
    elif isinstance(entry, dict):
        entry["path"] = path
        entry.setdefault("args", [])
    else:
        raise EngineConfigError(
            f"'runtimes.{name}' must be an object, found {type(entry).__name__}"
        )
    if set_as_default:
        data["default-runtime"] = name

    if text.strip() and data == json.loads(text):
        return text
    return json.dumps(data, indent=4, ensure_ascii=False) + "\n"


# --- TOML helpers --------------------------------------------------------------


def _parse_toml(text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise EngineConfigError(f"invalid TOML: {exc}") from None


def _table(parent: Any, key: str, where: str) -> Any:
    """Return the table *key* of *parent*, creating it when missing.

    A created table is a "super table": tomlkit writes no header of its own for
    it, so adding ``a.b.c.d`` to an empty file gives one ``[a.b.c.d]`` header
    rather than four.
    """
    if key not in parent:
        parent[key] = tomlkit.table(is_super_table=True)
    child = parent[key]
    if not isinstance(child, (dict, Container, Table)):
        raise EngineConfigError(f"'{where}' must be a table, found {type(child).__name__}")
    return child


def _table_path(doc: Any, keys: list[str]) -> Any:
    node = doc
    for i, key in enumerate(keys):
        node = _table(node, key, ".".join(keys[: i + 1]))
    return node


def _get_path(doc: Any, keys: list[str]) -> Any:
    """Return the value at *keys*, or None when any part is missing."""
    node = doc
    for key in keys:
        if not isinstance(node, (dict, Container, Table)) or key not in node:
            return None
        node = node[key]
    return node


def _plain(value: Any) -> Any:
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _set(table: Any, key: str, value: Any) -> None:
    # Only assign when the value differs: re-assigning an equal value would
    # still rewrite its formatting (quotes, trailing comment), breaking
    # "a second run changes nothing".
    if key not in table or _plain(table[key]) != value:
        table[key] = value


def _copy_source(
    runtimes: Any,
    candidates: list[str],
    usable: Callable[[dict[str, Any]], bool] = lambda _runtime: True,
) -> dict[str, Any] | None:
    """A plain copy of the first runtime of *candidates* that *runtimes* defines."""
    for candidate in candidates:
        found = runtimes.get(candidate) if hasattr(runtimes, "get") else None
        if isinstance(found, (dict, Table)):
            copied = _plain(found)
            if isinstance(copied, dict) and usable(copied):
                return copied
    return None


def _drop_cdi_pod_annotations(runtime: dict[str, Any]) -> None:
    """Never pass a pod's ``cdi.k8s.io/`` annotations to nvshim's runtime.

    containerd hands the runtime only the pod annotations its handler's
    ``pod_annotations`` lists.  nvshim trusts ``cdi.k8s.io/`` annotations to
    name devices because only device plugins set them (docs/security.md): a
    pattern that let a pod's own annotations through would let any pod ask
    for any device.  So a copied runc runtime loses such patterns.
    """
    import fnmatch

    patterns = runtime.get("pod_annotations")
    if not isinstance(patterns, list):
        return
    kept = [
        p
        for p in patterns
        if not (isinstance(p, str) and fnmatch.fnmatchcase("cdi.k8s.io/x", p))
        and not (isinstance(p, str) and p.startswith("cdi.k8s.io/"))
    ]
    if kept:
        runtime["pod_annotations"] = kept
    else:
        del runtime["pod_annotations"]


def _is_runc_type(runtime: dict[str, Any]) -> bool:
    # nvshim stands in for runc: the settings of another kind of shim (kata,
    # gVisor) would not apply to it.
    kind = runtime.get("runtime_type", _CONTAINERD_RUNTIME_TYPE)
    return bool(kind == _CONTAINERD_RUNTIME_TYPE)


def _low_level_candidates(default: Any, name: str) -> list[str]:
    """The runtimes whose settings a new runtime copies, as nvidia-ctk picks them.

    The configured default (unless it is nvshim itself or one of NVIDIA's
    runtimes, whose settings belong to another shim), then ``runc``, then ``crun``.
    """
    names: list[str] = []
    if (
        isinstance(default, str)
        and default
        and default != name
        and not default.startswith("nvidia")
    ):
        names.append(default)
    return [*names, "runc", "crun"]


# --- containerd ------------------------------------------------------------------


def _containerd_version(doc: tomlkit.TOMLDocument) -> int:
    if not doc:
        return _CONTAINERD_NEW_FILE_VERSION
    version = _plain(doc.get("version"))
    if version is None:
        return 1
    if isinstance(version, bool) or not isinstance(version, int):
        raise EngineConfigError(f"'version' must be an integer, found {version!r}")
    if version not in CONTAINERD_CRI_PLUGINS:
        raise EngineConfigError(
            f"unsupported config version {version} (nvshim knows versions 1, 2 and 3)"
        )
    return version


def configure_containerd(text: str, name: str, path: str, set_as_default: bool = False) -> str:
    """Register runtime *name* (binary *path*) in containerd's ``config.toml`` text.

    The file's ``version`` picks the CRI plugin id (see
    ``CONTAINERD_CRI_PLUGINS``); an empty file becomes a version-2 file. The
    runtime is a runc-type runtime whose ``options.BinaryName`` is *path*. A new
    runtime copies the settings of the default runtime, ``runc`` or ``crun``
    (the first one present that is a runc-type runtime), so options such as
    ``SystemdCgroup`` carry over, as nvidia-ctk does; with none present it gets
    nvidia-ctk's defaults. A file without a ``runtimes`` table relies on
    containerd's built-in ``runc`` runtime, which a new table would replace:
    a minimal ``runc`` entry is written with nvshim's so the default stays. An
    existing runtime *name* keeps its settings and only gets the new binary.
    With *set_as_default*, ``containerd.default_runtime_name`` is set to *name*.
    """
    doc = _parse_toml(text)
    version = _containerd_version(doc)
    if not doc:
        doc["version"] = version
    plugin = CONTAINERD_CRI_PLUGINS[version]
    base = ["plugins", plugin, "containerd"]

    runtimes_path = [*base, "runtimes"]
    existing = _get_path(doc, [*runtimes_path, name])
    if existing is None:
        runtimes = _get_path(doc, runtimes_path)
        default = _plain(_get_path(doc, [*base, "default_runtime_name"]))
        if runtimes is None and default in (None, "runc"):
            # containerd replaces its built-in runtimes (runc, the default)
            # with the file's table as a whole: adding nvshim alone would leave
            # the default runtime undefined, and the CRI plugin would refuse to
            # load ("no corresponding runtime configured in containerd.runtimes").
            runtimes = _table_path(doc, runtimes_path)
            runtimes["runc"] = tomlkit.item({"runtime_type": _CONTAINERD_RUNTIME_TYPE})
        source = None
        if runtimes is not None:
            source = _copy_source(runtimes, _low_level_candidates(default, name), _is_runc_type)
        if source is None:
            source = {
                "runtime_type": _CONTAINERD_RUNTIME_TYPE,
                "runtime_root": "",
                "runtime_engine": "",
                "privileged_without_host_devices": False,
            }
        _drop_cdi_pod_annotations(source)
        options = source.get("options")
        source["options"] = dict(options) if isinstance(options, dict) else {}
        source["options"]["BinaryName"] = path
        runtimes = _table_path(doc, runtimes_path)
        runtimes[name] = tomlkit.item(source)
    else:
        runtime = _table_path(doc, [*runtimes_path, name])
        if "runtime_type" not in runtime:
            runtime["runtime_type"] = _CONTAINERD_RUNTIME_TYPE
        options = _table(runtime, "options", ".".join([*runtimes_path, name, "options"]))
        _set(options, "BinaryName", path)

    if set_as_default:
        _set(_table_path(doc, base), "default_runtime_name", name)
    return _dumps_if_changed(text, doc)


def _dumps_if_changed(text: str, doc: tomlkit.TOMLDocument) -> str:
    new = tomlkit.dumps(doc)
    if new == text:
        return text
    # Same meaning, only formatting differs: keep the admin's bytes.
    if text.strip() and _plain(_parse_toml(text)) == _plain(doc):
        return text
    return new


# --- CRI-O --------------------------------------------------------------------------


def configure_crio(text: str, name: str, path: str, set_as_default: bool = False) -> str:
    """Register runtime *name* (binary *path*) in CRI-O TOML text (a drop-in file).

    Sets ``[crio.runtime.runtimes.<name>]`` ``runtime_path = path`` and
    ``runtime_type = "oci"``. A new runtime first copies the settings of the
    default runtime, ``runc`` or ``crun`` when the same file defines one (as
    nvidia-ctk does with the main file), so ``runtime_root`` and
    ``monitor_path`` carry over. With *set_as_default*,
    ``[crio.runtime] default_runtime = name``.
    """
    doc = _parse_toml(text)
    base = ["crio", "runtime"]
    runtimes_path = [*base, "runtimes"]
    if _get_path(doc, [*runtimes_path, name]) is None:
        runtimes = _get_path(doc, runtimes_path)
        default = _get_path(doc, [*base, "default_runtime"])
        source = None
        if runtimes is not None:
            source = _copy_source(runtimes, _low_level_candidates(_plain(default), name))
        if source is not None:
            _table_path(doc, runtimes_path)[name] = tomlkit.item(source)
    runtime = _table_path(doc, [*runtimes_path, name])
    _set(runtime, "runtime_path", path)
    _set(runtime, "runtime_type", "oci")
    if set_as_default:
        _set(_table_path(doc, base), "default_runtime", name)
    return _dumps_if_changed(text, doc)


# --- Podman ---------------------------------------------------------------------------


def configure_podman(text: str, name: str, path: str, set_as_default: bool = False) -> str:
    """Register runtime *name* (binary *path*) in Podman's ``containers.conf`` text.

    Sets ``[engine.runtimes] <name> = [path, ...]``: *path* first, other paths
    the entry listed before are kept after it (Podman uses the first that
    exists). With *set_as_default*, ``[engine] runtime = name``.
    """
    doc = _parse_toml(text)
    runtimes = _table_path(doc, ["engine", "runtimes"])
    current = _plain(runtimes.get(name))
    if current is not None and not (
        isinstance(current, list) and all(isinstance(p, str) for p in current)
    ):
        raise EngineConfigError(
            f"'engine.runtimes.{name}' must be a list of paths, found {current!r}"
        )
    paths = [path, *(p for p in (current or []) if p != path)]
    _set(runtimes, name, paths)
    if set_as_default:
        _set(_table_path(doc, ["engine"]), "runtime", name)
    return _dumps_if_changed(text, doc)


_CONFIGURERS: dict[str, Callable[[str, str, str, bool], str]] = {
    "docker": configure_docker,
    "containerd": configure_containerd,
    "crio": configure_crio,
    "podman": configure_podman,
}


def configure(engine: str, text: str, name: str, path: str, set_as_default: bool = False) -> str:
    """Register runtime *name* at *path* in *engine*'s configuration *text*.

    *engine* is one of ``ENGINES``. Returns the new text, or *text* itself when
    the file already says what is asked. Raises ``EngineConfigError`` when the
    text does not parse or holds a key of the wrong type, and ``ValueError``
    for an unknown engine.
    """
    try:
        configurer = _CONFIGURERS[engine]
    except KeyError:
        raise ValueError(
            f"unknown engine {engine!r} (expected one of {', '.join(ENGINES)})"
        ) from None
    return configurer(text, name, path, set_as_default)
