"""The OCI spec (a bundle's ``config.json``) as modifiers see it.

:class:`Spec` wraps the parsed JSON object and is the single copy that is
written back: every field nvshim does not model survives with its value, its
key order and its nulls.  Modifiers change it only through the methods below,
which record each change (what, which key, before and after) so that the core
can attribute every change to the modifier that made it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Callable

from nvshim.errors import SpecError
from nvshim.records import HOOK_STAGES, Change, Device, Hook, Mount, from_json, to_json

__all__ = ["Spec", "SpecError", "is_privileged", "json_type_name"]


#: A config.json larger than this is refused unread: Docker's are about
#: 20 KB, and parsing a 16 MiB one took 817 MiB and 10 s as root, outside the
#: container's cgroup, on every start.
MAX_SPEC_BYTES = 8 << 20
#: What failed, in the line of a :class:`SpecError` raised by :meth:`Spec.save`.
_WRITE = "cannot write the spec"

# The range of the widest integer type in the OCI spec (Go's int64 and uint64):
# a larger number is no valid value of any field, and runc would refuse it.
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


#: Mount types by which the engine gives a container its own kernel views;
#: no modifier's mount may replace one.
ENGINE_MOUNT_TYPES = frozenset({"proc", "sysfs", "devpts", "mqueue"})

#: Deepest nesting accepted (real specs nest about 6 levels).  nvshim's copies
#: and the JSON encoder recurse once or twice per level; a limit well below
#: Python's recursion limit makes a deep spec a clear error, not a traceback.
MAX_SPEC_DEPTH = 100


def _check_depth(data: Any, source: str) -> None:
    """Raise :class:`SpecError` when ``data`` nests deeper than :data:`MAX_SPEC_DEPTH`."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(f"{source} is nested too deeply (more than {MAX_SPEC_DEPTH} levels)")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


