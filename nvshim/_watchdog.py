"""The hard time limit behind ``[nvshim] modifier-timeout``.

The limit is first a ``SIGALRM`` that raises inside the plugin's code
(:func:`nvshim.plugins.call_isolated`).  A plugin can defeat that: it can
catch the exception (``except BaseException``) and go on, or sit in one long
C call that holds the GIL (a regular expression, a blocking read), where no
Python signal handler and no thread runs.  So the ``nvshim`` command also
starts a watchdog: a forked child that does nothing but wait on a pipe.  Each
bounded step (importing a plugin, its ``nvshim_modifiers()``, each modifier
and validator) arms it with the step's limit plus :data:`GRACE_S`; when a step
overruns that, the child kills nvshim with ``SIGKILL`` (no Python code of
nvshim's runs any more, so the runtime is never started and config.json,
which is written only after every step, stays as it was) and then writes the
one-line error to stderr and to the log.  The child exits when nvshim closes
the pipe: when it execs the runtime (the pipe is close-on-exec) or dies.

Only the ``nvshim`` command enables it (:func:`enable`): a tool that embeds
nvshim as a library keeps the soft limit only, and is never killed.
"""

from __future__ import annotations

# The C module, not `signal`: the same functions without building the
# Signals/Handlers enums at import (about 0.5 ms of every create).
import _signal as signal  # type: ignore[import-not-found,unused-ignore]
import contextlib
import os
import select
import time
from collections.abc import Iterator
from typing import Callable, Optional

__all__ = ["GRACE_S", "Watchdog", "current", "disable", "enable", "limit"]

#: Seconds a step may run past its limit before the watchdog ends nvshim:
#: time for the SIGALRM exception to unwind when the plugin lets it.
GRACE_S = 2.0

_current: Optional[Watchdog] = None


class Watchdog:
    """A forked child that kills this process when an armed deadline passes."""

    def __init__(self, report: Optional[Callable[[str], None]] = None) -> None:
        """``report(line)`` runs in the child after the kill (stderr always gets the line)."""
        self._report = report
        self._pid: Optional[int] = None
        self._write_fd: Optional[int] = None

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()  # close-on-exec: the exec of runc closes it
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its effects are tested
            status = 0
            try:
                os.close(write_fd)
                _watch(read_fd, parent, self._report)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(read_fd)
        self._pid, self._write_fd = pid, write_fd

    def _send(self, message: str) -> None:
        if self._write_fd is None:
            self._start()
        assert self._write_fd is not None
        data = message.replace("\n", " ").encode("utf-8", "replace") + b"\n"
        os.write(self._write_fd, data)

    def arm(self, seconds: float, line: str) -> None:
        """Kill this process ``seconds`` from now, reporting ``line``, unless disarmed first."""
        self._send(f"{seconds!r}\t{line}")

    def disarm(self) -> None:
        """Cancel the armed deadline."""
        if self._write_fd is not None:
            self._send("0\t")

    def stop(self) -> None:
        """End the child and wait for it."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None


def _watch(read_fd: int, parent: int, report: Optional[Callable[[str], None]]) -> None:
    """The child's loop: read deadlines from the pipe; kill ``parent`` when one passes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    deadline: Optional[float] = None
    line = ""
    pending = b""
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([read_fd], [], [], wait)
        if ready:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                return  # nvshim exec'd the runtime or ended
            pending += chunk
            while b"\n" in pending:
                message, pending = pending.split(b"\n", 1)
                seconds, _, text = message.decode("utf-8", "replace").partition("\t")
                if float(seconds) > 0:
                    deadline, line = time.monotonic() + float(seconds), text
                else:
                    deadline = None
            continue
        if deadline is None or time.monotonic() < deadline:
            continue
        if os.getppid() != parent:
            return  # nvshim is gone; never kill a process that took its pid
        os.kill(parent, signal.SIGKILL)
        from nvshim._log import escape_controls

        os.write(2, (escape_controls(line) + "\n").encode("utf-8", "replace"))
        if report is not None:
            report(line)
        return


def enable(report: Optional[Callable[[str], None]] = None) -> Watchdog:
    """Turn the hard limit on for this process (the ``nvshim`` command does, on create)."""
    global _current
    if _current is None:
        _current = Watchdog(report)
    return _current


def disable() -> None:
    """Turn the hard limit off and end the watchdog (before the exec of the runtime)."""
    global _current
    if _current is not None:
        _current.stop()
        _current = None


def current() -> Optional[Watchdog]:
    """The enabled watchdog, or None."""
    return _current


@contextlib.contextmanager
def limit(seconds: float, line: str) -> Iterator[None]:
    """Within the block, the process is killed ``seconds + GRACE_S`` from now (if enabled)."""
    dog = _current
    if dog is None or not seconds > 0:
        yield
        return
    dog.arm(seconds + GRACE_S, line)
    try:
        yield
    finally:
        dog.disarm()
