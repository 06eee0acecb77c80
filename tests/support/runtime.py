"""``nvshim-ctl runtime`` run in-process, and an executable standing in for nvshim."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["fake_nvshim", "runtime_ctl"]


def fake_nvshim(folder: Path) -> str:
    """An executable ``folder/nvshim`` standing in for the installed nvshim; its path."""
    path = folder / "nvshim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def runtime_ctl(*argv: str) -> int:
    """Parse argv as ``nvshim-ctl runtime ...`` would and run the command; its exit status."""
    from nvshim._ctl import runtime_cmd

    parser = argparse.ArgumentParser(prog="nvshim-ctl")
    runtime_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["runtime", *argv])
    result: int = args.func(args)
    return result
