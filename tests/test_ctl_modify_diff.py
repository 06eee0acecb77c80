"""``nvshim-ctl modify --diff`` names only the modifiers that changed something (issue #11)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def test_diff_header_names_only_the_modifiers_that_changed_the_spec(
    tmp_path: Path, nvshim_ctl: str
) -> None:
    hook = tmp_path / "nvidia-container-runtime-hook"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    config = tmp_path / "config.toml"
    config.write_text(
        '[nvidia-container-runtime]\nmode = "legacy"\n'
        f'[nvidia-container-runtime-hook]\npath = "{hook}"\n'
    )
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "env": ["NVIDIA_VISIBLE_DEVICES=all"]},
        "root": {"path": "rootfs"},
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    environ["NVSHIM_CACHE_DIR"] = str(tmp_path / "cache")
    result = subprocess.run(
        [nvshim_ctl, "modify", "--bundle", str(bundle), "--config", str(config), "--diff"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"--- {bundle / 'config.json'} (engine)"
    # docker-gpus-detector, csv-discovery and cdi ran too, and changed nothing.
    assert lines[1] == f"+++ {bundle / 'config.json'} (changed by legacy-hook)"
