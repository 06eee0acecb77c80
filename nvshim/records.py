"""Records that describe what a modifier adds to a spec: mounts, devices, hooks.

They are frozen, validated attrs classes.  A private cattrs converter turns them
into the JSON objects of the OCI runtime spec (``fileMode``, ...) and back; it is
built on first use so that code which never converts a record never imports
cattrs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Optional

import attrs

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "DEFAULT_HOOK_ENV",
    "HOOK_STAGES",
    "Change",
    "Device",
    "Hook",
    "Mount",
    "check_container_path",
]

#: The OCI hook stages, in the order runc runs them.
HOOK_STAGES: tuple[str, ...] = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

#: The environment of a hook that does not say which one it wants: a fixed
#: host ``PATH`` and nothing else.  runc gives a hook without ``env`` its own
#: environment, which is the container's (``LD_PRELOAD`` from the image ran in
#: a host process that way: CVE-2025-23266), so nvshim never writes a hook
#: without ``env``.
DEFAULT_HOOK_ENV: tuple[str, ...] = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)

DEVICE_TYPES = frozenset({"c", "b", "u", "p"})


def check_container_path(path: object, what: str = "container path") -> str:
    """Return ``path`` if it is an absolute path without ``..`` components.

    Raises :class:`ValueError` naming ``what`` otherwise.  Container paths come
    from images, CSV files and CDI specs; a relative path or a ``..`` could make
    a mount or a hook land outside the place it was meant for.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"{what} must be a non-empty string, got {path!r}")
    if not path.startswith("/"):
        raise ValueError(f"{what} {path!r} is not absolute")
    if "\0" in path:
        raise ValueError(f"{what} {path!r} contains a NUL byte")
    if ".." in path.split("/"):
        raise ValueError(f"{what} {path!r} contains a '..' component")
    if not path.strip("/"):
        raise ValueError(f"{what} {path!r} is the container's root itself")
    return path


