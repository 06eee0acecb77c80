"""Path operations confined to a container's root file system.

nvshim's hook commands run as root on the host and write into a rootfs that an
image controls.  An image can plant symbolic links anywhere (``/etc`` pointing
at the host's ``/etc``, a library folder pointing at ``/usr/lib``), so a path
inside the rootfs must never be resolved by the host's kernel from ``/``.

Every function here takes a file descriptor of the rootfs (see :func:`open_root`)
and resolves container paths relative to it, the way ``openat2(2)`` with
``RESOLVE_IN_ROOT`` does (and filepath-securejoin in Go): symbolic links are
interpreted *as if the rootfs were* ``/`` (an absolute target starts again at
the rootfs, ``..`` never climbs above it), with at most 40 links per lookup.
Where the kernel has ``openat2`` the kernel does the resolution; elsewhere a
component-by-component walk does it, holding a descriptor for each folder so that
no path string is ever checked and then used.

Only the standard library is used: this code runs on every container start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections import deque
from typing import Any, Callable, Optional

__all__ = [
    "MAX_SYMLINKS",
    "container_path_parts",
    "ensure_symlink",
    "exists",
    "open_dir",
    "open_root",
    "realpath_in_root",
    "write_file",
]

#: Symbolic links followed in one lookup before ELOOP (the kernel's MAXSYMLINKS).
MAX_SYMLINKS = 40

# openat2(2) constants from <linux/openat2.h>.
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
# openat2 has number 437 on every architecture that uses the unified syscall
# table (all since Linux 5.1) except alpha and ia64, which offset theirs.
_SYS_OPENAT2 = 437
_NO_OPENAT2_MACHINES = ("alpha", "ia64")

# Tri-state: None = not tried yet, then True/False.  Tests set it to False to
# exercise the manual walk on kernels that have openat2.
use_openat2: Optional[bool] = None
_openat2_fn: Optional[Callable[[int, bytes, int], int]] = None


def container_path_parts(path: str) -> list[str]:
    """Split a container path into its components, refusing unsafe ones.

    :param path: an absolute path inside the container, e.g. ``/usr/lib``.
    :returns: the components, without empty and ``.`` ones (``/`` gives ``[]``).
    :raises ValueError: the path is not a string, is relative, contains a NUL
        byte or a ``..`` component.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"container path must be a non-empty string, not {path!r}")
    if "\0" in path:
        raise ValueError(f"container path contains a NUL byte: {path!r}")
    if not path.startswith("/"):
        raise ValueError(f"container path must be absolute: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"container path must not contain '..': {path!r}")
    return parts


def open_root(path: str) -> int:
    """Open a rootfs folder (a host path) and return an ``O_PATH`` descriptor for it.

    The caller closes it with :func:`os.close`.  The rootfs path itself comes
    from the engine's bundle, not from the image, so symbolic links leading to
    it are followed.
    """
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _load_openat2() -> Optional[Callable[[int, bytes, int], int]]:
    """Build a ctypes caller for openat2, or None where it cannot exist."""
    if os.uname().machine in _NO_OPENAT2_MACHINES:
        return None
    # ctypes is imported here, not at module load, so hosts and callers that
    # never need openat2 do not pay for it.
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall: Any = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long

    class OpenHow(ctypes.Structure):
        _fields_ = (
            ("flags", ctypes.c_uint64),
            ("mode", ctypes.c_uint64),
            ("resolve", ctypes.c_uint64),
        )

    def openat2(dir_fd: int, path: bytes, flags: int) -> int:
        how = OpenHow(flags, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        fd = int(
            syscall(
                ctypes.c_long(_SYS_OPENAT2),
                ctypes.c_int(dir_fd),
                ctypes.c_char_p(path),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
        )
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path.decode(errors="replace"))
        return fd

    return openat2


def _try_openat2(root_fd: int, parts: list[str], flags: int) -> Optional[int]:
    """Resolve with openat2(RESOLVE_IN_ROOT); None when the kernel cannot.

    :raises OSError: the lookup itself failed (ENOENT, ENOTDIR, ELOOP...).
    """
    global use_openat2, _openat2_fn
    if use_openat2 is False:
        return None
    if use_openat2 is None:
        _openat2_fn = _load_openat2()
        use_openat2 = _openat2_fn is not None
        if not use_openat2:
            return None
    assert _openat2_fn is not None
    path = ("/".join(parts) or ".").encode()
    for _ in range(8):
        try:
            return _openat2_fn(root_fd, path, flags | os.O_CLOEXEC)
        except OSError as exc:
            # ENOSYS: kernel before 5.6; EPERM: a seccomp filter (as in a
            # container) refuses it; E2BIG/EINVAL: flags this kernel lacks.
            if exc.errno in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):
                use_openat2 = False
                return None
            # EAGAIN: a concurrent rename made the kernel give up on `..`
            # safety checks; try again, then fall back to the walk.
            if exc.errno != errno.EAGAIN:
                raise
    return None


def _walk(
    root_fd: int, parts: list[str], *, create: bool, mode: int, follow_last: bool
) -> tuple[int, list[str]]:
    """Resolve ``parts`` inside the rootfs by hand.

    Returns an ``O_PATH`` descriptor and the names of the components that lead
    to it from the rootfs with every link resolved (the in-root real path).

    Each component is opened with ``O_NOFOLLOW`` relative to the descriptor of
    the folder before it, so a component swapped for a link after it was
    looked at is never reached through a path string.  ``..`` pops the stack
    of held folder descriptors and stops at the rootfs.  Symbolic links are
    read and their targets pushed back onto the components still to resolve,
    an absolute target restarting at the rootfs.  With ``create``, missing
    folders are made with ``mode`` (also the missing ones a dangling link
    points at, as ``mkdir -p`` inside a chroot would).
    """
    stack: list[int] = []  # descriptors we opened; the rootfs is below them
    names: list[str] = []  # the name of each descriptor in `stack`
    todo: deque[str] = deque(parts)
    links = 0
    mkdir_tries = 0
    try:
        while todo:
            name = todo.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if stack:
                    os.close(stack.pop())
                    names.pop()
                continue
            cur = stack[-1] if stack else root_fd
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                if not create or mkdir_tries > 100:
                    raise
                mkdir_tries += 1
                _mkdir(cur, name, mode)
                todo.appendleft(name)
                continue
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                links += 1
                try:
                    if links > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
                    target = os.readlink("", dir_fd=fd)
                finally:
                    os.close(fd)
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                    names.clear()
                todo.extendleft(reversed(target.split("/")))
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
            stack.append(fd)
            names.append(name)
        if stack:
            return stack.pop(), names
        return os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd), names
    finally:
        for fd in stack:
            os.close(fd)


