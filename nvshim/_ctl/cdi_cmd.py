"""``nvshim-ctl cdi list | validate | generate``: CDI devices, spec checks, spec generation."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cdi`` command with its ``list`` and ``validate`` subcommands."""
    parser = subparsers.add_parser("cdi", help="list CDI devices, check CDI spec files")
    commands = parser.add_subparsers(dest="cdi_command", metavar="SUBCOMMAND")
    commands.required = True

    listing = commands.add_parser(
        "list", help="every CDI device name the spec folders define, with its file"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--config", help="config.toml to use (default: as the runtime)")
    listing.set_defaults(func=run_list)

    validate = commands.add_parser(
        "validate", help="check CDI spec files (default: every file in the spec folders)"
    )
    validate.add_argument("files", nargs="*", metavar="FILE", help="spec files to check")
    validate.add_argument("--config", help="config.toml to use (default: as the runtime)")
    validate.set_defaults(func=run_validate)

    from nvshim._ctl.cdi_generate import add_parser

    add_parser(commands)

    from nvshim._ctl import inventory_cmd

    inventory_cmd.register(commands)


def _spec_dirs(config_path: str | None) -> tuple[str, ...] | None:
    from nvshim._ctl import load_config_or_say_why

    config = load_config_or_say_why(config_path)
    return None if config is None else config.nvidia_container_runtime.modes.cdi.spec_dirs


def run_list(namespace: argparse.Namespace) -> int:
    """Print every usable device with its spec file; conflicts and bad files go to stderr."""
    from nvshim_cdi import Registry

    spec_dirs = _spec_dirs(namespace.config)
    if spec_dirs is None:
        return 1
    registry = Registry.load(spec_dirs)
    if namespace.json:
        report: dict[str, Any] = {
            "spec_dirs": list(spec_dirs),
            "devices": [
                {"name": d.name, "kind": d.spec.kind, "file": d.path}
                for d in registry.devices.values()
            ],
            "conflicts": [
                {"name": name, "files": list(files)} for name, files in registry.conflicts.items()
            ],
            "errors": [{"file": path, "error": error} for path, error in registry.errors],
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    if registry.devices:
        width = max(len(name) for name in registry.devices)
        for name, device in registry.devices.items():
            sys.stdout.write(f"{name:<{width}}  {device.path}\n")
    else:
        sys.stderr.write(f"no CDI device found in {', '.join(spec_dirs)}\n")
    for name, files in registry.conflicts.items():
        sys.stderr.write(f"conflict: {name} is defined by {' and '.join(files)}\n")
    for _path, error in registry.errors:
        sys.stderr.write(f"skipped: {error}\n")
    return 0


def run_validate(namespace: argparse.Namespace) -> int:
    """Check spec files; exit 1 when any is refused (or, for the folders, in conflict)."""
    from nvshim_cdi import CdiSpecError, Registry, read_spec_file, spec_files

    files: list[str] = list(namespace.files)
    spec_dirs: tuple[str, ...] = ()
    if not files:
        found = _spec_dirs(namespace.config)
        if found is None:
            return 1
        spec_dirs = found
        files = [path for folder in spec_dirs for path in spec_files(folder)]
        if not files:
            sys.stderr.write(f"no CDI spec file in {', '.join(spec_dirs)}\n")
            return 0
    failed = False
    for path in files:
        try:
            spec = read_spec_file(path)
        except CdiSpecError as exc:
            failed = True
            sys.stderr.write(f"error: {exc}\n")
            continue
        sys.stdout.write(
            f"ok: {path} (cdiVersion {spec.version}, kind {spec.kind},"
            f" {len(spec.devices)} device{'s' if len(spec.devices) != 1 else ''})\n"
        )
    if spec_dirs:
        # Files that are fine one by one can still define the same device.
        registry = Registry.load(spec_dirs)
        for name, paths in registry.conflicts.items():
            failed = True
            sys.stderr.write(f"error: {name} is defined by {' and '.join(paths)}\n")
    return 1 if failed else 0
