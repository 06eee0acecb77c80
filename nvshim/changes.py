"""Records of the changes modifiers make to a spec, for attribution and conflicts.

Every change a modifier makes is attributed to it, whichever way it was made:
the :class:`nvshim.Spec` methods record theirs as they go, and what a
modifier changed through ``Spec.raw`` is found afterwards by comparing the
spec with a snapshot taken before the modifier ran (:func:`spec_diff`).  Both
kinds go through the same conflict checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from nvshim.records import Change

if TYPE_CHECKING:
    from typing import Protocol

    class _SpecLike(Protocol):
        """What the tracker reads of a :class:`nvshim.Spec`; changes does not import spec."""

        @property
        def raw(self) -> dict[str, Any]: ...

        def to_dict(self) -> dict[str, Any]: ...


__all__ = ["KINDS", "MULTI_VALUED", "Change", "ChangeTracker", "field_key", "spec_diff"]

#: Every kind of change, as in :attr:`Change.kind`.
KINDS = ("env", "mount", "device", "device-rule", "hook", "annotation", "gid", "linux", "field")

#: Kinds whose key may hold several entries side by side (two hooks with one
#: path, two cgroup rules for one device): adding another entry changes none
#: of the existing ones, so only removing another modifier's entry conflicts.
MULTI_VALUED = frozenset({"hook", "device-rule", "gid"})


# -- finding changes by comparison -------------------------------------------

#: Paths compared entry by entry (their own kinds); everything else is a field.
_ITEMIZED = frozenset(
    {
        ("process", "env"),
        ("process", "user", "additionalGids"),
        ("mounts",),
        ("hooks",),
        ("annotations",),
        ("linux", "devices"),
        ("linux", "resources", "devices"),
    }
)
#: Objects whose members are compared one by one, so that a change to
#: ``process.args`` is not reported as a change of all of ``process``.
_DESCEND = frozenset({(), ("process",), ("process", "user"), ("linux",), ("linux", "resources")})


#: A member that is absent (as opposed to present with the value null).
_MISSING: Any = object()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _grouped(
    entries: Any, key_of: Callable[[Any], Optional[str]]
) -> Optional[dict[str, list[Any]]]:
    """Entries by key, or None when ``entries`` is not a list of keyed items."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        return None
    groups: dict[str, list[Any]] = {}
    for entry in entries:
        key = key_of(entry)
        if key is None:
            return None
        groups.setdefault(key, []).append(entry)
    return groups


def _env_key(entry: Any) -> Optional[str]:
    return entry.partition("=")[0] if isinstance(entry, str) else None


def _member(name: str) -> Callable[[Any], Optional[str]]:
    def key_of(entry: Any) -> Optional[str]:
        if not isinstance(entry, Mapping):
            return None
        value = entry.get(name)
        return value if isinstance(value, str) else repr(value)

    return key_of


def _rule_key(entry: Any) -> Optional[str]:
    if not isinstance(entry, Mapping):
        return None
    return f"{entry.get('type', 'a')} {entry.get('major', '*')}:{entry.get('minor', '*')}"


def _gid_key(entry: Any) -> Optional[str]:
    return str(entry) if isinstance(entry, int) and not isinstance(entry, bool) else None


def _single(
    kind: str, before: dict[str, list[Any]], after: dict[str, list[Any]]
) -> Iterator[Change]:
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        old_value = None if not old else old[0] if len(old) == 1 else old
        new_value = None if not new else new[0] if len(new) == 1 else new
        action = "add" if not old else "remove" if not new else "replace"
        yield Change(kind, key, action, old_value, new_value, source="raw")


def _multi(
    kind: str, before: dict[str, list[Any]], after: dict[str, list[Any]]
) -> Iterator[Change]:
    for key in sorted(set(before) | set(after), key=str):
        old = list(before.get(key, ()))
        new = list(after.get(key, ()))
        if old == new:
            continue
        for entry in list(old):
            if entry in new:
                new.remove(entry)
                old.remove(entry)
        for entry in old:
            yield Change(kind, key, "remove", entry, None, source="raw")
        for entry in new:
            yield Change(kind, key, "add", None, entry, source="raw")


