"""Running the host's ldconfig on a container's rootfs so that it cannot reach the host.

``update-ldcache`` runs after runc has mounted the container's procfs at
``<rootfs>/proc``; there ``/proc/1/root`` is the host's ``/``.  An image could
steer ldconfig through it: a library whose SONAME is
``../../proc/1/root/<host path>`` made ldconfig create a link on the host, an
``ld.so.conf.d`` entry ``/proc/1/root/<host folder>`` made links in a host
folder, a ``glibc-hwcaps`` link leaked a host folder's names into the cache
(CVE-2025-23267 is the same family), and ``include /dev/zero`` or a FIFO in
``ld.so.conf`` grew ldconfig to gigabytes or blocked the start.  So ldconfig
runs in a child process that:

- has its own mount namespace (``unshare(CLONE_NEWNS)``), every mount made
  private, so nothing it mounts is seen by the container or the host;
- has a private, empty ``tmpfs`` over ``<rootfs>/proc`` and ``<rootfs>/sys``
  (the one over ``/proc`` holds only the configuration written for this run);
- reads only that configuration (``-f``): the folders of the image's
  ``/etc/ld.so.conf`` and of its ``include`` files, read here through the
  rootfs descriptor with links resolved inside the rootfs, regular files only
  (a FIFO, a device or a folder named by ``include`` is skipped with a
  warning), bounded in size, depth and count, then the hook's own folders;
  no folder is on its command line;
- is chrooted into the rootfs before the exec when the host's ldconfig is a
  static binary (glibc's is), executed from a descriptor opened beforehand.
  A dynamically linked ldconfig or a script would load the image's loader and
  libraries after a chroot, so it runs as ``ldconfig -r <rootfs>`` instead
  (ldconfig chroots itself), still in the private namespace;
- runs with an empty environment, ``RLIMIT_AS``, ``RLIMIT_CPU`` and
  ``RLIMIT_FSIZE`` limits, and is killed after :data:`TIMEOUT_S` seconds.

Only the standard library is used: this runs on every container start.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import os
import posixpath
import resource
import select
import signal
import stat
import struct
import time
from typing import Callable, Optional

from nvshim import _rootfs

__all__ = [
    "CONF_IN_CHILD",
    "MAX_ADDRESS_SPACE",
    "TIMEOUT_S",
    "LdconfigResult",
    "conf_folders",
    "is_static_elf",
    "run_isolated",
]

#: Seconds ldconfig may run before it is killed (it takes about a second on
#: an image with thousands of libraries).
TIMEOUT_S = 30
#: ldconfig's address space limit.  It maps each library whole while it reads
#: its headers, and real libraries reach 2 GiB (TensorRT's).
MAX_ADDRESS_SPACE = 4 << 30
#: Largest ld.so.cache (and any file) ldconfig may write.
MAX_FILE_SIZE = 256 << 20
#: Where the configuration lies for ldconfig, inside the private tmpfs over
#: ``<rootfs>/proc``.
CONF_IN_CHILD = "/proc/nvshim-ld.so.conf"
#: The image's configuration file, and the bounds on reading it and its includes.
IMAGE_CONF = "/etc/ld.so.conf"
MAX_CONF_BYTES = 1 << 20
MAX_CONF_FILES = 256
MAX_INCLUDE_DEPTH = 8
MAX_FOLDERS = 4096
#: Bytes of ldconfig's output kept for the error line.
_MAX_OUTPUT = 64 << 10

_CLONE_NEWNS = 0x00020000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18


class LdconfigResult:
    """What the child did: ``status`` (exit status, None when killed at the limit), output."""

    __slots__ = ("output", "status")

    def __init__(self, status: Optional[int], output: str) -> None:
        self.status = status
        self.output = output


# --- reading the image's configuration ------------------------------------------------


def _read_regular(root_fd: int, path: str) -> bytes:
    """The content of regular file ``path`` of the rootfs, links resolved inside it.

    :raises OSError: missing, not a regular file (``EINVAL``), or larger than
        :data:`MAX_CONF_BYTES` (``EFBIG``).
    """
    real = _rootfs.realpath_in_root(root_fd, path)
    parent, name = posixpath.split(real)
    if not name:
        raise OSError(errno.EINVAL, "not a regular file", path)
    dir_fd = _rootfs.open_dir(root_fd, parent or "/")
    try:
        # Look before opening: opening a FIFO blocks and opening a device
        # can have effects.  O_NONBLOCK and the second look cover a swap.
        probe = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            before = os.fstat(probe)
        finally:
            os.close(probe)
        if not stat.S_ISREG(before.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=dir_fd)
        try:
            after = os.fstat(fd)
            if not stat.S_ISREG(after.st_mode) or after.st_ino != before.st_ino:
                raise OSError(errno.EINVAL, "not a regular file", path)
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_CONF_BYTES:
                    raise OSError(errno.EFBIG, f"larger than {MAX_CONF_BYTES} bytes", path)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def _glob(root_fd: int, pattern: str, limit: int) -> list[str]:
    """The paths of the rootfs matching ``pattern`` (glob syntax), sorted, at most ``limit``."""
    try:
        parts = _rootfs.container_path_parts(pattern)
    except ValueError:
        return []
    found = [""]
    for part in parts:
        following: list[str] = []
        for base in found:
            if not any(c in part for c in "*?["):
                following.append(f"{base}/{part}")
                continue
            try:
                dir_fd = _rootfs.open_dir(root_fd, base or "/")
            except OSError:
                continue
            try:
                names = sorted(os.listdir(dir_fd))
            except OSError:
                names = []
            finally:
                os.close(dir_fd)
            following.extend(
                f"{base}/{n}"
                for n in names
                if fnmatch.fnmatchcase(n, part) and (part.startswith(".") or not n.startswith("."))
            )
            if len(following) > limit:
                break
        found = following[:limit]
    return found


def conf_folders(root_fd: int, warn: Callable[[str], None]) -> list[str]:
    """The folders the image's ``/etc/ld.so.conf`` lists, its includes expanded.

    Read as ldconfig reads it (``#`` comments, ``include`` patterns relative to
    the including file's folder, ``hwcap`` lines ignored), but every file
    through the rootfs descriptor, regular files only, each once, at most
    :data:`MAX_CONF_FILES` files, :data:`MAX_INCLUDE_DEPTH` levels and
    :data:`MAX_FOLDERS` folders.  ``warn`` gets one line per file skipped.
    """
    folders: dict[str, None] = {}
    seen: set[str] = set()

    def parse(path: str, depth: int) -> None:
        if path in seen or len(seen) >= MAX_CONF_FILES:
            return
        seen.add(path)
        try:
            data = _read_regular(root_fd, path)
        except FileNotFoundError:
            if depth:
                warn(f"skipping include {path}: not found")
            return
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            warn(f"skipping {'include ' if depth else ''}{path}: {why}")
            return
        for raw in data.decode("utf-8", "replace").splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            word, _, rest = line.partition(" ") if " " in line else line.partition("\t")
            if word == "include" and rest.strip():
                if depth + 1 > MAX_INCLUDE_DEPTH:
                    warn(f"skipping include in {path}: nested more than {MAX_INCLUDE_DEPTH} deep")
                    continue
                for pattern in rest.split():
                    if not pattern.startswith("/"):
                        pattern = posixpath.join(posixpath.dirname(path), pattern)
                    for match in _glob(root_fd, pattern, MAX_CONF_FILES):
                        parse(match, depth + 1)
            elif word.lower() == "hwcap":
                continue
            elif line.startswith("/") and line.isprintable() and len(folders) < MAX_FOLDERS:
                folders.setdefault(line, None)

    parse(IMAGE_CONF, 0)
    return list(folders)


# --- the child ---------------------------------------------------------------------------


def is_static_elf(fd: int) -> bool:
    """Whether the file open at ``fd`` is an ELF executable without a program interpreter."""
    try:
        ident = os.pread(fd, 64, 0)
        if len(ident) < 52 or ident[:4] != b"\x7fELF":
            return False
        is64 = ident[4] == 2
        order = "<" if ident[5] == 1 else ">"
        if is64:
            (phoff,) = struct.unpack_from(order + "Q", ident, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
        else:
            (phoff,) = struct.unpack_from(order + "I", ident, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
        if not phnum or phnum > 256 or phentsize < 4:
            return False
        table = os.pread(fd, phentsize * phnum, phoff)
        for i in range(phnum):
            (p_type,) = struct.unpack_from(order + "I", table, i * phentsize)
            if p_type == 3:  # PT_INTERP: needs a loader, which the image would provide
                return False
        return True
    except (OSError, struct.error):
        return False


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare_mount_namespace() -> None:
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        unshare(_CLONE_NEWNS)
        return
    if _libc().unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: Optional[str], flags: int, data: str) -> None:
    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    result = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or ''} on {target}: {os.strerror(err)}")


def _mask(root_fd: int, path: str, create: bool) -> Optional[int]:
    """Mount a private empty tmpfs over folder ``path`` of the rootfs; return its fd."""
    try:
        dir_fd = _rootfs.open_dir(root_fd, path, create=create)
    except FileNotFoundError:
        return None
    try:
        # Through the descriptor: a link the image put at /proc cannot move the mount.
        _mount(
            "tmpfs",
            f"/proc/self/fd/{dir_fd}",
            "tmpfs",
            _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
            "mode=0755,size=1m,nr_inodes=64",
        )
    finally:
        os.close(dir_fd)
    return _rootfs.open_dir(root_fd, path)


def _child(
    ldconfig: str,
    exe_fd: int,
    static: bool,
    rootfs: str,
    root_fd: int,
    conf: bytes,
    out_fd: int,
) -> None:
    """In the forked child: isolate, then exec ldconfig.  Never returns normally."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    _unshare_mount_namespace()
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE, "")
    # A descriptor opened before unshare() still points into the old
    # namespace's mounts, where mount() fails: open the rootfs again, and
    # check that it is the same folder.
    before = os.fstat(root_fd)
    root_fd = _rootfs.open_root(rootfs)
    after = os.fstat(root_fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        raise OSError(errno.ESTALE, f"{rootfs} changed while ldconfig was being started")
    # /sys first: the /proc/self/fd paths below use the host's /proc, which
    # the tmpfs over <rootfs>/proc does not hide (rootfs is never "/").
    sys_fd = _mask(root_fd, "/sys", create=False)
    if sys_fd is not None:
        os.close(sys_fd)
    proc_fd = _mask(root_fd, "/proc", create=True)
    assert proc_fd is not None
    name = posixpath.basename(CONF_IN_CHILD)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=proc_fd)
    os.write(fd, conf)
    os.close(fd)
    os.close(proc_fd)
    for kind, limit in (
        (resource.RLIMIT_AS, MAX_ADDRESS_SPACE),
        (resource.RLIMIT_CPU, TIMEOUT_S),
        (resource.RLIMIT_FSIZE, MAX_FILE_SIZE),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(kind, (limit, limit))
    if static:
        os.fchdir(root_fd)
        os.chroot(".")
        os.chdir("/")
        os.execve(exe_fd, [ldconfig, "-f", CONF_IN_CHILD], {})
    os.chdir("/")
    os.execve(ldconfig, [ldconfig, "-r", rootfs, "-f", CONF_IN_CHILD], {})


def run_isolated(ldconfig: str, rootfs: str, root_fd: int, conf: bytes) -> LdconfigResult:
    """Run host binary ``ldconfig`` on ``rootfs`` with configuration ``conf`` (see module doc).

    :raises OSError: ldconfig cannot be opened, or the child cannot be started.
    """
    exe_fd = os.open(ldconfig, os.O_RDONLY | os.O_CLOEXEC)
    try:
        static = is_static_elf(exe_fd)
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # pragma: no cover - the child execs or exits
            status = 126
            try:
                os.close(read_fd)
                _child(ldconfig, exe_fd, static, rootfs, root_fd, conf, write_fd)
            except BaseException as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                message = f"cannot isolate ldconfig: {why}\n"
                with contextlib.suppress(OSError):
                    os.write(2, message.encode(errors="replace"))
            finally:
                os._exit(status)
        os.close(write_fd)
        try:
            return _wait(pid, read_fd)
        finally:
            os.close(read_fd)
    finally:
        os.close(exe_fd)


def _wait(pid: int, read_fd: int) -> LdconfigResult:
    """Collect the child's output until it exits or :data:`TIMEOUT_S` passes."""
    deadline = time.monotonic() + TIMEOUT_S
    output = bytearray()
    open_pipe = True
    while open_pipe:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            open_pipe = False
        elif len(output) < _MAX_OUTPUT:
            output += chunk[: _MAX_OUTPUT - len(output)]
    text = output.decode("utf-8", "replace")
    while True:
        left = deadline - time.monotonic()
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return LdconfigResult(os.waitstatus_to_exitcode(status), text)
        if left <= 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return LdconfigResult(None, text)
        time.sleep(min(0.01, left))
