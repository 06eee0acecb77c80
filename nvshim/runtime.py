"""The create path: the modifier chain, and the runtime call that ends in ``execv``.

:func:`build_runtime` turns a parsed command line and a configuration into a
:class:`Runtime`; :meth:`Runtime.run` looks the low-level runtime up, loads
the plugins, runs :func:`apply_modifiers` on the bundle and execs the runtime
(:mod:`nvshim._exec`).  :func:`apply_modifiers` runs the chain on a bundle or
a :class:`~nvshim.Spec` without exec'ing anything: the library entry point for
tools, and what ``nvshim-ctl modify`` uses.  See docs/architecture.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn, Optional, Union

import attrs

from nvshim import _watchdog
from nvshim._argv import Args, parse_command_line
from nvshim._exec import exec_runtime, find_runtime
from nvshim._log import Logger
from nvshim.changes import Change, ChangeTracker
from nvshim.config import Config, load_config, plugin_options
from nvshim.errors import ModifierError, RequestError, SpecError
from nvshim.modifier import ModifierContext
from nvshim.plugins import ModifierSet, NvshimPluginManager, collect_modifiers, get_plugin_manager
from nvshim.spec import Spec

if TYPE_CHECKING:
    import pluggy

    from nvshim.requests import ContainerRequest

__all__ = [
    "ApplyResult",
    "Runtime",
    "apply_modifiers",
    "build_runtime",
    "exec_runtime",
    "load_modifiers",
    "make_logger",
]


@attrs.frozen
class ApplyResult:
    """What :func:`apply_modifiers` did.

    :param spec: the modified spec.
    :param changes: every change, attributed to its modifier, in order.
    :param mode: the resolved mode.
    :param applied: the names of the active modifiers of the chain, in order
        (those that do not serve the mode included, as no-ops).
    :param written: whether config.json was rewritten.
    :param skipped: the names of those of :attr:`applied` that were not
        called because they do not serve the mode (``Modifier.modes``).
    :param mode_reason: why the container got ``mode`` (``configured``,
        ``forced``, or the rule of mode ``auto`` that picked it).
    """

    spec: Spec
    changes: tuple[Change, ...]
    mode: str
    applied: tuple[str, ...]
    written: bool = False
    skipped: tuple[str, ...] = ()
    mode_reason: str = ""


def load_modifiers(
    config: Config, plugin_manager: Optional[pluggy.PluginManager] = None
) -> tuple[pluggy.PluginManager, ModifierSet]:
    """The plugin manager and what it collected: modifiers, validators, problems.

    Without ``plugin_manager`` the ``nvshim`` entry points are loaded (all
    but ``[nvshim] disabled-modifiers``); with one, nothing is loaded: the
    caller registered what it wants (tests, tools embedding nvshim).
    """
    disabled = config.nvshim.disabled_modifiers
    timeout = config.nvshim.modifier_timeout
    pm = (
        plugin_manager
        if plugin_manager is not None
        else get_plugin_manager(True, disabled, timeout=timeout)
    )
    if isinstance(pm, NvshimPluginManager):
        return pm, pm.collect_modifiers(disabled, timeout=timeout)
    return pm, collect_modifiers(pm, disabled=disabled)


def _read_request(
    spec: Spec, config: Config
) -> tuple[Optional[ContainerRequest], Optional[RequestError]]:
    """The container's request, read once for the whole chain, or why it cannot be read."""
    from nvshim.requests import read_container_request

    try:
        return read_container_request(spec, config), None
    except RequestError as exc:
        return None, exc


def _resolve_mode(
    config: Config,
    spec: Spec,
    request: Optional[ContainerRequest],
    error: Optional[RequestError],
    logger: Logger,
) -> tuple[str, str]:
    """``(mode, reason)`` for this container (see :mod:`nvshim.modes`)."""
    configured = config.mode
    if configured != "auto":
        return configured, "configured"
    from nvshim.modes import decide_mode

    # Devices asked for through CDI annotations (Kubernetes' way) come first,
    # as in NVIDIA's runtime; else the request's (env, mounts, legacy image).
    prefixes = config.nvidia_container_runtime.modes.cdi.annotation_prefixes
    devices: list[str] = []
    for key in sorted(spec.annotations):
        if any(key.startswith(p) for p in prefixes if p):
            devices.extend(n.strip() for n in spec.annotations[key].split(",") if n.strip())
    if not devices:
        if error is not None:
            raise error
        assert request is not None
        devices = list(request.devices if request.gpu else ())
    decision = decide_mode(configured, devices, driver_root=config.nvidia_container_cli.root)
    logger.debug("mode auto resolved to %s (%s)", decision.mode, decision.reason)
    return decision.mode, decision.reason


