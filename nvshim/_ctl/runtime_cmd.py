"""``nvshim-ctl runtime configure``: register nvshim with a container engine.

The editing itself is in ``nvshim._engines`` (pure text-to-text functions);
this module resolves the paths, reads the file, writes the result atomically
with a backup of the previous file, and tells the admin what to do next.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import stat
import sys
import sysconfig

from nvshim._atomic import atomic_write
from nvshim._engines import DEFAULT_CONFIG_PATHS, ENGINES, EngineConfigError, configure

__all__ = ["backup_path_for", "default_nvshim_path", "register", "run_configure"]

_PROG = "nvshim-ctl"
_NEW_FILE_MODE = 0o644
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
BACKUP_SUFFIX = ".nvshim-backup-"


class _Failure(Exception):
    """One line for the user; the command exits 1."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``runtime`` command (with its ``configure`` subcommand) to *subparsers*.

    The ``configure`` parser sets ``func`` to ``run_configure``, which takes
    the parsed ``argparse.Namespace`` and returns the exit status.
    """
    runtime = subparsers.add_parser(
        "runtime",
        help="register nvshim with a container engine",
        description="Manage how container engines run nvshim.",
    )
    commands = runtime.add_subparsers(dest="runtime_command", metavar="COMMAND")
    commands.required = True
    parser = commands.add_parser(
        "configure",
        help="add nvshim to an engine's configuration file",
        description=(
            "Add nvshim as a runtime to the configuration file of Docker, containerd, "
            "CRI-O or Podman. The file is written atomically, its mode and owner are "
            "kept, and the previous file is kept as <file>" + BACKUP_SUFFIX + "<UTC time>. "
            "Running it again with the same options changes nothing."
        ),
    )
    parser.add_argument("--engine", required=True, choices=ENGINES, help="the engine to configure")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the file to edit (default: "
        + ", ".join(f"{e}: {p}" for e, p in DEFAULT_CONFIG_PATHS.items())
        + ")",
    )
    parser.add_argument(
        "--name", default="nvshim", help="the runtime name engines will know (default: nvshim)"
    )
    parser.add_argument(
        "--path",
        metavar="ABS_PATH",
        help="absolute path of the nvshim executable (default: the installed nvshim)",
    )
    parser.add_argument(
        "--set-as-default",
        action="store_true",
        help="also make it the engine's default runtime",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the new file on stdout and write nothing",
    )
    parser.set_defaults(func=run_configure)


def default_nvshim_path() -> str | None:
    """The absolute path of the installed ``nvshim`` command, or None.

    The ``nvshim`` beside this interpreter's scripts (the same installation as
    this ``nvshim-ctl``) first, then the first ``nvshim`` on ``PATH``.
    """
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidate = os.path.join(scripts, "nvshim")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    found = shutil.which("nvshim")
    return os.path.abspath(found) if found else None


def backup_path_for(target: str, now: datetime.datetime | None = None) -> str:
    """Where the previous version of *target* is kept (before collision numbering).

    ``<target>.nvshim-backup-<UTC YYYYmmddTHHMMSSZ>``, beside the file, except
    when the file lies in a drop-in folder (a name ending in ``.d``, such as
    ``/etc/crio/crio.conf.d``): engines load every file of such a folder, so
    the backup goes beside the folder instead.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    folder, base = os.path.split(target)
    if folder.endswith(".d"):
        folder = os.path.dirname(folder) or folder
    return os.path.join(folder, base + BACKUP_SUFFIX + now.strftime("%Y%m%dT%H%M%SZ"))


