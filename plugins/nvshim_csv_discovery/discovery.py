"""Turning CSV entries into devices, mounts and links by looking at the host.

Every path is looked up under the driver root (``[nvidia-container-cli]
root``) as if the root were ``/``: a symbolic link found there is followed
inside the root (an absolute target starts again at the root, ``..`` stops
at it), so a driver root that is another system's tree is read the way that
system sees it.  The container path of a file is its path without the root.

Only the host is looked at here; the container's rootfs is never touched
(the hooks nvshim adds do that later, inside it).
"""

from __future__ import annotations

import errno
import glob
import os
import posixpath
import stat
from collections.abc import Iterable
from typing import Callable

import attrs

from nvshim.records import Device, Mount
from nvshim.rootpath import MAX_LINKS, host_path, normalise_root, resolve_in_root
from nvshim_csv_discovery.csvfiles import MountSpec

__all__ = [
    "DIR_MOUNT_OPTIONS",
    "FILE_MOUNT_OPTIONS",
    "MAX_LINKS",
    "Discovery",
    "discover",
    "is_library",
    "resolve_in_root",
]

#: Mount options of a bind-mounted file; folders get ``rbind`` instead of ``bind``.
FILE_MOUNT_OPTIONS = ("ro", "nosuid", "nodev", "bind")
DIR_MOUNT_OPTIONS = ("ro", "nosuid", "nodev", "rbind")

Warn = Callable[[str], None]


@attrs.frozen
class Discovery:
    """What a set of CSV entries gives on this host, in a deterministic order.

    :param devices: device nodes (their real type, major and minor; no
        mode or owner: the modifier gives them the container user's ids).
    :param mounts: read-only bind mounts of files and folders.
    :param links: ``(target, link)`` pairs: ``link`` (a container path) is a
        symbolic link whose text is ``target``, as on the host.
    :param ldcache_folders: container folders holding a mounted library.
    """

    devices: tuple[Device, ...] = ()
    mounts: tuple[Mount, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    ldcache_folders: tuple[str, ...] = ()


def is_library(path: str) -> bool:
    """Whether ``path`` names a shared library (``*.so`` or ``*.so.*``)."""
    name = posixpath.basename(path)
    return name.endswith(".so") or ".so." in name


class _Collector:
    """Accumulates results, dropping duplicates and keeping the first of each."""

    def __init__(self, root: str, warn: Warn) -> None:
        self.root = root
        self.warn = warn
        self.devices: dict[str, Device] = {}
        self.mounts: dict[str, Mount] = {}
        self.links: dict[str, str] = {}
        # Folders shared by many entries are looked at once.
        self.cache: dict[str, str | None] = {}

    def expand(self, entry: MountSpec) -> list[str]:
        """The container paths an entry names: itself, or its glob's matches."""
        if not entry.is_glob:
            return [entry.path]
        prefix = "" if self.root == "/" else glob.escape(self.root.rstrip("/"))
        matches = sorted(glob.glob(prefix + entry.path))
        strip = 0 if self.root == "/" else len(self.root.rstrip("/"))
        paths = [m[strip:] for m in matches]
        if not paths:
            self.warn(f"{entry.where}: no match for {entry.path} under {self.root}")
        return paths

    def add_device(self, entry: MountSpec, path: str) -> None:
        if path in self.devices:
            return
        try:
            real = resolve_in_root(self.root, path, cache=self.cache)
            st = os.stat(host_path(self.root, real))
        except OSError as exc:
            self.warn(f"{entry.where}: skipped device {path}: {exc.strerror or exc}")
            return
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            self.warn(f"{entry.where}: skipped {path}: not a character or block device")
            return
        self.devices[path] = Device(
            path=path,
            type=kind,
            major=os.major(st.st_rdev),
            minor=os.minor(st.st_rdev),
        )

    def add_chain(self, entry: MountSpec, path: str) -> None:
        """A lib, sym or dir entry: its links, then the file or folder they lead to."""
        links: list[tuple[str, str]] = []
        try:
            current = resolve_in_root(self.root, path, follow_last=False, cache=self.cache)
            while True:
                st = os.lstat(host_path(self.root, current))
                if not stat.S_ISLNK(st.st_mode):
                    break
                if len(links) >= MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                target = os.readlink(host_path(self.root, current))
                links.append((target, current))
                following = (
                    target
                    if target.startswith("/")
                    else (posixpath.join(posixpath.dirname(current), target))
                )
                current = resolve_in_root(self.root, following, follow_last=False, cache=self.cache)
        except OSError as exc:
            self.warn(f"{entry.where}: skipped {path}: {exc.strerror or exc}")
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if entry.type == "dir" and not is_dir:
            self.warn(f"{entry.where}: skipped {path}: not a folder")
            return
        if not is_dir and not stat.S_ISREG(st.st_mode):
            self.warn(f"{entry.where}: skipped {path}: not a regular file or folder")
            return
        if current == "/":
            self.warn(f"{entry.where}: skipped {path}: it leads to the root folder")
            return
        # A ``sym`` entry is about its link: when the link leads to a folder,
        # mounting that folder would hide the files mounted into it and show
        # every other file of the host folder.  The link alone is made.
        skip_mount = entry.type == "sym" and is_dir
        for target, link in links:
            if "::" in target or "\0" in target:
                self.warn(f"{entry.where}: link {link} -> {target!r} cannot be passed on; skipped")
                continue
            self.links.setdefault(link, target)
        if not skip_mount and current not in self.mounts:
            self.mounts[current] = Mount(
                destination=current,
                source=host_path(self.root, current),
                type="bind",
                options=DIR_MOUNT_OPTIONS if is_dir else FILE_MOUNT_OPTIONS,
            )

    def result(self) -> Discovery:
        # A path both mounted and linked: the mount is the real file, keep it.
        links = tuple((t, link) for link, t in self.links.items() if link not in self.mounts)
        folders: dict[str, None] = {}
        for mount in self.mounts.values():
            if "rbind" not in mount.options and is_library(mount.destination):
                folders.setdefault(posixpath.dirname(mount.destination), None)
        return Discovery(
            devices=tuple(self.devices.values()),
            mounts=tuple(self.mounts.values()),
            links=links,
            ldcache_folders=tuple(folders),
        )


def discover(entries: Iterable[MountSpec], root: str, warn: Warn) -> Discovery:
    """Look every entry up under the driver ``root`` (``""`` means ``/``).

    Missing paths, globs without a match, regular files listed as devices
    and link loops are skipped with a warning naming the entry's
    ``file:line``.  Devices come first in entry order, then mounts and links
    in entry order; duplicates keep their first place.
    """
    collector = _Collector(normalise_root(root), warn)
    for entry in entries:
        for path in collector.expand(entry):
            if entry.type == "dev":
                collector.add_device(entry, path)
            else:
                collector.add_chain(entry, path)
    return collector.result()