def _load_bundle(target: Union[str, os.PathLike[str]]) -> tuple[Spec, str]:
    """The bundle's spec and its config.json path."""
    bundle = os.path.realpath(os.fspath(target))  # as runc resolves it (it chdirs)
    if not os.path.isdir(bundle):
        raise SpecError(f"bundle {bundle} is not a folder")
    config_json = os.path.join(bundle, "config.json")
    return Spec.load(config_json), config_json


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
    :param modifiers: an already collected :class:`~nvshim.plugins.ModifierSet`
        (its validators run too); ``plugin_manager`` is then not used.
    :param logger: where to log (default: nowhere).
    :param write: write config.json back (bundles only).
    :raises NvshimError: when the config or the spec cannot be loaded, a
        plugin is broken, a modifier or validator refuses or fails, or the
        result cannot be written.  The bundle is then left exactly as it was.
    """
    log = logger if logger is not None else Logger("error")
    if config is None:
        config = load_config()
    if modifiers is None:
        _, modifiers = load_modifiers(config, plugin_manager)
    modifiers.check_usable()

    config_json: Optional[str] = None
    bundle: Optional[str] = None
    if isinstance(target, Spec):
        spec = target
    else:
        spec, config_json = _load_bundle(target)
        bundle = os.path.dirname(config_json)

    request, request_error = _read_request(spec, config)
    mode_reason = "forced"
    if mode is None:
        mode, mode_reason = _resolve_mode(config, spec, request, request_error, log)
    log.debug("mode: %s", mode)
    context = ModifierContext(
        config=config,
        mode=mode,
        bundle=bundle,
        argv=tuple(argv),
        logger=log,
        container_request=request,
        request_error=request_error,
    )
    timeout = config.nvshim.modifier_timeout

    tracker = ChangeTracker(log)
    applied: list[str] = []
    skipped: list[str] = []
    for info in modifiers.active:
        modifier = info.modifier
        applied.append(modifier.name)
        if not modifier.serves(mode):
            log.debug("modifier %s skipped: it serves %s", modifier.name, ", ".join(modifier.modes))
            skipped.append(modifier.name)
            continue
        own = attrs.evolve(
            context,
            options=plugin_options(config, modifier.name, modifier.config_class),
            modifier=modifier.name,
        )
        before = len(tracker.changes)
        with spec.recording(tracker.recorder_for(info, spec), tracker.on_raw):
            info.apply(spec, own, timeout, log)
        tracker.finish()  # attributes what it changed through Spec.raw
        if tracker.error is not None:
            raise ModifierError(tracker.error, what="conflicting modifiers")
        made = tracker.changes[before:]
        log.debug(
            "modifier %s applied: %d change(s)%s",
            modifier.name,
            len(made),
            "".join(f"; {c.action} {c.kind} {c.key}" for c in made[:20]),
        )

    from nvshim.validation import validate_spec

    problem = validate_spec(spec, tracker.changes, tracker.describe)
    if problem is not None:
        raise SpecError(problem, what="invalid spec")
    modifiers.validate(spec, context, timeout, log)

    written = False
    if config_json is not None and write and tracker.changes:
        spec.save(config_json)
        written = True
    return ApplyResult(
        spec=spec,
        changes=tuple(tracker.changes),
        mode=mode,
        applied=tuple(applied),
        written=written,
        skipped=tuple(skipped),
        mode_reason=mode_reason,
    )


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
        """The collected modifiers and validators (loaded on first use, once)."""
        if self._modifiers is None:
            self._plugin_manager, self._modifiers = load_modifiers(
                self.config, self._plugin_manager
            )
        return self._modifiers

    def find_runtime(self) -> str:
        """The low-level runtime's absolute path; :class:`RuntimeNotFound` if none is found."""
        return find_runtime(self.config.runtime.runtimes, self_paths=(self.args.program,))

    def modify(self) -> Optional[ApplyResult]:
        """Modify the bundle's spec when the subcommand creates a container."""
        if not self.args.is_create:
            return None
        bundle = self.args.bundle()
        self.logger.debug("bundle: %s", bundle)
        return apply_modifiers(
            bundle,
            config=self.config,
            argv=self.argv,
            modifiers=self.modifiers,
            logger=self.logger,
        )

    def exec(self, runtime: Optional[str] = None) -> NoReturn:
        """Replace this process with the low-level runtime, same arguments."""
        path = runtime if runtime is not None else self.find_runtime()
        _watchdog.disable()  # every bounded step is over; nothing may kill the runtime
        self.logger.debug("exec %s", path)
        self.logger.close()
        exec_runtime(path, self.argv[1:])

    def run(self) -> NoReturn:
        """Modify (on create), then exec the runtime; :class:`NvshimError` on failure.

        The runtime is looked up before the spec is touched, so a host
        without runc fails with config.json unchanged.
        """
        runtime = self.find_runtime()
        # The hard time limit on plugins (imports, nvshim_modifiers(),
        # modifiers, validators): see nvshim._watchdog.
        _watchdog.enable(self._watchdog_report)
        if self.args.version:
            self.print_version()
        self.modify()
        self.exec(runtime)

    def _watchdog_report(self, line: str) -> None:
        """In the watchdog's child, after it stopped nvshim: the line goes to the log too."""
        self.logger.error("%s", line)
        self.logger.close()

    def print_version(self) -> None:
        """Print nvshim's version and its active modifiers to stdout."""
        from nvshim._version import DISTRIBUTION, __version__

        lines = [f"nvshim version {__version__} ({DISTRIBUTION})"]
        try:
            modifiers = self.modifiers
            names = ", ".join(m.name for m in modifiers.active) or "none"
            lines.append(f"modifiers: {names}")
            lines.extend(f"plugin error: {e}" for e in modifiers.errors)
        except Exception as exc:  # --version must work even with broken plugins
            lines.append(f"modifiers: unknown ({type(exc).__name__}: {exc})")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def make_logger(config: Config, args: Optional[Args]) -> Logger:
    """The logger for a runtime call: the config's debug file and ``--log``."""
    level = "debug" if args is not None and args.debug else config.runtime.log_level
    logger = Logger(level)
    logger.add_file(config.runtime.debug, "text")
    if args is not None and args.log_file:
        logger.add_file(args.log_file, "json" if args.log_format == "json" else "text")
    return logger


