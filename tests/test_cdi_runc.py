"""The cdi mode with real runc: a fake CDI device injected into a busybox container.

The CDI spec describes a char device made with mknod (1:3, with type and
numbers left for nvshim to read from the host node), a library file
bind-mounted read-only, an env variable and a createContainer hook that
records that it ran.  The device is asked for once through an annotation and
once through ``NVIDIA_VISIBLE_DEVICES`` (qualified, and unqualified with the
default kind); the container must see all of it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import runc_support
from support import installed_script

pytestmark = runc_support.RUNC_MARKS

KIND = "example.com/fakegpu"

CHECK = (
    "cat /usr/lib/libfakegpu.so.1;"
    " echo FAKE_GPU=$FAKE_GPU;"
    " echo NVD=$NVIDIA_VISIBLE_DEVICES;"
    " stat -c 'node=%F %t:%T' /dev/fakegpu0;"
    " echo data > /dev/fakegpu0 && echo wrote-device;"
    " echo x > /usr/lib/libfakegpu.so.1 2>/dev/null || echo lib-read-only"
)


def make_host(tmp_path: Path) -> tuple[Path, Path]:
    """The fake host files and a CDI spec folder; returns (spec folder, hook record)."""
    host = tmp_path / "host"
    (host / "dev").mkdir(parents=True)
    (host / "lib").mkdir()
    node = host / "dev" / "fakegpu0"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (host / "lib" / "libfakegpu.so.1").write_text("FAKE-LIBRARY-CONTENT\n")
    record = tmp_path / "hook-record.json"
    hook = host / "record-hook"
    # runc runs createContainer hooks with the OCI state on stdin.
    hook.write_text(f'#!/bin/sh\ncat > "{record}.tmp" && mv "{record}.tmp" "{record}"\n')
    hook.chmod(0o755)
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    spec = {
        "cdiVersion": "0.6.0",
        "kind": KIND,
        "devices": [
            {
                "name": "gpu0",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/fakegpu0", "hostPath": str(node)}],
                },
            }
        ],
        "containerEdits": {
            "env": ["FAKE_GPU=present"],
            "mounts": [
                {
                    "hostPath": str(host / "lib" / "libfakegpu.so.1"),
                    "containerPath": "/usr/lib/libfakegpu.so.1",
                    "options": ["ro", "nosuid", "nodev", "bind"],
                }
            ],
            "hooks": [{"hookName": "createContainer", "path": str(hook), "args": ["record-hook"]}],
        },
    }
    (spec_dir / "fakegpu.json").write_text(json.dumps(spec))
    return spec_dir, record


def write_config(tmp_path: Path, spec_dir: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        "[nvidia-container-runtime]\n"
        'mode = "cdi"\n'
        "[nvidia-container-runtime.modes.cdi]\n"
        f"spec-dirs = [{json.dumps(str(spec_dir))}]\n"
        f'default-kind = "{KIND}"\n'
    )
    return path


@pytest.mark.parametrize(
    ("env", "annotations"),
    [
        pytest.param([], {"cdi.k8s.io/test": f"{KIND}=gpu0"}, id="annotation"),
        pytest.param([f"NVIDIA_VISIBLE_DEVICES={KIND}=gpu0"], None, id="env-qualified"),
        pytest.param(["NVIDIA_VISIBLE_DEVICES=gpu0"], None, id="env-default-kind"),
    ],
)
def test_container_sees_the_cdi_device(
    tmp_path: Path, env: list[str], annotations: dict[str, str] | None
) -> None:
    nvshim = installed_script("nvshim")
    spec_dir, record = make_host(tmp_path)
    config = write_config(tmp_path, spec_dir)
    extra = {"annotations": annotations} if annotations else None
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ["sh", "-c", CHECK],
        env=[*runc_support.DEFAULT_ENV, *env],
        extra=extra,
    )
    result = runc_support.run_container(
        [nvshim], bundle, env={"NVSHIM_CONFIG": str(config)}
    ).check()
    out = result.stdout
    assert "FAKE-LIBRARY-CONTENT" in out, result.describe()
    assert "FAKE_GPU=present" in out
    assert "NVD=void" in out
    assert "node=character special file 1:3" in out
    assert "wrote-device" in out
    assert "lib-read-only" in out
    state = json.loads(record.read_text())
    assert state["bundle"] == str(bundle.path)
    written = bundle.load_config()
    assert written["hooks"]["createContainer"][-1]["path"].endswith("record-hook")
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in written[
        "linux"
    ]["resources"]["devices"]


def test_unknown_device_refuses_the_container(tmp_path: Path) -> None:
    nvshim = installed_script("nvshim")
    spec_dir, record = make_host(tmp_path)
    config = write_config(tmp_path, spec_dir)
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ["sh", "-c", "echo should-not-run"],
        env=[*runc_support.DEFAULT_ENV, "NVIDIA_VISIBLE_DEVICES=gpu9"],
    )
    result = runc_support.run_container([nvshim], bundle, env={"NVSHIM_CONFIG": str(config)})
    assert result.returncode != 0
    assert "should-not-run" not in result.stdout
    message = result.stderr + "".join(step.stderr for step in result.steps)
    assert f"{KIND}=gpu9" in message, result.describe()
    assert "gpu0" in message
    assert not record.exists()
