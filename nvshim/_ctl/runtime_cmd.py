"""``nvshim-ctl runtime configure``: register nvshim with a container engine.

The editing itself is in ``nvshim._engines`` (pure text-to-text functions);
this module resolves the paths, reads the file, writes the result atomically
with a backup of the previous file, and tells the admin what to do next.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import re
import shutil
import stat
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

from nvshim import _engine_setup
from nvshim._atomic import atomic_write
from nvshim._engine_setup import DEFAULT_DROP_IN_PATHS
from nvshim._engines import DEFAULT_CONFIG_PATHS, ENGINES, EngineConfigError, configure

__all__ = [
    "backup_path_for",
    "default_nvshim_path",
    "record_path_for",
    "register",
    "run_configure",
    "run_unconfigure",
]

_PROG = "nvshim-ctl"
_NEW_FILE_MODE = 0o644
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
BACKUP_SUFFIX = ".nvshim-backup-"
#: What configure changed, kept beside the file for unconfigure.
RECORD_SUFFIX = ".nvshim-configured.json"
_DEFAULT_DROP_IN = "\0default"


class _Failure(Exception):
    """One line for the user; the command exits 1."""


def _reports_failures(
    run: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """*run*, with a refusal or a file error reported in one line (exit status 1)."""

    @functools.wraps(run)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except _Failure as exc:
            print(f"{_PROG}: {exc}", file=sys.stderr)
        except OSError as exc:
            print(f"{_PROG}: {exc.filename or args.config}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    return guarded


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
    _common_options(parser)
    parser.add_argument(
        "--path",
        "--nvidia-runtime-path",
        "--runtime-path",
        metavar="ABS_PATH",
        help="absolute path of the nvshim executable (default: the nvshim of this installation)",
    )
    parser.add_argument(
        "--set-as-default",
        "--nvidia-set-as-default",
        action="store_true",
        help="also make it the engine's default runtime",
    )
    parser.add_argument(
        "--cdi.enabled",
        "--cdi.enable",
        "--enable-cdi",
        dest="cdi_enabled",
        action="store_true",
        help="also turn CDI on (Docker features.cdi, containerd enable_cdi); "
        "CRI-O and Podman always read CDI specs",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the new file(s) on stdout and write nothing",
    )
    parser.set_defaults(func=run_configure)
    undo = commands.add_parser(
        "unconfigure",
        help="take out of an engine's configuration what configure added",
        description=(
            "Remove the runtime entry and undo every other change 'configure' recorded "
            "(default runtime, CDI, the containerd imports line, files it created). A "
            "setting changed by hand since is left as it is. Each file changed is kept "
            "as <file>" + BACKUP_SUFFIX + "<UTC time>."
        ),
    )
    _common_options(undo)
    undo.add_argument(
        "--dry-run",
        action="store_true",
        help="print the new file(s) on stdout and write nothing",
    )
    undo.set_defaults(func=run_unconfigure)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine", "--runtime", required=True, choices=ENGINES, help="the engine to configure"
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the engine's file (default: "
        + ", ".join(f"{e}: {p}" for e, p in DEFAULT_CONFIG_PATHS.items())
        + ")",
    )
    parser.add_argument(
        "--drop-in-config",
        metavar="PATH",
        nargs="?",
        const=_DEFAULT_DROP_IN,
        help="put nvshim's settings in a drop-in file of their own: containerd "
        + DEFAULT_DROP_IN_PATHS["containerd"]
        + " (with an 'imports' line in the main file), CRI-O "
        + DEFAULT_DROP_IN_PATHS["crio"]
        + " (its default anyway)",
    )
    parser.add_argument(
        "--name",
        "--nvidia-runtime-name",
        default="nvshim",
        help="the runtime name engines will know (default: nvshim; "
        "'nvidia' keeps --runtime nvidia and RuntimeClass nvidia working)",
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


def record_path_for(target: str) -> str:
    """Where configure keeps what it changed for *target* (beside it, or beside its ``.d``)."""
    folder, base = os.path.split(target)
    if folder.endswith(".d"):
        folder = os.path.dirname(folder) or folder
    return os.path.join(folder, base + RECORD_SUFFIX)


def _targets(args: argparse.Namespace) -> tuple[str, str | None]:
    """(the engine's main file as given, the drop-in file or None)."""
    engine: str = args.engine
    drop_in: str | None = args.drop_in_config
    if drop_in == _DEFAULT_DROP_IN:
        drop_in = DEFAULT_DROP_IN_PATHS.get(engine)
    if args.drop_in_config is not None and engine not in DEFAULT_DROP_IN_PATHS:
        raise _Failure(f"--drop-in-config: {engine} has no drop-in files")
    if drop_in is not None and not os.path.isabs(drop_in):
        raise _Failure(f"--drop-in-config must be an absolute path, got {drop_in!r}")
    if engine == "crio" and drop_in is not None:
        # CRI-O's drop-in is the file to edit; its main file is not touched.
        return drop_in, None
    config: str = args.config or DEFAULT_CONFIG_PATHS[engine]
    return config, drop_in


class _Edit:
    """One file's old and new text, and how it is shown and written."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.target = os.path.realpath(shown)  # edit the file a symlink points to
        self.old, self.info = _read(self.target, shown)
        self.new: str | None = self.old

    @property
    def changed(self) -> bool:
        return self.new != self.old

    def commit(self) -> str | None:
        """Write (or remove, when new is None) the file; returns the backup's path."""
        backup = _backup(self.target, self.old, self.info) if self.old is not None else None
        if self.new is None:
            os.unlink(self.target)
        else:
            _atomic_write(self.target, self.new)
        return backup


@_reports_failures
def run_configure(args: argparse.Namespace) -> int:
    """Carry out ``nvshim-ctl runtime configure``; returns the exit status."""
    engine: str = args.engine
    name = _check_name(args.name)
    path = _runtime_path(args.path)
    config, drop_in = _targets(args)
    main = _Edit(config)
    edits = [main]
    try:
        if drop_in is not None:  # containerd: the runtime goes in a file of its own
            extra = _Edit(drop_in)
            edits.append(extra)
            main.new, extra.new = _engine_setup.containerd_drop_in(
                main.old or "", extra.old or "", drop_in, name, path,
                args.set_as_default, args.cdi_enabled,
            )
        else:
            main.new = configure(engine, main.old or "", name, path, args.set_as_default)
            if args.cdi_enabled:
                if engine in _engine_setup.CDI_ENGINES:
                    main.new = _engine_setup.enable_cdi(engine, main.new)
                else:
                    print(
                        f"{_PROG}: note: {engine} always reads CDI specs; "
                        "--cdi.enabled changes nothing",
                        file=sys.stderr,
                    )
    except EngineConfigError as exc:
        raise _Failure(f"{config}: {exc}; the file was left as it was") from None
    if args.dry_run:
        for edit in edits:
            if len(edits) > 1:
                print(f"# {edit.shown}", flush=True)
            sys.stdout.write(edit.new or "")
            sys.stdout.flush()
            what = "not written (--dry-run)" if edit.changed else "unchanged"
            print(f"{_PROG}: {edit.shown}: {what}", file=sys.stderr)
        return 0
    if not any(edit.changed for edit in edits):
        print(f"{config}: runtime '{name}' is already registered ({path}); nothing changed")
        return 0
    record = _load_record(main.target)
    for edit in edits:
        if not edit.changed:
            continue
        _note_changes(record, engine, name, edit)
        backup = edit.commit()
        print(f"{edit.shown}: registered runtime '{name}' ({path})")
        if backup:
            print(f"previous file kept as {backup}")
    _save_record(main.target, record)

    for line in _next_steps(engine, name, config, args.set_as_default):
        print(line)
    return 0


@_reports_failures
def run_unconfigure(args: argparse.Namespace) -> int:
    """Carry out ``nvshim-ctl runtime unconfigure``; returns the exit status."""
    engine: str = args.engine
    name = _check_name(args.name)
    config, drop_in = _targets(args)
    main_target = os.path.realpath(config)
    record = _load_record(main_target)
    files: dict[str, Any] = record.get("files", {}) if record.get("name") == name else {}
    shown = [config, *([drop_in] if drop_in else [])]
    shown += [f for f in files if f not in {os.path.realpath(s) for s in shown}]
    edits = [_Edit(s) for s in shown]
    for edit in edits:
        if edit.old is None:
            continue
        entry = files.get(edit.target)
        changes = entry["changes"] if entry else None
        try:
            text, notes = _engine_setup.unconfigure(engine, edit.old, name, changes)
        except EngineConfigError as exc:
            raise _Failure(f"{edit.shown}: {exc}; the file was left as it was") from None
        for note in notes:
            print(f"{_PROG}: {edit.shown}: {note}", file=sys.stderr)
        edit.new = None if (entry and entry.get("created") and not text.strip()) else text
    if args.dry_run:
        for edit in edits:
            if edit.changed:
                print(f"# {edit.shown}" + (": removed" if edit.new is None else ""))
                sys.stdout.write(edit.new or "")
        return 0
    if not any(edit.changed for edit in edits):
        print(f"{config}: runtime '{name}' is not registered; nothing changed")
    for edit in edits:
        if edit.changed:
            backup = edit.commit()
            what = "removed (configure had created it)" if edit.new is None else "updated"
            print(f"{edit.shown}: runtime '{name}' taken out; file {what}")
            if backup:
                print(f"previous file kept as {backup}")
    if record.get("name") in (None, name):  # another name's record stays
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record_path_for(main_target))
    return 0


def _load_record(main_target: str) -> dict[str, Any]:
    path = record_path_for(main_target)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise _Failure(f"{path}: unreadable record of a previous configure: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise _Failure(f"{path}: not a record written by {_PROG} runtime configure")
    return data


def _note_changes(record: dict[str, Any], engine: str, name: str, edit: _Edit) -> None:
    """Add what *edit* changes to *record*; a key changed twice keeps its first old value."""
    if record.get("name") not in (None, name):
        record.clear()  # a record of another runtime name: its undo no longer applies
    record.update(engine=engine, name=name)
    files = record.setdefault("files", {})
    entry = files.setdefault(edit.target, {"created": edit.old is None, "changes": []})
    known = {tuple(c["key"]): c for c in entry["changes"]}
    for change in _engine_setup.record_changes(engine, edit.old or "", edit.new or "", name):
        earlier = known.get(tuple(change["key"]))
        if earlier is None:
            entry["changes"].append(change)
        else:
            earlier["set"] = change["set"]


def _save_record(main_target: str, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(record_path_for(main_target), text.encode("utf-8"), 0o600)


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
