"""``nvshim-ctl hook enable-cuda-compat``: CUDA forward compatibility in a container.

An image built for a newer CUDA than the host driver supports may carry
NVIDIA's forward-compatibility libraries (``/usr/local/cuda/compat/libcuda.so.<ver>``).
When their driver major version is greater than the host driver's, this hook
lists their folder in ``/etc/ld.so.conf.d/00-compat-<major>.conf`` inside the
rootfs, so the ``update-ldcache`` hook that follows puts them first.  When
they are absent, older or unreadable, the hook does nothing.

Every path inside the rootfs goes through :mod:`nvshim._rootfs`: the compat
folder is resolved inside the rootfs (a link an image planted never leads
out), and the conf file is written without following links.  Only the
standard library is used: this runs on every container start.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import IO, NoReturn, Optional

from nvshim import _rootfs
from nvshim._hookcmd import HookError, open_container_root
from nvshim._log import escape_controls

__all__ = ["DEFAULT_COMPAT_ROOT", "compat_folder", "main"]

PROG = "nvshim-ctl hook enable-cuda-compat"
#: Where CUDA images put the forward-compatibility libraries.
DEFAULT_COMPAT_ROOT = "/usr/local/cuda/compat"
_CONF_DIR = "/etc/ld.so.conf.d"
_LIBCUDA_RE = re.compile(r"^libcuda\.so\.(\d+)\.(\d+)(?:\.(\d+))?$")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Add the container's CUDA forward-compatibility library folder to its "
        "ld.so.conf.d when those libraries are newer than the host driver. "
        "Reads the OCI state on stdin.",
    )
    parser.add_argument(
        "--host-driver-version",
        default="",
        metavar="VERSION",
        help="the host driver's version (e.g. 550.54.15); empty: do nothing",
    )
    parser.add_argument(
        "--cuda-compat-container-root",
        default=DEFAULT_COMPAT_ROOT,
        metavar="DIR",
        help=f"the container folder holding libcuda.so.<version> (default {DEFAULT_COMPAT_ROOT})",
    )
    return parser


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def compat_folder(root_fd: int, folder: str, host_major: int) -> Optional[tuple[str, int]]:
    """The compat folder (links resolved inside the rootfs) and the compat
    driver's major version, when it is newer than ``host_major``; else None.

    :raises ValueError: ``folder`` is not a clean absolute container path.
    """
    try:
        real = _rootfs.realpath_in_root(root_fd, folder)
        dir_fd = _rootfs.open_dir(root_fd, real)
    except OSError:
        return None  # no compat folder in this image: nothing to do
    try:
        names = os.listdir(dir_fd)
    finally:
        os.close(dir_fd)
    versions = []
    for name in names:
        match = _LIBCUDA_RE.match(name)
        if match:
            versions.append(tuple(int(g) for g in match.groups() if g is not None))
    if not versions:
        return None
    newest = max(versions)
    return (real, newest[0]) if newest[0] > host_major else None


def _run(args: argparse.Namespace, stdin: IO[bytes]) -> None:
    if not args.host_driver_version:
        return
    try:
        host_major = _version(args.host_driver_version)[0]
    except ValueError:
        raise HookError(
            f"--host-driver-version {args.host_driver_version!r}", "not a version like 550.54.15"
        ) from None
    try:
        _rootfs.container_path_parts(args.cuda_compat_container_root)
    except ValueError as exc:
        where = f"--cuda-compat-container-root {args.cuda_compat_container_root!r}"
        raise HookError(where, exc) from None
    rootfs, root_fd = open_container_root(stdin)
    try:
        found = compat_folder(root_fd, args.cuda_compat_container_root, host_major)
        if found is None:
            return
        folder, major = found
        content = f"# Written by {PROG}.\n{folder}\n"
        try:
            _rootfs.write_file(root_fd, f"{_CONF_DIR}/00-compat-{major}.conf", content.encode())
        except (OSError, ValueError) as exc:
            raise HookError(
                f"writing {_CONF_DIR}/00-compat-{major}.conf in {rootfs}", exc
            ) from None
    finally:
        os.close(root_fd)


def main(argv: list[str], stdin: Optional[IO[bytes]] = None) -> int:
    """Run the hook with the arguments after ``enable-cuda-compat``; 0 on success."""
    try:
        _run(_parser().parse_args(argv), stdin if stdin is not None else sys.stdin.buffer)
    except _UsageError as exc:
        print(escape_controls(f"{PROG}: arguments: {exc}"), file=sys.stderr)
        return 1
    except HookError as exc:
        print(escape_controls(f"{PROG}: {exc}"), file=sys.stderr)
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # a hook must fail in one line, never a traceback
        print(
            escape_controls(f"{PROG}: unexpected error: {type(exc).__name__}: {exc}"),
            file=sys.stderr,
        )
        return 1
    return 0
