"""The runtime factory and the modifier chain.

:func:`build_runtime` turns a runtime command line and a configuration into a
:class:`Runtime`, which modifies the bundle's spec on ``create``/``run`` and
then execs the low-level runtime.  :func:`apply_modifiers` runs the chain on a
bundle or a :class:`~nvshim.Spec` without exec'ing anything: the library entry
point for tools, and what ``nvshim-ctl modify`` uses.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional, Union

import attrs

from nvshim._argv import Args, ArgvError, parse_args
from nvshim._configfile import ConfigError
from nvshim._log import Logger
from nvshim._lookup import RuntimeNotFound, find_runtime
from nvshim.changes import Change
from nvshim.config import Config, load_config, plugin_options
from nvshim.errors import NvshimError
from nvshim.modifier import Modifier, ModifierContext, ModifierError
from nvshim.plugins import (
    ModifierSet,
    collect_modifiers,
    get_plugin_manager,
    load_entry_points,
)
from nvshim.spec import Spec, SpecError

if TYPE_CHECKING:
    import pluggy

    from nvshim.plugins import ModifierInfo, PluginInfo

__all__ = ["ApplyResult", "Runtime", "apply_modifiers", "build_runtime", "load_modifiers"]


@attrs.frozen
class ApplyResult:
    """What :func:`apply_modifiers` did.

    :param spec: the modified spec.
    :param changes: every change, attributed to its modifier, in order.
    :param mode: the resolved mode.
    :param applied: the names of the modifiers that ran, in order.
    :param written: whether config.json was rewritten.
    :param mode_reason: why the container got ``mode`` (``configured``,
        ``forced``, or the rule of mode ``auto`` that picked it).
    """

    spec: Spec
    changes: tuple[Change, ...]
    mode: str
    applied: tuple[str, ...]
    written: bool = False
    mode_reason: str = ""


class _ModifierTimeout(BaseException):
    """Raised in the main thread when a modifier overruns its time limit."""


def load_modifiers(
    config: Config, plugin_manager: pluggy.PluginManager | None = None
) -> tuple[pluggy.PluginManager, ModifierSet]:
    """Build the plugin manager (unless given) and collect the modifiers.

    With ``plugin_manager`` given, nothing is loaded from entry points: the
    caller registered what it wants (tests, tools embedding nvshim).
    """
    disabled = config.nvshim.disabled_modifiers
    if plugin_manager is None:
        pm = get_plugin_manager()
        plugins = load_entry_points(pm, disabled)
    else:
        pm = plugin_manager
        plugins = []
    return pm, collect_modifiers(pm, plugins, disabled)


def _resolve_mode(config: Config, spec: Spec, logger: Logger) -> tuple[str, str]:
    """``(mode, reason)`` for this container (see :mod:`nvshim.modes`)."""
    from nvshim.modes import decide_mode

    configured = config.mode
    if configured != "auto":
        return configured, "configured"
    from nvshim.requests import RequestOptions, read_request

    # Devices asked for through CDI annotations (Kubernetes' way) come first,
    # as in NVIDIA's runtime; else the request's (env, mounts, legacy image).
    prefixes = config.nvidia_container_runtime.modes.cdi.annotation_prefixes
    devices: list[str] = []
    for key in sorted(spec.annotations):
        if any(key.startswith(p) for p in prefixes if p):
            devices.extend(n.strip() for n in spec.annotations[key].split(",") if n.strip())
    if not devices:
        request = read_request(spec.raw, RequestOptions.from_config(config))
        devices = list(request.devices if request.gpu else ())
    decision = decide_mode(configured, devices, driver_root=config.nvidia_container_cli.root)
    logger.debug("mode auto resolved to %s (%s)", decision.mode, decision.reason)
    return decision.mode, decision.reason


def request_options(config: Config) -> Any:
    """The :class:`nvshim.requests.RequestOptions` that ``config`` sets.

    Kept for library users; see :meth:`nvshim.requests.RequestOptions.from_config`.
    """
    from nvshim.requests import RequestOptions

    return RequestOptions.from_config(config)


def _modifier_label(info: ModifierInfo) -> str:
    return f"modifier '{info.name}' ({info.plugin.label})"


def _run_modifier(
    info: ModifierInfo, spec: Spec, context: ModifierContext, timeout: float, logger: Logger
) -> None:
    """Run one modifier with its time limit; raise :class:`NvshimError` on failure."""
    _call_limited(
        lambda: info.modifier.modify(spec, context), _modifier_label(info), timeout, logger
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _call_limited(call: Callable[[], object], label: str, timeout: float, logger: Logger) -> None:
    """Run a plugin's ``call`` with a time limit; any failure is one :class:`NvshimError` line."""
    use_alarm = (
        timeout > 0
        and threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
    )
    previous: Any = None
    if use_alarm:

        def on_alarm(_signum: int, _frame: Any) -> None:
            raise _ModifierTimeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        call()
    except _ModifierTimeout:
        raise NvshimError(label, f"did not finish within {timeout:g} s") from None
    except ModifierError as exc:
        raise NvshimError(label, _first_line(exc) or "refused the container") from None
    except NvshimError:
        raise
    except BaseException as exc:  # SystemExit from a plugin is a plugin bug too
        if isinstance(exc, KeyboardInterrupt):
            raise
        if logger.is_enabled_for(10):
            import traceback

            trace = traceback.format_exception(type(exc), exc, exc.__traceback__)
            logger.debug("%s", "".join(trace))
        text = _first_line(exc)
        why = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        raise NvshimError(label, why) from None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def apply_modifiers(
    target: Union[Spec, str, os.PathLike[str]],
    *,
    config: Optional[Config] = None,
    mode: Optional[str] = None,
    argv: Sequence[str] = (),
    plugin_manager: Optional[pluggy.PluginManager] = None,
    modifiers: Optional[ModifierSet] = None,
    logger: Optional[Logger] = None,
    write: bool = True,
) -> ApplyResult:
    """Apply the modifier chain to a bundle folder or a :class:`~nvshim.Spec`.

    :param target: a bundle folder (its ``config.json`` is loaded and, when
        ``write`` is true and something changed, written back atomically) or
        a Spec (changed in place, nothing written).
    :param config: the configuration (default: loaded as the runtime does).
    :param mode: force a mode instead of resolving ``config``'s.
    :param argv: the runtime argv to show modifiers.
    :param plugin_manager: use this manager's plugins instead of entry points.
    :param modifiers: an already collected :class:`~nvshim.plugins.ModifierSet`.
    :param logger: where to log (default: nowhere).
    :param write: write config.json back (bundles only).
    :raises NvshimError: when the spec cannot be loaded, a plugin is broken,
        a modifier refuses or fails, or the result cannot be written.  The
        bundle is then left exactly as it was.
    """
    log = logger if logger is not None else Logger("error")
    if config is None:
        try:
            config = load_config()
        except ConfigError as exc:
            raise NvshimError("bad configuration", str(exc)) from None
    pm: Optional[pluggy.PluginManager]
    if modifiers is None:
        try:
            pm, modifiers = load_modifiers(config, plugin_manager)
        except Exception as exc:  # pluggy itself failing is a bug worth one line
            raise NvshimError("cannot load plugins", f"{type(exc).__name__}: {exc}") from None
    else:
        pm = plugin_manager
    if modifiers.errors:
        raise NvshimError("plugin error", modifiers.errors[0])

    bundle: Optional[str] = None
    config_json: Optional[str] = None
    if isinstance(target, Spec):
        spec = target
    else:
        bundle = os.path.abspath(os.fspath(target))
        if not os.path.isdir(bundle):
            raise NvshimError("cannot load the spec", f"bundle {bundle} is not a folder")
        config_json = os.path.join(bundle, "config.json")
        try:
            spec = Spec.load(config_json)
        except SpecError as exc:
            raise NvshimError("cannot load the spec", str(exc)) from None

    mode_reason = "forced"
    if mode is None:
        try:
            mode, mode_reason = _resolve_mode(config, spec, log)
        except (SpecError, ValueError) as exc:
            # ValueError: nvshim.requests.RequestError, e.g. a legacy CUDA
            # image whose CUDA_VERSION is not a version.
            raise NvshimError("cannot read the container's request", str(exc)) from None
    log.debug("mode: %s", mode)

    from nvshim.changes import ChangeTracker

    tracker = ChangeTracker(log)
    applied: list[str] = []
    previous_recorder = spec._recorder
    try:
        for info in modifiers.active:
            modifier: Modifier = info.modifier
            try:
                options = plugin_options(config, modifier.name, modifier.config_class)
            except ConfigError as exc:
                raise NvshimError("bad configuration", str(exc)) from None
            context = ModifierContext(
                config=config,
                mode=mode,
                bundle=bundle,
                argv=tuple(argv),
                logger=log,
                options=options,
                modifier=modifier.name,
            )
            spec._recorder = tracker.recorder_for(info, spec)
            before = len(tracker.changes)
            _run_modifier(info, spec, context, config.nvshim.modifier_timeout, log)
            tracker.finish()  # attributes what it changed through Spec.raw
            applied.append(modifier.name)
            if tracker.error is not None:
                raise NvshimError("conflicting modifiers", tracker.error)
            made = tracker.changes[before:]
            log.debug(
                "modifier %s applied: %d change(s)%s",
                modifier.name,
                len(made),
                "".join(f"; {c.action} {c.kind} {c.key}" for c in made[:20]),
            )
    finally:
        spec._recorder = previous_recorder

    _validate(spec, tracker, config, mode, bundle, argv, log, pm, modifiers.plugins)

    written = False
    if config_json is not None and write and tracker.changes:
        try:
            spec.save(config_json)
        except SpecError as exc:
            raise NvshimError("cannot write the spec", str(exc)) from None
        written = True
    return ApplyResult(
        spec=spec,
        changes=tuple(tracker.changes),
        mode=mode,
        applied=tuple(applied),
        written=written,
        mode_reason=mode_reason,
    )


