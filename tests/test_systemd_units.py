"""packaging/systemd: the nvshim-cdi-refresh unit pair.

systemd's own ``systemd-analyze verify`` checks them (with the installed
nvshim-ctl standing in for /usr/bin/nvshim-ctl), and the service's command
line is run for real against a reference root.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import host_support
import pytest
import yaml

UNITS = Path(__file__).resolve().parent.parent / "packaging" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_units_pass_systemd_analyze(tmp_path: Path, nvshim_ctl: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for name in ("nvshim-cdi-refresh.service", "nvshim-cdi-refresh.path"):
        text = (UNITS / name).read_text().replace("/usr/bin/nvshim-ctl", nvshim_ctl)
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", "nvshim-cdi-refresh.service", "nvshim-cdi-refresh.path"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_path_unit_watches_the_driver_and_starts_the_service() -> None:
    path = unit("nvshim-cdi-refresh.path")
    assert path["Path"]["Unit"] == "nvshim-cdi-refresh.service"
    assert path["Install"]["WantedBy"] == "multi-user.target"
    watched = (UNITS / "nvshim-cdi-refresh.path").read_text()
    for item in ("/lib/modules/%v/modules.dep", "/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu"):
        assert f"PathChanged={item}\n" in watched


def test_service_command_runs(tmp_path: Path, nvshim_ctl: str) -> None:
    service = unit("nvshim-cdi-refresh.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(service["Service"]["ExecStart"].replace("$NVSHIM_CDI_GENERATE_ARGS", ""))
    assert argv[:3] == ["/usr/bin/nvshim-ctl", "cdi", "generate"]
    assert "--output=/var/run/cdi/nvidia.yaml" in argv
    # The same command, pointed at a reference root and a temp file.
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    out = tmp_path / "nvidia.yaml"
    args = [a for a in argv[3:] if not a.startswith("--output=")]
    result = subprocess.run(
        [
            nvshim_ctl,
            "cdi",
            "generate",
            *args,
            f"--output={out}",
            "--mode=management",
            f"--driver-root={root}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out.read_text())["kind"] == "management.nvidia.com/gpu"
