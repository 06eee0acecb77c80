"""Checks of a finished spec, before it is written.

Modifiers change the spec through the Spec API, whose records are validated
already; these checks catch what records cannot see on their own (two mounts
on one destination, a change made through ``Spec.raw``) and name the modifier
responsible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nvshim.changes import Change
    from nvshim.spec import Spec

__all__ = ["validate_spec"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def _clean(path: str) -> bool:
    if not path.startswith("/"):
        return False
    parts = path.split("/")[1:]
    if path == "/":
        return True
    return all(part not in ("", ".", "..") for part in parts)


def _who(changes: Sequence[Change], kind: str, key: str) -> str:
    for change in reversed(changes):
        if change.kind == kind and change.key == key and change.modifier:
            return f" (set by modifier '{change.modifier}')"
    return ""


def validate_spec(spec: Spec, changes: Sequence[Change] = ()) -> str | None:
    """The first problem of ``spec`` as one line, or None when it is fine.

    Only parts that a modifier touched are checked strictly, so a spec the
    engine wrote (which runc accepts) is never refused for its own quirks.
    """
    touched = {(c.kind, c.key) for c in changes if c.action != "remove"}
    data: dict[str, Any] = spec.raw
    mounts = data.get("mounts") or ()
    counts: dict[Any, int] = {}
    for mount in mounts:
        dest = mount.get("destination")
        counts[dest] = counts.get(dest, 0) + 1
    for mount in mounts:
        dest = mount.get("destination")
        if ("mount", dest) not in touched:
            continue
        who = _who(changes, "mount", dest)
        if not isinstance(dest, str) or not _clean(dest):
            return f"mount destination {dest!r} is not a clean absolute path{who}"
        if counts[dest] > 1:
            return f"two mounts on {dest}{who}"
        for key in ("source", "type"):
            if key in mount and not isinstance(mount[key], str):
                return f"mount {dest}: {key} must be a string{who}"
        options = mount.get("options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            return f"mount {dest}: options must be a list of strings{who}"
    for device in (data.get("linux") or {}).get("devices") or ():
        path = device.get("path")
        if ("device", path) not in touched:
            continue
        who = _who(changes, "device", path)
        if not isinstance(path, str) or not _clean(path):
            return f"device path {path!r} is not a clean absolute path{who}"
        if device.get("type") not in ("c", "b", "u", "p"):
            return f"device {path}: bad type {device.get('type')!r}{_who(changes, 'device', path)}"
        if device.get("type") != "p":
            for key in ("major", "minor"):
                if not isinstance(device.get(key), int):
                    return f"device {path}: {key} missing{_who(changes, 'device', path)}"
    for stage, hooks in (data.get("hooks") or {}).items():
        for hook in hooks or ():
            key = f"{stage}:{hook.get('path')}"
            if ("hook", key) not in touched:
                continue
            path = hook.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                return f"hook {stage} path {path!r} is not absolute{_who(changes, 'hook', key)}"
    touched_env = {key for kind, key in touched if kind == "env"}
    for entry in (data.get("process") or {}).get("env") or ():
        name, sep, _ = entry.partition("=")
        if name in touched_env and (not sep or not _ENV_NAME.match(name)):
            return f"environment entry {entry!r} is not NAME=value{_who(changes, 'env', name)}"
    return None
