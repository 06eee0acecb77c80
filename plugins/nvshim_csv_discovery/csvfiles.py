"""Finding and parsing the CSV mount-spec files of a Jetson-style host.

A file holds one ``type, path`` entry a line: ``dev`` (a device node), ``lib``
(a library), ``sym`` (a symbolic link), ``dir`` (a folder).  Lines are
trimmed and split at the first comma, so paths may hold commas; blank lines
and lines starting with ``#`` are skipped (there are no trailing comments: a
path holding `` #`` gets one warning a file); any other bad line is skipped
with a warning naming ``file:line``.  A ``dev`` name without ``/`` lives
under ``/dev``; double slashes and ``.`` components are normalised; a
relative path or a ``..`` component is refused (the path would not say
where it lands inside the container).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from typing import Callable

import attrs

__all__ = [
    "DEFAULT_FILES",
    "ENTRY_TYPES",
    "MountSpec",
    "find_csv_files",
    "normalise_path",
    "parse_csv",
    "parse_csv_file",
]

#: The types a line may have.
ENTRY_TYPES = ("dev", "lib", "sym", "dir")
#: The files read unless the image sets ``NVIDIA_REQUIRE_JETPACK=csv-mounts=all``.
DEFAULT_FILES = frozenset({"l4t.csv", "drivers.csv", "devices.csv"})

Warn = Callable[[str], None]


@attrs.frozen
class MountSpec:
    """One entry of a CSV file.

    :param type: ``dev``, ``lib``, ``sym`` or ``dir``.
    :param path: the normalised absolute path (a glob pattern when it holds
        ``*``, ``?`` or ``[``), without the driver root.
    :param where: ``file:line``, for messages.
    """

    type: str
    path: str
    where: str

    @property
    def is_glob(self) -> bool:
        """Whether :attr:`path` is a glob pattern."""
        return any(c in self.path for c in "*?[")


def normalise_path(path: str) -> str:
    """``path`` with repeated slashes, ``.`` components and a trailing slash removed.

    :raises ValueError: for a relative path, a ``..`` component, a NUL byte
        or the root folder itself.
    """
    if "\0" in path:
        raise ValueError("the path holds a NUL byte")
    if not path.startswith("/"):
        raise ValueError(f"relative path {path!r} refused: paths must be absolute")
    if ".." in path.split("/"):
        raise ValueError(f"path {path!r} refused: '..' components are not allowed")
    cleaned = posixpath.normpath(path)
    # normpath keeps a leading "//" (POSIX gives it a meaning); we do not.
    cleaned = "/" + cleaned.lstrip("/")
    if cleaned == "/":
        raise ValueError("the root folder itself cannot be mounted")
    return cleaned


def parse_csv(lines: Iterable[str | bytes], filename: str, warn: Warn) -> list[MountSpec]:
    """Parse the lines of one CSV file named ``filename``; bad lines go to ``warn``."""
    entries: list[MountSpec] = []
    warned_comment = False
    for number, raw in enumerate(lines, 1):
        where = f"{filename}:{number}"
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                warn(f"{where}: skipped: not valid UTF-8")
                continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, path = line.partition(",")
        kind, path = kind.strip(), path.strip()
        if not sep:
            warn(f"{where}: skipped: expected 'type, path', got {line!r}")
            continue
        if kind not in ENTRY_TYPES:
            expected = ", ".join(ENTRY_TYPES)
            warn(f"{where}: skipped: unknown type {kind!r} (expected one of {expected})")
            continue
        if not path:
            warn(f"{where}: skipped: empty path")
            continue
        if not warned_comment and ("\t#" in path or " #" in path):
            # NVIDIA's runtime reads such a line the same way: the comment is
            # part of the path, which then matches nothing.  Said once a file.
            warned_comment = True
            warn(
                f"{where}: the path {path!r} holds ' #': CSV files have no trailing"
                " comments, the whole text is read as the path"
            )
        if kind == "dev" and "/" not in path:
            path = "/dev/" + path
        try:
            path = normalise_path(path)
        except ValueError as exc:
            warn(f"{where}: skipped: {exc}")
            continue
        entries.append(MountSpec(kind, path, where))
    return entries


def parse_csv_file(path: str, warn: Warn) -> list[MountSpec]:
    """Parse the CSV file at ``path``; an unreadable file is one warning and no entries."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        warn(f"{path}: skipped: {exc.strerror or exc}")
        return []
    return parse_csv(data.splitlines(), path, warn)


def find_csv_files(folder: str, names: Sequence[str] | None = None) -> list[str]:
    """The CSV files directly in ``folder``, sorted by name.

    ``*.csv`` (case-insensitive); a file named just ``.csv`` is skipped; a
    missing folder means none.  ``names`` limits the result to those exact
    file names (``DEVICES.CSV`` is not ``devices.csv``, as in NVIDIA's
    runtime); None means every file.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    wanted = None if names is None else set(names)
    found = []
    for entry in entries:
        lower = entry.name.lower()
        if not lower.endswith(".csv") or lower == ".csv":
            continue
        if wanted is not None and entry.name not in wanted:
            continue
        try:
            if not entry.is_file():
                continue
        except OSError:
            continue
        found.append(entry.path)
    return found
