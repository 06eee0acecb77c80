"""A cache of the ``nvshim`` entry points, so that a create does not read every
installed distribution's metadata.

Finding the entry points of one group means importing :mod:`importlib.metadata`
(about as costly as starting Python) and parsing the metadata of every
installed distribution: the cost grows with the environment, and a create
pays it every time.  Here the result of that scan is kept in a small JSON
file, valid for as long as nothing it depends on changes:

- the interpreter and ``sys.path`` (the file name is a hash of them, the
  content repeats them);
- the modification time, inode and device of every ``sys.path`` entry:
  installing, removing or upgrading a distribution adds or removes a
  ``*.dist-info`` folder there, which changes the folder's mtime, so a new
  plugin is seen by the very next create;
- the same for the ``entry_points.txt`` of every distribution that provides
  an ``nvshim`` entry point (edited in place by an editable reinstall).

A folder modified within :data:`RACY_SECONDS` of the scan is not cached (a
change in the same clock tick would not change its mtime), as git does for
its index.  The cache lives in ``$NVSHIM_CACHE_DIR`` (empty: no cache),
else ``/var/cache/nvshim`` for root, else ``$XDG_CACHE_HOME/nvshim``.  It
decides which modules are imported, so a cache folder or file that is not
owned by the current user, or that others may write, is ignored.  Nothing
here ever fails a create: any problem means a scan, as without a cache.
"""

from __future__ import annotations

import json
import os
import sys
import time

from nvshim._cachefile import cache_dir, read_json, usable_dir, write_json

# typing is already imported on the create path, but this module must not
# need it at run time.  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = ["CACHE_VERSION", "RACY_SECONDS", "CachedEntryPoint", "cache_dir", "entry_points"]

#: Bumped when the file's layout changes; a file of another version is ignored.
CACHE_VERSION = 1
#: The files of a plugin's metadata folder that the cache watches.
_WATCHED = ("entry_points.txt", "METADATA", "PKG-INFO")
#: A folder modified this recently (seconds) is not trusted to show later changes.
RACY_SECONDS = 2.0

#: What a scan returns for one entry point: (name, value, group, dist, version,
#: the distribution's metadata folder, or None when it has none).
ScanRow = tuple[str, str, str, "str | None", "str | None", "str | None"]


class CachedEntryPoint:
    """An entry point as the cache holds it: what :class:`importlib.metadata.EntryPoint`
    offers the plugin host (``name``, ``value``, ``group``, :meth:`load`), plus
    its distribution's name and version."""

    __slots__ = ("dist", "group", "name", "value", "version")

    def __init__(
        self, name: str, value: str, group: str, dist: str | None, version: str | None
    ) -> None:
        self.name = name
        self.value = value
        self.group = group
        self.dist = dist
        self.version = version

    def load(self) -> Any:
        """Import the entry point's module and return the object it names.

        The same steps as :meth:`importlib.metadata.EntryPoint.load`; a value
        that its pattern does not match is handed to it, so that the error
        is the same too.
        """
        import importlib
        import re

        match = re.match(
            r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$",
            self.value,
        )
        if match is None:
            from importlib.metadata import EntryPoint

            return EntryPoint(self.name, self.value, self.group).load()
        obj: Any = importlib.import_module(match.group("module"))
        for attr in filter(None, (match.group("attr") or "").split(".")):
            obj = getattr(obj, attr)
        return obj

    def __repr__(self) -> str:
        return f"CachedEntryPoint(name={self.name!r}, value={self.value!r}, dist={self.dist!r})"


def _stamp(path: str) -> list[int] | None:
    """What changes when ``path`` changes: [mtime_ns, inode, device], None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ino, st.st_dev]


def _key(group: str, search_path: Sequence[str]) -> list[Any]:
    return [CACHE_VERSION, group, sys.executable, sys.version, list(search_path)]


def _file_name(key: list[Any]) -> str:
    import zlib

    digest = zlib.crc32(json.dumps(key).encode("utf-8", "surrogateescape"))
    return f"entry-points-{digest:08x}.json"


def _valid(content: Any, key: list[Any]) -> list[CachedEntryPoint] | None:
    """The cached entry points if ``content`` is for ``key`` and still current."""
    if not isinstance(content, dict) or content.get("key") != key:
        return None
    stamps = content.get("stamps")
    rows = content.get("entry_points")
    if not isinstance(stamps, list) or not isinstance(rows, list):
        return None
    for item in stamps:
        if not isinstance(item, list) or len(item) != 2 or _stamp(item[0]) != item[1]:
            return None
    try:
        return [CachedEntryPoint(*row) for row in rows]
    except TypeError:
        return None


def entry_points(
    group: str,
    scan: Callable[[], list[ScanRow]],
    *,
    search_path: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[CachedEntryPoint]:
    """The entry points of ``group``: from the cache when it is current, else ``scan()``.

    ``scan`` returns one :data:`ScanRow` per entry point, in order; its result
    is cached unless something it depends on changed too recently to be
    trusted.
    """
    paths = list(sys.path if search_path is None else search_path)
    # "" is the current folder, which is not the same on every call.
    paths = [p or os.getcwd() for p in paths]
    key = _key(group, paths)
    folder = cache_dir(environ)
    name = _file_name(key)
    if folder is not None and usable_dir(folder):
        cached = _valid(read_json(os.path.join(folder, name)), key)
        if cached is not None:
            return cached
    # Stamps first: a change made during the scan then shows at the next call.
    stamps: list[list[Any]] = [[p, _stamp(p)] for p in paths]
    rows = scan()
    result = [CachedEntryPoint(*row[:5]) for row in rows]
    if folder is None:
        return result
    for folder_of_dist in sorted({row[5] for row in rows if row[5]}):
        for path in (folder_of_dist, *(os.path.join(folder_of_dist, f) for f in _WATCHED)):
            stamps.append([path, _stamp(path)])
    recent = time.time_ns() - int(RACY_SECONDS * 1e9)
    if any(stamp is not None and stamp[0] >= recent for _, stamp in stamps):
        return result
    content = {
        "key": key,
        "stamps": stamps,
        "entry_points": [list(row[:5]) for row in rows],
    }
    write_json(folder, name, content)
    return result
