"""Attacks by an image through real runc: the image's environment never reaches a hook.

A CDI ``createContainer`` hook without ``env`` (the shape of CDI's own example
spec) was written to config.json without ``env``, so runc ran it with runc
init's environment, which is the container's: an image's
``LD_PRELOAD=/proc/self/cwd/evil.so`` (cwd is the rootfs) ran inside
``/usr/bin/true`` as root on the host (CVE-2025-23266 is NVIDIA's instance).
Each test first runs the same attack through plain runc, as a control that
shows it works on this host, then through ``nvshim``: the marker file that the
image's code would create on the host must not appear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attack_support
import pytest
import runc_support
from script_support import installed_script

pytestmark = runc_support.RUNC_MARKS

KIND = "example.com/evilgpu"


def _cdi_config(tmp_path: Path, hook: dict[str, Any]) -> Path:
    """A CDI spec folder defining ``KIND=gpu0`` with ``hook``; returns the config.toml."""
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    spec = {
        "cdiVersion": "0.6.0",
        "kind": KIND,
        "devices": [{"name": "gpu0", "containerEdits": {"env": ["EVIL_GPU=0"]}}],
        "containerEdits": {"hooks": [{"hookName": "createContainer", **hook}]},
    }
    (spec_dir / "evil.json").write_text(json.dumps(spec))
    config = tmp_path / "config.toml"
    config.write_text(
        '[nvidia-container-runtime]\nmode = "cdi"\n'
        "[nvidia-container-runtime.modes.cdi]\n"
        f"spec-dirs = [{json.dumps(str(spec_dir))}]\n"
    )
    return config


def _hostile_bundle(tmp_path: Path, name: str, image_env: list[str]) -> runc_support.Bundle:
    return runc_support.make_bundle(
        tmp_path / name,
        ["true"],
        env=[*runc_support.DEFAULT_ENV, f"NVIDIA_VISIBLE_DEVICES={KIND}=gpu0", *image_env],
    )


def _control(tmp_path: Path, image_env: list[str], plant: Any, hook: dict[str, Any]) -> Path:
    """Run the attack through plain runc (hook without env) and return the marker it made."""
    bundle = _hostile_bundle(tmp_path, "control", image_env)
    plant(bundle)
    bare = {k: v for k, v in hook.items() if k != "env"}
    bundle.edit_config(lambda c: c.update(hooks={"createContainer": [bare]}))
    runc = runc_support.find_runc()
    assert runc is not None
    runc_support.run_container([runc], bundle).check()
    return bundle.path


def _preload_plant(library: Path) -> Any:
    def plant(bundle: runc_support.Bundle) -> None:
        bundle.write_file("/evil.so", library.read_bytes(), 0o755)

    return plant


@pytest.mark.parametrize(
    "hook_env",
    [pytest.param(None, id="no-env"), pytest.param([], id="empty-env")],
)
def test_image_ld_preload_never_runs_in_a_cdi_hook(
    tmp_path: Path, hook_env: list[str] | None
) -> None:
    marker = tmp_path / "PWNED-by-ld-preload"
    library = attack_support.evil_library(tmp_path / "evil", marker)
    image_env = ["LD_PRELOAD=/proc/self/cwd/evil.so"]
    hook: dict[str, Any] = {"path": "/usr/bin/true", "args": ["true"]}
    if hook_env is not None:
        hook["env"] = hook_env
    with attack_support.attack("image LD_PRELOAD in a CDI hook without env"):
        _control(tmp_path, image_env, _preload_plant(library), hook)
        assert marker.exists(), "control: plain runc did not run the image's library"
        marker.unlink()

        config = _cdi_config(tmp_path, hook)
        bundle = _hostile_bundle(tmp_path, "bundle", image_env)
        _preload_plant(library)(bundle)
        result = runc_support.run_container(
            [installed_script("nvshim")], bundle, env={"NVSHIM_CONFIG": str(config)}
        ).check()
        written = bundle.load_config()["hooks"]["createContainer"]
        assert written[-1]["path"] == "/usr/bin/true", result.describe()
        expected = (
            hook_env
            if hook_env is not None
            else ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        )
        assert written[-1]["env"] == expected
        assert not marker.exists(), "the image's LD_PRELOAD ran in a host hook"


@pytest.mark.parametrize(
    "hook_env",
    [
        pytest.param(None, id="no-env"),
        # Even a hook whose env (from the spec's author) carries PYTHONPATH:
        # nvshim-ctl runs Python isolated (-I).
        pytest.param(["PYTHONPATH=/proc/self/cwd/py"], id="env-with-pythonpath"),
    ],
)
def test_image_sitecustomize_never_runs_in_nvshim_ctl_hook(
    tmp_path: Path, hook_env: list[str] | None
) -> None:
    marker = tmp_path / "PWNED-by-sitecustomize"
    site = attack_support.python_site_with_sitecustomize(tmp_path / "py", marker)
    ctl = installed_script("nvshim-ctl")
    image_env = ["PYTHONPATH=/proc/self/cwd/py"]
    hook: dict[str, Any] = {"path": ctl, "args": [ctl, "hook", "create-symlinks"]}
    if hook_env is not None:
        hook["env"] = hook_env

    def plant(bundle: runc_support.Bundle) -> None:
        bundle.write_file("/py/sitecustomize.py", (site / "sitecustomize.py").read_text())

    with attack_support.attack("image PYTHONPATH in the nvshim-ctl hook"):
        config = _cdi_config(tmp_path, hook)
        bundle = _hostile_bundle(tmp_path, "bundle", image_env)
        plant(bundle)
        result = runc_support.run_container(
            [installed_script("nvshim")], bundle, env={"NVSHIM_CONFIG": str(config)}
        )
        result.check()
        assert not marker.exists(), "the image's sitecustomize.py ran in a host hook"
