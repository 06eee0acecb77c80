"""``nvshim-ctl system``: host setup for GPUs (``/dev/char`` links, control device nodes).

Same commands and flags as ``nvidia-ctk system``; the work is in
:mod:`nvshim._devnodes`.
"""

from __future__ import annotations

import argparse
import os
import sys

_PROG = "nvshim-ctl"


def _driver_root_default() -> str:
    # The variables nvidia-ctk reads for --driver-root, in its order.
    return os.environ.get("NVIDIA_DRIVER_ROOT") or os.environ.get("DRIVER_ROOT") or "/"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``system create-dev-char-symlinks`` and ``system create-device-nodes``."""
    system = subparsers.add_parser(
        "system", help="host setup for GPUs: /dev/char links, control device nodes"
    )
    commands = system.add_subparsers(dest="system_command", metavar="COMMAND")
    commands.required = True
    links = commands.add_parser(
        "create-dev-char-symlinks",
        help="create /dev/char/MAJOR:MINOR links to the NVIDIA device nodes",
        description=(
            "Create /dev/char/MAJOR:MINOR symlinks to the NVIDIA device nodes. systemd "
            "rebuilds a container's device rules from /dev/char on daemon-reload; without "
            "the links, running GPU containers lose their GPUs."
        ),
    )
    links.add_argument(
        "--dev-char-path",
        default=os.environ.get("DEV_CHAR_PATH", "/dev/char"),
        metavar="DEV_CHAR",
        help="where the links are made (default: /dev/char)",
    )
    links.add_argument(
        "--driver-root",
        default=_driver_root_default(),
        metavar="DRIVER_ROOT",
        help="the root whose dev/ holds the NVIDIA nodes (default: /)",
    )
    links.add_argument(
        "--create-all",
        action="store_true",
        help="link every node the driver can have (control devices, one per GPU on the "
        "PCI bus, MIG caps), not only the nodes that exist",
    )
    links.add_argument(
        "--create-device-nodes",
        action="store_true",
        help="with --create-all: also create the control device nodes that are missing",
    )
    links.add_argument("--dry-run", action="store_true", help="say what would be done")
    links.set_defaults(func=run_links)

    nodes = commands.add_parser(
        "create-device-nodes",
        help="create NVIDIA device nodes (--control-devices)",
        description=(
            "Create the NVIDIA control device nodes (nvidiactl, nvidia-modeset, nvidia-uvm, "
            "nvidia-uvm-tools) with the majors of /proc/devices, mode 0666; nodes that "
            "exist are left."
        ),
    )
    nodes.add_argument(
        "--root",
        "--driver-root",
        default=_driver_root_default(),
        help="the driver root (default: /)",
    )
    nodes.add_argument(
        "--dev-root",
        default=os.environ.get("NVIDIA_DEV_ROOT") or os.environ.get("DEV_ROOT"),
        help="the root whose dev/ gets the nodes (default: the driver root)",
    )
    nodes.add_argument(
        "--control-devices",
        action="store_true",
        help="create nvidiactl, nvidia-modeset, nvidia-uvm and nvidia-uvm-tools",
    )
    nodes.add_argument("--dry-run", action="store_true", help="say what would be done")
    nodes.set_defaults(func=run_nodes)


def _report(done: list[str], warnings: list[str], dry_run: bool) -> None:
    for line in done:
        print(f"{'would create' if dry_run else 'Created'} {line}")
    for line in warnings:
        print(f"{_PROG}: warning: {line}", file=sys.stderr)


def run_links(args: argparse.Namespace) -> int:
    """Carry out ``system create-dev-char-symlinks``."""
    from nvshim import _devnodes

    try:
        if args.create_all:
            majors = _devnodes.char_majors()
            if _devnodes.gpu_major(majors) is None:
                print(
                    f"{_PROG}: no NVIDIA GPU major in {_devnodes.PROC_DEVICES}: "
                    "is the nvidia kernel module loaded?",
                    file=sys.stderr,
                )
                return 1
            wanted = _devnodes.all_possible_nodes(
                args.driver_root, majors, _devnodes.nvidia_gpu_count(), _devnodes.mig_minors()
            )
            if args.create_device_nodes:
                control, missing = _devnodes.control_nodes(args.driver_root, majors)
                done, warnings = _devnodes.create_nodes(control, args.dry_run)
                _report(done, warnings + missing, args.dry_run)
        else:
            if args.create_device_nodes:
                print(f"{_PROG}: warning: --create-device-nodes needs --create-all; ignored",
                      file=sys.stderr)
            wanted = _devnodes.existing_nodes(args.driver_root)
        if not wanted:
            print(f"no NVIDIA device nodes found in {os.path.join(args.driver_root, 'dev')}")
            return 0
        done, warnings = _devnodes.create_links(wanted, args.dev_char_path, args.dry_run)
    except OSError as exc:
        print(f"{_PROG}: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _report(done, warnings, args.dry_run)
    if not done and not warnings:
        print(f"all {len(wanted)} links already in {args.dev_char_path}")
    return 0


def run_nodes(args: argparse.Namespace) -> int:
    """Carry out ``system create-device-nodes``."""
    from nvshim import _devnodes

    if not args.control_devices:
        print(f"{_PROG}: nothing to do: give --control-devices", file=sys.stderr)
        return 1
    try:
        majors = _devnodes.char_majors()
        control, missing = _devnodes.control_nodes(args.dev_root or args.root, majors)
        done, warnings = _devnodes.create_nodes(control, args.dry_run)
    except OSError as exc:
        print(f"{_PROG}: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _report(done, warnings + missing, args.dry_run)
    # A node that could not be made leaves GPU containers without it: fail.
    return 1 if missing else 0
