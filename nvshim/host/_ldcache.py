"""Reader for glibc's ``ld.so.cache``: find libraries by name and architecture.

Two layouts exist.  The old one starts with ``ld.so-1.7.0`` and holds
12-byte entries; the new one starts with ``glibc-ld.so.cache1.1`` and holds
24-byte entries with a hardware-capability word.  glibc wrote both, the new
one after the old (aligned to 8 bytes), until 2.32; newer glibc writes only
the new one.  Each entry points into a string table: the key is the library
name (the soname, ``libcuda.so.1``) and the value its path.  String offsets
are relative to the new header in the new layout, and to the end of the
entry table in the old one.

The ``flags`` word of an entry says the ELF type (low byte, 3 for libc6) and
the architecture (bits 8-15; see :data:`ARCH_FLAGS`).  A lookup keeps the
entries of one architecture, the machine's own by default, as NVIDIA's
``internal/ldcache`` does.  glibc lists the preferred entry of a name first,
so the first entry of a name wins.
"""

from __future__ import annotations

import fnmatch
import os
import struct
from collections.abc import Iterable, Sequence

import attrs

from nvshim.host._errors import LdCacheError

__all__ = [
    "ARCH_FLAGS",
    "DEFAULT_LIBRARY_FOLDERS",
    "LdCache",
    "LdCacheEntry",
    "host_arch",
    "read_ldcache",
]

_OLD_MAGIC = b"ld.so-1.7.0"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
# old: magic (11 bytes, padded to 12), nlibs; entries: flags, key, value.
_OLD_HEADER = struct.Struct("=12sI")
_OLD_ENTRY = struct.Struct("=iII")
# new: magic+version (20), nlibs, len_strings, flags (u8) + 3 pad,
# extension_offset, 3 unused words; entries: flags, key, value, osversion, hwcap.
_NEW_HEADER = struct.Struct("=20sIIB3xI12x")
_NEW_ENTRY = struct.Struct("=iIIIQ")
# A real cache is well under a megabyte; refuse to read something absurd.
_MAX_CACHE_BYTES = 64 << 20

_FLAG_TYPE_MASK = 0x00FF
_FLAG_ELF_LIBC6 = 0x0003
_FLAG_ARCH_MASK = 0xFF00

#: Architecture names by the arch bits (``flags & 0xff00``) of a libc6 entry.
#: ``0`` is a 32-bit library of the base ABI (i386 on x86, 32-bit arm, ...).
ARCH_FLAGS: dict[int, str] = {
    0x0000: "i386",
    0x0200: "ia64",
    0x0300: "x86_64",
    0x0400: "s390x",
    0x0500: "ppc64",
    0x0600: "mips64-n32",
    0x0700: "mips64",
    0x0800: "x32",
    0x0900: "armhf",
    0x0A00: "aarch64",
    0x0B00: "armel",
    0x0F00: "riscv64-soft",
    0x1000: "riscv64",
    0x1100: "loongarch64-soft",
    0x1200: "loongarch64",
}

_MACHINE_ARCH = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "ppc64le": "ppc64",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loongarch64",
}

#: Folders searched, in this order, when a root has no ``/etc/ld.so.cache``.
DEFAULT_LIBRARY_FOLDERS: tuple[str, ...] = (
    "/lib64",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/lib",
)


def host_arch() -> str:
    """The :data:`ARCH_FLAGS` name of this machine's native libraries (``x86_64``...)."""
    machine = os.uname().machine.lower()
    return _MACHINE_ARCH.get(machine, machine)


@attrs.frozen
class LdCacheEntry:
    """One library of the cache.

    :ivar name: the key, usually the soname (``libcuda.so.1``).
    :ivar path: the path the cache gives, as seen from the cache's root.
    :ivar flags: the raw flags word.
    """

    name: str
    path: str
    flags: int

    @property
    def arch(self) -> str:
        """The architecture name (:data:`ARCH_FLAGS`), ``""`` for a non-libc6 entry."""
        if self.flags & _FLAG_TYPE_MASK != _FLAG_ELF_LIBC6:
            return ""
        bits = self.flags & _FLAG_ARCH_MASK
        return ARCH_FLAGS.get(bits, f"0x{bits:04x}")


@attrs.frozen
class LdCache:
    """A parsed ``ld.so.cache``.

    :ivar path: the file read (a host path).
    :ivar entries: every entry, in the file's order.
    """

    path: str
    entries: tuple[LdCacheEntry, ...]

    @classmethod
    def load(cls, path: str) -> LdCache:
        """Read and parse ``path``; see :func:`read_ldcache`."""
        return read_ldcache(path)

    def libraries(self, arch: str | None = None) -> dict[str, str]:
        """``{name: path}`` for one architecture (default :func:`host_arch`), first entry wins."""
        wanted = arch or host_arch()
        found: dict[str, str] = {}
        for entry in self.entries:
            if entry.arch == wanted:
                found.setdefault(entry.name, entry.path)
        return found

    def lookup(self, *patterns: str, arch: str | None = None) -> list[str]:
        """The paths of the libraries whose name matches one of ``patterns``.

        :param patterns: names or :mod:`fnmatch` patterns (``libcuda.so.*``).
        :param arch: an :data:`ARCH_FLAGS` name; default :func:`host_arch`.
        :returns: paths as the cache gives them (relative to the cache's
            root), in the cache's order, without repeats.
        """
        found: dict[str, None] = {}
        for name, path in self.libraries(arch).items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                found.setdefault(path, None)
        return list(found)

    def folders(self, arch: str | None = None) -> list[str]:
        """The folders holding the libraries of ``arch``, in first-seen order."""
        return list(dict.fromkeys(os.path.dirname(p) for p in self.libraries(arch).values()))


