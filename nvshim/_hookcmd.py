"""``nvshim-ctl hook <name>``: the OCI hooks that nvshim's modifiers inject.

They run at the ``createContainer`` stage, as root, in the container's mount
namespace before ``pivot_root``: the host's files are still visible and the
container's root file system is the folder named by ``root.path``.  Two hooks:

``update-ldcache --folder DIR ... [--ldconfig-path PATH]``
    Writes ``/etc/ld.so.conf.d/00-nvshim-<hash>.conf`` inside the rootfs
    listing the folders, then runs the host's ldconfig on the rootfs, isolated
    so that nothing the image planted leads it to the host: see
    :mod:`nvshim._ldconfig`.

``create-symlinks --link TARGET::LINK ...``
    Makes each ``LINK`` (a container path) a symbolic link to ``TARGET``,
    replacing a link to elsewhere or a regular file; a folder in the way is
    left with a warning (exit 0).

Both read the OCI state (JSON, from the runtime) on stdin to find the bundle.
Every path inside the rootfs goes through :mod:`nvshim._rootfs`, so a link an
image planted never leads a write out of the rootfs, and nothing from the
container's environment reaches a host program.  A failure exits 1 with one
line ``nvshim-ctl hook <name>: <what>: <why>`` on stderr, which runc shows;
a warning (``<name>: warning: ...``) goes to stderr with exit 0.

Only the standard library is used: this runs on every container start.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import sys
from typing import IO, Any, Callable, NoReturn, Optional

from nvshim import _ldconfig, _rootfs
from nvshim._log import escape_controls

__all__ = ["DEFAULT_LDCONFIGS", "HookError", "hook_names", "main", "resolve_ldconfig"]

PROG = "nvshim-ctl hook"
#: Host ldconfig binaries tried, in order, when no ``--ldconfig-path`` is given.
DEFAULT_LDCONFIGS = ("/sbin/ldconfig", "/sbin/ldconfig.real", "/usr/sbin/ldconfig")
# The OCI state is a few hundred bytes; refuse to buffer an unbounded stream.
_MAX_STATE_BYTES = 1 << 20
_CONF_DIR = "/etc/ld.so.conf.d"


class HookError(Exception):
    """A hook failed; ``str()`` is ``<what>: <why>``."""

    def __init__(self, what: str, why: object) -> None:
        self.what = what
        self.why = _reason(why)
        super().__init__(f"{what}: {self.why}")


class _UsageError(Exception):
    """Bad command-line arguments (argparse's error, as one line)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _reason(why: object) -> str:
    """One line for an exception or message: errno text without Python's noise."""
    if isinstance(why, OSError) and why.strerror:
        text = why.strerror
        if why.filename is not None:
            text = f"{text}: {os.fsdecode(why.filename)}"
    else:
        text = str(why) or type(why).__name__
    return " ".join(text.split())


def _build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="OCI hooks (stage createContainer) that nvshim's modifiers inject. "
        "Each reads the OCI state on stdin.",
    )
    hooks = parser.add_subparsers(dest="hook", metavar="<hook>")
    hooks.required = True
    ldcache = hooks.add_parser(
        "update-ldcache",
        help="list folders in the container's ld.so.conf.d and rebuild its ld.so.cache",
        description="Write /etc/ld.so.conf.d/00-nvshim-<hash>.conf in the container's "
        "rootfs listing the folders, then run the host's ldconfig on the rootfs in a private "
        "mount namespace (an empty tmpfs over its /proc and /sys, chrooted, an empty "
        "environment, memory and time limits), reading only the folders of the image's "
        "ld.so.conf (regular files only) and these.",
    )
    ldcache.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="DIR",
        help="a container folder holding libraries (repeatable)",
    )
    ldcache.add_argument(
        "--ldconfig-path",
        default=None,
        metavar="PATH",
        help="the host's ldconfig: an absolute host path, '@' + host path, "
        f"default the first of {', '.join(DEFAULT_LDCONFIGS)}",
    )
    links = hooks.add_parser(
        "create-symlinks",
        help="create symbolic links inside the container's rootfs",
        description="Make each LINK (a container path) a symbolic link to TARGET; "
        "parent folders are created, a different link or a regular file is "
        "replaced, a folder in the way is left with a warning. Exits 1 only "
        "for an invalid TARGET::LINK.",
    )
    links.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="TARGET::LINK",
        help="the link to make (repeatable)",
    )
    # Parsed by its own module (nvshim._cudacompat); listed for --help and hook_names().
    hooks.add_parser(
        "enable-cuda-compat",
        help="list the container's CUDA forward-compat libraries in its ld.so.conf.d "
        "when they are newer than the host driver",
        add_help=False,
    )
    return parser


def hook_names() -> list[str]:
    """The names of the hooks ``nvshim-ctl hook`` runs, in ``--help`` order."""
    parser = _build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []  # pragma: no cover - the parser always has its subcommands


