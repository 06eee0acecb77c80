"""``nvshim-ctl cdi inventory``: the host inventory that jit-cdi creates read."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``inventory`` to the ``cdi`` command's subcommands."""
    parser = commands.add_parser(
        "inventory",
        help="show the cached host inventory (GPUs, MIG devices, driver) that jit-cdi uses",
        description=(
            "Show the host inventory that a jit-cdi create reads instead of calling NVML:"
            " from the cache when it is current, else built now and cached."
        ),
    )
    parser.add_argument("--refresh", action="store_true", help="rebuild it even when current")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--config", help="config.toml to use (default: as the runtime)")
    parser.add_argument(
        "--driver-root", help="the driver root (default: [nvidia-container-cli] root, else /)"
    )
    parser.set_defaults(func=run)


def run(namespace: argparse.Namespace) -> int:
    """Print the inventory; 1 with one line when it cannot be built."""
    from nvshim._ctl import load_config_or_say_why
    from nvshim.inventory import InventoryError, describe, load_inventory

    config = load_config_or_say_why(namespace.config)
    if config is None:
        return 1
    root = namespace.driver_root or config.nvidia_container_cli.root or "/"
    try:
        result = load_inventory(root, refresh=namespace.refresh)
    except InventoryError as exc:
        sys.stderr.write(f"nvshim-ctl: cannot build the host inventory: {exc}\n")
        return 1
    if namespace.json:
        data: dict[str, Any] = {
            "path": result.path,
            "cached": result.cached,
            "reason": result.reason,
            "inventory": result.inventory.to_json(),
        }
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(describe(result)) + "\n")
    return 0