def _mkdir(dir_fd: int, name: str, mode: int) -> None:
    """Make folder ``name`` in ``dir_fd`` with exactly ``mode`` (umask aside)."""
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        return  # made concurrently, or a dangling link: the caller looks again
    # The umask of whoever runs the hook should not decide the folder's mode.
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _resolve(
    root_fd: int,
    parts: list[str],
    *,
    create: bool = False,
    mode: int = 0o755,
    follow_last: bool = True,
) -> int:
    """Resolve ``parts`` in the rootfs; return an ``O_PATH`` descriptor."""
    flags = os.O_PATH | (0 if follow_last else os.O_NOFOLLOW)
    try:
        fd = _try_openat2(root_fd, parts, flags)
    except FileNotFoundError:
        if not create:
            raise
        fd = None
    if fd is not None:
        return fd
    return _walk(root_fd, parts, create=create, mode=mode, follow_last=follow_last)[0]


def open_dir(root_fd: int, path: str, create: bool = False, mode: int = 0o755) -> int:
    """Open folder ``path`` of the rootfs and return a descriptor for it.

    :param root_fd: a descriptor of the rootfs (:func:`open_root`).
    :param path: an absolute container path without ``..``.
    :param create: make missing folders (parents included) with ``mode``.
    :param mode: permission bits of the folders made.
    :returns: an ``O_RDONLY | O_DIRECTORY`` descriptor; the caller closes it.
    :raises ValueError: ``path`` is not a clean absolute path.
    :raises OSError: the folder is missing (without ``create``), a component
        is not a folder, or there are too many links (ELOOP).
    """
    parts = container_path_parts(path)
    opath = _resolve(root_fd, parts, create=create, mode=mode)
    try:
        # Reopening "." of the held descriptor cannot be redirected by a link.
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=opath)
    finally:
        os.close(opath)


def realpath_in_root(root_fd: int, path: str) -> str:
    """Return ``path`` with every link resolved inside the rootfs.

    The result names the same file from the rootfs without passing through
    any symbolic link, so a tool that takes path strings (ldconfig) reaches
    the file the rootfs means and not a host file an image link points at.

    :raises ValueError: ``path`` is not a clean absolute path.
    :raises OSError: a component is missing or not a folder, or links loop.
    """
    parts = container_path_parts(path)
    fd, names = _walk(root_fd, parts, create=False, mode=0o755, follow_last=True)
    os.close(fd)
    return "/" + "/".join(names)


