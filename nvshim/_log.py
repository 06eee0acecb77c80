"""nvshim's logger: the config's debug file and runc's ``--log`` file.

A small logger of our own rather than :mod:`logging`: it costs nothing to
import, writes runc's JSON log format (so Docker and containerd show nvshim's
errors as "OCI runtime create failed: ..."), and never lets a log file that
cannot be opened stop a container.
"""

from __future__ import annotations

import os
import sys
import time

# Not `typing.TYPE_CHECKING`: typing and collections.abc cost more than the
# pass-through path itself (see docs/performance.md).  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "fatal": 50}
_NAMES = {5: "trace", 10: "debug", 20: "info", 30: "warning", 40: "error", 50: "fatal"}


def _rfc3339() -> str:
    now = time.time()
    local = time.localtime(now)
    offset = local.tm_gmtoff or 0
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        zone = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    fraction = f"{now % 1:.9f}"[1:].rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + fraction + zone


class _Target:
    __slots__ = ("fmt", "handle", "path")

    def __init__(self, path: str, fmt: str, handle: TextIO) -> None:
        self.path = path
        self.fmt = fmt
        self.handle = handle


class Logger:
    """Writes to every target whose level admits a record.

    ``debug``, ``info``, ``warning`` and ``error`` take a message and
    optional ``%`` arguments, like :mod:`logging`'s.
    """

    def __init__(self, level: str | int = "info") -> None:
        self.level = LEVELS.get(level, 20) if isinstance(level, str) else level
        self._targets: list[_Target] = []
        #: Warnings about the targets themselves, written to the other targets.
        self._problems: list[str] = []

    def add_file(self, path: str, fmt: str = "text") -> bool:
        """Append records to ``path`` (``fmt`` ``json`` or ``text``); False if it cannot be opened.

        The parent folder is created.  A file that cannot be opened is
        reported once on the other targets; it never stops the caller.
        """
        if not path or path == "/dev/null":
            return True
        try:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, mode=0o755, exist_ok=True)
            # O_NONBLOCK: a FIFO with no reader must not hang a container start.
            fd = os.open(
                path,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK,
                0o600,
            )
            if not os.path.isfile(f"/proc/self/fd/{fd}") and not _is_char_device(fd):
                os.close(fd)
                raise OSError(f"{path} is not a regular file")
            os.set_blocking(fd, True)
            handle = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
        except OSError as exc:
            self._problems.append(
                f"cannot open log file {path}: {exc.strerror or exc}; logging there is off"
            )
            for problem in self._problems[-1:]:
                self._write(30, problem)
            return False
        self._targets.append(_Target(path, fmt, handle))
        for problem in self._problems:
            self._write_one(self._targets[-1], 30, problem)
        return True

    @property
    def paths(self) -> list[str]:
        """The files being written."""
        return [t.path for t in self._targets]

    def _write_one(self, target: _Target, level: int, msg: str) -> None:
        name = _NAMES.get(level, "info")
        if target.fmt == "json":
            import json

            line = json.dumps({"level": name, "msg": msg, "time": _rfc3339()})
        else:
            line = f'time="{_rfc3339()}" level={name} msg={_quote(msg)}'
        try:
            target.handle.write(line + "\n")
            target.handle.flush()
        except (OSError, ValueError):
            # A full disk or a vanished file: logging is best effort.
            pass

    def _write(self, level: int, msg: str) -> None:
        for target in self._targets:
            self._write_one(target, level, msg)

    def log(self, level: int, msg: str, *args: object) -> None:
        """Write ``msg % args`` at ``level``."""
        if level < self.level:
            return
        if args:
            try:
                msg = msg % args
            except (TypeError, ValueError):
                msg = f"{msg} {args!r}"
        self._write(level, msg)

    def debug(self, msg: str, *args: object) -> None:
        """Log at debug level."""
        self.log(10, msg, *args)

    def info(self, msg: str, *args: object) -> None:
        """Log at info level."""
        self.log(20, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        """Log at warning level."""
        self.log(30, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        """Log at error level (always written to the ``--log`` file)."""
        self.log(40, msg, *args)

    def is_enabled_for(self, level: int) -> bool:
        """Whether records at ``level`` are written (to skip costly messages)."""
        return level >= self.level

    def close(self) -> None:
        """Close every file."""
        for target in self._targets:
            # Not contextlib.suppress: contextlib is not imported on the pass-through path.
            try:  # noqa: SIM105
                target.handle.close()
            except OSError:
                pass
        self._targets.clear()


def _is_char_device(fd: int) -> bool:
    import stat

    try:
        return stat.S_ISCHR(os.fstat(fd).st_mode)
    except OSError:
        return False


def _quote(msg: str) -> str:
    if msg and all(c.isalnum() or c in "-_./:" for c in msg):
        return msg
    escaped = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    # The other control characters (ESC, BEL, BS ...) as \xNN; backslashes
    # are doubled already.
    if not escaped.isprintable():
        escaped = "".join(
            f"\\x{ord(c):02x}" if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in escaped
        )
    return f'"{escaped}"'


def escape_controls(text: str) -> str:
    """``text`` with control characters written as ``\\xNN`` (a backslash as ``\\\\``).

    Messages carry names from images and specs (paths, env values); an ESC,
    BEL or BS in them must not drive the terminal that shows stderr or
    rewrite what an admin reads in a log.
    """
    if text.isprintable():
        return text
    return "".join(
        f"\\x{ord(c):02x}" if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c
        for c in text.replace("\\", "\\\\")
    )


def stderr_line(msg: str, stream: TextIO | None = None) -> None:
    """Write one line to stderr (control characters escaped), ignoring a closed stderr."""
    out = stream if stream is not None else sys.stderr
    try:
        out.write(escape_controls(msg) + "\n")
        out.flush()
    except (OSError, ValueError, AttributeError):
        pass