def _string(data: bytes, offset: int, path: str) -> str:
    if not 0 <= offset < len(data):
        raise LdCacheError(path, f"string offset {offset} outside the file ({len(data)} bytes)")
    end = data.find(b"\0", offset)
    if end < 0:
        raise LdCacheError(path, f"unterminated string at offset {offset}")
    return os.fsdecode(data[offset:end])


def _parse_new(data: bytes, start: int, path: str) -> list[LdCacheEntry]:
    if len(data) < start + _NEW_HEADER.size:
        raise LdCacheError(path, "truncated: incomplete glibc-ld.so.cache1.1 header")
    magic, nlibs, _len_strings, _flags, _ext = _NEW_HEADER.unpack_from(data, start)
    if magic != _NEW_MAGIC:
        raise LdCacheError(path, "not an ld.so.cache (bad magic)")
    table = start + _NEW_HEADER.size
    if table + nlibs * _NEW_ENTRY.size > len(data):
        raise LdCacheError(path, f"truncated: {nlibs} entries announced, file too short")
    entries = []
    for i in range(nlibs):
        flags, key, value, _osv, _hwcap = _NEW_ENTRY.unpack_from(data, table + i * _NEW_ENTRY.size)
        entries.append(
            LdCacheEntry(
                _string(data, start + key, path), _string(data, start + value, path), flags
            )
        )
    return entries


def _parse_old(data: bytes, path: str) -> list[LdCacheEntry]:
    magic, nlibs = _OLD_HEADER.unpack_from(data, 0)
    if not magic.startswith(_OLD_MAGIC):
        raise LdCacheError(path, "not an ld.so.cache (bad magic)")
    table = _OLD_HEADER.size
    strings = table + nlibs * _OLD_ENTRY.size
    if strings > len(data):
        raise LdCacheError(path, f"truncated: {nlibs} entries announced, file too short")
    # glibc < 2.32 appends the new layout after the old one, 8-byte aligned:
    # it is the more complete (architecture flags are the same), so prefer it.
    new_start = (strings + 7) & ~7
    if data[new_start : new_start + len(_NEW_MAGIC)] == _NEW_MAGIC:
        return _parse_new(data, new_start, path)
    entries = []
    for i in range(nlibs):
        flags, key, value = _OLD_ENTRY.unpack_from(data, table + i * _OLD_ENTRY.size)
        entries.append(
            LdCacheEntry(
                _string(data, strings + key, path), _string(data, strings + value, path), flags
            )
        )
    return entries


def parse_ldcache(data: bytes, path: str) -> LdCache:
    """Parse the bytes of a cache file; ``path`` names it in errors.

    :raises LdCacheError: bad magic, truncation, or a string outside the file.
    """
    if data.startswith(_OLD_MAGIC):
        if len(data) < _OLD_HEADER.size:
            raise LdCacheError(path, "truncated: incomplete ld.so-1.7.0 header")
        entries = _parse_old(data, path)
    elif data.startswith(_NEW_MAGIC[: min(len(data), len(_NEW_MAGIC))]) and data:
        entries = _parse_new(data, 0, path)
    else:
        raise LdCacheError(path, "not an ld.so.cache (bad magic)")
    return LdCache(path, tuple(entries))


def read_ldcache(path: str) -> LdCache:
    """Read and parse the cache file at host path ``path``.

    :raises LdCacheError: naming ``path``: unreadable, truncated or corrupt.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_CACHE_BYTES + 1)
    except OSError as exc:
        raise LdCacheError(path, exc.strerror or str(exc)) from None
    if len(data) > _MAX_CACHE_BYTES:
        raise LdCacheError(path, f"larger than {_MAX_CACHE_BYTES} bytes")
    return parse_ldcache(data, path)


def search_folders(
    root: str, names: Iterable[str], folders: Sequence[str] = DEFAULT_LIBRARY_FOLDERS
) -> list[str]:
    """Find libraries by file name (or pattern) in ``folders`` under ``root``.

    The fallback when a root has no cache.  Returns root-relative paths (as a
    cache would give them), first folder first.
    """
    import glob

    found: dict[str, None] = {}
    patterns = list(names)
    for folder in folders:
        host_folder = os.path.join(root, folder.lstrip("/"))
        for pattern in patterns:
            for hit in sorted(glob.glob(os.path.join(glob.escape(host_folder), pattern))):
                found.setdefault(os.path.join(folder, os.path.basename(hit)), None)
    return list(found)
