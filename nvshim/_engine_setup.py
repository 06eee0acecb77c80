"""What ``runtime configure`` does beyond adding the runtime, and how ``unconfigure`` undoes it.

Pure functions on file texts, as in :mod:`nvshim._engines`:

- :func:`enable_cdi`: Docker ``features.cdi``, containerd ``enable_cdi`` (the
  other engines always read CDI specs);
- :func:`containerd_drop_in`: the runtime in a drop-in file of its own
  (``/etc/containerd/conf.d/99-nvshim.toml``) plus the ``imports`` line that
  makes containerd read it;
- :func:`record_changes` / :func:`unconfigure`: ``configure`` notes every key
  it added or changed besides the runtime entry (with the value it found), and
  ``unconfigure`` puts back exactly those keys, if they still hold what
  ``configure`` wrote, and removes the runtime entry. An admin's later edit of
  such a key wins: it is left as it is.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tomlkit

from nvshim._engines import (
    CONTAINERD_CRI_PLUGINS,
    EngineConfigError,
    _containerd_version,
    _parse_toml,
    _plain,
    configure,
)

__all__ = [
    "CDI_ENGINES",
    "DEFAULT_DROP_IN_PATHS",
    "containerd_drop_in",
    "containerd_import_pattern",
    "enable_cdi",
    "record_changes",
    "runtime_key",
    "unconfigure",
]

#: Where ``--drop-in-config`` without a path writes, per engine that has drop-in files.
DEFAULT_DROP_IN_PATHS = {
    "containerd": "/etc/containerd/conf.d/99-nvshim.toml",
    "crio": "/etc/crio/crio.conf.d/99-nvshim.toml",
}

#: Engines where CDI is a setting; CRI-O and Podman always read CDI specs.
CDI_ENGINES = ("docker", "containerd")

_MISSING: Any = object()


def _load(engine: str, text: str) -> Any:
    """The file as a tree: a dict for Docker's JSON, a tomlkit document otherwise."""
    if engine == "docker":
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EngineConfigError(f"invalid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EngineConfigError("expected a JSON object at the top level")
        return data
    return _parse_toml(text)


def _dump(engine: str, tree: Any, text: str) -> str:
    if engine == "docker":
        if text.strip() and tree == json.loads(text):
            return text
        return "" if not tree else json.dumps(tree, indent=4, ensure_ascii=False) + "\n"
    new = tomlkit.dumps(tree)
    return "" if not new.strip() else new


def _get(tree: Any, keys: list[str]) -> Any:
    node = tree
    for key in keys:
        if not hasattr(node, "keys") or key not in node:
            return _MISSING
        node = node[key]
    return node


def _parent(tree: Any, keys: list[str], create: bool) -> Any:
    node = tree
    for key in keys[:-1]:
        if not hasattr(node, "keys"):
            return None
        if key not in node:
            if not create:
                return None
            node[key] = tomlkit.table(is_super_table=True) if hasattr(tree, "as_string") else {}
        node = node[key]
    return node if hasattr(node, "keys") else None


def _delete(tree: Any, keys: list[str]) -> None:
    parent = _parent(tree, keys, create=False)
    if parent is not None and keys[-1] in parent:
        del parent[keys[-1]]


def runtime_key(engine: str, tree: Any, name: str) -> list[str]:
    """The key path of runtime *name* in *engine*'s file (tree as :func:`_load` gives)."""
    if engine == "docker":
        return ["runtimes", name]
    if engine == "containerd":
        return ["plugins", _cri_plugin(tree), "containerd", "runtimes", name]
    if engine == "crio":
        return ["crio", "runtime", "runtimes", name]
    if engine == "podman":
        return ["engine", "runtimes", name]
    raise ValueError(f"unknown engine {engine!r}")


def _default_key(engine: str, tree: Any) -> list[str]:
    return {
        "docker": lambda: ["default-runtime"],
        "containerd": lambda: ["plugins", _cri_plugin(tree), "containerd", "default_runtime_name"],
        "crio": lambda: ["crio", "runtime", "default_runtime"],
        "podman": lambda: ["engine", "runtime"],
    }[engine]()


def _cri_plugin(tree: Any) -> str:
    return CONTAINERD_CRI_PLUGINS[_containerd_version(tree)]


# --- CDI ----------------------------------------------------------------------------


def enable_cdi(engine: str, text: str) -> str:
    """Turn CDI on in *engine*'s file: Docker ``features.cdi``, containerd ``enable_cdi``.

    Raises ``ValueError`` for an engine without such a setting (see ``CDI_ENGINES``).
    """
    if engine not in CDI_ENGINES:
        raise ValueError(f"{engine} has no CDI setting: it always reads CDI specs")
    tree = _load(engine, text)
    if engine == "docker":
        features = tree.setdefault("features", {})
        if not isinstance(features, dict):
            raise EngineConfigError("'features' must be an object")
        features["cdi"] = True
        return _dump(engine, tree, text)
    if not tree:
        tree["version"] = _containerd_version(tree)
    keys = ["plugins", _cri_plugin(tree), "enable_cdi"]
    if _plain(_get(tree, keys)) is not True:
        parent = _parent(tree, keys, create=True)
        if parent is None:
            raise EngineConfigError(f"'{'.'.join(keys[:-1])}' must be a table")
        parent[keys[-1]] = True
    new = tomlkit.dumps(tree)
    return text if new == text else new


# --- containerd drop-in -------------------------------------------------------------


def containerd_import_pattern(drop_in_path: str) -> str:
    """The ``imports`` entry that makes containerd read *drop_in_path*'s folder."""
    return os.path.join(os.path.dirname(drop_in_path), "*.toml")


def containerd_drop_in(
    main_text: str,
    drop_in_text: str,
    drop_in_path: str,
    name: str,
    path: str,
    set_as_default: bool = False,
    cdi: bool = False,
) -> tuple[str, str]:
    """Register runtime *name* in a containerd drop-in file; return (main, drop-in) texts.

    The main file only gets ``imports`` (the drop-in folder's ``*.toml``) and,
    when it is empty, a ``version``. A new drop-in starts as a copy of the main
    file's whole CRI plugin table: containerd before 2.1 replaces a plugin's
    table with the imported one instead of merging them. Version 1 files have
    no ``imports``: ``EngineConfigError``.
    """
    main = _parse_toml(main_text)
    version = _containerd_version(main)
    if version == 1:
        raise EngineConfigError(
            "config version 1 has no drop-in files (imports); "
            "add 'version = 2' or leave out --drop-in-config"
        )
    if not drop_in_text.strip():
        plugin = CONTAINERD_CRI_PLUGINS[version]
        drop_in = tomlkit.document()
        drop_in["version"] = version
        section = _get(main, ["plugins", plugin])
        if section is not _MISSING:
            plugins = tomlkit.table(is_super_table=True)
            plugins[plugin] = tomlkit.item(_plain(section))
            drop_in["plugins"] = plugins
        drop_in_text = tomlkit.dumps(drop_in)
    new_drop_in = configure("containerd", drop_in_text, name, path, set_as_default)
    if cdi:
        new_drop_in = enable_cdi("containerd", new_drop_in)

    pattern = containerd_import_pattern(drop_in_path)
    imports = _plain(main.get("imports", []))
    if not isinstance(imports, list):
        raise EngineConfigError(f"'imports' must be a list of paths, found {imports!r}")
    if pattern in imports or drop_in_path in imports:
        return main_text, new_drop_in
    if not main:
        main["version"] = version
    if "imports" in main:
        main["imports"].append(pattern)
    else:
        # tomlkit puts a new top-level key before the first table.
        main["imports"] = [pattern]
    return tomlkit.dumps(main), new_drop_in


# --- recording and undoing -------------------------------------------------------------


def _diff(old: Any, new: Any, prefix: list[str]) -> list[dict[str, Any]]:
    """Keys of *new* that are absent from or differ in *old* (tables walked), as changes."""
    changes: list[dict[str, Any]] = []
    for key in new:
        value = _plain(new[key])
        keys = [*prefix, str(key)]
        if key not in old:
            changes.append({"key": keys, "had": False, "was": None, "set": value})
            continue
        before = _plain(old[key])
        if isinstance(value, dict) and isinstance(before, dict):
            changes.extend(_diff(before, value, keys))
        elif before != value:
            changes.append({"key": keys, "had": True, "was": before, "set": value})
    return changes


def record_changes(engine: str, old_text: str, new_text: str, name: str) -> list[dict[str, Any]]:
    """What ``configure`` changed in a file, so that :func:`unconfigure` can undo it.

    Each change is ``{"key": [...], "had": bool, "was": value, "set": value}``,
    JSON-ready. Runtime *name*'s entry is one change as a whole: when it
    existed (another runtime of that name, such as NVIDIA's ``nvidia``), undoing
    puts the old entry back rather than removing it.
    """
    old_tree = _load(engine, old_text)
    new_tree = _load(engine, new_text)
    keys = runtime_key(engine, new_tree, name)
    old, new = _plain(old_tree), _plain(new_tree)
    before = _pop(old, keys)
    after = _pop(new, keys)
    changes = _diff(old, new, [])
    if before is not _MISSING:
        changes.append({"key": keys, "had": True, "was": before, "set": after})
    return changes


def _pop(tree: dict[str, Any], keys: list[str]) -> Any:
    node: Any = tree
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and keys[-1] in node:
        return node.pop(keys[-1])
    return _MISSING


def unconfigure(
    engine: str, text: str, name: str, changes: list[dict[str, Any]] | None = None
) -> tuple[str, list[str]]:
    """Take runtime *name* and the recorded *changes* out of *engine*'s file text.

    Returns the new text ("" when nothing is left) and notes for the admin:
    a recorded key that no longer holds what ``configure`` wrote is left as
    it is. Without a record (``changes`` None), the runtime entry goes and so
    does a default-runtime setting that names it.
    """
    tree = _load(engine, text)
    notes: list[str] = []
    if not tree:
        return text, notes
    entry_key = runtime_key(engine, tree, name)
    if changes is None or all(c["key"] != entry_key for c in changes):
        _delete(tree, entry_key)  # configure added it: it goes
    if changes is None:
        default_key = _default_key(engine, tree)
        if _plain(_get(tree, default_key)) == name:
            _delete(tree, default_key)
            notes.append(f"removed {'.'.join(default_key)} = {name!r}")
    else:
        # Deepest keys first: a table configure created is checked once its
        # recorded contents are back to what configure wrote.
        for change in sorted(changes, key=lambda c: -len(c["key"])):
            keys = [str(k) for k in change["key"]]
            current = _plain(_get(tree, keys))
            if current is _MISSING and not change["had"]:
                continue
            if current != change["set"]:
                notes.append(f"left {'.'.join(keys)} as it is: changed since configure")
                continue
            if change["had"]:
                parent = _parent(tree, keys, create=True)
                if parent is not None:
                    parent[keys[-1]] = change["was"]
            else:
                _delete(tree, keys)
    return _dump(engine, tree, text), notes