def _itemized(path: tuple[str, ...], before: Any, after: Any) -> Iterator[Change]:
    """Entry-level changes of one of the :data:`_ITEMIZED` paths."""
    if path == ("hooks",):
        if _object_or_nothing(before) and _object_or_nothing(after):
            old_hooks, new_hooks = before or {}, after or {}
            for stage in sorted(set(old_hooks) | set(new_hooks)):
                old = _grouped(old_hooks.get(stage), _member("path"))
                new = _grouped(new_hooks.get(stage), _member("path"))
                if old is None or new is None:
                    yield from _field(
                        ("hooks", stage),
                        old_hooks.get(stage, _MISSING),
                        new_hooks.get(stage, _MISSING),
                    )
                    continue
                for change in _multi("hook", old, new):
                    yield attrs.evolve(change, key=f"{stage}:{change.key}")
            return
    elif path == ("annotations",):
        if _object_or_nothing(before) and _object_or_nothing(after):
            old_map = {k: [v] for k, v in (before or {}).items()}
            new_map = {k: [v] for k, v in (after or {}).items()}
            yield from _single("annotation", old_map, new_map)
            return
    else:
        kind, key_of, compare = {
            ("process", "env"): ("env", _env_key, _single),
            ("process", "user", "additionalGids"): ("gid", _gid_key, _multi),
            ("mounts",): ("mount", _member("destination"), _single),
            ("linux", "devices"): ("device", _member("path"), _single),
            ("linux", "resources", "devices"): ("device-rule", _rule_key, _multi),
        }[path]
        old_groups, new_groups = _grouped(before, key_of), _grouped(after, key_of)
        if old_groups is not None and new_groups is not None:
            if kind == "env":
                old_groups = {
                    k: [e.partition("=")[2] if "=" in e else e for e in v]
                    for k, v in old_groups.items()
                }
                new_groups = {
                    k: [e.partition("=")[2] if "=" in e else e for e in v]
                    for k, v in new_groups.items()
                }
            yield from compare(kind, old_groups, new_groups)
            return
    # Not the expected shape at all (a modifier wrote a string where a list
    # belongs): one change of the whole field, which validation then refuses.
    yield from _field(
        path, _MISSING if before is None else before, _MISSING if after is None else after
    )


def _value(value: Any) -> Any:
    return None if value is _MISSING else value


def _field(path: tuple[str, ...], before: Any, after: Any) -> Iterator[Change]:
    if before is after or before == after:
        return
    action = "add" if before is _MISSING else "remove" if after is _MISSING else "replace"
    yield Change("field", ".".join(path), action, _value(before), _value(after), source="raw")


def _object_or_nothing(value: Any) -> bool:
    return value is _MISSING or value is None or isinstance(value, Mapping)


def _walk(path: tuple[str, ...], before: Any, after: Any) -> Iterator[Change]:
    if before is after or before == after:
        return
    if after is None:
        # null written where a value (or nothing) was: Go reads it as absent,
        # the schema refuses it; report the field so that validation sees it.
        yield from _field(path, before, after)
        return
    if path in _ITEMIZED:
        yield from _itemized(path, _value(before), _value(after))
        return
    if path in _DESCEND and _object_or_nothing(before) and _object_or_nothing(after):
        old = before if isinstance(before, Mapping) else {}
        new = after if isinstance(after, Mapping) else {}
        for key in list(old) + [k for k in new if k not in old]:
            yield from _walk((*path, key), old.get(key, _MISSING), new.get(key, _MISSING))
        return
    yield from _field(path, before, after)


def spec_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """The changes that turn the spec ``before`` into ``after`` (JSON objects).

    Entries are compared by their key (mount destination, device path, env
    name ...), so the result uses the same kinds and keys as the changes the
    :class:`nvshim.Spec` methods record; other parts are reported as
    ``field`` changes at the depth of ``process.args`` or
    ``linux.namespaces``.  Every change has ``source="raw"``.
    """
    return list(_walk((), before, after))


# -- attribution and conflicts -----------------------------------------------


