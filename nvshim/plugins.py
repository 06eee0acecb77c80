"""The plugin host: one :class:`NvshimPluginManager` that loads, collects and reports.

Every plugin, the built-in ones included, is a module registered under the
``nvshim`` entry-point group.  :func:`get_plugin_manager` builds a fresh
manager (there is no import-time global), unloaded unless asked;
:meth:`NvshimPluginManager.load_entry_points` loads the entry points one at a
time so that one broken plugin is reported, in one line naming its
distribution, rather than hiding the others; and
:meth:`NvshimPluginManager.collect_modifiers` asks every plugin for its
modifiers and validators, checks them and orders them into a
:class:`ModifierSet`, which is everything a create needs from the plugins.

Every call into a plugin (``nvshim_modifiers``, a modifier, a validator) goes
through :func:`call_isolated`: a time limit, and any failure becomes one
:class:`~nvshim.errors.ModifierError` line naming the plugin and its
distribution.  Problems found while loading and collecting are
:class:`PluginProblem` records.
"""

from __future__ import annotations

# The C module, not `signal`: the same functions without building the
# Signals/Handlers enums at import (about 0.5 ms of every create).
import _signal as signal  # type: ignore[import-not-found,unused-ignore]
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs
import pluggy

from nvshim import _watchdog, hookspecs
from nvshim.errors import ModifierError, NvshimError, PluginError
from nvshim.modifier import Modifier

if TYPE_CHECKING:
    from nvshim._epcache import CachedEntryPoint, ScanRow
    from nvshim._log import Logger
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROBLEM_KINDS",
    "ModifierInfo",
    "ModifierSet",
    "NvshimPluginManager",
    "PluginInfo",
    "PluginProblem",
    "ValidatorInfo",
    "call_isolated",
    "collect_modifiers",
    "get_plugin_manager",
    "load_entry_points",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

#: The kinds of :class:`PluginProblem`: the entry point cannot be imported;
#: pluggy refused the plugin, or its entry-point name is taken; it implements
#: a hook that does not exist; its ``nvshim_modifiers`` failed or returned
#: something that is not a list of modifiers; two plugins provide a modifier
#: of the same name.
PROBLEM_KINDS = ("import", "register", "unknown-hook", "modifiers", "duplicate")


@attrs.frozen
class PluginInfo:
    """A plugin the host knows about.

    :param name: the entry-point name (or the name given to ``register``).
    :param dist: the distribution that ships it (None for in-process plugins).
    :param version: that distribution's version.
    :param value: the entry point's ``module:attr`` target.
    :param error: why it is broken, or None.
    :param disabled: whether it was skipped because ``disabled-modifiers`` names it.
    """

    name: str
    dist: Optional[str] = None
    version: Optional[str] = None
    value: Optional[str] = None
    error: Optional[str] = None
    disabled: bool = False

    @property
    def label(self) -> str:
        """``<dist> <version>`` or ``<name>`` for messages."""
        if self.dist:
            return f"{self.dist} {self.version}" if self.version else self.dist
        return self.name


@attrs.frozen
class PluginProblem:
    """Something wrong with a plugin; while there is any, creates refuse to run.

    :param plugin: the plugin (for ``duplicate``: the second one providing the name).
    :param kind: one of :data:`PROBLEM_KINDS`.
    :param message: what is wrong, one line.
    """

    plugin: PluginInfo
    kind: str
    message: str

    @property
    def broken(self) -> bool:
        """Whether the plugin itself is broken (every kind but ``duplicate``)."""
        return self.kind != "duplicate"

    @property
    def line(self) -> str:
        """The problem in one line, naming the plugin and its distribution."""
        if not self.broken:
            return self.message
        return f"plugin '{self.plugin.name}' ({self.plugin.label}) is broken: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``nvshim-ctl plugins --json``."""
        return {
            "plugin": self.plugin.name,
            "distribution": self.plugin.dist,
            "kind": self.kind,
            "message": self.message,
        }


