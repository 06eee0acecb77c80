"""What a plugin gives the core: :class:`Modifier` records, and what it gets back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

if TYPE_CHECKING:
    from nvshim._log import Logger
    from nvshim.config import Config
    from nvshim.requests import ContainerRequest
    from nvshim.spec import Spec

__all__ = ["Modifier", "ModifierContext", "ModifierError"]


class ModifierError(Exception):
    """Raised by a modifier to refuse a container.

    The message reaches the user as
    ``nvshim: modifier '<name>' (<dist> <version>): <message>``.
    """


def _check_name(_inst: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value or value.strip() != value or " " in value:
        raise ValueError(f"a modifier name must be a non-empty word, got {value!r}")


def _names(value: Iterable[str]) -> tuple[str, ...]:
    # A typed converter: with ``converter=tuple`` mypy's attrs plugin types
    # the argument as an unsolvable ``Iterable[_T_co]`` and rejects every call.
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class ModifierContext:
    """What a modifier knows about the container being created.

    :param config: the typed configuration (:class:`nvshim.config.Config`).
    :param mode: the resolved mode for this container: ``legacy``, ``csv``, ``cdi``
        or ``jit-cdi``.
    :param bundle: the absolute bundle path, or None when a bare Spec is modified.
    :param argv: the runtime's argv as the engine passed it.
    :param logger: nvshim's logger (``debug``, ``info``, ``warning``, ``error``).
    :param options: the modifier's ``[nvshim.plugins.<name>]`` table, structured
        into its ``config_class`` when it declares one, else a plain dict.
    :param modifier: the name of the modifier being run.
    """

    config: Config
    mode: str
    bundle: Optional[str]
    argv: tuple[str, ...]
    logger: Logger
    options: Any = None
    modifier: str = ""

    def request(self, spec: Spec) -> ContainerRequest:
        """What the container asks for (devices, capabilities, requirements).

        Read from ``spec`` as it is now, with the options the config sets;
        a malformed request (a legacy CUDA image with a bad ``CUDA_VERSION``)
        raises :class:`ModifierError`, which refuses the container.
        """
        from nvshim.requests import RequestError, RequestOptions, read_request

        try:
            return read_request(spec.raw, RequestOptions.from_config(self.config))
        except RequestError as exc:
            raise ModifierError(str(exc)) from None


@attrs.frozen
class Modifier:
    """A named step of the modifier chain, as returned by ``nvshim_modifiers()``.

    :param name: unique name; it is what ``[nvshim] disabled-modifiers`` and
        ``[nvshim.plugins.<name>]`` refer to.
    :param modify: ``modify(spec, context)`` edits the :class:`nvshim.Spec` in
        place; it raises :class:`ModifierError` to refuse the container.
    :param order: modifiers run by ascending ``(order, name)``; built-ins use
        10 (docker-gpus-detector), 50 (legacy-hook, csv-discovery, cdi).
    :param description: one line for ``nvshim-ctl plugins``.
    :param config_class: an attrs class for the modifier's
        ``[nvshim.plugins.<name>]`` table; nvshim structures the table into it
        (unknown keys are errors) and passes it as ``context.options``.
    :param overrides: names of modifiers whose changes this one may replace or
        remove on purpose (``"*"`` for any); such changes are logged instead
        of being refused as conflicts.
    """

    name: str = attrs.field(validator=_check_name)
    modify: Callable[[Spec, ModifierContext], None] = attrs.field(
        validator=attrs.validators.is_callable()
    )
    order: int = attrs.field(default=50, validator=attrs.validators.instance_of(int))
    description: str = ""
    config_class: Optional[type] = None
    overrides: tuple[str, ...] = attrs.field(default=(), converter=_names)