def build_runtime(
    argv: Union[Sequence[str], Args],
    config: Optional[Config] = None,
    *,
    plugin_manager: Optional[pluggy.PluginManager] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Runtime:
    """The factory: a :class:`Runtime` for a command line.

    :param argv: the command line (``argv[0]`` is the program), or the
        :class:`nvshim._argv.Args` the caller parsed it into already.
    :param config: the configuration; loaded from the usual place if None.
    :param plugin_manager: plugins to use instead of the entry points.
    :param environ: the environment to find the config file in.
    :raises NvshimError: on a bad command line or a bad configuration.
    """
    args = argv if isinstance(argv, Args) else parse_command_line(argv)
    if config is None:
        config = load_config(environ=environ)
    logger = make_logger(config, args)
    logger.debug("argv: %s", list(args.full_argv))
    logger.debug("config: %s", config.source or "none (defaults)")
    if config.ignored_keys:
        # A misspelt key leaves its setting at the default: say so every time.
        from nvshim._configkeys import classify

        report = classify(config)
        for line in report.unknown_lines(config.source or "<defaults>"):
            logger.warning("%s", line)
        for line in report.nvidia_lines(config.source or "<defaults>"):
            logger.debug("%s", line)
    return Runtime(args.full_argv, args, config, logger, plugin_manager)