class _Timeout(BaseException):
    """Raised in the main thread when a plugin overruns its time limit."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _describe(exc: BaseException) -> str:
    """``<type>: <first line>`` (or the type alone): a plugin's bug, in one line."""
    first = _first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def call_isolated(
    function: Callable[..., Any],
    *args: Any,
    label: str,
    timeout: float = 0,
    logger: Optional[Logger] = None,
) -> Any:
    """Call a plugin's ``function(*args)`` in isolation and return what it returns.

    :param label: who is called, for the message: ``modifier 'x' (dist 1.0)``.
    :param timeout: seconds before the call is interrupted (0: no limit; the
        limit is enforced with ``SIGALRM`` in the main thread only).
    :param logger: where a plugin's traceback goes, at debug level.
    :raises ModifierError: on any failure, with :attr:`~NvshimError.what` set
        to ``label``: a refusal (a :class:`ModifierError` or any other
        :class:`NvshimError` the plugin raised) keeps its first line; any
        other exception, ``SystemExit`` included, is a bug of the plugin,
        reported as ``<type>: <first line>``; an overrun as ``did not finish
        within <timeout> s``.  ``KeyboardInterrupt`` passes through.  Where
        the ``nvshim`` command enabled :mod:`nvshim._watchdog`, a call that
        runs :data:`nvshim._watchdog.GRACE_S` past ``timeout`` (the plugin
        caught the exception, or sits in a long C call) ends the process.
    """
    use_alarm = (
        timeout > 0
        and threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
    )
    previous: Any = None
    if use_alarm:

        def on_alarm(_signum: int, _frame: Any) -> None:
            raise _Timeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        # The hard limit, for a plugin that swallows _Timeout or sits in a
        # long C call (the nvshim command only: see nvshim._watchdog).
        with _watchdog.limit(
            timeout,
            f"nvshim: {label}: did not finish within {timeout:g} s and ignored the time"
            " limit; nvshim was stopped, the container not created",
        ):
            return function(*args)
    except _Timeout:
        raise ModifierError(f"did not finish within {timeout:g} s", what=label) from None
    except NvshimError as exc:
        error = exc if isinstance(exc, ModifierError) else ModifierError(str(exc))
        raise error.attribute(label, _first_line(exc) or "refused the container") from None
    except BaseException as exc:  # SystemExit from a plugin is a plugin bug too
        if isinstance(exc, KeyboardInterrupt):
            raise
        if logger is not None and logger.is_enabled_for(10):
            import traceback

            trace = traceback.format_exception(type(exc), exc, exc.__traceback__)
            logger.debug("%s", "".join(trace))
        raise ModifierError(_describe(exc), what=label) from None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@attrs.frozen