def field_key(change: Change) -> tuple[str, str]:
    """``(kind, key)`` with a ``linux`` change spelled as the ``field`` it is.

    ``Spec.set_linux("intelRdt", ...)`` and a write to
    ``spec.raw["linux"]["intelRdt"]`` change the same thing.
    """
    if change.kind == "linux":
        return ("field", f"linux.{change.key}")
    return (change.kind, change.key)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else _canonical(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _live(spec: _SpecLike) -> dict[str, Any]:
    """The spec's live data, read without counting as handing it out (see ``Spec.raw``)."""
    data = getattr(spec, "_data", None)
    return data if isinstance(data, dict) else spec.raw


class ChangeTracker:
    """Collects the changes of a modifier chain and finds conflicts between modifiers.

    A change conflicts when a modifier changes, to another value, or removes
    something that an earlier modifier set (same kind and key).  For kinds
    that hold several entries per key (:data:`MULTI_VALUED`: hooks, device
    rules, gids) adding one more is never a conflict; removing another
    modifier's entry is.  Changes to what the engine wrote are not conflicts:
    changing the engine's spec is what modifiers are for.  A modifier that
    names the earlier one (or ``"*"``) in ``Modifier.overrides`` may do it;
    that is logged instead.

    Use: ``with spec.recording(tracker.recorder_for(info, spec)):`` around a
    modifier (``recorder_for`` also snapshots the spec), then
    ``tracker.finish()`` after it returned, which attributes what it changed
    through ``Spec.raw``.
    """

    def __init__(self, logger: Any = None) -> None:
        #: Every change, in order, attributed.
        self.changes: list[Change] = []
        #: The first conflict found, as one line, or None.
        self.error: Optional[str] = None
        #: Overrides that were allowed, as lines (also logged).
        self.overridden: list[str] = []
        #: ``modifier name -> "<dist> <version>"`` (or the plugin's name).
        self.labels: dict[str, str] = {}
        self._owners: dict[tuple[str, ...], Change] = {}
        self._logger = logger
        self._spec: Optional[_SpecLike] = None
        self._snapshot: Optional[dict[str, Any]] = None
        self._current: Optional[tuple[str, Callable[[Change], None], int]] = None

    def describe(self, name: Optional[str]) -> str:
        """``modifier '<name>' (<dist> <version>)`` for messages."""
        label = self.labels.get(name or "")
        return f"modifier '{name}' ({label})" if label else f"modifier '{name}'"

    def recorder_for(self, info: Any, spec: Optional[_SpecLike] = None) -> Callable[[Change], None]:
        """A recorder for :class:`nvshim.Spec` that attributes changes to ``info``'s modifier.

        :param info: a :class:`nvshim.plugins.ModifierInfo` (or anything with
            ``name``, ``modifier`` and ``plugin.label``).
        :param spec: the spec the modifier is about to change; when given, it
            is snapshotted so that :meth:`finish` can find the changes made
            outside the Spec API.
        """
        name: str = info.name
        plugin = getattr(info, "plugin", None)
        self.labels[name] = getattr(plugin, "label", None) or name
        overrides = tuple(getattr(info.modifier, "overrides", ()))

        def record(change: Change) -> None:
            self._add(attrs.evolve(change, modifier=name), overrides)

        if spec is not None:
            if self._current is not None:
                self.finish()  # the previous modifier's raw changes are its own
            if self._spec is not spec:
                self._snapshot = None
            self._spec = spec
            self._current = (name, record, len(self.changes))
            # Until Spec.raw has handed the live data out, only the Spec's
            # methods (all recorded) can change it: the snapshot waits for the
            # first access to raw (on_raw).  Once handed out, a reference kept
            # from an earlier modifier may change it at any time, so every
            # modifier from then on is compared, as a spec-like without the
            # flag always is.
            if self._snapshot is None and getattr(spec, "_raw_out", True):
                self._snapshot = spec.to_dict()
        return record

    def on_raw(self) -> None:
        """Snapshot the spec now unless done: the current modifier is about to get ``Spec.raw``.

        Pass it to :meth:`nvshim.Spec.recording` with :meth:`recorder_for`'s
        recorder.  The snapshot holds the modifier's recorded changes so far,
        which :meth:`finish` leaves out anyway.
        """
        if self._current is not None and self._snapshot is None and self._spec is not None:
            self._snapshot = self._spec.to_dict()

    def finish(self) -> list[Change]:
        """Attribute what the current modifier changed outside the Spec API.

        Compares the spec with the snapshot :meth:`recorder_for` took and
        records every difference that the modifier's recorded changes do not
        explain (with ``source="raw"``).  Returns those changes.
        """
        if self._current is None or self._spec is None or self._snapshot is None:
            return []
        name, record, start = self._current
        self._current = None
        data = _live(self._spec)
        if data == self._snapshot:
            return []  # the snapshot still matches: the next modifier reuses it
        explained = {field_key(c) for c in self.changes[start:]}
        found = [c for c in spec_diff(self._snapshot, data) if field_key(c) not in explained]
        for change in found:
            record(change)
        self._snapshot = None
        if found and self._logger is not None:
            self._logger.debug(
                "modifier %s changed %s outside the Spec API",
                name,
                ", ".join(f"{c.kind} {c.key}" for c in found[:10]),
            )
        return self.changes[len(self.changes) - len(found) :] if found else []

    def _owner_key(self, change: Change) -> tuple[str, ...]:
        if change.kind in MULTI_VALUED:
            value = change.before if change.action == "remove" else change.after
            return (change.kind, change.key, _canonical(value))
        return field_key(change)

    def _add(self, change: Change, overrides: tuple[str, ...]) -> None:
        name = change.modifier
        self.changes.append(change)
        key = self._owner_key(change)
        owner = self._owners.get(key)
        if owner is not None and owner.modifier != name:
            if change.action == "remove":
                differs = True
            elif change.kind in MULTI_VALUED:
                differs = False
            else:
                differs = change.after != owner.after
            if differs:
                self._conflict(change, owner, overrides)
        if change.action == "remove":
            self._owners.pop(key, None)
        else:
            self._owners[key] = change

    def _conflict(self, change: Change, owner: Change, overrides: tuple[str, ...]) -> None:
        what = f"{change.kind} {change.key!r}"
        if change.action == "remove":
            detail = f"removes {what} that {self.describe(owner.modifier)} set"
        else:
            detail = (
                f"changes {what} that {self.describe(owner.modifier)} set "
                f"(from {_short(owner.after)} to {_short(change.after)})"
            )
        line = f"{self.describe(change.modifier)} {detail}"
        if "*" in overrides or owner.modifier in overrides:
            line = f"{line}: allowed, it overrides '{owner.modifier}'"
            self.overridden.append(line)
            if self._logger is not None:
                self._logger.info("%s", line)
        elif self.error is None:
            self.error = line
