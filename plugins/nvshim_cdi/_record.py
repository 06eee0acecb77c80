"""A frozen record base for the cdi plugin's parsed-spec classes, without attrs.

The spec records (:mod:`nvshim_cdi._spec`) are private to the plugin and are
built on every cdi and jit-cdi create.  As ``attrs.frozen`` classes, building
them at import cost about 0.4 ms each (attrs generates and compiles each
class's methods); a plain class with ``__slots__`` costs nothing beyond its
module's byte code.  The behaviour is that of ``attrs.frozen``: keyword or
positional construction, equality and hash by class and fields, attrs' repr,
assignment refused with :class:`attrs.exceptions.FrozenInstanceError`, and
copy/pickle by fields.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs.exceptions import FrozenInstanceError

__all__ = ["FrozenRecord"]


class FrozenRecord:
    """A subclass names its fields in ``_fields`` (in order; also its
    ``__slots__`` and ``__match_args__``) and sets each once in its ``__init__``."""

    # attrs' slotted classes can be weakly referenced: so can these.
    __slots__ = ("__weakref__",)
    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError()

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((self.__class__.__qualname__, *self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{self.__class__.__qualname__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, self._values()