def run_configure(args: argparse.Namespace) -> int:
    """Carry out ``nvshim-ctl runtime configure``; returns the exit status."""
    engine: str = args.engine
    config: str = args.config or DEFAULT_CONFIG_PATHS[engine]
    try:
        name = _check_name(args.name)
        path = _runtime_path(args.path)
        target = os.path.realpath(config)  # edit the file a symlink points to
        old, info = _read(target, config)
        try:
            new = configure(engine, old or "", name, path, args.set_as_default)
        except EngineConfigError as exc:
            raise _Failure(f"{config}: {exc}; the file was left as it was") from None
        if args.dry_run:
            sys.stdout.write(new)
            sys.stdout.flush()
            what = "unchanged" if new == old else "not written (--dry-run)"
            print(f"{_PROG}: {config}: {what}", file=sys.stderr)
            return 0
        if old is not None and new == old:
            print(f"{config}: runtime '{name}' is already registered ({path}); nothing changed")
            return 0
        backup = _backup(target, old, info) if old is not None else None
        _atomic_write(target, new)
    except _Failure as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = exc.filename or config
        print(f"{_PROG}: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    print(f"{config}: registered runtime '{name}' ({path})")
    if backup:
        print(f"previous file kept as {backup}")
    for line in _next_steps(engine, name, config, args.set_as_default):
        print(line)
    return 0


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise _Failure(
            f"invalid runtime name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def _runtime_path(given: str | None) -> str:
    if given is None:
        found = default_nvshim_path()
        if found is None:
            raise _Failure(
                "cannot find the installed nvshim command; give its absolute path with --path"
            )
        return found
    if not os.path.isabs(given):
        raise _Failure(f"--path must be an absolute path, got {given!r}")
    if not (os.path.isfile(given) and os.access(given, os.X_OK)):
        # Not fatal: the file may be written for another machine or image.
        print(f"{_PROG}: warning: {given} is not an executable file here", file=sys.stderr)
    return given


def _read(target: str, shown: str) -> tuple[str | None, os.stat_result | None]:
    """The file's text and stat, or (None, None) when it does not exist."""
    try:
        # stat first: opening a FIFO or a device would block or misbehave.
        if not stat.S_ISREG(os.stat(target).st_mode):
            raise _Failure(f"{shown}: not a regular file")
        with open(target, "rb") as f:
            info = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return None, None
    try:
        return data.decode("utf-8"), info
    except UnicodeDecodeError as exc:
        raise _Failure(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _copy_owner(fd: int, info: os.stat_result | None) -> None:
    if info is None:
        return
    mine = os.fstat(fd)
    if (mine.st_uid, mine.st_gid) != (info.st_uid, info.st_gid):
        # Only root may give a file away; a user editing their own
        # containers.conf already owns what they write.
        with contextlib.suppress(PermissionError):
            os.fchown(fd, info.st_uid, info.st_gid)


def _backup(target: str, old: str, info: os.stat_result | None) -> str:
    base = backup_path_for(target)
    mode = stat.S_IMODE(info.st_mode) if info else _NEW_FILE_MODE
    for n in range(1000):
        candidate = base if n == 0 else f"{base}.{n}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it
            _copy_owner(fd, info)
            _write_all(fd, old.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return candidate
    raise _Failure(f"{target}: cannot pick a free backup file name near {base}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _atomic_write(target: str, text: str) -> None:
    """Replace *target* with *text* atomically; mode and owner kept, a new file gets 0644."""
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    atomic_write(target, text.encode("utf-8"), _NEW_FILE_MODE)


def _next_steps(engine: str, name: str, config: str, as_default: bool) -> list[str]:
    run_flag = "" if as_default else f" --runtime {name}"
    steps: dict[str, list[str]] = {
        "docker": [
            "next: restart Docker so it reads the file: systemctl restart docker",
            "then check: docker info --format '{{json .Runtimes}}'",
            f"and run: docker run --rm{run_flag} IMAGE ...",
        ],
        "containerd": [
            "next: restart containerd so it reads the file: systemctl restart containerd",
            f"Kubernetes: add a RuntimeClass whose handler is '{name}' "
            "(see docs/engines/kubernetes.md)",
        ],
        "crio": [
            "next: restart CRI-O so it reads the file: systemctl restart crio",
            f"Kubernetes: add a RuntimeClass whose handler is '{name}' "
            "(see docs/engines/kubernetes.md)",
        ],
        "podman": [
            "next: nothing to restart; Podman reads containers.conf on every command",
            f"run: podman{run_flag} run --rm IMAGE ...",
        ],
    }
    lines = steps[engine]
    if engine == "podman" and config != DEFAULT_CONFIG_PATHS["podman"]:
        lines = [*lines, f"(this file is read when CONTAINERS_CONF={config} is set)"]
    return lines