class ModifierInfo:
    """A modifier and where it comes from.

    :param status: ``active`` or ``disabled``.
    """

    modifier: Modifier
    plugin: PluginInfo
    status: str = "active"

    @property
    def name(self) -> str:
        """The modifier's name."""
        return self.modifier.name

    @property
    def label(self) -> str:
        """``modifier '<name>' (<dist> <version>)`` for messages."""
        return f"modifier '{self.name}' ({self.plugin.label})"

    def apply(
        self, spec: Spec, context: ModifierContext, timeout: float, logger: Optional[Logger]
    ) -> None:
        """Run the modifier on ``spec`` through :func:`call_isolated`."""
        call_isolated(
            self.modifier.modify, spec, context, label=self.label, timeout=timeout, logger=logger
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``nvshim-ctl plugins --json``."""
        config_class = self.modifier.config_class
        return {
            "name": self.modifier.name,
            "order": self.modifier.order,
            "description": self.modifier.description,
            "plugin": self.plugin.name,
            "distribution": self.plugin.dist,
            "version": self.plugin.version,
            "status": self.status,
            "overrides": list(self.modifier.overrides),
            "modes": list(self.modifier.modes),
            "config_table": (
                f"nvshim.plugins.{self.modifier.name}" if config_class is not None else None
            ),
        }


@attrs.frozen
class ValidatorInfo:
    """A plugin's ``nvshim_validate`` implementation.

    :param plugin: the plugin that implements it.
    :param function: the implementation.
    :param argnames: the hook arguments it takes (a subset, as pluggy allows).
    """

    plugin: PluginInfo
    function: Callable[..., Any]
    argnames: tuple[str, ...]

    @property
    def label(self) -> str:
        """``validator '<plugin>' (<dist> <version>)`` for messages."""
        return f"validator '{self.plugin.name}' ({self.plugin.label})"

    def check(
        self, spec: Spec, context: ModifierContext, timeout: float, logger: Optional[Logger]
    ) -> None:
        """Run the validator through :func:`call_isolated`; it must leave ``spec`` unchanged."""
        arguments = {"spec": spec, "context": context}
        before = spec.to_dict()
        args = [arguments[name] for name in self.argnames]
        call_isolated(self.function, *args, label=self.label, timeout=timeout, logger=logger)
        if spec.raw != before:
            raise ModifierError("changed the spec (validators must only read it)", what=self.label)


@attrs.frozen
class ModifierSet:
    """What :meth:`NvshimPluginManager.collect_modifiers` found: all a create needs.

    :param active: the modifiers to apply, ordered by ``(order, name)``.
    :param disabled: modifiers named in ``disabled-modifiers``.
    :param plugins: every plugin seen, broken ones included.
    :param problems: every problem found (broken plugin, duplicate name ...);
        a create refuses to run while there is any.
    :param validators: the plugins' ``nvshim_validate`` implementations, in
        the order they run.
    """

    active: tuple[ModifierInfo, ...]
    disabled: tuple[ModifierInfo, ...]
    plugins: tuple[PluginInfo, ...]
    problems: tuple[PluginProblem, ...] = ()
    validators: tuple[ValidatorInfo, ...] = ()

    @property
    def errors(self) -> tuple[str, ...]:
        """:attr:`problems` as lines, broken plugins first."""
        return tuple(p.line for p in self.problems)

    def all(self) -> list[ModifierInfo]:
        """Active and disabled modifiers, ordered like the chain."""
        return sorted(self.active + self.disabled, key=lambda m: (m.modifier.order, m.name))

    def check_usable(self) -> None:
        """Raise :class:`~nvshim.errors.PluginError` for the first problem, if any."""
        if self.problems:
            raise PluginError(self.problems[0].line)

    def validate(
        self, spec: Spec, context: ModifierContext, timeout: float, logger: Optional[Logger]
    ) -> None:
        """Run every validator on the finished ``spec``; the first refusal raises."""
        for validator in self.validators:
            validator.check(spec, context, timeout, logger)


class NvshimPluginManager(pluggy.PluginManager):
    """nvshim's plugin host: a pluggy manager with nvshim's hook specs.

    It knows where each plugin comes from (:meth:`plugin_info`), loads the
    entry points (:meth:`load_entry_points`), and collects the modifiers and
    validators (:meth:`collect_modifiers`).  Plugins registered with
    :meth:`register` (tests, tools embedding nvshim) are described by their
    registration name.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs.SpecModifier)
        self._infos: dict[str, PluginInfo] = {}
        #: Whether :meth:`load_entry_points` ran.
        self.loaded = False

    def plugin_info(self, name: str) -> PluginInfo:
        """What is known about the plugin registered (or refused) as ``name``."""
        return self._infos.get(name) or PluginInfo(name=name)

    def load_entry_points(
        self, disabled: Iterable[str] = (), *, timeout: float = 0
    ) -> list[PluginInfo]:
        """Load and register every ``nvshim`` entry point, one at a time.

        An entry point that fails to import, or that pluggy refuses, is not
        registered; it is returned with ``error`` set (one line, no
        traceback).  Entry points whose name is in ``disabled`` are not
        imported at all, so a broken plugin can be switched off in the config.
        Each import is limited to ``timeout`` seconds (0: no limit), as a
        modifier is (:func:`call_isolated`).
        """
        infos = _load_into(self, set(disabled), timeout)
        self._infos.update((info.name, info) for info in infos)
        self.loaded = True
        return infos

    def collect_modifiers(
        self,
        disabled: Iterable[str] = (),
        *,
        timeout: float = 0,
        logger: Optional[Logger] = None,
    ) -> ModifierSet:
        """Ask every registered plugin for its modifiers and validators, and order them.

        Each plugin's ``nvshim_modifiers`` is called on its own
        (:func:`call_isolated`), so one that raises or returns something that
        is not a :class:`Modifier` is marked broken without hiding the
        others.  Two modifiers with the same name are a problem naming both
        distributions.
        """
        return _collect(self, dict(self._infos), set(disabled), timeout, logger)


