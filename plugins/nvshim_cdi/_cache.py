"""A cache of parsed CDI spec files: a warm create neither imports yaml nor parses a spec.

NVIDIA's generated specs are YAML; PyYAML's import alone costs several
milliseconds and parsing an 8-GPU spec more, on every create.  The documents
of the spec files that parsed and passed :func:`nvshim_cdi._spec.parse_spec`
are kept in one JSON file in nvshim's cache folder (beside the entry-point
cache, with the same ownership and mode rules: see :mod:`nvshim._cachefile`),
one file per list of spec folders.  An entry is used only while the file's
(device, inode, size, mtime_ns, ctime_ns) are what they were when it was
parsed: any write changes the ctime (and a restored mtime does not restore
it), a replacement changes the inode.  A file changed within
:data:`RACY_SECONDS` of the parse is not cached, since a second change in
the same clock tick would not move its times.  A cached document is checked
by ``parse_spec`` again on every create (cheap: no parsing), so the cache
never holds a spec that the current checks would refuse.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from nvshim._cachefile import cache_dir, read_json, usable_dir, write_json

__all__ = ["CACHE_VERSION", "RACY_SECONDS", "SpecCache", "file_key"]

#: Bumped when the file's layout changes; a file of another version is ignored.
CACHE_VERSION = 1
#: A spec file changed this recently (seconds) is not cached.
RACY_SECONDS = 2.0


def file_key(st: os.stat_result) -> list[int]:
    """What changes when a spec file changes: device, inode, size, mtime_ns, ctime_ns."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class SpecCache:
    """The cached documents of one list of spec folders (:meth:`open`, :meth:`get`, ...).

    ``folder`` None means no caching: every lookup misses and nothing is written.
    """

    def __init__(
        self, folder: Optional[str], name: str, key: list[Any], entries: dict[str, Any]
    ) -> None:
        self.folder = folder
        self.name = name
        self.key = key
        self._old = entries
        self._new: dict[str, Any] = {}
        self._changed = False

    @classmethod
    def open(
        cls, spec_dirs: Sequence[str], environ: Optional[Mapping[str, str]] = None
    ) -> SpecCache:
        """The cache of ``spec_dirs`` in nvshim's cache folder (empty if none or unusable)."""
        import zlib

        key = [CACHE_VERSION, list(spec_dirs)]
        digest = zlib.crc32(json.dumps(key).encode("utf-8", "surrogateescape"))
        name = f"cdi-specs-{digest:08x}.json"
        folder = cache_dir(environ)
        entries: dict[str, Any] = {}
        if folder is not None and usable_dir(folder):
            content = read_json(os.path.join(folder, name))
            if (
                isinstance(content, dict)
                and content.get("key") == key
                and isinstance(content.get("files"), dict)
            ):
                entries = content["files"]
        return cls(folder, name, key, entries)

    def get(self, path: str, st: os.stat_result) -> Any:
        """The cached document of ``path`` if its file is unchanged, else None."""
        entry = self._old.get(path)
        if not isinstance(entry, dict) or entry.get("stat") != file_key(st) or "doc" not in entry:
            return None
        self._new[path] = entry
        return entry["doc"]

    def put(self, path: str, st: os.stat_result, doc: Any) -> None:
        """Remember ``doc``, parsed and accepted from ``path`` whose file had ``st``.

        Not kept when the file changed too recently, or when JSON cannot hold
        ``doc`` exactly (a YAML date or a non-string key would come back as
        something else).
        """
        self._changed = True
        if self.folder is None:
            return
        recent = time.time_ns() - int(RACY_SECONDS * 1e9)
        if max(st.st_mtime_ns, st.st_ctime_ns) >= recent:
            return
        try:
            if json.loads(json.dumps(doc)) != doc:
                return
        except (TypeError, ValueError, RecursionError):
            return
        self._new[path] = {"stat": file_key(st), "doc": doc}

    def save(self) -> None:
        """Write the entries of the files seen since :meth:`open` if anything changed."""
        if self.folder is None:
            return
        if not self._changed and self._new.keys() == self._old.keys():
            return
        write_json(self.folder, self.name, {"key": self.key, "files": self._new})