def read_state(stream: IO[bytes]) -> dict[str, Any]:
    """Parse the OCI state the runtime writes on a hook's stdin.

    :raises HookError: not JSON, not an object, or no absolute ``bundle``.
    """
    raw = stream.read(_MAX_STATE_BYTES + 1)
    if len(raw) > _MAX_STATE_BYTES:
        raise HookError("container state on stdin", f"larger than {_MAX_STATE_BYTES} bytes")
    try:
        state = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise HookError("container state on stdin", f"not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise HookError("container state on stdin", "not a JSON object")
    bundle = state.get("bundle")
    if not isinstance(bundle, str) or not os.path.isabs(bundle):
        raise HookError("container state on stdin", f"'bundle' is not an absolute path: {bundle!r}")
    return state


def find_rootfs(bundle: str) -> str:
    """Return the host path of the rootfs named by ``<bundle>/config.json``.

    :raises HookError: config.json is unreadable or has no usable ``root.path``.
    """
    config_path = os.path.join(bundle, "config.json")
    try:
        with open(config_path, "rb") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise HookError(config_path, exc) from None
    root = config.get("root") if isinstance(config, dict) else None
    path = root.get("path") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path or "\0" in path:
        raise HookError(config_path, f"'root.path' is not a path: {path!r}")
    return path if os.path.isabs(path) else os.path.join(bundle, path)


def open_container_root(stdin: IO[bytes]) -> tuple[str, int]:
    """The container's rootfs (host path) and a descriptor of it, from the hook's state.

    The caller closes the descriptor.

    :raises HookError: the state, config.json or the rootfs cannot be used.
    """
    rootfs = find_rootfs(read_state(stdin)["bundle"])
    try:
        return rootfs, _rootfs.open_root(rootfs)
    except OSError as exc:
        raise HookError(f"rootfs {rootfs}", exc) from None


def _is_inside(path: str, rootfs: str, root_fd: int) -> bool:
    """Tell whether host path ``path`` (already resolved) lies in the rootfs.

    Compares path strings and also each folder above ``path`` with the rootfs
    by device and inode, which also catches the rootfs reached through another
    mount of it (a bind mount).
    """
    real_root = os.path.realpath(rootfs)
    if path == real_root or path.startswith(real_root.rstrip("/") + "/"):
        return True
    root_st = os.fstat(root_fd)
    current = path
    while True:
        try:
            st = os.stat(current)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) == (root_st.st_dev, root_st.st_ino):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def resolve_ldconfig(spec: Optional[str], rootfs: str, root_fd: int) -> str:
    """Return the absolute host path of the ldconfig to run.

    :param spec: ``--ldconfig-path``: ``@/path`` or ``/path`` (a host path),
        None or empty for the defaults (:data:`DEFAULT_LDCONFIGS`).
    :raises HookError: a relative path, a missing or non-executable file, or
        a file inside the container's rootfs (an image's ldconfig must never
        run on the host).
    """
    if spec:
        path = spec[1:] if spec.startswith("@") else spec
        if not os.path.isabs(path):
            raise HookError(
                f"ldconfig {spec!r}",
                "not an absolute host path (write /path or @/path)",
            )
        candidates: tuple[str, ...] = (path,)
    else:
        candidates = DEFAULT_LDCONFIGS
    for candidate in candidates:
        real = os.path.realpath(candidate)
        try:
            st = os.stat(real)
        except OSError as exc:
            if spec:
                raise HookError(f"ldconfig {candidate}", exc) from None
            continue
        if _is_inside(real, rootfs, root_fd):
            raise HookError(
                f"ldconfig {candidate}",
                f"refusing a binary inside the container rootfs {rootfs}",
            )
        if not stat.S_ISREG(st.st_mode) or not os.access(real, os.X_OK):
            raise HookError(f"ldconfig {candidate}", "not an executable file")
        return real
    raise HookError("ldconfig", f"none found (tried {', '.join(DEFAULT_LDCONFIGS)})")