def _container_path(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_container_path(value, attribute.name)


def _host_path(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{attribute.name} must be an absolute path, got {value!r}")


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        # A lone string is almost always a mistake for a one-element list.
        raise TypeError(f"expected a sequence of strings, got the string {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"expected strings, got {item!r}")
    return items


def _optional_int(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"{attribute.name} must be an int or None, got {value!r}")


def _int(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative int, got {value!r}")


@attrs.frozen
class Mount:
    """A mount in ``mounts``.

    :param destination: absolute path inside the container (no ``..``).
    :param source: host path, or a device / pseudo file system name.
    :param type: file system type (``bind``, ``proc``, ``tmpfs`` ...).
    :param options: mount options, in order (``("ro", "nosuid", "bind")``).
    """

    destination: str = attrs.field(validator=_container_path)
    source: Optional[str] = None
    type: Optional[str] = None
    options: tuple[str, ...] = attrs.field(default=(), converter=_strings)


@attrs.frozen
class Device:
    """A device node in ``linux.devices``.

    :param path: absolute path of the node inside the container.
    :param type: ``c`` (character), ``b`` (block), ``u`` (unbuffered) or ``p`` (FIFO).
    :param major: major number.
    :param minor: minor number.
    :param file_mode: permission bits of the node (``fileMode``).
    :param uid: owner of the node inside the container.
    :param gid: group of the node inside the container.
    :param access: cgroup access granted by the allow rule that
        :meth:`nvshim.Spec.add_device` adds for ``c`` and ``b`` devices.
    """

    path: str = attrs.field(validator=_container_path)
    type: str = attrs.field(validator=attrs.validators.in_(DEVICE_TYPES))
    major: int = attrs.field(validator=_int)
    minor: int = attrs.field(validator=_int)
    file_mode: Optional[int] = attrs.field(default=None, validator=_optional_int)
    uid: Optional[int] = attrs.field(default=None, validator=_optional_int)
    gid: Optional[int] = attrs.field(default=None, validator=_optional_int)
    access: str = attrs.field(default="rwm", kw_only=True)

    @access.validator
    def _check_access(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not value or set(value) - set("rwm"):
            raise ValueError(f"access must be made of 'r', 'w' and 'm', got {value!r}")


@attrs.frozen
class Hook:
    """An OCI hook: a host program that runc runs at one of the hook stages.

    :param path: absolute host path of the program.
    :param args: its argv, ``args[0]`` included (as ``execv`` takes it).
    :param env: its whole environment, ``NAME=value`` strings; nothing is
        inherited.  The default is :data:`DEFAULT_HOOK_ENV` (a host ``PATH``
        only); ``()`` is an empty environment.  It is always written to the
        spec, ``[]`` included: a hook without ``env`` would get the
        container's environment from runc.
    :param timeout: seconds after which runc kills it; ``None`` for no limit.
    """

    path: str = attrs.field(validator=_host_path)
    args: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    env: tuple[str, ...] = attrs.field(default=DEFAULT_HOOK_ENV, converter=_strings)
    timeout: Optional[int] = attrs.field(default=None, validator=_optional_int)

    @timeout.validator
    def _check_timeout(self, _attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and value <= 0:
            raise ValueError(f"timeout must be positive, got {value!r}")


# OCI JSON names of the fields whose Python names differ.
@attrs.frozen
class Change:
    """One change to a spec.

    :param kind: what was changed: ``env``, ``mount``, ``device``,
        ``device-rule``, ``hook``, ``annotation``, ``gid``, ``linux`` (a
        ``linux.<key>`` field set whole with ``Spec.set_linux``), or
        ``field`` for any other part of the spec (changed through
        ``Spec.raw``).
    :param key: which one: the variable name, the mount destination, the
        device path, ``<type> <major>:<minor>`` for a device rule, the
        member of ``linux`` for ``linux``,
        ``<stage>:<path>`` for a hook, the annotation key, the gid, or the
        dotted path of a field (``process.args``, ``linux.namespaces``).
    :param action: ``add``, ``replace`` or ``remove``.
    :param before: the JSON value before (None when added).
    :param after: the JSON value after (None when removed).
    :param modifier: the name of the modifier that made it (set by the core).
    :param source: ``api`` when made through a :class:`nvshim.Spec` method,
        ``raw`` when found by comparing the spec before and after the
        modifier (a change made through ``Spec.raw``).
    """

    kind: str
    key: str
    action: str
    before: Any = None
    after: Any = None
    modifier: Optional[str] = None
    source: str = "api"

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object."""
        return {
            "modifier": self.modifier,
            "kind": self.kind,
            "key": self.key,
            "action": self.action,
            "before": self.before,
            "after": self.after,
            "source": self.source,
        }


_JSON_NAMES = {"file_mode": "fileMode"}
# Fields that are ours, not the OCI object's.
_NOT_IN_JSON: dict[type, set[str]] = {Device: {"access"}}
# Fields written even at their default: a hook's ``env`` (see Hook).
_ALWAYS_IN_JSON: dict[type, set[str]] = {Hook: {"env"}}


@functools.cache
def _converter() -> cattrs.Converter:
    """Build the private converter (never cattrs' global one)."""
    import cattrs
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    conv = cattrs.Converter(omit_if_default=True)
    conv.register_unstructure_hook(tuple, list)
    for cls in (Mount, Device, Hook):
        skip = _NOT_IN_JSON.get(cls, set())
        always = _ALWAYS_IN_JSON.get(cls, set())
        overrides: dict[str, Any] = {}
        for field in attrs.fields(cls):
            if field.name in skip:
                overrides[field.name] = override(omit=True)
            elif field.name in always:
                overrides[field.name] = override(omit_if_default=False)
            elif field.name in _JSON_NAMES:
                overrides[field.name] = override(rename=_JSON_NAMES[field.name])
        conv.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **overrides)
        )
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **overrides))
    return conv


# --- Converting without cattrs.
#
# Importing cattrs and generating the converter costs more than the rest of
# a create (see docs/performance.md), and these three classes need only
# renames and tuples as lists.  The converter stays the reference: the quick
# functions below give the same results (tests/test_perf_records.py checks
# them against it) and hand anything unusual to it, errors included.

#: Per class: (field name, JSON name, kind, default or attrs.NOTHING), JSON fields only.
_QUICK_FIELDS: dict[type, tuple[tuple[str, str, str, Any], ...]] = {
    Mount: (
        ("destination", "destination", "str", attrs.NOTHING),
        ("source", "source", "optional-str", None),
        ("type", "type", "optional-str", None),
        ("options", "options", "strings", ()),
    ),
    Device: (
        ("path", "path", "str", attrs.NOTHING),
        ("type", "type", "str", attrs.NOTHING),
        ("major", "major", "int", attrs.NOTHING),
        ("minor", "minor", "int", attrs.NOTHING),
        ("file_mode", "fileMode", "optional-int", None),
        ("uid", "uid", "optional-int", None),
        ("gid", "gid", "optional-int", None),
    ),
    Hook: (
        ("path", "path", "str", attrs.NOTHING),
        ("args", "args", "strings", ()),
        # Never omitted (see Hook): no default to compare with.
        ("env", "env", "strings", attrs.NOTHING),
        ("timeout", "timeout", "optional-int", None),
    ),
}


def _quick_unstructure(record: Mount | Device | Hook) -> dict[str, Any] | None:
    fields = _QUICK_FIELDS.get(type(record))
    if fields is None:
        return None
    data: dict[str, Any] = {}
    for name, key, _kind, default in fields:
        value = getattr(record, name)
        if default is not attrs.NOTHING and value == default:
            continue
        data[key] = list(value) if isinstance(value, tuple) else value
    return data


def _quick_structure(cls: type, data: dict[str, Any]) -> Any:
    """A record of ``cls`` from ``data`` when cattrs would only copy it, else None."""
    from nvshim._quick import GIVE_UP, structure

    fields = _QUICK_FIELDS.get(cls)
    if fields is None:
        return None
    plan = [(name, key, kind, None) for name, key, kind, _default in fields]
    record = structure(cls, data, plan, strict=False)
    return None if record is GIVE_UP else record


def to_json(record: Mount | Device | Hook) -> dict[str, Any]:
    """The OCI JSON object for ``record`` (fields left at their default are omitted)."""
    quick = _quick_unstructure(record)
    data: dict[str, Any] = quick if quick is not None else _converter().unstructure(record)
    order: tuple[str, ...]
    if isinstance(record, Mount):
        # OCI order: destination, type, source, options (as runc spec writes it).
        order = ("destination", "type", "source", "options")
        data = {key: data[key] for key in order if key in data}
    elif isinstance(record, Hook):
        # The converter puts the fields it never omits (env) first.
        order = ("path", "args", "env", "timeout")
        data = {key: data[key] for key in order if key in data}
    elif isinstance(record, Device):
        # major and minor are required even when zero.
        data["major"] = record.major
        data["minor"] = record.minor
        order = ("path", "type", "major", "minor", "fileMode", "uid", "gid")
        data = {key: data[key] for key in order if key in data}
    return data


def from_json(cls: type[Mount] | type[Device] | type[Hook], data: dict[str, Any]) -> Any:
    """Build a record of ``cls`` from an OCI JSON object (unknown keys ignored)."""
    known = {_JSON_NAMES.get(f.name, f.name) for f in attrs.fields(cls)}
    filtered = {k: v for k, v in data.items() if k in known}
    quick = _quick_structure(cls, filtered)
    if quick is not None:
        return quick
    return _converter().structure(filtered, cls)
