"""``nvshim-ctl modify``: what a create would do to a bundle's spec, without doing it."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``modify`` command."""
    parser = subparsers.add_parser(
        "modify",
        help="show what the modifier chain would change in a bundle's config.json",
        description=(
            "Run the whole modifier chain on BUNDLE/config.json as a create would, "
            "write nothing, and print the changes. Exit status 0 when the container "
            "would be created, 1 (with the error it would get) when it would be refused."
        ),
    )
    parser.add_argument("--bundle", required=True, help="the bundle folder")
    parser.add_argument("--config", help="config.toml to use (default: as the runtime)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--diff", action="store_true", help="print a unified diff of config.json (default)"
    )
    output.add_argument(
        "--json", action="store_true", help="print the changes as JSON, each with its modifier"
    )
    parser.set_defaults(func=run)


def _pretty(data: Any) -> list[str]:
    return (json.dumps(data, indent=2) + "\n").splitlines(keepends=True)


def run(namespace: argparse.Namespace) -> int:
    """Run the chain on the bundle with nothing written; print a diff or the changes."""
    from nvshim.config import load_config
    from nvshim.errors import NvshimError
    from nvshim.runtime import apply_modifiers
    from nvshim.spec import Spec

    bundle = os.path.abspath(namespace.bundle)
    config_json = os.path.join(bundle, "config.json")
    try:
        config = load_config(namespace.config)
        original = Spec.load(config_json).to_dict()
        result = apply_modifiers(bundle, config=config, argv=("nvshim", "create"), write=False)
    except NvshimError as exc:
        sys.stderr.write(exc.line + "\n")
        return 1
    if namespace.json:
        json.dump([change.to_json() for change in result.changes], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    # Which mode the container gets and why: on stderr, so that stdout stays
    # a diff that patch and git apply take.
    sys.stderr.write(f"nvshim-ctl: mode {result.mode}: {result.mode_reason or 'configured'}\n")
    # The header names who changed something, not every modifier that ran.
    changed = list(dict.fromkeys(c.modifier for c in result.changes if c.modifier))
    diff = difflib.unified_diff(
        _pretty(original),
        _pretty(result.spec.raw),
        fromfile=f"{config_json} (engine)",
        tofile=f"{config_json} (changed by {', '.join(changed) or 'no modifier'})",
    )
    sys.stdout.writelines(diff)
    return 0