def _has_controls(text: str) -> bool:
    """Whether ``text`` holds a control character (ESC, BEL, a newline ...)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def _clean_folders(folders: list[str]) -> list[str]:
    """Normalise container folders and drop repeats, keeping the order."""
    seen: dict[str, None] = {}
    for folder in folders:
        if _has_controls(folder):
            raise HookError(f"folder {folder!r}", "contains control characters")
        try:
            parts = _rootfs.container_path_parts(folder)
        except ValueError as exc:
            raise HookError(f"folder {folder!r}", exc) from None
        seen.setdefault("/" + "/".join(parts), None)
    return list(seen)


def conf_name(folders: list[str]) -> str:
    """The ld.so.conf.d file name for a folder list: ``00-nvshim-<hash>.conf``."""
    digest = hashlib.sha256("\n".join(folders).encode()).hexdigest()[:12]
    return f"00-nvshim-{digest}.conf"


def update_ldcache(
    rootfs: str,
    root_fd: int,
    folders: list[str],
    ldconfig_spec: Optional[str],
    warn: Optional[Callable[[str], None]] = None,
) -> None:
    """Register ``folders`` in the container's ld.so.conf.d and run ldconfig.

    ldconfig gets no folder on its command line: it reads one configuration,
    the folders of the image's ``/etc/ld.so.conf`` (includes expanded here,
    regular files only) then ``folders``; ``warn`` gets one line per include
    skipped.

    :raises HookError: on any failure, ldconfig's own included.
    """
    folders = _clean_folders(folders)
    ldconfig = resolve_ldconfig(ldconfig_spec, rootfs, root_fd)
    try:
        if folders:
            content = "# Written by nvshim-ctl hook update-ldcache.\n" + "".join(
                f"{folder}\n" for folder in folders
            )
            _rootfs.write_file(
                root_fd, f"{_CONF_DIR}/{conf_name(folders)}", content.encode(), 0o644
            )
        else:
            # ldconfig writes /etc/ld.so.cache and fails when /etc is missing.
            os.close(_rootfs.open_dir(root_fd, "/etc", create=True))
    except (OSError, ValueError) as exc:
        raise HookError(f"writing {_CONF_DIR} in {rootfs}", exc) from None
    listed = _ldconfig.conf_folders(root_fd, warn or (lambda _line: None))
    conf = "".join(f"{folder}\n" for folder in dict.fromkeys([*listed, *folders]))
    try:
        result = _ldconfig.run_isolated(ldconfig, rootfs, root_fd, conf.encode())
    except OSError as exc:
        raise HookError(f"running {ldconfig}", exc) from None
    if result.status is None:
        raise HookError(f"running {ldconfig}", f"no exit after {_ldconfig.TIMEOUT_S} s")
    if result.status != 0:
        lines = result.output.strip().splitlines()
        detail = f": {lines[-1]}" if lines else ""
        raise HookError(f"running {ldconfig}", f"exit status {result.status}{detail}")


def create_symlinks(root_fd: int, specs: list[str]) -> list[str]:
    """Make each ``TARGET::LINK`` link inside the rootfs.

    A link to another target and a regular file (an image's own copy of a
    library) are replaced; a folder or any other thing in the way, or a link
    that cannot be made, is left as it is with a warning on stderr: one
    missing link must not stop the container.

    :returns: one ``<what>: <why>`` line per entry that is itself invalid
        (the hook then exits 1); the other entries are done regardless.
    """
    failures: list[str] = []
    for spec in specs:
        target, sep, link = spec.partition("::")
        if not sep or not target or not link:
            failures.append(f"link {spec!r}: not TARGET::LINK")
            continue
        if _has_controls(spec):
            failures.append(f"link {spec!r}: contains control characters")
            continue
        try:
            _rootfs.ensure_symlink(root_fd, link, target, replace_file=True)
        except ValueError as exc:
            failures.append(f"link {link} -> {target}: {_reason(exc)}")
        except OSError as exc:
            why = _reason(exc)
            print(
                f"{PROG} create-symlinks: warning: link {link} -> {target}: {why}; left as it is",
                file=sys.stderr,
            )
    return failures


def _run(args: argparse.Namespace, stdin: IO[bytes], warn: Callable[[str], None]) -> list[str]:
    """Run one hook; return its failure lines (``<what>: <why>``)."""
    rootfs, root_fd = open_container_root(stdin)
    try:
        if args.hook == "update-ldcache":
            update_ldcache(rootfs, root_fd, args.folder, args.ldconfig_path, warn)
            return []
        return create_symlinks(root_fd, args.link)
    finally:
        os.close(root_fd)


def main(argv: list[str], stdin: Optional[IO[bytes]] = None) -> int:
    """Run ``nvshim-ctl hook <name> [options]``.

    :param argv: the arguments after ``hook``, e.g. ``["create-symlinks",
        "--link", "libfoo.so.1::/usr/lib/libfoo.so"]``.
    :param stdin: where the OCI state is read (default: the process's stdin).
    :returns: 0 on success, 1 on failure (with one line per failure on stderr),
        0 after ``--help``.
    """
    if argv[:1] == ["enable-cuda-compat"]:  # its own module (#13)
        from nvshim._cudacompat import main as cuda_compat_main

        return cuda_compat_main(argv[1:], stdin)
    name = argv[0] if argv and not argv[0].startswith("-") else ""
    prefix = f"{PROG} {name}" if name else PROG

    def warn(line: str) -> None:
        print(escape_controls(f"{prefix}: warning: {line}"), file=sys.stderr)

    try:
        args = _build_parser().parse_args(argv)
        failures = _run(args, stdin if stdin is not None else sys.stdin.buffer, warn)
    except _UsageError as exc:
        failures = [f"arguments: {_reason(exc)}"]
    except HookError as exc:
        failures = [str(exc)]
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # a hook must fail in one line, never a traceback
        failures = [f"unexpected error: {type(exc).__name__}: {_reason(exc)}"]
    for line in failures:
        print(escape_controls(f"{prefix}: {line}"), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