def exists(root_fd: int, path: str, follow: bool = True) -> bool:
    """Tell whether ``path`` exists inside the rootfs.

    :param follow: resolve a link at the last component (inside the rootfs);
        with False, a link itself, dangling or not, counts as existing.
    :returns: False when a component is missing, not a folder, or the links
        loop; True otherwise.
    :raises ValueError: ``path`` is not a clean absolute path.
    """
    parts = container_path_parts(path)
    try:
        fd = _resolve(root_fd, parts, follow_last=follow)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    os.close(fd)
    return True


def _split_parent(path: str) -> tuple[str, str]:
    """Split a container path into (parent folder path, last name)."""
    parts = container_path_parts(path)
    if not parts:
        raise ValueError(f"container path names the root itself: {path!r}")
    return "/" + "/".join(parts[:-1]), parts[-1]


def _read_link(dir_fd: int, name: str) -> Optional[str]:
    """Return the target of link ``name`` in ``dir_fd``, None when missing.

    :raises FileExistsError: ``name`` exists and is not a symbolic link.
    """
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # exists, not a link
            raise FileExistsError(errno.EEXIST, "exists and is not a symbolic link", name) from None
        raise


def ensure_symlink(
    root_fd: int, link_path: str, target: str, *, replace_file: bool = False
) -> str:
    """Make ``link_path`` inside the rootfs a symbolic link to ``target``.

    Parent folders are created (0755).  The link itself is never followed;
    ``target`` is stored as given (the container resolves it later).

    :param replace_file: also replace a regular file at ``link_path`` (an
        image's own copy of a library), atomically.
    :returns: ``"created"``, ``"exists"`` (the same link was there) or
        ``"replaced"`` (a link to somewhere else, or a regular file when
        ``replace_file``, was swapped atomically).
    :raises FileExistsError: a folder, or something else that is not a link,
        is at ``link_path`` (a regular file only without ``replace_file``).
    :raises ValueError: ``link_path`` is not a clean absolute path or
        ``target`` is empty or holds a NUL byte.
    """
    if not isinstance(target, str) or not target or "\0" in target:
        raise ValueError(f"bad link target: {target!r}")
    parent, name = _split_parent(link_path)
    dir_fd = open_dir(root_fd, parent, create=True)
    try:
        current = _existing_link(dir_fd, name, replace_file)
        if current == target:
            return "exists"
        if current is None:
            try:
                os.symlink(target, name, dir_fd=dir_fd)
                return "created"
            except FileExistsError:
                current = _existing_link(dir_fd, name, replace_file)  # appeared meanwhile
                if current == target:
                    return "exists"
        # Replace through a temporary link and rename(2), so the path is
        # never missing; rename over a folder fails rather than clobbering it.
        tmp = f".{name}.nvshim-{secrets.token_hex(6)}"
        os.symlink(target, tmp, dir_fd=dir_fd)
        try:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink_quietly(dir_fd, tmp)
            raise
        return "replaced"
    finally:
        os.close(dir_fd)


def _existing_link(dir_fd: int, name: str, replace_file: bool) -> Optional[str]:
    """:func:`_read_link`, with a regular file reported as ``""`` when ``replace_file``.

    rename(2) then swaps the file for the link (it never follows ``name``)
    and refuses a folder that took its place meanwhile.

    :raises FileExistsError: ``name`` is a folder or another non-link.
    """
    try:
        return _read_link(dir_fd, name)
    except FileExistsError:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise FileExistsError(errno.EEXIST, "a folder is in the way", name) from None
        if replace_file and stat.S_ISREG(st.st_mode):
            return ""
        raise


def _unlink_quietly(dir_fd: int, name: str) -> None:
    """Remove a temporary file we made; a failure changes nothing worse."""
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def write_file(root_fd: int, path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` inside the rootfs, atomically, with ``mode``.

    The parent folder is resolved (and created, 0755) inside the rootfs; the
    data goes to a new temporary file in it (``O_EXCL | O_NOFOLLOW``), which
    is fsynced and renamed over ``path`` within that same folder descriptor.
    A link at ``path`` is replaced, never followed; a folder there is an error.

    :raises ValueError: ``path`` is not a clean absolute path.
    :raises OSError: the write failed; no partial file is left behind.
    """
    parent, name = _split_parent(path)
    dir_fd = open_dir(root_fd, parent, create=True)
    try:
        tmp = f".{name}.nvshim-{secrets.token_hex(6)}"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
        try:
            try:
                os.fchmod(fd, mode)  # the umask must not decide the mode
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink_quietly(dir_fd, tmp)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
