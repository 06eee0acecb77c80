"""``nvshim-ctl hook``: the OCI hooks nvshim injects (help text only).

The hooks are dispatched by :func:`nvshim._ctl.main.main` before argparse
runs; this module only makes ``nvshim-ctl --help`` list them.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``hook`` command."""
    parser = subparsers.add_parser(
        "hook",
        help="OCI hooks run by the low-level runtime (update-ldcache, create-symlinks, ...)",
        add_help=False,
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(namespace: argparse.Namespace) -> int:
        from nvshim._hookcmd import main as hook_main

        return hook_main(list(namespace.rest))

    parser.set_defaults(func=run)
