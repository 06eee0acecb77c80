"""Records of the changes modifiers make to a spec, for attribution and conflicts."""

from __future__ import annotations

from typing import Any, Callable

import attrs

__all__ = ["Change", "ChangeTracker"]


@attrs.frozen
class Change:
    """One change to a spec.

    :param kind: what was changed: ``env``, ``mount``, ``device``,
        ``device-rule``, ``hook``, ``annotation`` or ``gid``.
    :param key: which one: the variable name, the mount destination, the
        device path, ``<stage>:<path>`` for a hook, the annotation key.
    :param action: ``add``, ``replace`` or ``remove``.
    :param before: the JSON value before (None when added).
    :param after: the JSON value after (None when removed).
    :param modifier: the name of the modifier that made it (set by the core).
    """

    kind: str
    key: str
    action: str
    before: Any = None
    after: Any = None
    modifier: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object."""
        return {
            "modifier": self.modifier,
            "kind": self.kind,
            "key": self.key,
            "action": self.action,
            "before": self.before,
            "after": self.after,
        }


class ChangeTracker:
    """Collects the changes of a modifier chain and finds conflicts between modifiers.

    A change conflicts when a modifier changes, to another value, or removes
    something that an earlier modifier set (same kind and key).  Changes to
    what the engine wrote are not conflicts: changing the engine's spec is
    what modifiers are for.  A modifier that names the earlier one (or
    ``"*"``) in ``Modifier.overrides`` may do it; that is logged instead.
    """

    def __init__(self, logger: Any = None) -> None:
        #: Every change, in order, attributed.
        self.changes: list[Change] = []
        #: The first conflict found, as one line, or None.
        self.error: str | None = None
        #: Overrides that were allowed, as lines (also logged).
        self.overridden: list[str] = []
        self._owners: dict[tuple[str, str], Change] = {}
        self._logger = logger

    def recorder_for(self, info: Any) -> Callable[[Change], None]:
        """A recorder for :class:`nvshim.Spec` that attributes changes to ``info``'s modifier."""
        name: str = info.name
        overrides = tuple(getattr(info.modifier, "overrides", ()))

        def record(change: Change) -> None:
            change = attrs.evolve(change, modifier=name)
            self.changes.append(change)
            key = (change.kind, change.key)
            owner = self._owners.get(key)
            if owner is not None and owner.modifier != name:
                differs = change.action == "remove" or change.after != owner.after
                if differs:
                    if "*" in overrides or owner.modifier in overrides:
                        line = (
                            f"modifier '{name}' overrides {change.kind} {change.key!r} "
                            f"set by modifier '{owner.modifier}'"
                        )
                        self.overridden.append(line)
                        if self._logger is not None:
                            self._logger.info("%s", line)
                    elif self.error is None:
                        verb = "removes" if change.action == "remove" else "changes"
                        self.error = (
                            f"modifier '{name}' {verb} {change.kind} {change.key!r} "
                            f"that modifier '{owner.modifier}' set"
                        )
            if change.action == "remove":
                self._owners.pop(key, None)
            else:
                self._owners[key] = change

        return record
