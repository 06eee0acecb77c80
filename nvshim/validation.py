"""Checks of a finished spec, before it is written.

After every modifier ran, nvshim checks each part of the spec that a modifier
changed (see :mod:`nvshim.changes`; changes made through ``Spec.raw`` count
too) and names the modifier responsible for the first problem:

- container paths (mount destinations, device paths, ``process.cwd``,
  ``linux.maskedPaths``/``readonlyPaths``) are absolute and clean: no empty,
  ``.`` or ``..`` component;
- no two mounts share a destination;
- device entries are complete: a type of ``c``, ``b``, ``u`` or ``p``, and a
  major and minor number except for ``p``;
- hook paths are absolute;
- environment entries are ``NAME=value`` with a valid name;
- and every changed part has the structure the OCI runtime spec's JSON schema
  requires (types, required members, integer ranges, enumerations), as far
  as this module models it: the parts modifiers change (process, mounts,
  hooks, annotations, root, linux devices, cgroup device rules, namespaces,
  id mappings ...).

Parts no modifier touched are not checked: a spec the engine wrote, which
runc accepts, is never refused for its own quirks.  nvshim does not depend on
a JSON schema library at run time; the test suite checks these rules against
the official schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from nvshim.records import HOOK_STAGES
from nvshim.spec import json_type_name

if TYPE_CHECKING:
    from nvshim.changes import Change
    from nvshim.spec import Spec

__all__ = ["ENV_NAME", "validate_spec"]

#: A valid environment variable name: what POSIX shells accept, plus ``.``
#: and ``-`` which Kubernetes and Java tools use.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")

# -- a small structural schema ----------------------------------------------
#
# A shape is a callable ``check(value, where) -> problem or None``.  The
# constructors below mirror the JSON schema keywords the OCI schema uses.

Shape = Callable[[Any, str], Optional[str]]


def _kind(value: Any) -> str:
    return json_type_name(value, integers=True)


def _string(pattern: Optional[str] = None, choices: Sequence[str] = ()) -> Shape:
    # Compiled on first use (re caches it): compiling every pattern at import
    # cost a create more than all the checks it runs.
    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, str):
            return f"{where} must be a string, not {_kind(value)}"
        if choices and value not in choices:
            return f"{where} must be one of {', '.join(choices)}, not {value!r}"
        if pattern and not re.search(pattern, value):
            return f"{where} {value!r} does not match {pattern}"
        return None

    return check


def _integer(low: int, high: int) -> Shape:
    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{where} must be an integer, not {_kind(value)}"
        if not low <= value <= high:
            return f"{where} {value} is out of range {low}..{high}"
        return None

    return check


def _boolean(value: Any, where: str) -> Optional[str]:
    return None if isinstance(value, bool) else f"{where} must be a boolean, not {_kind(value)}"


def _array(item: Shape) -> Shape:
    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, list):
            return f"{where} must be an array, not {_kind(value)}"
        for i, entry in enumerate(value):
            problem = item(entry, f"{where}[{i}]")
            if problem:
                return problem
        return None

    return check


def _map(item: Shape) -> Shape:
    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, Mapping):
            return f"{where} must be an object, not {_kind(value)}"
        for key, entry in value.items():
            if not key:
                return f"{where} has an empty key"
            problem = item(entry, f"{where}.{key}")
            if problem:
                return problem
        return None

    return check


class _Object:
    """An object shape: required members and the shapes of known members."""

    def __init__(self, members: Mapping[str, Shape], required: Sequence[str] = ()) -> None:
        self.members = dict(members)
        self.required = tuple(required)

    def __call__(self, value: Any, where: str) -> Optional[str]:
        if not isinstance(value, Mapping):
            return f"{where} must be an object, not {_kind(value)}"
        for key in self.required:
            if key not in value:
                return f"{where} has no {key}"
        for key, entry in value.items():
            shape = self.members.get(key)
            if shape is not None:
                problem = shape(entry, f"{where}.{key}" if where else key)
                if problem:
                    return problem
        return None


def _clean_path(what: str) -> Shape:
    """A container path: a string, absolute, with no empty, ``.`` or ``..`` part."""

    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, str):
            return f"{where} must be a string, not {_kind(value)}"
        if not _clean(value):
            return f"{what} {value!r} is not a clean absolute path"
        return None

    return check


def _absolute(what: str) -> Shape:
    def check(value: Any, where: str) -> Optional[str]:
        if not isinstance(value, str):
            return f"{where} must be a string, not {_kind(value)}"
        if not value.startswith("/"):
            return f"{what} {value!r} is not absolute"
        return None

    return check


def _env_entry(value: Any, where: str) -> Optional[str]:
    if not isinstance(value, str):
        return f"{where} must be a string, not {_kind(value)}"
    name, sep, _ = value.partition("=")
    if not sep or not ENV_NAME.match(name):
        return f"environment entry {value!r} is not NAME=value"
    return None


def _clean(path: str) -> bool:
    if path == "/":
        return True
    if not path.startswith("/") or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/")[1:])


_STRING = _string()
_STRINGS = _array(_STRING)
_UINT32 = _integer(0, 2**32 - 1)
_INT32 = _integer(-(2**31), 2**31 - 1)
_INT64 = _integer(-(2**63), 2**63 - 1)
_UINT64 = _integer(0, 2**64 - 1)
_ENV = _array(_env_entry)
_ID_MAPPING = _Object(
    {"containerID": _UINT32, "hostID": _UINT32, "size": _UINT32},
    required=("containerID", "hostID", "size"),
)

MOUNT = _Object(
    {
        "destination": _clean_path("mount destination"),
        "source": _STRING,
        "type": _STRING,
        "options": _STRINGS,
        "uidMappings": _array(_ID_MAPPING),
        "gidMappings": _array(_ID_MAPPING),
    },
    required=("destination",),
)
HOOK = _Object(
    {
        "path": _absolute("hook path"),
        "args": _STRINGS,
        "env": _ENV,
        "timeout": _integer(1, 2**63 - 1),
    },
    required=("path",),
)


class _Device(_Object):
    """A device node: complete means a major and minor unless it is a FIFO."""

    def __call__(self, value: Any, where: str) -> Optional[str]:
        problem = super().__call__(value, where)
        if problem is None and value.get("type") != "p":
            for key in ("major", "minor"):
                if key not in value:
                    return f"device {value.get('path')}: {key} missing"
        return problem


DEVICE = _Device(
    {
        "path": _clean_path("device path"),
        "type": _string(choices=("c", "b", "u", "p")),
        "major": _INT64,
        "minor": _INT64,
        "fileMode": _integer(0, 0o777),
        "uid": _UINT32,
        "gid": _UINT32,
    },
    required=("type", "path"),
)
DEVICE_RULE = _Object(
    {
        "allow": _boolean,
        "type": _STRING,
        "major": _INT64,
        "minor": _INT64,
        "access": _STRING,
    },
    required=("allow",),
)
_CAPABILITIES = _Object(
    dict.fromkeys(("bounding", "permitted", "effective", "inheritable", "ambient"), _STRINGS)
)
_USER = _Object(
    {
        "uid": _UINT32,
        "gid": _UINT32,
        "umask": _UINT32,
        "additionalGids": _array(_UINT32),
        "username": _STRING,
    }
)
_RLIMIT = _Object(
    {"type": _string(r"^RLIMIT_[A-Z]+$"), "soft": _UINT64, "hard": _UINT64},
    required=("type", "soft", "hard"),
)
PROCESS = _Object(
    {
        "args": _STRINGS,
        "commandLine": _STRING,
        "consoleSize": _Object({"height": _UINT64, "width": _UINT64}, ("height", "width")),
        "cwd": _clean_path("process.cwd"),
        "env": _ENV,
        "terminal": _boolean,
        "user": _USER,
        "capabilities": _CAPABILITIES,
        "apparmorProfile": _STRING,
        "oomScoreAdj": _integer(-(2**63), 2**63 - 1),
        "selinuxLabel": _STRING,
        "noNewPrivileges": _boolean,
        "rlimits": _array(_RLIMIT),
    },
    required=("cwd",),
)
_NAMESPACE = _Object(
    {
        "type": _string(
            choices=("mount", "pid", "network", "uts", "ipc", "user", "cgroup", "time")
        ),
        "path": _STRING,
    },
    required=("type",),
)
RESOURCES = _Object({"devices": _array(DEVICE_RULE), "unified": _map(_STRING)})
LINUX = _Object(
    {
        "devices": _array(DEVICE),
        "uidMappings": _array(_ID_MAPPING),
        "gidMappings": _array(_ID_MAPPING),
        "namespaces": _array(_NAMESPACE),
        "resources": RESOURCES,
        "cgroupsPath": _STRING,
        "sysctl": _map(_STRING),
        "maskedPaths": _array(_clean_path("masked path")),
        "readonlyPaths": _array(_clean_path("read-only path")),
        "mountLabel": _STRING,
        "rootfsPropagation": _string(choices=("private", "shared", "slave", "unbindable")),
    }
)
#: The spec's top level, as far as nvshim models it.
SPEC = _Object(
    {
        "ociVersion": _STRING,
        "hostname": _STRING,
        "domainname": _STRING,
        "process": PROCESS,
        "root": _Object({"path": _STRING, "readonly": _boolean}, required=("path",)),
        "mounts": _array(MOUNT),
        "hooks": _Object({stage: _array(HOOK) for stage in HOOK_STAGES}),
        "annotations": _map(_STRING),
        "linux": LINUX,
    }
)


def _shape_at(path: Sequence[str]) -> tuple[Optional[Shape], Optional[_Object]]:
    """The shape of the member at ``path`` and the object shape that holds it."""
    shape: Any = SPEC
    parent: Optional[_Object] = None
    for key in path:
        if not isinstance(shape, _Object):
            return None, None
        parent = shape
        shape = shape.members.get(key)
        if shape is None:
            return None, parent
    return shape, parent


def _get(data: Any, path: Sequence[str]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return False, None
        data = data[key]
    return True, data


# -- the checks ----------------------------------------------------------------


def _blame(
    changes: Sequence[Change], describe: Callable[[Optional[str]], str], kind: str, key: str
) -> str:
    for change in reversed(changes):
        if change.kind == kind and change.key == key and change.modifier:
            return f" (set by {describe(change.modifier)})"
    return ""


def _field_problem(data: Mapping[str, Any], change: Change) -> Optional[str]:
    path = change.key.split(".")
    shape, parent = _shape_at(path)
    present, value = _get(data, path)
    if present:
        if shape is None:
            return None
        return shape(value, change.key)
    # Removed: refused when the object that held it requires it.
    if parent is not None and path[-1] in parent.required:
        held, _ = _get(data, path[:-1])
        if held:
            return f"{'.'.join(path[:-1])} has no {path[-1]}"
    return None


def _keyed(value: Any) -> str:
    # As nvshim.changes keys entries: a non-string key by its repr.
    return value if isinstance(value, str) else repr(value)


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


#: An entry that every key names (a hook or env entry of the wrong type).
_ANY_KEY = object()
#: An entry that no key names.
_NO_KEY = object()


def _mapping_key(field: str) -> Callable[[Any], Any]:
    return lambda item: _keyed(item.get(field)) if isinstance(item, Mapping) else _NO_KEY


def _hook_key(item: Any) -> Any:
    return _keyed(item.get("path")) if isinstance(item, Mapping) else _ANY_KEY


def _env_key(item: Any) -> Any:
    return item.partition("=")[0] if isinstance(item, str) else _ANY_KEY


class _Index:
    """The spec's lists keyed as nvshim.changes keys their entries, each built once.

    Looking every change up by scanning its list made validation quadratic: a
    create that adds hundreds of mounts (csv mode) spent most of its time here.
    """

    def __init__(self) -> None:
        self._built: dict[str, tuple[dict[Any, list[int]], list[int]]] = {}

    def positions(self, name: str, items: Any, key_of: Callable[[Any], Any], key: str) -> list[int]:
        """The indexes of ``items`` (a list, else nothing) whose key is ``key``, in order."""
        built = self._built.get(name)
        if built is None:
            by_key: dict[Any, list[int]] = {}
            every: list[int] = []
            for i, item in enumerate(items if isinstance(items, list) else ()):
                k = key_of(item)
                if k is _ANY_KEY:
                    every.append(i)
                elif k is not _NO_KEY:
                    by_key.setdefault(k, []).append(i)
            built = self._built[name] = (by_key, every)
        by_key, every = built
        found = by_key.get(key, [])
        return sorted(found + every) if every else found


def _entries(
    data: Mapping[str, Any], change: Change, index: Optional[_Index] = None
) -> list[tuple[Any, Shape, str]]:
    """The JSON entries a change's kind and key name, each with its shape and place."""
    kind, key = change.kind, change.key
    linux = _obj(data.get("linux"))
    found: list[tuple[Any, Shape, str]] = []
    index = index if index is not None else _Index()

    def among(items: Any, where: str, shape: Shape, match: Callable[[Any], bool]) -> None:
        if isinstance(items, list):
            for i, item in enumerate(items):
                if match(item):
                    found.append((item, shape, f"{where}[{i}]"))

    def keyed(
        items: Any, where: str, shape: Shape, key_of: Callable[[Any], Any], name: str, wanted: str
    ) -> None:
        for i in index.positions(name, items, key_of, wanted):
            found.append((items[i], shape, f"{where}[{i}]"))

    if kind == "mount":
        keyed(data.get("mounts"), "mounts", MOUNT, _mapping_key("destination"), "mounts", key)
    elif kind == "device":
        keyed(linux.get("devices"), "linux.devices", DEVICE, _mapping_key("path"), "devices", key)
    elif kind == "device-rule":
        resources = _obj(linux.get("resources"))
        among(
            resources.get("devices"),
            "linux.resources.devices",
            DEVICE_RULE,
            lambda r: r == change.after,
        )
    elif kind == "hook":
        stage, _, path = key.partition(":")
        hooks = _obj(data.get("hooks"))
        keyed(hooks.get(stage), f"hooks.{stage}", HOOK, _hook_key, f"hooks.{stage}", path)
    elif kind == "env":
        process = _obj(data.get("process"))
        keyed(process.get("env"), "process.env", _env_entry, _env_key, "env", key)
    elif kind == "annotation":
        annotations = data.get("annotations")
        if isinstance(annotations, Mapping) and key in annotations:
            found.append((annotations[key], _STRING, f"annotations.{key}"))
    elif kind == "gid":
        found.append((change.after, _UINT32, "process.user.additionalGids"))
    return found


