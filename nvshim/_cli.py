"""The ``nvshim`` command: the OCI runtime entry point.

Kept free of heavy imports: every runtime call an engine makes (``state``,
``start``, ``kill``, ``delete`` ...) goes through here and must cost little
more than starting Python.  Only ``create``/``run`` and ``--version`` load the
plugin machinery (:mod:`nvshim.runtime`).
"""

from __future__ import annotations

import sys

from nvshim._argv import Args, parse_command_line
from nvshim._configfile import config_path, read_toml, runtimes_from
from nvshim._exec import exec_runtime, find_runtime, started_by_own_runtime
from nvshim.errors import ConfigError, NvshimError

# Not `typing.TYPE_CHECKING`: typing and collections.abc cost more than the
# pass-through path itself (see docs/performance.md).  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _fail(line: str, log_file: str | None, log_format: str) -> int:
    """Report a failure in one line on stderr and in runc's ``--log`` file."""
    # Imported here: the pass-through path only needs it when it fails.
    from nvshim._log import Logger, stderr_line

    stderr_line(line)
    if log_file:
        logger = Logger("error")
        logger.add_file(log_file, "json" if log_format == "json" else "text")
        logger.error("%s", line)
        logger.close()
    return 1


def _pass_through(args: Args) -> int:
    """Exec the runtime with the same arguments; the config only picks which one."""
    try:
        raw = read_toml(config_path())
    except ConfigError:
        # A broken config must not stop `delete` or `state`: the engine could
        # no longer clean up.  Create refuses it; here the defaults do.
        raw = None
    try:
        exec_runtime(find_runtime(runtimes_from(raw), self_paths=(args.program,)), args.argv)
    except NvshimError as exc:
        return _fail(exc.line, args.log_file, args.log_format)


def main(argv: Sequence[str] | None = None) -> int:
    """Run nvshim with ``argv`` (default ``sys.argv``); returns only on failure."""
    try:
        args = parse_command_line(list(sys.argv if argv is None else argv))
    except NvshimError as exc:
        return _fail(exc.line, None, "text")
    looped = started_by_own_runtime()
    if looped is not None:
        return _fail(
            f"nvshim: cannot find the low-level runtime: {looped}, which nvshim started, started"
            " nvshim again (a wrapper named like the runtime that calls nvshim?); set"
            " [nvidia-container-runtime] runtimes to the real runtime",
            args.log_file,
            args.log_format,
        )
    if not (args.is_create or args.version):
        return _pass_through(args)

    import nvshim.runtime
    from nvshim._log import stderr_line

    runtime = None
    try:
        # Through the module: tests replace build_runtime to make it fail.
        runtime = nvshim.runtime.build_runtime(args)
        runtime.run()
    except NvshimError as exc:
        line = exc.line
    except Exception as exc:  # a bug of nvshim's own: still one line, and no runtime started
        import traceback

        line = f"nvshim: internal error: {type(exc).__name__}: {exc}".splitlines()[0]
        if runtime is not None:
            runtime.logger.debug("%s", "".join(traceback.format_exc()))
    if runtime is None:
        return _fail(line, args.log_file, args.log_format)
    runtime.logger.error("%s", line)
    runtime.logger.close()
    stderr_line(line)
    return 1