def _validate(
    spec: Spec,
    tracker: Any,
    config: Config,
    mode: str,
    bundle: Optional[str],
    argv: Sequence[str],
    log: Logger,
    pm: Optional[pluggy.PluginManager],
    plugins: Sequence[PluginInfo] = (),
) -> None:
    """nvshim's own checks of the finished spec, then the plugins' ``nvshim_validate``.

    Each validator runs under the modifier time limit and must leave the
    spec as it found it.
    """
    from nvshim.validation import validate_spec

    problem = validate_spec(spec, tracker.changes, tracker.describe)
    if problem is not None:
        raise NvshimError("invalid spec", problem)
    if pm is None:
        return
    context = ModifierContext(
        config=config, mode=mode, bundle=bundle, argv=tuple(argv), logger=log
    )
    labels = {p.name: p.label for p in plugins}
    arguments = {"spec": spec, "context": context}
    for impl in reversed(pm.hook.nvshim_validate.get_hookimpls()):
        name = impl.plugin_name
        label = f"validator '{name}' ({labels.get(name, name)})"
        before = spec.to_dict()
        # A hookimpl may take a subset of the hook's arguments, as pluggy allows.
        args = [arguments[arg] for arg in impl.argnames]
        call = functools.partial(impl.function, *args)
        _call_limited(call, label, config.nvshim.modifier_timeout, log)
        if spec.raw != before:
            raise NvshimError(label, "changed the spec (validators must only read it)")


