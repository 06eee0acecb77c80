"""Building attrs records from JSON/TOML data without cattrs, when nothing needs converting.

Importing cattrs and generating its structuring functions costs more than the
rest of a create (see docs/performance.md).  Data that is already valid needs
no conversion beyond lists to tuples and ints to floats, so :func:`structure`
builds the record directly; at the first thing it does not expect (a value
not exactly of its field's kind, an unknown key where those are errors, a
validator that refuses) it returns :data:`GIVE_UP`, and the caller's cattrs
converter structures the same data, raising the errors it always raised.
Giving up is always safe; so the checks are strict (exact types).

Shared by the configuration (:mod:`nvshim.config`) and the records
(:mod:`nvshim.records`), which differ only in their plans: which key feeds
which field, and the field's kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

__all__ = ["GIVE_UP", "KINDS", "Plan", "field_kind", "plan_of", "structure"]

#: What :func:`structure` returns when the caller's converter must decide.
GIVE_UP: Any = object()

#: The field kinds :func:`structure` builds; any other field makes it give up.
KINDS = frozenset(
    {"str", "optional-str", "bool", "int", "optional-int", "float", "strings", "attrs"}
)

#: ``(field name, key in the data, kind or None, field type)`` per field.
Plan = Sequence[tuple[str, str, Optional[str], Any]]

_BY_TYPE: dict[Any, str] = {
    str: "str",
    bool: "bool",
    int: "int",
    float: "float",
    tuple[str, ...]: "strings",
    Optional[str]: "optional-str",
    Optional[int]: "optional-int",
}


def field_kind(field_type: Any) -> Optional[str]:
    """The kind of a (resolved) attrs field type, or None when :func:`structure` cannot build it."""
    import attrs

    try:
        kind = _BY_TYPE.get(field_type)
    except TypeError:  # an unhashable annotation
        return None
    if kind is not None:
        return kind
    if isinstance(field_type, type) and attrs.has(field_type):
        return "attrs"
    return None


def _value(kind: Optional[str], value: Any) -> Any:
    """``value`` as the field takes it, or :data:`GIVE_UP`."""
    if kind == "str":
        return value if type(value) is str else GIVE_UP
    if kind == "optional-str":
        return value if value is None or type(value) is str else GIVE_UP
    if kind == "bool":
        return value if type(value) is bool else GIVE_UP
    if kind == "int":
        return value if type(value) is int else GIVE_UP
    if kind == "optional-int":
        return value if value is None or type(value) is int else GIVE_UP
    if kind == "float":
        if type(value) not in (int, float):
            return GIVE_UP
        try:
            return float(value)
        except OverflowError:
            return GIVE_UP
    if kind == "strings":
        if type(value) is not list or not all(type(v) is str for v in value):
            return GIVE_UP
        return tuple(value)
    return GIVE_UP


def structure(
    cls: type,
    data: Any,
    plan: Plan,
    *,
    strict: bool,
    nested: Optional[Callable[[type, Any], Any]] = None,
) -> Any:
    """``cls`` built from the mapping ``data`` following ``plan``, or :data:`GIVE_UP`.

    :param strict: an unknown key of ``data`` is an error (so: give up).
    :param nested: builds a field of kind ``attrs`` (``nested(field_type,
        value)``); without it such a field gives up.
    """
    if type(data) is not dict:
        return GIVE_UP
    kwargs: dict[str, Any] = {}
    for name, key, kind, field_type in plan:
        if key not in data:
            continue
        raw = data[key]
        if kind == "attrs" and nested is not None:
            value = nested(field_type, raw)
        else:
            value = _value(kind, raw)
        if value is GIVE_UP:
            return GIVE_UP
        kwargs[name] = value
    if strict and len(data) != len(kwargs):
        return GIVE_UP  # an unknown key (or an underscore spelling) to report
    try:
        return cls(**kwargs)
    except Exception:  # a missing field, a validator: the converter reports it
        return GIVE_UP


def plan_of(
    cls: type, key_of: Callable[[str], str], omit: frozenset[str] = frozenset()
) -> tuple[tuple[str, str, Optional[str], Any], ...]:
    """The plan of a (resolved) attrs class: each field's key is ``key_of(name)``."""
    import attrs

    return tuple(
        (f.name, key_of(f.name), field_kind(f.type), f.type)
        for f in attrs.fields(cls)
        if f.name not in omit
    )

