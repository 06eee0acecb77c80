"""CDI host paths are absolute (issue #11), through the real ``nvshim create``.

nvshim runs as root from a folder it does not choose: a relative ``hostPath``
would mount or read whatever that folder holds.  The spec file is refused
(a warning naming the file, the field and the device, as for any bad spec
file), so a container asking for its device is refused and the bundle is left
as it was; a typed mount may still name a file system (``tmpfs``) as its
source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import create_support
import pytest


def _setup(tmp_path: Path, runtime: str, edits: dict[str, Any]) -> tuple[Path, Path]:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    spec_file = spec_dir / "gpu.json"
    spec_file.write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": "nvidia.com/gpu",
                "devices": [{"name": "gpu0", "containerEdits": edits}],
            }
        )
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[nvidia-container-runtime]\nruntimes = ["{runtime}"]\nmode = "cdi"\n'
        f'debug = "{tmp_path / "nvshim.log"}"\n'
        f'[nvidia-container-runtime.modes.cdi]\nspec-dirs = ["{spec_dir}"]\n'
    )
    return config, spec_file


@pytest.mark.parametrize(
    ("edits", "field", "why"),
    [
        (
            {"mounts": [{"hostPath": "lib/libx.so", "containerPath": "/lib/libx.so",
                         "options": ["ro", "bind"]}]},
            "mounts[0].hostPath",
            "is not absolute",
        ),
        (
            {"mounts": [{"hostPath": "/usr/../etc/shadow", "containerPath": "/x",
                         "type": "bind"}]},
            "mounts[0].hostPath",
            "must not contain '..'",
        ),
        (
            {"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/../dev/null"}]},
            "deviceNodes[0].hostPath",
            "must not contain '..'",
        ),
        (
            {"deviceNodes": [{"path": "/dev/x", "hostPath": "dev/null"}]},
            "deviceNodes[0].hostPath",
            "is not absolute",
        ),
    ],
)
def test_relative_host_path_refuses_the_container(
    tmp_path: Path,
    nvshim_exe: str,
    fake_runtime: Any,
    edits: dict[str, Any],
    field: str,
    why: str,
) -> None:
    config, spec_file = _setup(tmp_path, str(fake_runtime.path), edits)
    env = ("PATH=/bin", "NVIDIA_VISIBLE_DEVICES=gpu0")
    proc = create_support.run_create(nvshim_exe, tmp_path, config, env)
    assert proc.returncode == 1
    assert "unknown CDI device nvidia.com/gpu=gpu0" in proc.stderr
    (line,) = [
        line
        for line in (tmp_path / "nvshim.log").read_text().splitlines()
        if f"{spec_file}: devices[0].containerEdits.{field}" in line
    ]
    assert "WARN" in line.upper()
    assert "(device nvidia.com/gpu=gpu0)" in line
    assert why in line
    assert fake_runtime.calls() == []
    written = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert written["process"]["env"] == list(env)


def test_typed_mount_may_name_a_file_system(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    edits = {"mounts": [{"hostPath": "tmpfs", "containerPath": "/scratch", "type": "tmpfs"}]}
    config, _ = _setup(tmp_path, str(fake_runtime.path), edits)
    written = create_support.create(
        nvshim_exe, tmp_path, config, ("PATH=/bin", "NVIDIA_VISIBLE_DEVICES=gpu0")
    )
    assert {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"}.items() <= (
        written["mounts"][-1].items()
    )
