"""nvshim as users install it: the `nvshim-runtime` wheel and a plugin, in a fresh venv.

No package index is used (`pip install --no-index --find-links`): the PyPI
name `nvshim` belongs to an unrelated project, and a plugin must resolve its
`nvshim-runtime` requirement to the wheel built from this checkout. nvshim's
own dependencies are given to the fresh venv as the distributions this test
runs with (copied with their metadata), so the test needs no network.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGIN = REPO / "plugins" / "nvshim-host-mounts"

pytestmark = pytest.mark.slow


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NVSHIM_", "NVIDIA_", "PIP_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONNOUSERSITE="1", **extra)
    return env


def _run(*argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


def _closure(names: list[str]) -> dict[str, str]:
    """The distributions *names* need, here and now (markers evaluated), by normalized name."""
    seen: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        seen[key] = name
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _copy_distribution(name: str, into: Path) -> None:
    """Copy an installed distribution's files (metadata included) into *into*."""
    dist = md.distribution(name)
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file)))
        if ".." in file.parts or "__pycache__" in file.parts or not source.is_file():
            continue
        target = into / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nvshim-runtime's wheel and the example plugin's, built from this checkout."""
    pytest.importorskip("hatchling", reason="building the wheels needs hatchling")
    out = tmp_path_factory.mktemp("wheels")
    for project in (REPO, EXAMPLE_PLUGIN):
        _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-q", "-w", out, project, env=_clean_env())
    return out


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    """A new venv with the example plugin installed from the wheels, no index."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv, env=_clean_env())
    python = venv / "bin" / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                        env=_clean_env()).stdout.strip())
    deps = root / "deps"
    needed = _closure(["nvshim-runtime", "attrs"])
    for key, name in sorted(needed.items()):
        if key != "nvshim-runtime":
            _copy_distribution(name, deps)
    (purelib / "offline-deps.pth").write_text(f"{deps}\n")
    _run(python, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels,
         "nvshim-host-mounts", env=_clean_env())
    return venv


def test_the_wheel_is_named_nvshim_runtime(wheels: Path) -> None:
    names = sorted(p.name for p in wheels.glob("*.whl"))
    assert names[0].startswith("nvshim_host_mounts-0.1.0-")
    assert names[1].startswith("nvshim_runtime-0.1.0-")


def test_the_plugin_pulls_nvshim_runtime_from_the_wheel(fresh_venv: Path) -> None:
    freeze = _run(fresh_venv / "bin" / "python", "-m", "pip", "list", "--format", "json",
                  env=_clean_env()).stdout
    installed = {row["name"].lower(): row["version"] for row in json.loads(freeze)}
    assert installed["nvshim-runtime"] == "0.1.0"
    assert installed["nvshim-host-mounts"] == "0.1.0"
    assert "nvshim" not in installed, "never the unrelated PyPI project"


def test_version_and_plugins_name_the_distribution(fresh_venv: Path, tmp_path: Path) -> None:
    env = _clean_env(NVSHIM_CACHE_DIR=str(tmp_path / "cache"),
                     NVSHIM_CONFIG=str(tmp_path / "none.toml"))
    ctl = fresh_venv / "bin" / "nvshim-ctl"
    assert _run(ctl, "--version", env=env).stdout.strip() == "nvshim-ctl 0.1.0 (nvshim-runtime)"
    rows = {r["name"]: r for r in json.loads(_run(ctl, "plugins", "--json", env=env).stdout)[
        "modifiers"]}
    assert rows["host-mounts"]["distribution"] == "nvshim-host-mounts"
    assert rows["host-mounts"]["status"] == "active"
    for builtin in ("legacy-hook", "csv-discovery", "docker-gpus-detector", "cdi"):
        assert rows[builtin]["distribution"] == "nvshim-runtime"


def test_the_installed_plugin_modifies_a_bundle(fresh_venv: Path, tmp_path: Path) -> None:
    data = tmp_path / "datasets"
    data.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[nvshim.plugins.host-mounts]\nallow = ["{data}"]\n')
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/usr/bin:/bin"]},
        "root": {"path": "rootfs"},
        "annotations": {"nvshim.io/host-mounts": f"{data}:/data"},
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    env = _clean_env(NVSHIM_CACHE_DIR=str(tmp_path / "cache"), NVSHIM_CONFIG=str(config))
    out = _run(fresh_venv / "bin" / "nvshim-ctl", "modify", "--bundle", bundle, "--json",
               env=env).stdout
    (change,) = json.loads(out)
    assert (change["modifier"], change["kind"], change["action"]) == ("host-mounts", "mount", "add")
    assert change["after"]["source"] == str(data)
    assert change["after"]["destination"] == "/data"
    assert json.loads((bundle / "config.json").read_text()) == spec, "modify writes nothing"


def test_runtime_configure_registers_its_own_installation(
    fresh_venv: Path, tmp_path: Path
) -> None:
    # The admin's layout: the venv's commands linked into a bin folder on PATH,
    # behind another nvshim that is not this installation's.
    links = tmp_path / "usr-local-bin"
    links.mkdir()
    (links / "nvshim-ctl").symlink_to(fresh_venv / "bin" / "nvshim-ctl")
    decoy = tmp_path / "other-bin"
    decoy.mkdir()
    (decoy / "nvshim").write_text("#!/bin/sh\nexit 0\n")
    (decoy / "nvshim").chmod(0o755)
    env = _clean_env(PATH=f"{decoy}:{links}:/usr/bin:/bin",
                     NVSHIM_CACHE_DIR=str(tmp_path / "cache"))
    daemon = tmp_path / "daemon.json"
    _run("nvshim-ctl", "runtime", "configure", "--engine", "docker", "--config", daemon, env=env)
    registered = json.loads(daemon.read_text())["runtimes"]["nvshim"]["path"]
    assert registered == str(fresh_venv / "bin" / "nvshim")
    assert os.path.isabs(registered)


def test_scripts_have_an_absolute_interpreter(fresh_venv: Path) -> None:
    # nvshim and nvshim-ctl are /bin/sh wrappers; the interpreter is the first
    # line of nvshim-python beside them, which pip rewrote to the venv's.
    first = (fresh_venv / "bin" / "nvshim-python").read_text().splitlines()[0]
    assert first == f"#!{fresh_venv}/bin/python", first
