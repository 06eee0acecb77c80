"""`nvshim-ctl config set|get`: edit config.toml key by key, comments kept, checked first."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from nvshim._configedit import ConfigEditError, parse_assignment, set_values
from nvshim._ctl.main import main
from nvshim.config import load_config

ADMIN_FILE = """\
# Site configuration: ask the GPU team before changing it.
disable-require = false

[nvidia-container-runtime]
# Debug log while we chase a bug.
debug = "/var/log/nvidia-container-runtime.log"
mode = "auto"  # chosen per container
runtimes = ["runc"]

[nvidia-container-cli]
# a key nvshim does not read, for nvidia-container-cli
no-cgroups = false
"""


@pytest.fixture
def admin_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(ADMIN_FILE)
    path.chmod(0o640)
    return path


def ctl(*argv: str) -> int:
    return main(list(argv))


def test_set_prints_the_result_and_keeps_every_comment(
    admin_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("config", "set", "nvidia-container-runtime.mode=cdi", "--config",
               str(admin_file)) == 0
    out = capsys.readouterr().out
    assert out == ADMIN_FILE.replace('mode = "auto"', 'mode = "cdi"')
    assert admin_file.read_text() == ADMIN_FILE, "without --in-place the file is not touched"


def test_in_place_writes_atomically_keeping_the_mode(
    admin_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("config", "set", "--in-place", "--config", str(admin_file),
               "nvidia-container-runtime.modes.cdi.spec-dirs=/etc/cdi:/run/cdi",
               "nvidia-container-runtime-hook.skip-mode-detection",
               "nvshim.modifier-timeout=3",
               "nvshim.disabled-modifiers=csv-discovery,legacy-hook") == 0
    assert capsys.readouterr().out == f"{admin_file}: written\n"
    assert stat.S_IMODE(admin_file.stat().st_mode) == 0o640
    text = admin_file.read_text()
    assert text.startswith(ADMIN_FILE.split("[nvidia-container-cli]")[0])
    assert "# a key nvshim does not read, for nvidia-container-cli" in text
    config = load_config(str(admin_file))
    assert config.runtime.modes.cdi.spec_dirs == ("/etc/cdi", "/run/cdi")
    assert config.nvidia_container_runtime_hook.skip_mode_detection is True
    assert config.nvshim.modifier_timeout == 3.0
    assert config.nvshim.disabled_modifiers == ("csv-discovery", "legacy-hook")
    assert [p.name for p in admin_file.parent.iterdir()] == ["config.toml"]


def test_same_value_twice_changes_no_byte(admin_file: Path) -> None:
    assert set_values(ADMIN_FILE, ["nvidia-container-runtime.mode=auto"]) == ADMIN_FILE
    assert set_values(ADMIN_FILE, ["nvidia-container-runtime.runtimes=runc"]) == ADMIN_FILE


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("nvidia-container-runtime.mode=bogus", "expected one of auto, legacy, csv, cdi"),
        ("nvshim.modifier-timeout=soon", "expected a number"),
        ("nvidia-container-runtime-hook.skip-mode-detection=maybe", "expected true or false"),
        ("nvshim.unknown-key=1", "unknown key(s): unknown-key"),
        ("nvidia-container-runtime.mode", "expected KEY=VALUE"),
        ("nvidia-container-runtime.mode.x=1", "is a str"),
        ("nvidia-container-runtime=1", "is a table"),
        ("nvshim.plugins.no-such-plugin.x=1", "no installed modifier is named 'no-such-plugin'"),
    ],
)
def test_bad_values_are_refused_and_nothing_written(
    assignment: str, message: str, admin_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("config", "set", "-i", "-c", str(admin_file), assignment) == 1
    err = capsys.readouterr().err
    assert message in err
    assert str(admin_file) in err
    assert admin_file.read_text() == ADMIN_FILE


def test_a_file_that_is_not_toml_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[nvidia-container-runtime\n")
    assert ctl("config", "set", "-i", "-c", str(path), "nvidia-container-runtime.mode=cdi") == 1
    assert "invalid TOML" in capsys.readouterr().err
    assert path.read_text() == "[nvidia-container-runtime\n"


def test_a_missing_file_is_created_with_in_place(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "nvidia-container-runtime" / "config.toml"
    assert ctl("config", "set", "-i", "-c", str(path),
               "nvidia-container-cli.root=/run/nvidia/driver",
               "nvidia-container-runtime.runtimes=crun") == 0
    config = load_config(str(path))
    assert config.nvidia_container_cli.root == "/run/nvidia/driver"
    assert config.runtime.runtimes == ("crun",)


def test_output_file(admin_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "new.toml"
    assert ctl("config", "set", "-c", str(admin_file), "-o", str(out),
               "nvidia-container-runtime.log-level=debug") == 0
    assert 'log-level = "debug"' in out.read_text()
    assert admin_file.read_text() == ADMIN_FILE


def test_keys_nvshim_does_not_read_take_toml_values(admin_file: Path) -> None:
    assert parse_assignment("nvidia-container-cli.no-cgroups=true") == (
        ["nvidia-container-cli", "no-cgroups"], True)
    assert parse_assignment("nvidia-container-cli.user=root:video")[1] == "root:video"
    assert parse_assignment("nvshim.plugins.host-mounts.allow=[\"/srv\"]")[1] == ["/srv"]
    with pytest.raises(ConfigEditError, match="empty part"):
        parse_assignment("a..b=1")


def test_get_prints_the_file_value_else_the_default(
    admin_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("config", "get", "nvidia-container-runtime.debug", "--config", str(admin_file)) == 0
    assert capsys.readouterr().out == "/var/log/nvidia-container-runtime.log\n"
    assert ctl("config", "get", "nvidia-container-runtime.runtimes", "-c", str(admin_file)) == 0
    assert capsys.readouterr().out == '["runc"]\n'
    assert ctl("config", "get", "nvshim.modifier-timeout", "-c", str(admin_file)) == 0
    assert capsys.readouterr().out == "10.0\n"
    assert ctl("config", "get", "nvidia-container-cli.no-cgroups", "-c", str(admin_file)) == 0
    assert capsys.readouterr().out == "false\n"
    assert ctl("config", "get", "nvidia-container-runtime.modes.cdi", "-c", str(admin_file)) == 0
    assert 'spec-dirs = ["/etc/cdi", "/var/run/cdi"]' in capsys.readouterr().out
    assert ctl("config", "get", "nvidia-container-cli.nope", "-c", str(admin_file)) == 1
    assert "is not set" in capsys.readouterr().err


def test_get_and_set_through_the_installed_command(admin_file: Path, nvshim_ctl: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    env["NVSHIM_CONFIG"] = str(admin_file)
    subprocess.run([nvshim_ctl, "config", "set", "--in-place", "nvidia-container-runtime.mode=csv"],
                   env=env, check=True, capture_output=True, timeout=60)
    got = subprocess.run([nvshim_ctl, "config", "get", "nvidia-container-runtime.mode"],
                         env=env, check=True, capture_output=True, text=True, timeout=60)
    assert got.stdout == "csv\n"
