"""Finding executables: PATH, then the usual folders (podman may call with no PATH)."""

from __future__ import annotations

import os

# Not `typing.TYPE_CHECKING`: typing and collections.abc cost more than the
# pass-through path itself (see docs/performance.md).  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Searched after PATH: podman calls ``delete --force`` with no PATH at all.
DEFAULT_FOLDERS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def is_executable(path: str) -> bool:
    """Whether ``path`` is a file this process may execute."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def search_path(
    name: str, environ: Mapping[str, str] | None = None, folders: Iterable[str] = DEFAULT_FOLDERS
) -> list[str]:
    """Candidate paths for ``name``: each absolute PATH folder, then the default folders.

    A PATH entry that is not absolute (``.``, ``bin``, an empty one) is never
    searched, as Go's exec refuses it: it would depend on the directory the
    engine happened to start nvshim in.
    """
    env = os.environ if environ is None else environ
    candidates = [d for d in env.get("PATH", "").split(os.pathsep) if d.startswith("/")]
    candidates.extend(folders)
    seen: set[str] = set()
    result = []
    for folder in candidates:
        path = os.path.join(folder, name)
        if path not in seen:
            seen.add(path)
            result.append(path)
    return result


def find_executable(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The first executable ``name`` in PATH, then in :data:`DEFAULT_FOLDERS`, or None."""
    for path in search_path(name, environ):
        if is_executable(path):
            return os.path.abspath(path)
    return None
