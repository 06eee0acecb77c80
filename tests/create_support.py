"""Running ``nvshim create`` on a small bundle against a recording runtime.

Tests import this module as ``import create_support``.  The runtime is the
``fake_runtime`` fixture's (it records and exits 0), so what a create wrote
into config.json can be read back; every path is under the test's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

GPU_ENV = ("PATH=/usr/bin:/bin", "NVIDIA_VISIBLE_DEVICES=all")


def shim_environ(tmp_path: Path, config: Path) -> dict[str, str]:
    """This process's environment without NVSHIM_*/NVIDIA_*, config and cache under ``tmp_path``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    environ["NVSHIM_CONFIG"] = str(config)
    environ["NVSHIM_CACHE_DIR"] = str(tmp_path / "cache")
    return environ


def run_create(
    nvshim_exe: str, folder: Path, config: Path, env: list[str] | tuple[str, ...] = GPU_ENV
) -> subprocess.CompletedProcess[str]:
    """``nvshim create`` on a new bundle in ``folder/bundle`` whose process has ``env``."""
    bundle = folder / "bundle"
    bundle.mkdir(parents=True)
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "env": list(env)},
        "root": {"path": "rootfs"},
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    return subprocess.run(
        [nvshim_exe, "create", "--bundle", str(bundle), "ctr"],
        env=shim_environ(folder, config),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create(
    nvshim_exe: str, folder: Path, config: Path, env: list[str] | tuple[str, ...] = GPU_ENV
) -> dict[str, Any]:
    """:func:`run_create`, which must succeed; the config.json it wrote."""
    proc = run_create(nvshim_exe, folder, config, env)
    assert proc.returncode == 0, proc.stderr
    written: dict[str, Any] = json.loads((folder / "bundle" / "config.json").read_text())
    return written
