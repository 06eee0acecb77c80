"""Finding the low-level runtime (runc, crun) to exec."""

from __future__ import annotations

import os

# Not `typing.TYPE_CHECKING`: typing and collections.abc cost more than the
# pass-through path itself (see docs/performance.md).  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Searched after PATH: podman calls ``delete --force`` with no PATH at all.
DEFAULT_FOLDERS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class RuntimeNotFound(Exception):
    """No configured runtime could be found."""


def is_executable(path: str) -> bool:
    """Whether ``path`` is a file this process may execute."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


_is_executable = is_executable


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


def search_path(
    name: str, environ: Mapping[str, str] | None = None, folders: Iterable[str] = DEFAULT_FOLDERS
) -> list[str]:
    """Candidate paths for ``name``: each PATH folder, then the default folders."""
    env = os.environ if environ is None else environ
    candidates = [d for d in env.get("PATH", "").split(os.pathsep) if d]
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
            if _is_executable(path) and not _is_nvshim(path, own):
                return os.path.abspath(path)
        where = entry if "/" in entry else f"{entry} (in PATH and {', '.join(DEFAULT_FOLDERS)})"
        tried.append(where)
    raise RuntimeNotFound(
        "no low-level runtime found; tried " + ("; ".join(tried) if tried else "nothing")
    )
