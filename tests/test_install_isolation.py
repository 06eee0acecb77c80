"""An installed nvshim runs Python isolated: no PYTHON* variable has any effect.

nvshim and its hooks run as root; a hook that inherited the container's
environment ran the image's ``sitecustomize.py`` through ``PYTHONPATH``
(CVE-2025-23266's family).  The wheel is built from this checkout and
installed with pip into a fresh venv, as an administrator would; then every
command, ``nvshim`` (pass-through and create) and each hook of
``nvshim-ctl hook``, runs with a ``PYTHONPATH`` whose ``sitecustomize.py``
would create a marker file (and a ``PYTHONHOME`` that would break Python).  A
control run of the venv's plain ``python`` shows that the files work.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import attack_support
import pytest

from nvshim import _hookcmd

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@functools.cache
def _installed_venv(folder: str) -> Path:
    """Build the wheel and pip-install it (with its dependencies) into a fresh venv."""
    base = Path(folder)
    dist = base / "dist"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build the wheel here: {built.stderr.strip()[-300:]}")
    wheel = next(dist.glob("nvshim_runtime-*.whl"))
    env_dir = base / "venv"
    venv.EnvBuilder(symlinks=True, with_pip=False).create(env_dir)
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_dir / "bin" / "python"),
            "install",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if installed.returncode != 0:
        pytest.skip(f"cannot install the wheel's dependencies here: {installed.stderr[-300:]}")
    return env_dir


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _installed_venv(str(tmp_path_factory.mktemp("install")))


def _hostile_env(tmp_path: Path, marker: Path) -> dict[str, str]:
    site = attack_support.python_site_with_sitecustomize(tmp_path / "pythonpath", marker)
    config = tmp_path / "config.toml"
    config.write_text('[nvidia-container-runtime]\nruntimes = ["/bin/true"]\n')
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(site),
        "PYTHONHOME": str(tmp_path / "pythonhome-that-does-not-exist"),
        "PYTHONSTARTUP": str(site / "sitecustomize.py"),
        "NVSHIM_CONFIG": str(config),
        "NVSHIM_CACHE_DIR": str(tmp_path / "cache"),
    }


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "usr" / "lib").mkdir(parents=True)
    (bundle / "config.json").write_text(
        json.dumps({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"env": []}})
    )
    return bundle


def test_the_installed_wrappers_name_the_venvs_interpreter(installed: Path) -> None:
    bin_dir = installed / "bin"
    first = (bin_dir / "nvshim-python").read_text().splitlines()[0]
    assert first == f"#!{bin_dir / 'python'}"
    for name in ("nvshim", "nvshim-ctl"):
        text = (bin_dir / name).read_text()
        assert text.startswith("#!/bin/sh\n"), name
        assert "-I -c" in text, name


def test_no_python_variable_steers_nvshim_or_a_hook(installed: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    env = _hostile_env(tmp_path, marker)
    bin_dir = installed / "bin"
    bundle = _bundle(tmp_path)
    state = json.dumps({"ociVersion": "1.0.2", "id": "c", "pid": 1, "bundle": str(bundle)})
    # The control: the venv's plain interpreter does run both files.
    control_env = {k: v for k, v in env.items() if k != "PYTHONHOME"}
    subprocess.run([str(bin_dir / "python"), "-c", "pass"], env=control_env, timeout=60, check=True)
    assert marker.exists(), "control: sitecustomize.py did not run"
    marker.unlink()

    ldconfig = tmp_path / "fake-ldconfig"
    ldconfig.write_text("#!/bin/sh\nexit 0\n")
    ldconfig.chmod(0o755)
    hook_runs = {
        "update-ldcache": ["--folder", "/usr/lib", "--ldconfig-path", str(ldconfig)],
        "create-symlinks": ["--link", "libx.so.1::/usr/lib/libx.so"],
    }
    runs: list[tuple[list[str], str | None]] = [
        ([str(bin_dir / "nvshim"), "--version"], None),
        ([str(bin_dir / "nvshim"), "state", "x"], None),
        ([str(bin_dir / "nvshim"), "create", "--bundle", str(bundle), "c"], None),
        ([str(bin_dir / "nvshim-ctl"), "--version"], None),
    ]
    for name in _hookcmd.hook_names():
        runs.append(([str(bin_dir / "nvshim-ctl"), "hook", name, "--help"], None))
        # update-ldcache makes a mount namespace for ldconfig: root only.
        if name in hook_runs and (name != "update-ldcache" or os.geteuid() == 0):
            runs.append(([str(bin_dir / "nvshim-ctl"), "hook", name, *hook_runs[name]], state))
    for argv, stdin in runs:
        with attack_support.attack("PYTHON* variables on " + " ".join(argv[:3])):
            result = subprocess.run(
                argv,
                input=stdin,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, f"{argv}: {result.stderr}"
            assert not marker.exists(), f"{argv}: sitecustomize.py ran"
    assert os.readlink(bundle / "rootfs" / "usr" / "lib" / "libx.so") == "libx.so.1"
