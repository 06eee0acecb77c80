"""Paths under a root folder (a driver root or a device root) seen as ``/``."""

from __future__ import annotations

import errno
import os

__all__ = ["container_path", "host_path", "normalise_root", "resolve_in_root"]

_MAX_LINKS = 40


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


def resolve_in_root(root: str, path: str) -> str:
    """Resolve the symbolic links of ``path`` with ``root`` taken as ``/``.

    Absolute link targets start again at ``root`` and ``..`` never climbs
    above it, so a driver root's links never lead to the host's own files.
    Missing components are kept as written.  Returns the path as seen from
    ``root``.

    :raises OSError: ``ELOOP`` after 40 links.
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
        try:
            target = os.readlink(host_path(root, "/" + "/".join(candidate)))
        except OSError:
            resolved = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            resolved = []
        pending.extend(p for p in reversed(target.split("/")) if p)
    return "/" + "/".join(resolved)
