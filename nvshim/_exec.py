"""The low-level runtime: which one (runc, crun ...), and the ``execv`` that starts it.

The one place that looks up and execs the runtime, for the pass-through path
and for create alike, so it imports nothing heavier than :mod:`os`.
"""

from __future__ import annotations

# The C module behind `signal`: `import signal` builds enums (about as much as
# the rest of the pass-through path); this one is built into the interpreter.
import _signal  # type: ignore[import-not-found,unused-ignore]
import os

from nvshim.errors import NvshimError, RuntimeNotFound
from nvshim.lookup import DEFAULT_FOLDERS, is_executable, search_path

# Not `typing.TYPE_CHECKING`: typing and collections.abc cost more than the
# pass-through path itself (see docs/performance.md).  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import NoReturn

__all__ = ["EXEC_MARKER", "exec_runtime", "find_runtime", "started_by_own_runtime"]

#: Set in the runtime's environment to the path nvshim exec'd.  A runtime
#: that starts nvshim again (a wrapper named ``runc`` that calls nvshim) is
#: seen at once instead of looping until the system runs out of processes.
EXEC_MARKER = "NVSHIM_EXECED_RUNTIME"

#: Signals Python ignores at start and ``execv`` would pass on ignored: a
#: runtime (or crun's hooks) must start as the engine started nvshim.
_RESET_SIGNALS = (_signal.SIGPIPE, _signal.SIGXFSZ)


def _is_nvshim(path: str, self_paths: frozenset[str]) -> bool:
    """Whether ``path`` is nvshim itself (a link to it, or a copy of its script)."""
    try:
        if os.path.realpath(path) in self_paths:
            return True
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return head.startswith(b"#!") and b"nvshim._cli" in head


def find_runtime(
    runtimes: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
    self_paths: Iterable[str] = (),
) -> str:
    """The first usable runtime of ``runtimes`` as an absolute path.

    An entry containing ``/`` is used as given if it is an executable file; a
    bare name is looked up in PATH and then in :data:`DEFAULT_FOLDERS`.
    nvshim itself is never chosen (a ``runc`` on PATH that is nvshim would
    exec itself forever).  Raises :class:`RuntimeNotFound` listing what was
    tried.
    """
    own = frozenset(os.path.realpath(p) for p in self_paths if p)
    tried: list[str] = []
    for entry in runtimes:
        candidates = [entry] if "/" in entry else search_path(entry, environ)
        for path in candidates:
            if is_executable(path) and not _is_nvshim(path, own):
                return os.path.abspath(path)
        where = entry if "/" in entry else f"{entry} (in PATH and {', '.join(DEFAULT_FOLDERS)})"
        tried.append(where)
    raise RuntimeNotFound(
        "no low-level runtime found; tried " + ("; ".join(tried) if tried else "nothing")
    )


def started_by_own_runtime(environ: Mapping[str, str] | None = None) -> str | None:
    """The runtime nvshim exec'd that has now started nvshim again, or None."""
    env = os.environ if environ is None else environ
    return env.get(EXEC_MARKER) or None


def exec_runtime(path: str, args: Sequence[str]) -> NoReturn:
    """``execv`` the runtime with ``args``: fds, env, cwd and stdio are inherited.

    SIGPIPE and SIGXFSZ go back to their default first (Python ignores both,
    and an ignored signal stays ignored across ``execv``).

    :raises NvshimError: ``cannot exec <path>`` when ``execv`` fails.
    """
    previous = [(signum, _signal.signal(signum, _signal.SIG_DFL)) for signum in _RESET_SIGNALS]
    os.environ[EXEC_MARKER] = path
    try:
        os.execv(path, [path, *args])
    except OSError as exc:
        os.environ.pop(EXEC_MARKER, None)
        for signum, handler in previous:
            _signal.signal(signum, handler)
        raise NvshimError(f"cannot exec {path}", exc.strerror or str(exc)) from None
    raise AssertionError("execv returned")  # pragma: no cover - only a test's fake returns