class Runtime:
    """A runtime invocation, ready to run: built by :func:`build_runtime`."""

    def __init__(
        self,
        argv: Sequence[str],
        args: Args,
        config: Config,
        logger: Logger,
        plugin_manager: Optional[pluggy.PluginManager] = None,
    ) -> None:
        #: The full argv (argv[0] is nvshim's own path).
        self.argv = tuple(argv)
        #: The parsed command line.
        self.args = args
        #: The configuration.
        self.config = config
        #: The logger (config debug file and ``--log`` file).
        self.logger = logger
        self._plugin_manager = plugin_manager
        self._modifiers: Optional[ModifierSet] = None

    @property
    def modifiers(self) -> ModifierSet:
        """The collected modifiers (loaded on first use)."""
        if self._modifiers is None:
            self._plugin_manager, self._modifiers = load_modifiers(
                self.config, self._plugin_manager
            )
        return self._modifiers

    def find_runtime(self) -> str:
        """The low-level runtime's absolute path; :class:`NvshimError` if none is found."""
        try:
            return find_runtime(
                self.config.runtime.runtimes, self_paths=(self.argv[0] if self.argv else "",)
            )
        except RuntimeNotFound as exc:
            raise NvshimError("cannot find the low-level runtime", str(exc)) from None

    def modify(self) -> Optional[ApplyResult]:
        """Modify the bundle's spec when the subcommand creates a container."""
        if not self.args.is_create:
            return None
        try:
            bundle = self.args.bundle()
        except ArgvError as exc:
            raise NvshimError("bad arguments", str(exc)) from None
        self.logger.debug("bundle: %s", bundle)
        return apply_modifiers(
            bundle,
            config=self.config,
            argv=self.argv,
            plugin_manager=self._plugin_manager,
            modifiers=self.modifiers,
            logger=self.logger,
        )

    def exec(self, runtime: Optional[str] = None) -> NoReturn:
        """Replace this process with the low-level runtime, same arguments."""
        path = runtime if runtime is not None else self.find_runtime()
        self.logger.debug("exec %s", path)
        self.logger.close()
        exec_runtime(path, self.argv[1:])

    def run(self) -> NoReturn:
        """Modify (on create), then exec the runtime; :class:`NvshimError` on failure.

        The runtime is looked up before the spec is touched, so a host
        without runc fails with config.json unchanged.
        """
        runtime = self.find_runtime()
        if self.args.version:
            self.print_version()
        self.modify()
        self.exec(runtime)

    def print_version(self) -> None:
        """Print nvshim's version and its active modifiers to stdout."""
        from nvshim._version import __version__

        lines = [f"nvshim version {__version__}"]
        try:
            modifiers = self.modifiers
            names = ", ".join(m.name for m in modifiers.active) or "none"
            lines.append(f"modifiers: {names}")
            lines.extend(f"plugin error: {e}" for e in modifiers.errors)
        except Exception as exc:  # --version must work even with broken plugins
            lines.append(f"modifiers: unknown ({type(exc).__name__}: {exc})")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def exec_runtime(path: str, args: Sequence[str]) -> NoReturn:
    """``execv`` the runtime with ``args``: fds, env, cwd and stdio are inherited."""
    try:
        os.execv(path, [path, *args])
    except OSError as exc:
        raise NvshimError(f"cannot exec {path}", exc.strerror or str(exc)) from None


