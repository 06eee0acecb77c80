"""Fake Jetson-style hosts for csv-mode tests: a driver root, CSV files, a config.

Tests import this module as ``import csv_host_support``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from nvshim.config import Config, structure_config

#: Whether device nodes can be made here (mknod needs root).
CAN_MKNOD = hasattr(os, "geteuid") and os.geteuid() == 0
requires_mknod = pytest.mark.skipif(not CAN_MKNOD, reason="mknod needs root")


def put(root: Path, path: str) -> Path:
    """The host path of ``path`` under ``root``, its parent folders created."""
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    return host


def make_file(root: Path, path: str, data: bytes = b"") -> Path:
    """A regular file at ``path`` under ``root``."""
    host = put(root, path)
    host.write_bytes(data)
    return host


def make_link(root: Path, path: str, target: str) -> Path:
    """A symbolic link at ``path`` under ``root`` whose text is ``target``."""
    host = put(root, path)
    host.symlink_to(target)
    return host


def make_char_device(root: Path, path: str, major: int = 1, minor: int = 3) -> Path:
    """A character device node (default 1:3, /dev/null's numbers) at ``path`` under ``root``."""
    import stat

    host = put(root, path)
    os.mknod(host, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    host.chmod(0o666)  # mknod's mode goes through the umask
    return host


def write_csv(folder: Path, name: str, lines: Iterable[str]) -> Path:
    """A CSV file ``name`` in ``folder`` holding ``lines``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def csv_config(
    csv_dir: Path,
    root: Path | str = "",
    extra: Mapping[str, object] | None = None,
) -> Config:
    """A typed config with mode csv, the CSV folder and the driver root."""
    raw: dict[str, object] = {
        "nvidia-container-runtime": {
            "mode": "csv",
            "modes": {"csv": {"mount-spec-path": str(csv_dir)}},
        },
        "nvidia-container-cli": {"root": str(root)},
    }
    for key, value in (extra or {}).items():
        raw[key] = value
    return structure_config(raw, "<test>")


def populate_from_csv(root: Path, csv_files: Iterable[Path]) -> None:
    """Create every path the CSV files list under ``root``.

    ``dev``: a char device 1:3 (globs: ``card0``, ``card1``, ``renderD128``
    style matches); ``dir``: a folder; ``lib``: an empty file; ``sym``: a
    link to ``<name>.target``, an empty file beside it.
    """
    for csv_file in csv_files:
        for line in csv_file.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kind, _, path = (p.strip() for p in line.partition(","))
            if kind == "dev" and "/" not in path:
                path = "/dev/" + path
            path = "/" + os.path.normpath(path).lstrip("/")
            if kind == "dev":
                if "*" in path:
                    stem = path.replace("*", "")
                    names = [f"{stem}{i}" for i in (0, 1)] if "card" in stem else [f"{stem}128"]
                else:
                    names = [path]
                for name in names:
                    if not os.path.lexists(root / name.lstrip("/")):
                        make_char_device(root, name)
            elif kind == "dir":
                put(root, path).mkdir(exist_ok=True)
            elif kind == "lib":
                if not os.path.lexists(root / path.lstrip("/")):
                    make_file(root, path)
            elif kind == "sym":
                base = os.path.basename(path)
                make_file(root, os.path.dirname(path) + f"/{base}.target")
                make_link(root, path, f"{base}.target")
