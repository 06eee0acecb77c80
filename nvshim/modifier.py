"""What a plugin gives the core: :class:`Modifier` records, and what it gets back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from nvshim.errors import ModifierError, RequestError

if TYPE_CHECKING:
    from nvshim._log import Logger
    from nvshim.config import Config
    from nvshim.requests import ContainerRequest
    from nvshim.spec import Spec

__all__ = ["Modifier", "ModifierContext", "ModifierError"]


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
    :param container_request: what the container asks for, read once by the
        core from the engine's spec before the first modifier ran (see
        :meth:`request`); None when the context was built by hand.
    :param request_error: why that request could not be read, or None.
    """

    config: Config
    mode: str
    bundle: Optional[str]
    argv: tuple[str, ...]
    logger: Logger
    options: Any = None
    modifier: str = ""
    container_request: Optional[ContainerRequest] = None
    request_error: Optional[RequestError] = None

    def request(self, spec: Optional[Spec] = None) -> ContainerRequest:
        """What the container asks for (devices, capabilities, requirements).

        The core reads the request once, from the spec as the engine wrote
        it and with the options the config sets, and every modifier gets
        that reading (:attr:`container_request`).  ``spec`` is read only
        when this context was built without one (a test's own context).  A
        malformed request (a legacy CUDA image with a bad ``CUDA_VERSION``)
        raises :class:`ModifierError`, which refuses the container.
        """
        if self.request_error is not None:
            raise ModifierError(str(self.request_error))
        if self.container_request is not None:
            return self.container_request
        if spec is None:
            raise ValueError("this context holds no request: pass the spec to read it from")
        from nvshim.requests import read_container_request

        try:
            return read_container_request(spec, self.config)
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
    :param modes: the modes this modifier serves (``legacy``, ``csv``,
        ``cdi`` ...); the core runs it only for a container in one of them.
        Empty (the default): every mode.
    """

    name: str = attrs.field(validator=_check_name)
    modify: Callable[[Spec, ModifierContext], None] = attrs.field(
        validator=attrs.validators.is_callable()
    )
    order: int = attrs.field(default=50, validator=attrs.validators.instance_of(int))
    description: str = ""
    config_class: Optional[type] = None
    overrides: tuple[str, ...] = attrs.field(default=(), converter=_names)
    modes: tuple[str, ...] = attrs.field(default=(), converter=_names)

    def serves(self, mode: str) -> bool:
        """Whether this modifier runs for a container in ``mode``."""
        return not self.modes or mode in self.modes
