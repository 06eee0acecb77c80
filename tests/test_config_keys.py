"""Config mistakes an admin must see (issue #11), through ``nvshim`` and ``nvshim-ctl``.

A misspelt key leaves its setting at the default, which can leave a GPU
container without its GPU: it is a warning on every create (with the key it
most likely meant) and an error for ``nvshim-ctl config validate`` unless
``--lenient``.  NVIDIA's own keys that nvshim has no use for are only noted.
``NVSHIM_CONFIG`` naming a missing file is an error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import create_support

TYPO = (
    "[nvidia-container-runtime.modes.csv]\n"
    'mount-spec-paths = "/opt/jetson/csv"\n'
)
NVIDIA_ONLY = (
    "[nvidia-container-cli]\nload-kmods = true\nldcache = \"/etc/ld.so.cache\"\n"
    "[features]\nallow-ldconfig-from-container = true\n"
)


def _config(tmp_path: Path, runtime: str, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        "[nvidia-container-runtime]\n"
        f'runtimes = ["{runtime}"]\n'
        'mode = "csv"\n'
        f'debug = "{tmp_path / "nvshim.log"}"\n' + body
    )
    return path


def _ctl(
    nvshim_ctl: str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    environ.pop("XDG_CONFIG_HOME", None)
    environ["NVSHIM_CACHE_DIR"] = str(tmp_path / "cache")
    environ.update(env)
    return subprocess.run(
        [nvshim_ctl, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_create_warns_about_a_misspelt_key(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    config = _config(tmp_path, str(fake_runtime.path), TYPO + NVIDIA_ONLY)
    create_support.create(nvshim_exe, tmp_path, config, ("PATH=/bin",))
    warnings = [
        line
        for line in (tmp_path / "nvshim.log").read_text().splitlines()
        if "level=warning" in line
    ]
    assert warnings == [
        f"{warnings[0].split(' msg=')[0]} msg=\"config {config}: unknown key "
        "'nvidia-container-runtime.modes.csv.mount-spec-paths' ignored (did you mean "
        "'nvidia-container-runtime.modes.csv.mount-spec-path'?)\""
    ]
    assert len(fake_runtime.calls()) == 1


def test_validate_refuses_a_misspelt_key_unless_lenient(tmp_path: Path, nvshim_ctl: str) -> None:
    config = _config(tmp_path, "runc", TYPO)
    strict = _ctl(nvshim_ctl, tmp_path, "config", "validate", str(config))
    assert strict.returncode == 1
    assert "did you mean 'nvidia-container-runtime.modes.csv.mount-spec-path'?" in strict.stderr
    assert "valid" not in strict.stdout
    lenient = _ctl(nvshim_ctl, tmp_path, "config", "validate", "--lenient", str(config))
    assert lenient.returncode == 0, lenient.stderr
    assert "warning: config" in lenient.stderr
    assert lenient.stdout.strip().endswith(f"{config}: valid")


def test_validate_notes_nvidia_keys_and_passes(tmp_path: Path, nvshim_ctl: str) -> None:
    config = _config(tmp_path, "runc", NVIDIA_ONLY)
    result = _ctl(nvshim_ctl, tmp_path, "config", "validate", str(config))
    assert result.returncode == 0, result.stderr
    assert f"config {config}: NVIDIA's key 'features' is ignored by nvshim" in result.stdout
    assert "'nvidia-container-cli.load-kmods' is ignored" in result.stdout
    assert result.stdout.strip().endswith(f"{config}: valid")


def test_validate_without_a_file_checks_what_the_runtime_reads(
    tmp_path: Path, nvshim_ctl: str
) -> None:
    xdg = tmp_path / "xdg"
    absent = xdg / "nvidia-container-runtime" / "config.toml"
    result = _ctl(nvshim_ctl, tmp_path, "config", "validate", XDG_CONFIG_HOME=str(xdg))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{absent}: no file: defaults apply\n"
    absent.parent.mkdir(parents=True)
    absent.write_text(TYPO)
    result = _ctl(nvshim_ctl, tmp_path, "config", "validate", XDG_CONFIG_HOME=str(xdg))
    assert result.returncode == 1
    assert "mount-spec-paths" in result.stderr


def test_nvshim_config_naming_a_missing_file_is_an_error(
    tmp_path: Path, nvshim_exe: str, nvshim_ctl: str, fake_runtime: Any
) -> None:
    missing = tmp_path / "typo" / "config.toml"
    proc = create_support.run_create(nvshim_exe, tmp_path, missing, ("PATH=/bin",))
    assert proc.returncode == 1
    assert f"config {missing}: no such file (named by NVSHIM_CONFIG)" in proc.stderr
    assert fake_runtime.calls() == []
    result = _ctl(nvshim_ctl, tmp_path, "config", "validate", NVSHIM_CONFIG=str(missing))
    assert result.returncode == 1
    assert "no such file (named by NVSHIM_CONFIG)" in result.stderr
