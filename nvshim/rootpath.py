"""Paths under a root folder (a driver root, a device root) seen as ``/`` (public API).

Shared by host discovery (:mod:`nvshim.host`) and the ``csv-discovery``
modifier: a root's links never lead out of it.
"""

from __future__ import annotations

import errno
import os
from typing import Optional

__all__ = ["MAX_LINKS", "container_path", "host_path", "normalise_root", "resolve_in_root"]

#: Links followed for one path before giving up (Linux's own limit).
MAX_LINKS = 40


def normalise_root(root: str) -> str:
    """``/`` for the host's own root, else the absolute path without a trailing slash."""
    if not root or root.rstrip("/") == "":
        return "/"
    return os.path.abspath(root)


def host_path(root: str, path: str) -> str:
    """The host path of ``path`` (absolute, as seen from ``root``)."""
    return path if root == "/" else root + "/" + path.lstrip("/")


def container_path(root: str, path: str) -> str:
    """The inverse of :func:`host_path`: strip the ``root`` prefix from host path ``path``."""
    if root == "/" or not (path == root or path.startswith(root + "/")):
        return path
    return "/" + path[len(root) :].lstrip("/")


def resolve_in_root(
    root: str,
    path: str,
    *,
    follow_last: bool = True,
    cache: Optional[dict[str, Optional[str]]] = None,
) -> str:
    """Resolve the symbolic links of ``path`` with ``root`` taken as ``/``.

    Absolute link targets start again at ``root`` and ``..`` never climbs
    above it, so a driver root's links never lead to the host's own files.
    Missing components are kept as written.  Returns the path as seen from
    ``root``.

    :param follow_last: False leaves a link in the last component unresolved.
    :param cache: host path to link text (None for a non-link), filled as it
        goes: saves the ``lstat`` calls of folders that many paths share.
    :raises OSError: ``ELOOP`` after :data:`MAX_LINKS` links.
    """
    pending = [p for p in reversed(path.split("/")) if p]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = [*resolved, part]
        if not pending and not follow_last:
            resolved = candidate
            break
        current = host_path(root, "/" + "/".join(candidate))
        if cache is not None and current in cache:
            target = cache[current]
        else:
            target = _link_text(current)
            if cache is not None:
                cache[current] = target
        if target is None:
            resolved = candidate
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            resolved = []
        pending.extend(p for p in reversed(target.split("/")) if p)
    return "/" + "/".join(resolved)


def _link_text(path: str) -> Optional[str]:
    """The text of the link at ``path``; None when it is not a link (or is missing)."""
    try:
        return os.readlink(path)
    except OSError:
        return None
