"""Parsing runc's command line, only as far as nvshim needs to.

nvshim must find three things without understanding every runtime flag: the
global options (``--root``, ``--log`` ...), the subcommand, which is the first
argument after the global options, and, for ``create``/``run``, the bundle.
Everything else is passed to the runtime untouched.
"""

from __future__ import annotations

import os

from nvshim.errors import ArgvError

# Not `typing.TYPE_CHECKING`: typing and collections.abc cost more than the
# pass-through path itself (see docs/performance.md).  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

#: Global options of runc and crun that take a value.
VALUE_OPTIONS = frozenset(
    {"root", "log", "log-format", "criu", "rootless", "cgroup-manager", "log-level"}
)
#: Global flags (no value).
FLAG_OPTIONS = frozenset({"debug", "systemd-cgroup", "help", "h", "version", "v"})
#: Subcommands that create a container, so the spec is modified first.
CREATE_COMMANDS = frozenset({"create", "run"})


class Args:
    """What nvshim needs from a runtime command line."""

    __slots__ = ("argv", "command", "command_index", "flags", "options", "program")

    def __init__(
        self,
        argv: Sequence[str],
        command: str | None,
        command_index: int,
        options: dict[str, str],
        flags: frozenset[str],
        program: str = "nvshim",
    ) -> None:
        #: argv[0]: how nvshim was called (never chosen as the runtime).
        self.program = program
        #: The arguments after argv[0].
        self.argv = tuple(argv)
        #: The subcommand, or None when there is none (``nvshim --version``).
        self.command = command
        #: Its index in :attr:`argv` (``len(argv)`` when there is none).
        self.command_index = command_index
        #: Global options with values, by name without dashes (last one wins).
        self.options = options
        #: Global flags given, by name without dashes (``h`` and ``v`` normalised).
        self.flags = flags

    @property
    def full_argv(self) -> tuple[str, ...]:
        """The whole command line, argv[0] included."""
        return (self.program, *self.argv)

    @property
    def is_create(self) -> bool:
        """Whether the subcommand creates a container (``create`` or ``run``)."""
        return self.command in CREATE_COMMANDS

    @property
    def debug(self) -> bool:
        """Whether ``--debug`` was given."""
        return "debug" in self.flags

    @property
    def version(self) -> bool:
        """Whether ``--version``/``-v`` was given."""
        return "version" in self.flags

    @property
    def log_file(self) -> str | None:
        """The ``--log`` file, if any."""
        return self.options.get("log")

    @property
    def log_format(self) -> str:
        """The ``--log-format`` (``text`` by default, as runc)."""
        return self.options.get("log-format", "text")

    @property
    def command_args(self) -> tuple[str, ...]:
        """The arguments after the subcommand."""
        return self.argv[self.command_index + 1 :]

    def bundle(self, cwd: str | None = None) -> str:
        """The absolute bundle path of a create (the current directory when none is given).

        Resolved as runc resolves it (runc chdirs into ``--bundle``): links
        first, then ``..``, so ``a/link/../b`` is the folder beside the
        link's target, whose config.json runc reads, not ``a/b``.
        """
        bundle = bundle_from(self.command_args)
        base = cwd if cwd is not None else os.getcwd()
        return os.path.realpath(os.path.join(base, bundle)) if bundle else base

    def __repr__(self) -> str:
        flags = sorted(self.flags)
        return f"Args(command={self.command!r}, options={self.options!r}, flags={flags})"


def _option_name(arg: str) -> tuple[str, str | None]:
    """Split ``--name=value`` / ``-name value`` into (name, inline value or None)."""
    name, sep, value = arg.lstrip("-").partition("=")
    return name, (value if sep else None)


def parse_args(argv: Sequence[str]) -> Args:
    """Parse runtime arguments (without argv[0]).

    Global options may use one or two dashes and ``--opt value`` or
    ``--opt=value``.  The subcommand is the first argument that is not a
    global option or its value.  Raises :class:`ArgvError` when a global
    option lacks its value.
    """
    options: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, inline = _option_name(arg)
        if name in VALUE_OPTIONS:
            if inline is None:
                if i + 1 >= n:
                    raise ArgvError(f"global option {arg} needs a value")
                options[name] = argv[i + 1]
                i += 2
                continue
            options[name] = inline
        elif name in ("h", "help"):
            flags.add("help")
        elif name in ("v", "version"):
            flags.add("version")
        else:
            # debug, systemd-cgroup, or a flag of a newer runtime: keep going, it
            # is the runtime's to judge.
            flags.add(name)
        i += 1
    command = argv[i] if i < n else None
    return Args(argv, command, i if command is not None else n, options, frozenset(flags))


def parse_command_line(argv: Sequence[str]) -> Args:
    """Parse a whole command line (``argv[0]`` is the program): the one parse of a run."""
    program = argv[0] if argv else "nvshim"
    args = parse_args(argv[1:])
    args.program = program
    return args


def _is_bundle_flag(name: str) -> bool:
    return name in ("b", "bundle")


def bundle_from(args: Sequence[str]) -> str | None:
    """The bundle named in a create's arguments (the last one wins), or None.

    Accepts ``--bundle X``, ``--bundle=X``, ``-b X``, ``-b=X`` and
    ``-bundle X``.  A bundle flag without a value is an :class:`ArgvError`.
    """
    bundle: str | None = None
    i = 0
    n = len(args)
    while i < n:
        arg = args[i]
        if arg == "--":
            break
        if arg.startswith("-"):
            name, inline = _option_name(arg)
            if _is_bundle_flag(name):
                if inline is None:
                    if i + 1 >= n:
                        raise ArgvError(f"option {arg} needs a value")
                    inline = args[i + 1]
                    i += 1
                if not inline:
                    raise ArgvError(f"option {arg.partition('=')[0]} needs a value")
                bundle = inline
        i += 1
    return bundle
