"""CDI spec files: parsing, field checks and the version rules.

A CDI spec (``cdiVersion``, ``kind``, ``devices``, ``containerEdits``,
``annotations``) is parsed strictly into frozen records.  As CDI's own Go
package does (``yaml.UnmarshalStrict``), an unknown field is an error; on top
of that, a field that the declared ``cdiVersion`` does not have yet is refused
with the file and the field named.  The version table follows
``specs-go/version.go`` of cncf-tags/container-device-interface:

=======  ===========================================================
0.4.0    ``mounts[].type``
0.5.0    ``deviceNodes[].hostPath``; device names starting with a digit
0.6.0    ``annotations`` (spec and device); a ``.`` in the kind's class
0.7.0    ``intelRdt`` (with ``enableCMT``/``enableMBM``), ``additionalGids``
0.8.0    no new field
1.0.0    no new field
1.1.0    ``netDevices``; ``intelRdt.schemata``/``enableMonitoring``
         (``enableCMT``/``enableMBM`` are gone)
=======  ===========================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

import attrs

from nvshim.records import HOOK_STAGES, check_container_path
from nvshim.requests import is_cdi_name
from nvshim.spec import json_type_name
from nvshim_cdi._record import FrozenRecord

if TYPE_CHECKING:
    from nvshim_cdi._cache import SpecCache

__all__ = [
    "SPEC_EXTENSIONS",
    "SUPPORTED_VERSIONS",
    "CdiDevice",
    "MAX_SPEC_FILE_BYTES",
    "CdiHook",
    "CdiMount",
    "CdiSpec",
    "CdiSpecError",
    "ContainerEdits",
    "DeviceNode",
    "parse_spec",
    "read_spec_file",
    "unsafe_owner",
]

#: The cdiVersion values accepted, oldest first (CDI's earliest supported is 0.3.0).
SUPPORTED_VERSIONS: tuple[str, ...] = (
    "0.3.0",
    "0.4.0",
    "0.5.0",
    "0.6.0",
    "0.7.0",
    "0.8.0",
    "1.0.0",
    "1.1.0",
)

#: File name endings of spec files in a spec folder.
SPEC_EXTENSIONS: tuple[str, ...] = (".json", ".yaml", ".yml")

_UINT32_MAX = 2**32 - 1
#: A spec file larger than this is refused unread (NVIDIA's generated specs
#: for 8 GPUs are about 30 KB); they are read on every create.
MAX_SPEC_FILE_BYTES = 8 << 20
_INT64_MAX = 2**63 - 1
_DEVICE_TYPES = ("b", "c", "u", "p")


class CdiSpecError(ValueError):
    """A CDI spec that cannot be read, parsed or accepted; the message names the file."""


def _version_key(version: str) -> int:
    return SUPPORTED_VERSIONS.index(version)


# The records of a spec's parts are plain frozen classes (FrozenRecord), not
# attrs classes: they are private to the plugin, and attrs would build them at
# import on every cdi and jit-cdi create (about 2.5 ms for the five).
_set = object.__setattr__


class DeviceNode(FrozenRecord):
    """A ``deviceNodes`` entry (CDI field names in the comments)."""

    _fields = (
        "path",
        "host_path",
        "type",
        "major",
        "minor",
        "file_mode",
        "permissions",
        "uid",
        "gid",
    )
    __slots__ = _fields
    __match_args__ = _fields
    path: str
    host_path: Optional[str]  # hostPath (0.5.0)
    type: Optional[str]
    major: Optional[int]
    minor: Optional[int]
    file_mode: Optional[int]  # fileMode
    permissions: Optional[str]  # cgroup access, default rwm
    uid: Optional[int]
    gid: Optional[int]

    def __init__(
        self,
        path: str,
        host_path: Optional[str] = None,
        type: Optional[str] = None,
        major: Optional[int] = None,
        minor: Optional[int] = None,
        file_mode: Optional[int] = None,
        permissions: Optional[str] = None,
        uid: Optional[int] = None,
        gid: Optional[int] = None,
    ) -> None:
        _set(self, "path", path)
        _set(self, "host_path", host_path)
        _set(self, "type", type)
        _set(self, "major", major)
        _set(self, "minor", minor)
        _set(self, "file_mode", file_mode)
        _set(self, "permissions", permissions)
        _set(self, "uid", uid)
        _set(self, "gid", gid)


class CdiMount(FrozenRecord):
    """A ``mounts`` entry."""

    _fields = ("host_path", "container_path", "options", "type")
    __slots__ = _fields
    __match_args__ = _fields
    host_path: str  # hostPath
    container_path: str  # containerPath
    options: tuple[str, ...]
    type: Optional[str]  # 0.4.0

    def __init__(
        self,
        host_path: str,
        container_path: str,
        options: tuple[str, ...] = (),
        type: Optional[str] = None,
    ) -> None:
        _set(self, "host_path", host_path)
        _set(self, "container_path", container_path)
        _set(self, "options", options)
        _set(self, "type", type)


class CdiHook(FrozenRecord):
    """A ``hooks`` entry; ``hook_name`` is one of the OCI hook stages."""

    _fields = ("hook_name", "path", "args", "env", "timeout")
    __slots__ = _fields
    __match_args__ = _fields
    hook_name: str  # hookName
    path: str
    args: tuple[str, ...]
    #: None when the spec gives no ``env`` (the hook then gets a host PATH
    #: only); ``()`` for ``"env": []``.
    env: Optional[tuple[str, ...]]
    timeout: Optional[int]

    def __init__(
        self,
        hook_name: str,
        path: str,
        args: tuple[str, ...] = (),
        env: Optional[tuple[str, ...]] = None,
        timeout: Optional[int] = None,
    ) -> None:
        _set(self, "hook_name", hook_name)
        _set(self, "path", path)
        _set(self, "args", args)
        _set(self, "env", env)
        _set(self, "timeout", timeout)


class ContainerEdits(FrozenRecord):
    """The ``containerEdits`` of a spec or of one device."""

    _fields = (
        "env",
        "device_nodes",
        "mounts",
        "hooks",
        "additional_gids",
        "intel_rdt",
        "net_devices",
    )
    __slots__ = _fields
    __match_args__ = _fields
    env: tuple[str, ...]
    device_nodes: tuple[DeviceNode, ...]
    mounts: tuple[CdiMount, ...]
    hooks: tuple[CdiHook, ...]
    additional_gids: tuple[int, ...]  # additionalGids (0.7.0)
    #: ``intelRdt`` (0.7.0) as written, already checked.
    intel_rdt: Optional[Mapping[str, Any]]
    #: ``netDevices`` (1.1.0) as (hostInterfaceName, name) pairs.
    net_devices: tuple[tuple[str, str], ...]

    def __init__(
        self,
        env: tuple[str, ...] = (),
        device_nodes: tuple[DeviceNode, ...] = (),
        mounts: tuple[CdiMount, ...] = (),
        hooks: tuple[CdiHook, ...] = (),
        additional_gids: tuple[int, ...] = (),
        intel_rdt: Optional[Mapping[str, Any]] = None,
        net_devices: tuple[tuple[str, str], ...] = (),
    ) -> None:
        _set(self, "env", env)
        _set(self, "device_nodes", device_nodes)
        _set(self, "mounts", mounts)
        _set(self, "hooks", hooks)
        _set(self, "additional_gids", additional_gids)
        _set(self, "intel_rdt", intel_rdt)
        _set(self, "net_devices", net_devices)


class CdiDevice(FrozenRecord):
    """One ``devices`` entry."""

    _fields = ("name", "edits", "annotations")
    __slots__ = _fields
    __match_args__ = _fields
    name: str
    edits: ContainerEdits
    annotations: Mapping[str, str]

    def __init__(
        self, name: str, edits: ContainerEdits, annotations: Optional[Mapping[str, str]] = None
    ) -> None:
        _set(self, "name", name)
        _set(self, "edits", edits)
        _set(self, "annotations", {} if annotations is None else annotations)


#: The default of ``CdiSpec.edits`` (one shared, immutable value).
_NO_EDITS = ContainerEdits()


@attrs.frozen
class CdiSpec:
    """A parsed CDI spec file (an attrs class: part of the plugin's public API)."""

    path: str
    version: str
    kind: str
    devices: tuple[CdiDevice, ...]
    edits: ContainerEdits = _NO_EDITS
    annotations: Mapping[str, str] = attrs.field(factory=dict)

    def qualified_name(self, device: CdiDevice) -> str:
        """``vendor/class=name`` of ``device``."""
        return f"{self.kind}={device.name}"


# --------------------------------------------------------------------- checks


class _Checker:
    """Walks the raw data; errors name the file and the JSON path of the field."""

    def __init__(self, source: str, version: str) -> None:
        self.source = source
        self.version = version
        #: The device whose edits are being read (``kind=name``), for messages.
        self.device: Optional[str] = None

    def fail(self, where: str, why: str) -> CdiSpecError:
        return CdiSpecError(f"{self.source}: {where}: {why}" if where else f"{self.source}: {why}")

    def since(self, where: str, minimum: str) -> None:
        """Refuse ``where`` unless the declared version has it."""
        if _version_key(self.version) < _version_key(minimum):
            raise self.fail(
                where,
                f"field needs cdiVersion {minimum} or later, but the spec declares {self.version}",
            )

    def until(self, where: str, last: str) -> None:
        """Refuse ``where`` when the declared version no longer has it."""
        if _version_key(self.version) > _version_key(last):
            raise self.fail(
                where,
                f"field was removed after cdiVersion {last}; the spec declares {self.version}",
            )

    def obj(self, value: Any, where: str, known: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected an object, got {json_type_name(value)}")
        for key in value:
            if key not in known:
                raise self.fail(_join(where, str(key)), "unknown field")
        return value

    def string(self, value: Any, where: str, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {json_type_name(value)}")
        if not empty and not value:
            raise self.fail(where, "must not be empty")
        return value

    def integer(self, value: Any, where: str, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(where, f"expected an integer, got {json_type_name(value)}")
        if not low <= value <= high:
            raise self.fail(where, f"{value} is out of range {low}..{high}")
        return value

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(where, f"expected an array of strings, got {json_type_name(value)}")
        return tuple(self.string(v, f"{where}[{i}]", empty=True) for i, v in enumerate(value))

    def array(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"expected an array, got {json_type_name(value)}")
        return value

    def env(self, value: Any, where: str) -> tuple[str, ...]:
        entries = self.strings(value, where)
        for i, entry in enumerate(entries):
            name, sep, _ = entry.partition("=")
            if not sep or not name or "\0" in entry:
                raise self.fail(f"{where}[{i}]", f"{entry!r} is not NAME=value")
        return entries

    def annotations(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected an object, got {json_type_name(value)}")
        result: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise self.fail(where, f"annotation key {key!r} is not a non-empty string")
            result[key] = self.string(item, _join(where, key), empty=True)
        return result

    def container_path(self, value: Any, where: str) -> str:
        text = self.string(value, where)
        try:
            return check_container_path(text, "path")
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def host_path(self, value: Any, where: str) -> str:
        """An absolute host path without ``..``: nvshim runs as root in no fixed folder."""
        text = self.string(value, where)
        owner = f" (device {self.device})" if self.device else ""
        if not text.startswith("/") or "\0" in text:
            raise self.fail(where, f"host path {text!r}{owner} is not absolute")
        if ".." in text.split("/"):
            raise self.fail(where, f"host path {text!r}{owner} must not contain '..'")
        return text


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


_EDIT_FIELDS = (
    "env",
    "deviceNodes",
    "mounts",
    "hooks",
    "intelRdt",
    "additionalGids",
    "netDevices",
)
_NODE_FIELDS = (
    "path",
    "hostPath",
    "type",
    "major",
    "minor",
    "fileMode",
    "permissions",
    "uid",
    "gid",
)
_MOUNT_FIELDS = ("hostPath", "containerPath", "options", "type")
_HOOK_FIELDS = ("hookName", "path", "args", "env", "timeout")
_RDT_FIELDS = (
    "closID",
    "l3CacheSchema",
    "memBwSchema",
    "enableCMT",
    "enableMBM",
    "schemata",
    "enableMonitoring",
)


def _device_node(check: _Checker, raw: Any, where: str) -> DeviceNode:
    data = check.obj(raw, where, _NODE_FIELDS)
    if "path" not in data:
        raise check.fail(where, "missing path")
    path = check.container_path(data["path"], _join(where, "path"))
    host_path = None
    if data.get("hostPath") not in (None, ""):
        check.since(_join(where, "hostPath"), "0.5.0")
        host_path = check.host_path(data["hostPath"], _join(where, "hostPath"))
    dev_type = None
    if data.get("type") not in (None, ""):
        dev_type = check.string(data["type"], _join(where, "type"))
        if dev_type not in _DEVICE_TYPES:
            raise check.fail(_join(where, "type"), f"{dev_type!r} is not one of b, c, u, p")
    major = minor = None
    if data.get("major") is not None:
        major = check.integer(data["major"], _join(where, "major"), 0, _INT64_MAX)
    if data.get("minor") is not None:
        minor = check.integer(data["minor"], _join(where, "minor"), 0, _INT64_MAX)
    if dev_type == "p" and (major or minor):
        raise check.fail(where, "a FIFO ('p') device takes no major or minor number")
    file_mode = None
    if data.get("fileMode") is not None:
        file_mode = check.integer(data["fileMode"], _join(where, "fileMode"), 0, 0o7777)
    permissions = None
    if data.get("permissions") not in (None, ""):
        permissions = check.string(data["permissions"], _join(where, "permissions"))
        if set(permissions) - set("rwm"):
            raise check.fail(
                _join(where, "permissions"), f"{permissions!r} is not made of r, w and m"
            )
    uid = gid = None
    if data.get("uid") is not None:
        uid = check.integer(data["uid"], _join(where, "uid"), 0, _UINT32_MAX)
    if data.get("gid") is not None:
        gid = check.integer(data["gid"], _join(where, "gid"), 0, _UINT32_MAX)
    return DeviceNode(path, host_path, dev_type, major, minor, file_mode, permissions, uid, gid)


def _mount(check: _Checker, raw: Any, where: str) -> CdiMount:
    data = check.obj(raw, where, _MOUNT_FIELDS)
    for key in ("hostPath", "containerPath"):
        if key not in data:
            raise check.fail(where, f"missing {key}")
    container_path = check.container_path(data["containerPath"], _join(where, "containerPath"))
    options = check.strings(data.get("options"), _join(where, "options"))
    mount_type = None
    if data.get("type") not in (None, ""):
        check.since(_join(where, "type"), "0.4.0")
        mount_type = check.string(data["type"], _join(where, "type"))
    # A bind mount's source is a host path; a typed mount's may name a
    # pseudo file system ("tmpfs") instead.
    is_bind = mount_type in (None, "bind") or bool({"bind", "rbind"} & set(options))
    if is_bind:
        host_path = check.host_path(data["hostPath"], _join(where, "hostPath"))
    else:
        host_path = check.string(data["hostPath"], _join(where, "hostPath"))
    return CdiMount(host_path, container_path, options, mount_type)


def _hook(check: _Checker, raw: Any, where: str) -> CdiHook:
    data = check.obj(raw, where, _HOOK_FIELDS)
    for key in ("hookName", "path"):
        if key not in data:
            raise check.fail(where, f"missing {key}")
    name = check.string(data["hookName"], _join(where, "hookName"))
    if name not in HOOK_STAGES:
        raise check.fail(
            _join(where, "hookName"), f"{name!r} is not one of {', '.join(HOOK_STAGES)}"
        )
    path = check.host_path(data["path"], _join(where, "path"))
    args = check.strings(data.get("args"), _join(where, "args"))
    env = None if data.get("env") is None else check.env(data["env"], _join(where, "env"))
    timeout = None
    if data.get("timeout") is not None:
        timeout = check.integer(data["timeout"], _join(where, "timeout"), 1, _UINT32_MAX)
    return CdiHook(name, path, args, env, timeout)


def _intel_rdt(check: _Checker, raw: Any, where: str) -> dict[str, Any]:
    check.since(where, "0.7.0")
    data = check.obj(raw, where, _RDT_FIELDS)
    result: dict[str, Any] = {}
    for key in ("closID", "l3CacheSchema", "memBwSchema"):
        if data.get(key) is not None:
            result[key] = check.string(data[key], _join(where, key), empty=True)
    closid = result.get("closID")
    if closid is not None and (closid in (".", "..") or "/" in closid):
        raise check.fail(_join(where, "closID"), f"{closid!r} is not a valid file name")
    for key in ("enableCMT", "enableMBM"):
        if key in data:
            check.until(_join(where, key), "1.0.0")
            result[key] = _boolean(check, data[key], _join(where, key))
    if "schemata" in data:
        check.since(_join(where, "schemata"), "1.1.0")
        result["schemata"] = list(check.strings(data["schemata"], _join(where, "schemata")))
    if "enableMonitoring" in data:
        check.since(_join(where, "enableMonitoring"), "1.1.0")
        result["enableMonitoring"] = _boolean(
            check, data["enableMonitoring"], _join(where, "enableMonitoring")
        )
    return result


def _boolean(check: _Checker, value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise check.fail(where, f"expected a boolean, got {json_type_name(value)}")
    return value


def _net_device(check: _Checker, raw: Any, where: str) -> tuple[str, str]:
    data = check.obj(raw, where, ("hostInterfaceName", "name"))
    for key in ("hostInterfaceName", "name"):
        if key not in data:
            raise check.fail(where, f"missing {key}")
    host = check.string(data["hostInterfaceName"], _join(where, "hostInterfaceName"))
    name = check.string(data["name"], _join(where, "name"))
    return host, name


def _edits(check: _Checker, raw: Any, where: str) -> ContainerEdits:
    if raw is None:
        return ContainerEdits()
    data = check.obj(raw, where, _EDIT_FIELDS)
    env = check.env(data.get("env"), _join(where, "env"))
    nodes = tuple(
        _device_node(check, item, f"{where}.deviceNodes[{i}]")
        for i, item in enumerate(check.array(data.get("deviceNodes"), _join(where, "deviceNodes")))
    )
    mounts = tuple(
        _mount(check, item, f"{where}.mounts[{i}]")
        for i, item in enumerate(check.array(data.get("mounts"), _join(where, "mounts")))
    )
    hooks = tuple(
        _hook(check, item, f"{where}.hooks[{i}]")
        for i, item in enumerate(check.array(data.get("hooks"), _join(where, "hooks")))
    )
    gids: tuple[int, ...] = ()
    if "additionalGids" in data:
        check.since(_join(where, "additionalGids"), "0.7.0")
        gids = tuple(
            check.integer(g, f"{where}.additionalGids[{i}]", 0, _UINT32_MAX)
            for i, g in enumerate(
                check.array(data["additionalGids"], _join(where, "additionalGids"))
            )
        )
    rdt = None
    if "intelRdt" in data:
        rdt = _intel_rdt(check, data["intelRdt"], _join(where, "intelRdt"))
    net: tuple[tuple[str, str], ...] = ()
    if "netDevices" in data:
        check.since(_join(where, "netDevices"), "1.1.0")
        net = tuple(
            _net_device(check, item, f"{where}.netDevices[{i}]")
            for i, item in enumerate(check.array(data["netDevices"], _join(where, "netDevices")))
        )
    return ContainerEdits(env, nodes, mounts, hooks, gids, rdt, net)


def _kind(check: _Checker, raw: Any) -> str:
    kind = check.string(raw, "kind")
    _vendor, sep, cls = kind.partition("/")
    # A qualified name built from the kind and a valid device name must parse.
    if not sep or not is_cdi_name(f"{kind}=x"):
        raise check.fail("kind", f"{kind!r} is not vendor/class (for example vendor.com/device)")
    if "." in cls:
        check.since("kind", "0.6.0")
    return kind


def parse_spec(data: Any, source: str) -> CdiSpec:
    """Check the parsed content of a spec file and build a :class:`CdiSpec`.

    :param data: the parsed JSON/YAML document.
    :param source: the file name, used in every error message.
    :raises CdiSpecError: naming ``source`` and the offending field.
    """
    if not isinstance(data, Mapping):
        raise CdiSpecError(f"{source}: a CDI spec must be an object, not {json_type_name(data)}")
    if "cdiVersion" not in data:
        raise CdiSpecError(f"{source}: missing cdiVersion")
    version = data["cdiVersion"]
    if not isinstance(version, str):
        got = json_type_name(version)
        raise CdiSpecError(f"{source}: cdiVersion: expected a string, got {got}")
    version = version[1:] if version.startswith("v") else version
    if version not in SUPPORTED_VERSIONS:
        raise CdiSpecError(
            f"{source}: cdiVersion {data['cdiVersion']!r} is not supported"
            f" (supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    check = _Checker(source, version)
    top = check.obj(data, "", ("cdiVersion", "kind", "devices", "containerEdits", "annotations"))
    if "kind" not in top:
        raise check.fail("", "missing kind")
    kind = _kind(check, top["kind"])
    annotations = check.annotations(top.get("annotations"), "annotations")
    if "annotations" in top:
        check.since("annotations", "0.6.0")
    raw_devices = check.array(top.get("devices"), "devices")
    if not raw_devices:
        raise check.fail("devices", "a spec must define at least one device")
    devices: list[CdiDevice] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_devices):
        where = f"devices[{i}]"
        item = check.obj(raw, where, ("name", "containerEdits", "annotations"))
        if "name" not in item:
            raise check.fail(where, "missing name")
        name = check.string(item["name"], _join(where, "name"))
        if not is_cdi_name(f"{kind}={name}"):
            raise check.fail(
                _join(where, "name"),
                f"{name!r} is not a valid device name (letters, digits, '_', '-', '.', ':';"
                " starting and ending with a letter or digit)",
            )
        if name[0].isdigit():
            check.since(_join(where, "name"), "0.5.0")
        if name in seen:
            raise check.fail(_join(where, "name"), f"device {name!r} is defined twice")
        seen.add(name)
        if "containerEdits" not in item:
            raise check.fail(where, "missing containerEdits")
        check.device = f"{kind}={name}"
        edits = _edits(check, item["containerEdits"], _join(where, "containerEdits"))
        check.device = None
        if "annotations" in item:
            check.since(_join(where, "annotations"), "0.6.0")
        device_annotations = check.annotations(item.get("annotations"), _join(where, "annotations"))
        devices.append(CdiDevice(name, edits, device_annotations))
    edits = _edits(check, top.get("containerEdits"), "containerEdits")
    return CdiSpec(source, version, kind, tuple(devices), edits, annotations)


def _parse_yaml(text: str, source: str) -> Any:
    import yaml  # lazily: only hosts with YAML specs pay for it (and a cache miss)

    # libyaml's loader when PyYAML was built with it: the same safe constructors
    # as yaml.safe_load, several times faster than the pure-Python one.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader, see above
    except yaml.YAMLError as exc:
        raise CdiSpecError(f"{source}: not valid YAML: {exc}") from None


def unsafe_owner(st: os.stat_result) -> str:
    """Why a spec file or folder with status ``st`` is not trusted, or ``""``.

    When nvshim runs as root, a spec file injects host devices, mounts and
    hooks that run as root: it must be owned by root and writable by nobody
    else (the rule of nvshim's own caches).  As another user, the files of
    that user are taken as they are.
    """
    if os.geteuid() != 0:
        return ""
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        who = "others" if st.st_mode & 0o002 else "its group"
        return f"writable by {who} (mode {st.st_mode & 0o7777:o})"
    return ""


def read_spec_file(path: str, cache: Optional[SpecCache] = None) -> CdiSpec:
    """Read, parse and check the spec file at ``path`` (``.json``, ``.yaml`` or ``.yml``).

    With ``cache``, a file unchanged since it was last parsed is not read or
    parsed again (its cached document is checked again), and a file parsed
    here is remembered (see :mod:`nvshim_cdi._cache`).

    :raises CdiSpecError: naming ``path`` when it cannot be read, parsed or accepted.
    """
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            unsafe = unsafe_owner(st)
            if unsafe:
                raise CdiSpecError(f"{path}: {unsafe}; not trusted")
            if st.st_size > MAX_SPEC_FILE_BYTES:
                raise CdiSpecError(f"{path}: larger than {MAX_SPEC_FILE_BYTES >> 20} MiB, not read")
            if cache is not None:
                cached = cache.get(path, st)
                if cached is not None:
                    return parse_spec(cached, path)
            raw = handle.read(MAX_SPEC_FILE_BYTES + 1)
    except OSError as exc:
        raise CdiSpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_FILE_BYTES:
        raise CdiSpecError(f"{path}: larger than {MAX_SPEC_FILE_BYTES >> 20} MiB, not read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CdiSpecError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise CdiSpecError(f"{path}: the file is empty")
    if os.path.splitext(path)[1].lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CdiSpecError(f"{path}: not valid JSON: {exc}") from None
        except RecursionError:
            raise CdiSpecError(f"{path}: nested too deeply") from None
    else:
        data = _parse_yaml(text, path)
    spec = parse_spec(data, path)
    if cache is not None:
        cache.put(path, st, data)
    return spec