class JsonConstantError(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in JSON text (:func:`reject_json_constant`)."""

    def __init__(self, constant: str) -> None:
        super().__init__(f"{constant} is not valid JSON")
        #: The constant found.
        self.constant = constant


def reject_json_constant(name: str) -> Any:
    """``json.loads(..., parse_constant=reject_json_constant)``: refuse NaN and Infinity.

    Python's json accepts them; they are not JSON, and Go's decoder (runc,
    dockerd) refuses them, so a file holding them is already broken.
    """
    raise JsonConstantError(name)


def _parse_int(text: str) -> int:
    # The length test first: converting a huge digit string is itself costly.
    value = int(text) if len(text) <= 21 else None
    if value is None or not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"number {_excerpt(text)} is too big")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    # 1e400 would be read as infinity and written back as "Infinity": not JSON.
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {_excerpt(text)} is too big")
    return value


def _excerpt(text: str) -> str:
    return text if len(text) <= 24 else text[:24] + "..."


def json_type_name(value: object, *, integers: bool = False) -> str:
    """How messages name the JSON type of a parsed ``value``: ``an object``, ``an array``,
    ``a string``, ``a boolean``, ``a number`` (``an integer`` for an int when
    ``integers``) or ``null``; anything else (YAML's dates) by its class name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int) and integers:
        return "an integer"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _expect(value: object, kind: type, where: str, what: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"{where}: expected {what}, got {json_type_name(value)}")


def _expect_list(value: object, where: str, kind: type, item: str) -> None:
    """``value`` is an array whose items are all of ``kind`` (described as ``item``)."""
    plural = "strings" if kind is str else "integers"
    _expect(value, list, where, f"an array of {plural}")
    assert isinstance(value, list)
    for i, entry in enumerate(value):
        _expect(entry, kind, f"{where}[{i}]", item)


def _expect_entries(entries: object, where: str, key: str, fields: dict[str, str]) -> None:
    """``entries`` is an array of objects, each with the string ``key`` and ``fields``."""
    _expect(entries, list, where, "an array")
    assert isinstance(entries, list)
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        _expect(entry, dict, at, "an object")
        if key not in entry:
            raise SpecError(f"{at}: missing {key}")
        _expect(entry[key], str, f"{at}.{key}", "a string")
        _expect_fields(entry, at, fields)


def _expect_fields(entry: dict[str, Any], where: str, fields: dict[str, str]) -> None:
    """Check the optional ``fields`` of ``entry`` (``null`` counts as absent, as in Go)."""
    for key, what in fields.items():
        value = entry.get(key)
        if value is None:
            continue
        if what == "strings":
            _expect_list(value, f"{where}.{key}", str, "a string")
        elif what == "integer":
            _expect(value, int, f"{where}.{key}", "an integer")
        else:
            _expect(value, str, f"{where}.{key}", "a string")


# The keys of every object nvshim reads or edits, by where the object is
# ("mounts[]": each entry).  runc's JSON decoder (Go's) matches keys without
# regard to case and the later one wins: with "Env" beside "env", nvshim would
# edit one list and runc read the other.
_KEYS_BY_PLACE: dict[str, tuple[str, ...]] = {
    "": ("ociVersion", "process", "root", "mounts", "hooks", "annotations", "linux"),
    "process": ("env", "user", "capabilities", "args", "cwd"),
    "process.user": ("uid", "gid", "additionalGids"),
    "process.capabilities": ("bounding", "effective", "permitted", "inheritable", "ambient"),
    "root": ("path", "readonly"),
    "linux": ("devices", "resources", "intelRdt", "netDevices", "namespaces"),
    "linux.resources": ("devices",),
    "hooks": HOOK_STAGES,
    "mounts[]": ("destination", "type", "source", "options"),
    "linux.devices[]": ("path", "type", "major", "minor", "fileMode", "uid", "gid"),
    "linux.resources.devices[]": ("allow", "type", "major", "minor", "access"),
    "hooks.*[]": ("path", "args", "env", "timeout"),
}
_FOLDED = {place: {key.casefold(): key for key in keys} for place, keys in _KEYS_BY_PLACE.items()}
_EXACT = {place: frozenset(keys) for place, keys in _KEYS_BY_PLACE.items()}


def _check_case(node: Any, place: str, where: str) -> None:
    """Refuse a key of ``node`` that differs from a known key only in case."""
    if not isinstance(node, dict) or node.keys() <= _EXACT[place]:
        return  # the usual case, decided in C
    known = _FOLDED[place]
    for key in node:
        canonical = known.get(key.casefold())
        if canonical is not None and key != canonical:
            at = f"{where}.{key}" if where else key
            raise SpecError(
                f"{at}: key differs from {canonical!r} only in case (runc would read one,"
                " nvshim edit the other)"
            )


def _check_entries(entries: Any, place: str, where: str) -> None:
    """:func:`_check_case` for each object of the array ``entries``."""
    if not isinstance(entries, list):
        return
    exact = _EXACT[place]
    for i, entry in enumerate(entries):
        # Inline first: the message is only built for an entry that needs a look.
        if not (isinstance(entry, dict) and entry.keys() <= exact):
            _check_case(entry, place, f"{where}[{i}]")


def _check_key_case(data: dict[str, Any]) -> None:
    _check_case(data, "", "")
    for place in ("process", "root", "linux", "hooks"):
        _check_case(data.get(place), place, place)
    process = data.get("process")
    if isinstance(process, dict):
        _check_case(process.get("user"), "process.user", "process.user")
        _check_case(process.get("capabilities"), "process.capabilities", "process.capabilities")
    linux = data.get("linux")
    if isinstance(linux, dict):
        _check_entries(linux.get("devices"), "linux.devices[]", "linux.devices")
        resources = linux.get("resources")
        _check_case(resources, "linux.resources", "linux.resources")
        if isinstance(resources, dict):
            _check_entries(
                resources.get("devices"), "linux.resources.devices[]", "linux.resources.devices"
            )
    _check_entries(data.get("mounts"), "mounts[]", "mounts")
    hooks = data.get("hooks")
    if isinstance(hooks, dict):
        for stage, entries in hooks.items():
            _check_entries(entries, "hooks.*[]", f"hooks.{stage}")


def _check_shape(data: dict[str, Any]) -> None:
    """Check the types of every field that nvshim reads, so errors are clear."""
    _check_key_case(data)
    process = data.get("process")
    if process is not None:
        _expect(process, dict, "process", "an object")
        env = process.get("env")
        if env is not None:
            _expect_list(env, "process.env", str, "a string")
        caps = process.get("capabilities")
        if caps is not None:
            _expect(caps, dict, "process.capabilities", "an object")
            bounding = caps.get("bounding")
            if bounding is not None:
                _expect_list(bounding, "process.capabilities.bounding", str, "a string")
        user = process.get("user")
        if user is not None:
            _expect(user, dict, "process.user", "an object")
            gids = user.get("additionalGids")
            if gids is not None:
                _expect_list(gids, "process.user.additionalGids", int, "an integer")
    root = data.get("root")
    if root is not None:
        _expect(root, dict, "root", "an object")
        if "path" in root:
            _expect(root["path"], str, "root.path", "a string")
    mounts = data.get("mounts")
    if mounts is not None:
        _expect_entries(
            mounts,
            "mounts",
            "destination",
            {"source": "string", "type": "string", "options": "strings"},
        )
    hooks = data.get("hooks")
    if hooks is not None:
        _expect(hooks, dict, "hooks", "an object")
        for stage, entries in hooks.items():
            if entries is None:
                continue
            _expect_entries(
                entries,
                f"hooks.{stage}",
                "path",
                {"args": "strings", "env": "strings", "timeout": "integer"},
            )
    annotations = data.get("annotations")
    if annotations is not None:
        _expect(annotations, dict, "annotations", "an object")
        for key, value in annotations.items():
            _expect(value, str, f"annotations.{key}", "a string")
    linux = data.get("linux")
    if linux is not None:
        _expect(linux, dict, "linux", "an object")
        devices = linux.get("devices")
        if devices is not None:
            _expect_entries(
                devices,
                "linux.devices",
                "path",
                {
                    "type": "string",
                    "major": "integer",
                    "minor": "integer",
                    "fileMode": "integer",
                    "uid": "integer",
                    "gid": "integer",
                },
            )
        resources = linux.get("resources")
        if resources is not None:
            _expect(resources, dict, "linux.resources", "an object")
            rules = resources.get("devices")
            if rules is not None:
                _expect(rules, list, "linux.resources.devices", "an array")
                for i, rule in enumerate(rules):
                    _expect(rule, dict, f"linux.resources.devices[{i}]", "an object")


def parse_json(data: bytes, source: str = "config.json") -> dict[str, Any]:
    """Parse config.json bytes strictly into a dict, or raise :class:`SpecError`."""
    if not data.strip():
        raise SpecError(f"{source} is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source} is not valid UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise SpecError(f"{source} starts with a byte order mark, which JSON does not allow")
    try:
        parsed = json.loads(
            text,
            parse_constant=reject_json_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise SpecError(
            f"{source} is nested too deeply (more than {MAX_SPEC_DEPTH} levels)"
        ) from None
    except ValueError as exc:  # NaN, or a number too big
        raise SpecError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise SpecError(f"{source} must hold a JSON object, not {json_type_name(parsed)}")
    _check_depth(parsed, source)
    return parsed


def _copy(value: Any) -> Any:
    """Deep-copy JSON data (much faster than copy.deepcopy for these types)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class Spec:
    """A parsed OCI runtime spec.

    Build one with :meth:`load` or :meth:`from_dict`; write it with
    :meth:`save` or get the JSON object with :meth:`to_dict`.
    """

    __slots__ = ("_data", "_mount_index", "_on_raw", "_raw_out", "_recorder")

    def __init__(self, data: dict[str, Any]) -> None:
        """Wrap ``data`` (which the Spec then owns; use :meth:`from_dict` to copy)."""
        _check_shape(data)
        self._data = data
        self._recorder: Callable[[Change], None] | None = None
        self._on_raw: Callable[[], None] | None = None
        # Whether :attr:`raw` ever handed the live data out: until then, the
        # methods (all recorded) are the only way to change it.
        self._raw_out = False
        # add_mount's index of mount destinations: (the mounts list, the
        # position of the first entry at each destination, the list's length).
        # Used only while the data was never handed out (see _destinations).
        self._mount_index: tuple[list[Any], dict[Any, int], int] | None = None

    # -- loading and saving ------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Spec:
        """Read and parse ``path`` (a config.json); raise :class:`SpecError` on any problem."""
        name = os.fspath(path)
        try:
            with open(name, "rb") as handle:
                data = handle.read(MAX_SPEC_BYTES + 1)
        except OSError as exc:
            raise SpecError(f"cannot read {name}: {exc.strerror or exc}") from None
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError(f"{name} is larger than {MAX_SPEC_BYTES >> 20} MiB")
        try:
            return cls(parse_json(data, name))
        except SpecError as exc:
            msg = str(exc)
            raise SpecError(msg if msg.startswith(name) else f"{name}: {msg}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        """A Spec holding a deep copy of ``data``."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a spec must be a JSON object, not {json_type_name(data)}")
        _check_depth(data, "the spec")
        return cls(_copy(dict(data)))

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the spec as a JSON object."""
        copied: dict[str, Any] = _copy(self._data)
        return copied

    def to_json(self) -> str:
        """The spec as compact JSON text (as engines write config.json)."""
        return json.dumps(self._data, separators=(",", ":"), allow_nan=False)

    @property
    def raw(self) -> dict[str, Any]:
        """The live JSON object, for reading fields the API does not cover.

        Changes made here bypass the Spec's own recording: the core finds
        them by comparing the spec before and after the modifier, which costs
        a copy and a comparison of the whole spec for it and every later one.
        Modifiers should use the methods of this class instead.
        """
        if self._on_raw is not None:
            self._on_raw()  # before the caller can change anything
        self._raw_out = True
        return self._data

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the spec to ``path`` atomically.

        The text goes to a temporary file in the same folder, which is
        fsync'ed and renamed over ``path``; the folder is fsync'ed too.  The
        file's mode and owner are kept (0644 for a new file).  On any failure
        the temporary file is removed and ``path`` is left as it was.
        """
        from nvshim._atomic import atomic_write

        try:
            data = self.to_json().encode("utf-8")
        except (RecursionError, ValueError) as exc:
            # Deep nesting the parser accepted, or a NaN a modifier put in.
            raise SpecError(f"cannot write {os.fspath(path)}: {exc}", what=_WRITE) from None
        try:
            atomic_write(os.fspath(path), data)
        except OSError as exc:
            raise SpecError(
                f"cannot write {os.fspath(path)}: {exc.strerror or exc}", what=_WRITE
            ) from None

    # -- change recording --------------------------------------------------

    def recording(
        self,
        recorder: Callable[[Change], None],
        on_raw: Callable[[], None] | None = None,
    ) -> _Recording:
        """Send every change made through this Spec's methods to ``recorder``.

        A context manager: ``with spec.recording(changes.append): ...``.  The
        recorder in place before is put back on leaving, so recordings nest.
        The core uses it to attribute each change to the modifier that made
        it (:class:`nvshim.changes.ChangeTracker`).

        :param on_raw: called on each access to :attr:`raw` meanwhile, before
            the live data is handed out (the tracker snapshots the spec then).
        """
        return _Recording(self, recorder, on_raw)

    def _record(self, kind: str, key: str, action: str, before: Any, after: Any) -> None:
        if self._recorder is not None:
            self._recorder(Change(kind=kind, key=key, action=action, before=before, after=after))

    def _section(self, *keys: str, default: type = dict) -> Any:
        node = self._data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            node = child
        last = keys[-1]
        value = node.get(last)
        if value is None:
            value = node[last] = default()
        return value

    # -- environment -------------------------------------------------------

    @property
    def env(self) -> list[str]:
        """A copy of ``process.env``."""
        process = self._data.get("process") or {}
        return list(process.get("env") or [])

    def get_env(self, name: str) -> str | None:
        """The value of ``name`` in ``process.env``, or None when it is not set.

        The last entry wins, as in the container (runc, crun) and NVIDIA's
        runtime; ``NAME`` alone (no ``=``) gives ``""``; ``NAME_X=...`` does
        not match ``NAME``.
        """
        found: str | None = None
        for entry in (self._data.get("process") or {}).get("env") or ():
            key, sep, value = entry.partition("=")
            if key == name:
                found = value if sep else ""
        return found

    def set_env(self, name: str, value: str) -> None:
        """Set ``name`` to ``value``.

        The first entry of that name is replaced in place and every later one
        removed (a later duplicate would win in the container); with none,
        the entry is appended.
        """
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"invalid environment variable name {name!r}")
        env: list[str] = self._section("process", "env", default=list)
        entry = f"{name}={value}"
        places = [i for i, existing in enumerate(env) if existing.partition("=")[0] == name]
        if not places:
            env.append(entry)
            self._record("env", name, "add", None, value)
            return
        if len(places) == 1 and env[places[0]] == entry:
            return
        old = self.get_env(name)
        env[places[0]] = entry
        for i in reversed(places[1:]):
            del env[i]
        self._record("env", name, "replace", old, value)

    def unset_env(self, name: str) -> bool:
        """Remove every entry for ``name``; return whether one was there."""
        process = self._data.get("process") or {}
        env = process.get("env")
        if not env:
            return False
        kept = [e for e in env if e.partition("=")[0] != name]
        if len(kept) == len(env):
            return False
        before = self.get_env(name)
        env[:] = kept
        self._record("env", name, "remove", before, None)
        return True

    # -- mounts ------------------------------------------------------------

    def mounts(self) -> list[Mount]:
        """The mounts, as :class:`Mount` records."""
        result: list[Mount] = from_json_list(Mount, self._data.get("mounts") or [])
        return result

    def add_mount(self, mount: Mount) -> None:
        """Add ``mount``; a mount with the same destination is replaced in place.

        :raises ValueError: when it would replace one of the engine's
            ``proc``, ``sysfs``, ``devpts`` or ``mqueue`` mounts
            (:data:`ENGINE_MOUNT_TYPES`): a CSV line ``dir, /*`` put the
            host's ``/proc`` in place of the container's.
        """
        if not isinstance(mount, Mount):
            raise TypeError(f"add_mount() takes a Mount, not {type(mount).__name__}")
        mounts: list[dict[str, Any]] = self._section("mounts", default=list)
        entry = to_json(mount)
        index = self._destinations(mounts)
        wanted = mount.destination.rstrip("/")
        for same in (wanted, wanted + "/"):
            if same in index:
                existing = mounts[index[same]]
                kind = existing.get("type")
                # The very same mount again changes nothing: that is allowed.
                if (
                    kind in ENGINE_MOUNT_TYPES
                    and existing != entry
                    and not _same_record(Mount, existing, mount)
                ):
                    raise ValueError(
                        f"mount at {mount.destination} would replace the engine's {kind} mount"
                    )
        if mount.destination in index:
            i = index[mount.destination]
            existing = mounts[i]
            if existing != entry and not _same_record(Mount, existing, mount):
                mounts[i] = entry
                self._record("mount", mount.destination, "replace", existing, entry)
            return
        mounts.append(entry)
        index[mount.destination] = len(mounts) - 1
        self._mount_index = (mounts, index, len(mounts))
        self._record("mount", mount.destination, "add", None, entry)

    def _destinations(self, mounts: list[dict[str, Any]]) -> dict[Any, int]:
        """The position of the first mount at each destination of ``mounts``.

        csv mode adds hundreds of mounts; a scan of the list for each was most
        of its create.  The index is kept from one add_mount to the next while
        no one else can have changed the list: the data was never handed out
        through :attr:`raw` (nvshim's methods are then the only writers, and
        remove_mount drops the index), it is the same list and of the same
        length.  Otherwise it is built again (one pass).
        """
        cached = self._mount_index
        if (
            cached is not None
            and not self._raw_out
            and cached[0] is mounts
            and cached[2] == len(mounts)
        ):
            return cached[1]
        index: dict[Any, int] = {}
        for i, m in enumerate(mounts):
            key = m.get("destination")
            if isinstance(key, str):  # a malformed entry's key cannot match a str
                index.setdefault(key, i)
        self._mount_index = (mounts, index, len(mounts))
        return index

    def remove_mount(self, destination: str) -> bool:
        """Remove the mounts at ``destination``; return whether one was there."""
        mounts = self._data.get("mounts")
        if not mounts:
            return False
        kept = [m for m in mounts if m.get("destination") != destination]
        if len(kept) == len(mounts):
            return False
        removed = [m for m in mounts if m.get("destination") == destination]
        mounts[:] = kept
        self._mount_index = None
        self._record("mount", destination, "remove", removed[0], None)
        return True

    # -- devices -----------------------------------------------------------

    def devices(self) -> list[Device]:
        """The device nodes in ``linux.devices``, as :class:`Device` records."""
        result: list[Device] = from_json_list(
            Device, (self._data.get("linux") or {}).get("devices") or []
        )
        return result

    def add_device(self, device: Device) -> None:
        """Add ``device``, replacing the node with the same path.

        A ``c`` or ``b`` device also gets a ``linux.resources.devices`` allow
        rule for its type, major and minor, with ``device.access``.
        """
        if not isinstance(device, Device):
            raise TypeError(f"add_device() takes a Device, not {type(device).__name__}")
        devices: list[dict[str, Any]] = self._section("linux", "devices", default=list)
        entry = to_json(device)
        paths = [d.get("path") for d in devices]  # as in add_mount
        if device.path in paths:
            i = paths.index(device.path)
            existing = devices[i]
            if existing != entry and not _same_record(Device, existing, device):
                devices[i] = entry
                self._record("device", device.path, "replace", existing, entry)
        else:
            devices.append(entry)
            self._record("device", device.path, "add", None, entry)
        if device.type in ("c", "b"):
            rules: list[dict[str, Any]] = self._section(
                "linux", "resources", "devices", default=list
            )
            rule = {
                "allow": True,
                "type": device.type,
                "major": device.major,
                "minor": device.minor,
                "access": device.access,
            }
            if rule not in rules:
                rules.append(rule)
                self._record(
                    "device-rule", f"{device.type} {device.major}:{device.minor}", "add", None, rule
                )

    # -- hooks -------------------------------------------------------------

    @staticmethod
    def _check_stage(stage: str) -> None:
        if stage not in HOOK_STAGES:
            raise ValueError(
                f"unknown hook stage {stage!r}: expected one of {', '.join(HOOK_STAGES)}"
            )

    def hooks(self, stage: str) -> list[Hook]:
        """The hooks of ``stage`` (one of :data:`nvshim.records.HOOK_STAGES`), in order."""
        self._check_stage(stage)
        entries = (self._data.get("hooks") or {}).get(stage) or []
        result: list[Hook] = from_json_list(Hook, entries)
        return result

    def add_hook(self, stage: str, hook: Hook) -> None:
        """Append ``hook`` to the hooks of ``stage``."""
        self._check_stage(stage)
        if not isinstance(hook, Hook):
            raise TypeError(f"add_hook() takes a Hook, not {type(hook).__name__}")
        entries: list[dict[str, Any]] = self._section("hooks", stage, default=list)
        entry = to_json(hook)
        entries.append(entry)
        self._record("hook", f"{stage}:{hook.path}", "add", None, entry)

    def remove_hooks(self, stage: str, predicate: Callable[[Hook], bool]) -> int:
        """Remove the hooks of ``stage`` for which ``predicate`` is true; return how many."""
        self._check_stage(stage)
        hooks = self._data.get("hooks") or {}
        entries = hooks.get(stage)
        if not entries:
            return 0
        kept = []
        removed = 0
        for entry in entries:
            if predicate(from_json(Hook, entry)):
                removed += 1
                self._record("hook", f"{stage}:{entry.get('path')}", "remove", entry, None)
            else:
                kept.append(entry)
        if removed:
            entries[:] = kept
        return removed

    # -- annotations -------------------------------------------------------

    @property
    def annotations(self) -> Mapping[str, str]:
        """The annotations (a read-only view; change them with :meth:`set_annotation`)."""
        from types import MappingProxyType

        return MappingProxyType(self._data.get("annotations") or {})

    def set_annotation(self, key: str, value: str) -> None:
        """Set annotation ``key`` to ``value``."""
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise TypeError("annotation keys and values must be strings")
        annotations: dict[str, str] = self._section("annotations")
        before = annotations.get(key)
        if before == value:
            return
        annotations[key] = value
        self._record("annotation", key, "add" if before is None else "replace", before, value)

    # -- other fields ------------------------------------------------------

    @property
    def root_path(self) -> str | None:
        """``root.path`` as written (may be relative to the bundle)."""
        root = self._data.get("root") or {}
        path = root.get("path")
        return path if isinstance(path, str) else None

    @property
    def privileged(self) -> bool:
        """Whether the container is privileged: see :func:`is_privileged`."""
        return is_privileged(self._data)

    def set_linux(self, key: str, value: Any) -> None:
        """Set ``linux.<key>`` (``intelRdt``, ``netDevices`` ...) to a JSON value.

        For the few fields a modifier may own whole; recorded like any change.
        """
        linux: dict[str, Any] = self._section("linux")
        before = linux.get(key)
        if before == value:
            return
        # A copy: the caller's object, changed later, must not change the spec unseen.
        value = _copy(value)
        linux[key] = value
        self._record("linux", key, "add" if before is None else "replace", before, value)

    def add_additional_gids(self, gids: list[int]) -> None:
        """Add ``gids`` to ``process.user.additionalGids`` (keeping order, no duplicates)."""
        current: list[int] = self._section("process", "user", "additionalGids", default=list)
        for gid in gids:
            if gid not in current:
                current.append(gid)
                self._record("gid", str(gid), "add", None, gid)

    def __repr__(self) -> str:
        return f"<Spec ociVersion={self._data.get('ociVersion')!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spec):
            return NotImplemented
        return self._data == other._data

    __hash__ = None  # type: ignore[assignment]


def is_privileged(data: Mapping[str, Any]) -> bool:
    """Whether ``CAP_SYS_ADMIN`` is in the spec's bounding set (NVIDIA's test for privileged).

    ``data`` is a parsed config.json.  A spec of OCI runtime-spec 1.0.0-rc1
    to rc4 holds a flat list of capabilities: that list is the bounding set.
    Anything malformed counts as not privileged.
    """
    process = data.get("process")
    caps = process.get("capabilities") if isinstance(process, Mapping) else None
    bounding = caps.get("bounding") if isinstance(caps, Mapping) else caps
    return isinstance(bounding, list) and "CAP_SYS_ADMIN" in bounding


class _Recording:
    """What :meth:`Spec.recording` returns (no contextlib: the create path does not need it)."""

    __slots__ = ("_on_raw", "_previous", "_recorder", "_spec")

    def __init__(
        self,
        spec: Spec,
        recorder: Callable[[Change], None],
        on_raw: Callable[[], None] | None = None,
    ) -> None:
        self._spec = spec
        self._recorder = recorder
        self._on_raw = on_raw
        self._previous: tuple[Callable[[Change], None] | None, Callable[[], None] | None] = (
            None,
            None,
        )

    def __enter__(self) -> Spec:
        self._previous = (self._spec._recorder, self._spec._on_raw)
        self._spec._recorder = self._recorder
        self._spec._on_raw = self._on_raw
        return self._spec

    def __exit__(self, *_exc: object) -> None:
        self._spec._recorder, self._spec._on_raw = self._previous


def readonly_data(spec: Spec) -> dict[str, Any]:
    """The live JSON object of ``spec``, for nvshim's own code that only reads it.

    Unlike :attr:`Spec.raw` it does not count as handing the data out, so the
    core need not compare the whole spec after each modifier to find changes
    made through it: never change what it returns.
    """
    return spec._data


def _same_record(cls: type[Any], existing: dict[str, Any], record: Any) -> bool:
    """Whether ``existing`` (JSON) already is ``record``.

    Then it is kept as it is: re-adding a mount read from :meth:`Spec.mounts`
    must not drop the fields the record does not model (``uidMappings`` ...).
    """
    try:
        return bool(from_json(cls, existing) == record)
    except Exception:
        return False


def from_json_list(cls: type[Any], entries: list[dict[str, Any]]) -> list[Any]:
    """Records of ``cls`` for each JSON object in ``entries``."""
    try:
        return [from_json(cls, entry) for entry in entries]
    except Exception as exc:
        raise SpecError(f"invalid {cls.__name__.lower()} in spec: {exc}") from None
