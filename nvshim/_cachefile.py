"""nvshim's cache folder and its files: where it is, who may write it, atomic JSON.

Shared by the caches that save a create work (the entry points of
:mod:`nvshim._epcache`, the parsed CDI specs of the ``cdi`` modifier).  A
cache decides what nvshim imports or injects, so a folder or file that is
not owned by the current user, or that others may write, is ignored.  Files
are written atomically (temporary file, then rename) with mode 0600 in a
0700 folder.  Nothing here ever fails a create: a cache that cannot be read
or written is a miss.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat

# typing is already imported on the create path, but this module must not
# need it at run time.  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["cache_dir", "is_safe", "read_json", "usable_dir", "write_json"]


def cache_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The cache folder, or None when caching is off (``NVSHIM_CACHE_DIR=``).

    ``$NVSHIM_CACHE_DIR``; else ``/var/cache/nvshim`` for root; else
    ``$XDG_CACHE_HOME/nvshim`` (``~/.cache/nvshim``).
    """
    env = os.environ if environ is None else environ
    if "NVSHIM_CACHE_DIR" in env:
        return env["NVSHIM_CACHE_DIR"] or None
    if os.geteuid() == 0:
        return "/var/cache/nvshim"
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nvshim")


def is_safe(st: os.stat_result) -> bool:
    """Owned by us and writable by nobody else."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def usable_dir(folder: str) -> bool:
    """Whether ``folder`` exists and is safe to read a cache from."""
    try:
        return is_safe(os.stat(folder))
    except OSError:
        return False


def read_json(path: str) -> Any:
    """The parsed cache file, or None if absent, unsafe or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not is_safe(st) or not stat.S_ISREG(st.st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return json.loads(data)
    except ValueError:
        return None


def write_json(folder: str, name: str, content: Any) -> None:
    """Write ``content`` to ``folder/name`` atomically (0600); give up quietly on any error."""
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not is_safe(os.stat(folder)):
            return
        data = json.dumps(content, separators=(",", ":")).encode("utf-8", "surrogateescape")
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(folder, name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except (OSError, ValueError, TypeError):
        pass
