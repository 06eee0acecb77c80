"""Atomic file replacement: never a partial or empty file, whatever happens."""

from __future__ import annotations

import contextlib
import os
import stat


def atomic_write(path: str, data: bytes, default_mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its mode and owner.

    The data goes to a new file in the same folder (so the rename cannot cross
    file systems), is fsync'ed, gets the old file's mode and owner, and is
    renamed over ``path``; then the folder is fsync'ed so the rename itself
    survives a crash.  A process killed at any point leaves either the old
    file or the new one.  On failure the temporary file is removed and
    :class:`OSError` propagates.
    """
    folder = os.path.dirname(path) or "."
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    mode = stat.S_IMODE(old.st_mode) if old is not None else default_mode
    base = os.path.basename(path)
    _remove_stale_temporaries(folder, base)
    # O_EXCL with a name unique to this process: no other writer can share it.
    counter = 0
    while True:
        tmp = os.path.join(folder, f".{base}.nvshim-{os.getpid()}-{counter}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            counter += 1
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            if old is not None and (old.st_uid != os.geteuid() or old.st_gid != os.getegid()):
                os.fchown(fd, old.st_uid, old.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _remove_stale_temporaries(folder: str, base: str) -> None:
    """Remove the temporary files of writers of ``base`` that were killed.

    A writer killed (SIGKILL, OOM) between creating its temporary file and
    the rename leaves it behind; the next write removes it, so killed creates
    do not pile up files in the bundle.  Only names this module makes, of
    processes that no longer exist, are removed: a live writer's file is
    never touched.
    """
    prefix = f".{base}.nvshim-"
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid_text = name[len(prefix) :].partition("-")[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # alive (or alive under another user): not ours to remove
        except ProcessLookupError:
            pass
        except OSError:
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