def validate_spec(
    spec: Spec,
    changes: Sequence[Change] = (),
    describe: Optional[Callable[[Optional[str]], str]] = None,
) -> Optional[str]:
    """The first problem of ``spec`` as one line, or None when it is fine.

    :param spec: the finished spec.
    :param changes: the attributed changes of the chain; only the parts they
        touched are checked.
    :param describe: turns a modifier name into the words naming it in the
        message (default ``modifier '<name>'``);
        :meth:`nvshim.changes.ChangeTracker.describe` adds the distribution.
    """
    name_of = describe or (lambda name: f"modifier '{name}'")
    data: Mapping[str, Any] = spec.raw
    seen: set[tuple[str, str]] = set()
    index = _Index()
    # The last modifier that changed each (kind, key): what _blame finds, in one pass.
    last: dict[tuple[str, str], str] = {}
    for change in changes:
        if change.modifier:
            last[(change.kind, change.key)] = change.modifier
    for change in changes:
        who = last.get((change.kind, change.key))
        blame = f" (set by {name_of(who)})" if who else ""
        if change.kind == "linux":  # Spec.set_linux: the field linux.<key>
            change = attrs.evolve(change, kind="field", key=f"linux.{change.key}")
        if (change.kind, change.key) in seen:
            continue
        seen.add((change.kind, change.key))
        if change.kind == "field":
            problem = _field_problem(data, change)
            if problem:
                return f"{problem}{blame}"
            continue
        if change.kind == "mount":
            count = len(
                index.positions(
                    "mounts", data.get("mounts"), _mapping_key("destination"), change.key
                )
            )
            if count > 1:
                return f"two mounts on {change.key}{blame}"
        for value, shape, where in _entries(data, change, index):
            problem = shape(value, where)
            if problem:
                return f"{problem}{blame}"
    return None
