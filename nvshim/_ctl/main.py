"""``nvshim-ctl``: the tooling command.

Each subcommand lives in a module of this package that exposes
``register(subparsers)``; the module adds its parser and sets ``func`` to a
callable taking the parsed namespace and returning the exit status.
``nvshim-ctl hook ...`` runs inside every container start (runc calls it), so
it is dispatched before argparse and the other modules are imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules providing subcommands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "nvshim._ctl.plugins_cmd",
    "nvshim._ctl.modify_cmd",
    "nvshim._ctl.config_cmd",
    "nvshim._ctl.runtime_cmd",
    "nvshim._ctl.cdi_cmd",
    "nvshim._ctl.system_cmd",
    "nvshim._ctl.demo_cmd",
    "nvshim._ctl.hook_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    from nvshim._version import DISTRIBUTION, __version__

    parser = argparse.ArgumentParser(
        prog="nvshim-ctl", description="Tooling for the nvshim OCI runtime shim."
    )
    parser.add_argument(
        "--version", action="version", version=f"nvshim-ctl {__version__} ({DISTRIBUTION})"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not shipped in this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nvshim-ctl`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hook"]:
        from nvshim._hookcmd import main as hook_main

        return hook_main(args[1:])
    parser = build_parser()
    namespace = parser.parse_args(args)
    try:
        status: int = namespace.func(namespace)
    except BrokenPipeError:
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