def get_plugin_manager(
    load: bool = False, disabled: Iterable[str] = (), *, timeout: float = 0
) -> NvshimPluginManager:
    """A new plugin manager with nvshim's hook specs.

    :param load: also load the ``nvshim`` entry points (all but ``disabled``);
        by default no plugin is registered, and the caller registers what it
        wants or calls :meth:`NvshimPluginManager.load_entry_points`.
    :param timeout: seconds each plugin's import may take (0: no limit).
    """
    pm = NvshimPluginManager()
    if load:
        pm.load_entry_points(disabled, timeout=timeout)
    return pm


def load_entry_points(pm: pluggy.PluginManager, disabled: Iterable[str] = ()) -> list[PluginInfo]:
    """Load every ``nvshim`` entry point into ``pm`` (see :class:`NvshimPluginManager`)."""
    if isinstance(pm, NvshimPluginManager):
        return pm.load_entry_points(disabled)
    return _load_into(pm, set(disabled))


def collect_modifiers(
    pm: pluggy.PluginManager,
    plugins: Sequence[PluginInfo] = (),
    disabled: Iterable[str] = (),
) -> ModifierSet:
    """Collect ``pm``'s modifiers: see :meth:`NvshimPluginManager.collect_modifiers`.

    ``plugins`` describes plugins loaded into a plain pluggy manager (for
    the distribution names in messages).
    """
    infos = dict(pm._infos) if isinstance(pm, NvshimPluginManager) else {}
    infos.update((p.name, p) for p in plugins)
    return _collect(pm, infos, set(disabled), 0, None)


def _entry_points() -> list[CachedEntryPoint]:
    """Every ``nvshim`` entry point, with its distribution's name and version.

    From a cache that is refreshed whenever the environment changes
    (:mod:`nvshim._epcache`): the scan below reads every installed
    distribution's metadata, which would make every create cost more the
    larger the environment is.
    """
    from nvshim._epcache import entry_points

    return entry_points(ENTRY_POINT_GROUP, _scan)


def _scan() -> list[ScanRow]:
    """Scan the installed distributions for ``nvshim`` entry points.

    Walks the distributions rather than ``entry_points(group=...)`` because
    Python 3.9 has no ``EntryPoint.dist``, and a plugin's distribution must
    be named in every message about it.  A distribution found twice on
    ``sys.path`` counts once, the first one, as import does.
    """
    from importlib.metadata import distributions

    seen: set[str] = set()
    found: list[ScanRow] = []
    for dist in distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:  # a distribution with broken metadata is not ours to judge
            continue
        key = (name or "").lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                # Where its metadata lives (a private attribute, absent for
                # distributions of other finders): the cache watches it.
                where = getattr(dist, "_path", None)
                found.append(
                    (ep.name, ep.value, ep.group, name, dist.version, where and str(where))
                )
    found.sort(key=lambda item: item[0])
    return found


def _load_into(
    pm: pluggy.PluginManager, disabled: set[str], timeout: float = 0
) -> list[PluginInfo]:
    infos = []
    for ep in _entry_points():
        info = PluginInfo(name=ep.name, dist=ep.dist, version=ep.version, value=ep.value)
        if ep.name in disabled:
            infos.append(attrs.evolve(info, disabled=True))
            continue
        if pm.has_plugin(ep.name):
            infos.append(
                attrs.evolve(
                    info,
                    error=f"entry point name {ep.name!r} is already registered by another plugin",
                )
            )
            continue
        try:
            # A plugin's import may raise anything, even SystemExit, or hang.
            plugin = call_isolated(
                ep.load, label=f"plugin '{ep.name}' ({info.label})", timeout=timeout
            )
        except ModifierError as exc:
            infos.append(attrs.evolve(info, error=f"cannot import {ep.value}: {exc.why}"))
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            infos.append(attrs.evolve(info, error=f"invalid plugin: {_describe(exc)}"))
            continue
        infos.append(info)
    return infos


def _load_kind(error: str) -> str:
    """The problem kind of an ``error`` set by :func:`_load_into`."""
    return "import" if error.startswith("cannot import ") else "register"


def _check_pending(
    pm: pluggy.PluginManager, infos: dict[str, PluginInfo], problems: list[PluginProblem]
) -> None:
    """Turn a hook implementation that matches no hook spec into a broken plugin."""
    for name, plugin in list(pm.list_name_plugin()):
        for attr in dir(plugin):
            if not attr.startswith("nvshim_"):
                continue
            if pm.parse_hookimpl_opts(plugin, attr) is None:
                continue
            caller = getattr(pm.hook, attr, None)
            if caller is None or not caller.has_spec():
                message = f"unknown hook {attr!r}"
                infos[name] = attrs.evolve(infos.get(name) or PluginInfo(name=name), error=message)
                problems.append(PluginProblem(infos[name], "unknown-hook", message))
                pm.unregister(plugin)
                break