def make_logger(config: Config, args: Optional[Args]) -> Logger:
    """The logger for a runtime call: the config's debug file and ``--log``."""
    level = "debug" if args is not None and args.debug else config.runtime.log_level
    logger = Logger(level)
    logger.add_file(config.runtime.debug, "text")
    if args is not None and args.log_file:
        logger.add_file(args.log_file, "json" if args.log_format == "json" else "text")
    return logger


def build_runtime(
    argv: Sequence[str],
    config: Optional[Config] = None,
    *,
    plugin_manager: Optional[pluggy.PluginManager] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Runtime:
    """The factory: a :class:`Runtime` for ``argv`` (``argv[0]`` is the program).

    :param config: the configuration; loaded from the usual place if None.
    :param plugin_manager: plugins to use instead of the entry points.
    :param environ: the environment to find the config file in.
    :raises NvshimError: on a bad command line or a bad configuration.
    """
    try:
        args = parse_args(argv[1:])
    except ArgvError as exc:
        raise NvshimError("bad arguments", str(exc)) from None
    if config is None:
        try:
            config = load_config(environ=environ)
        except ConfigError as exc:
            raise NvshimError("bad configuration", str(exc)) from None
    logger = make_logger(config, args)
    logger.debug("argv: %s", list(argv))
    logger.debug("config: %s", config.source or "none (defaults)")
    for key in config.ignored_keys:
        logger.debug("config: ignoring unknown key %s", key)
    return Runtime(argv, args, config, logger, plugin_manager)
