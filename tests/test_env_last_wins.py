"""Duplicate variables in ``process.env``: the last one wins (issue #11).

runc and crun give the container the last entry of a name, and NVIDIA's
runtime and hook read the last; nvshim reads it too, and ``Spec.set_env``
leaves exactly one entry, so nothing it sets is overridden by a later one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import create_support
from csv_host_support import make_file, write_csv


def _config(tmp_path: Path, runtime: str, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[nvidia-container-runtime]\nruntimes = ["{runtime}"]\n' + body)
    return path


def test_csv_mode_reads_the_last_visible_devices(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    root = tmp_path / "host"
    make_file(root, "/usr/lib/libnvfoo.so.1", b"foo")
    write_csv(tmp_path / "csv", "drivers.csv", ["lib, /usr/lib/libnvfoo.so.1"])
    config = _config(
        tmp_path,
        str(fake_runtime.path),
        'mode = "csv"\n[nvidia-container-runtime.modes.csv]\n'
        f'mount-spec-path = "{tmp_path / "csv"}"\n[nvidia-container-cli]\nroot = "{root}"\n',
    )
    env = ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_VISIBLE_DEVICES=all"]
    written = create_support.create(nvshim_exe, tmp_path, config, env)
    assert [m["destination"] for m in written["mounts"]] == ["/usr/lib/libnvfoo.so.1"]


def test_cdi_mode_reads_the_last_and_leaves_one_void(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    (spec_dir / "gpu.json").write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": "nvidia.com/gpu",
                "devices": [{"name": "0", "containerEdits": {"env": ["GPU0=yes"]}}],
            }
        )
    )
    config = _config(
        tmp_path,
        str(fake_runtime.path),
        f'mode = "cdi"\n[nvidia-container-runtime.modes.cdi]\nspec-dirs = ["{spec_dir}"]\n',
    )
    env = ["NVIDIA_VISIBLE_DEVICES=none", "PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0"]
    written = create_support.create(nvshim_exe, tmp_path, config, env)
    assert written["process"]["env"] == ["NVIDIA_VISIBLE_DEVICES=void", "PATH=/bin", "GPU0=yes"]