def _modifiers_of(returned: Any) -> tuple[list[Modifier], Optional[str]]:
    """The modifiers a ``nvshim_modifiers`` returned, or why that is not a list of them."""
    if returned is None:
        return [], None
    if isinstance(returned, (Modifier, str, bytes)) or not isinstance(returned, Iterable):
        # Iterating these would give a confusing error, or characters.
        return [], (
            f"nvshim_modifiers() returned {type(returned).__name__} "
            f"{returned!r:.60}, not an iterable of nvshim.Modifier"
        )
    try:
        items = list(returned)
    except Exception as exc:
        return [], f"nvshim_modifiers() raised {_describe(exc)}"
    bad = [item for item in items if not isinstance(item, Modifier)]
    if bad:
        return [], (
            f"nvshim_modifiers() returned {type(bad[0]).__name__} "
            f"{bad[0]!r:.60}, not a nvshim.Modifier"
        )
    return items, None


def _collect(
    pm: pluggy.PluginManager,
    infos: dict[str, PluginInfo],
    disabled: set[str],
    timeout: float,
    logger: Optional[Logger],
) -> ModifierSet:
    problems: list[PluginProblem] = [
        PluginProblem(info, _load_kind(info.error), info.error)
        for info in infos.values()
        if info.error
    ]
    _check_pending(pm, infos, problems)
    duplicates: list[PluginProblem] = []
    by_name: dict[str, ModifierInfo] = {}
    for impl in reversed(pm.hook.nvshim_modifiers.get_hookimpls()):
        plugin = infos.get(impl.plugin_name) or PluginInfo(name=impl.plugin_name)
        label = f"plugin '{plugin.name}' ({plugin.label})"
        try:
            # list(): a generator's body runs inside the time limit too.
            returned = call_isolated(
                lambda f=impl.function: _list_if_generator(f()),
                label=label,
                timeout=timeout,
                logger=logger,
            )
        except ModifierError as exc:
            why = exc.why if exc.why.startswith("did not finish") else f"raised {exc.why}"
            message = f"nvshim_modifiers() {why}"
            infos[plugin.name] = attrs.evolve(plugin, error=message)
            problems.append(PluginProblem(infos[plugin.name], "modifiers", message))
            continue
        items, error = _modifiers_of(returned)
        if error is not None:
            infos[plugin.name] = attrs.evolve(plugin, error=error)
            problems.append(PluginProblem(infos[plugin.name], "modifiers", error))
            continue
        for modifier in items:
            other = by_name.get(modifier.name)
            if other is not None:
                duplicates.append(
                    PluginProblem(
                        plugin,
                        "duplicate",
                        f"modifier name {modifier.name!r} is provided twice: by plugin "
                        f"'{other.plugin.name}' ({other.plugin.label}) and by plugin "
                        f"'{plugin.name}' ({plugin.label})",
                    )
                )
                continue
            status = "disabled" if modifier.name in disabled else "active"
            by_name[modifier.name] = ModifierInfo(modifier=modifier, plugin=plugin, status=status)
    validators = tuple(
        ValidatorInfo(
            plugin=infos.get(impl.plugin_name) or PluginInfo(name=impl.plugin_name),
            function=impl.function,
            argnames=tuple(impl.argnames),
        )
        for impl in reversed(pm.hook.nvshim_validate.get_hookimpls())
    )
    ordered = sorted(by_name.values(), key=lambda m: (m.modifier.order, m.name))
    return ModifierSet(
        active=tuple(m for m in ordered if m.status == "active"),
        disabled=tuple(m for m in ordered if m.status != "active"),
        plugins=tuple(sorted(infos.values(), key=lambda p: p.name)),
        problems=tuple(problems) + tuple(duplicates),
        validators=validators,
    )


def _list_if_generator(value: Any) -> Any:
    """Run a generator returned by ``nvshim_modifiers`` to its end (inside the time limit)."""
    import types

    return list(value) if isinstance(value, types.GeneratorType) else value
