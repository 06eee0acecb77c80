"""The real-container harness works: plain runc runs busybox bundles built by runc_support."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import runc_support
from runc_support import find_runc, make_bundle, run_container

pytestmark = runc_support.RUNC_MARKS


def _runc() -> list[str]:
    runc = find_runc()
    assert runc is not None
    return [runc]


@pytest.mark.parametrize("lifecycle", [False, True], ids=["run", "create-start"])
def test_echo_through_container(tmp_path: Path, lifecycle: bool) -> None:
    bundle = make_bundle(tmp_path / "b", ["sh", "-c", "echo hello from $(hostname); echo err >&2"])
    result = run_container(_runc(), bundle, lifecycle=lifecycle).check(0)
    assert result.stdout == "hello from runc\n", result.describe()
    assert result.stderr == "err\n", result.describe()
    # delete -f ran and succeeded: the container is gone.
    assert result.steps[-1].argv[-3:] == ["delete", "-f", result.container_id]
    assert result.steps[-1].returncode == 0, result.describe()


@pytest.mark.parametrize("lifecycle", [False, True], ids=["run", "create-start"])
@pytest.mark.parametrize("status", [0, 1, 7, 42])
def test_exit_status_propagates(tmp_path: Path, lifecycle: bool, status: int) -> None:
    bundle = make_bundle(tmp_path / "b", ["sh", "-c", f"exit {status}"])
    result = run_container(_runc(), bundle, lifecycle=lifecycle)
    assert result.returncode == status, result.describe()


def test_bundle_file_is_visible_inside(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", ["cat", "/etc/marker"])
    bundle.write_file("/etc/marker", "written on the host\n")
    result = run_container(_runc(), bundle).check(0)
    assert result.stdout == "written on the host\n"


def test_container_writes_into_rootfs(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", ["sh", "-c", "echo from-inside > /tmp/out"])
    run_container(_runc(), bundle, lifecycle=True).check(0)
    assert (bundle.rootfs / "tmp" / "out").read_text() == "from-inside\n"


def test_env_cwd_and_extra_fields_reach_the_container(tmp_path: Path) -> None:
    bundle = make_bundle(
        tmp_path / "b",
        ["sh", "-c", 'echo "$GREETING $(pwd) $(cat /proc/sys/kernel/hostname)"'],
        env=["PATH=/bin", "GREETING=hi"],
        cwd="/tmp",
        extra={"hostname": "harness", "annotations": {"x": "y"}},
    )
    config = bundle.load_config()
    assert config["process"]["terminal"] is False
    assert config["root"] == {"path": "rootfs", "readonly": False}
    assert config["annotations"] == {"x": "y"}
    result = run_container(_runc(), bundle).check(0)
    assert result.stdout == "hi /tmp harness\n"


def test_bind_mount_from_host(tmp_path: Path) -> None:
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "data").write_text("42\n")

    def add_mount(config: dict[str, object]) -> None:
        mounts = config["mounts"]
        assert isinstance(mounts, list)
        mounts.append(
            {
                "destination": "/data",
                "type": "bind",
                "source": str(host_dir),
                "options": ["rbind", "ro"],
            }
        )

    bundle = make_bundle(tmp_path / "b", ["cat", "/data/data"], edit=add_mount)
    assert run_container(_runc(), bundle).check(0).stdout == "42\n"


def test_runtime_env_is_passed_to_the_runtime_not_the_container(tmp_path: Path) -> None:
    # A stand-in runtime that records its environment, then execs runc.
    record = tmp_path / "env.json"
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(f'#!/bin/sh\n[ "$3" = run ] && env > {record}\nexec {_runc()[0]} "$@"\n')
    wrapper.chmod(0o755)
    bundle = make_bundle(tmp_path / "b", ["sh", "-c", 'echo "[$NVSHIM_CONFIG]"'])
    result = run_container([str(wrapper)], bundle, env={"NVSHIM_CONFIG": "/x.toml"}).check(0)
    assert result.stdout == "[]\n"
    assert "NVSHIM_CONFIG=/x.toml" in record.read_text().splitlines()


def test_failed_create_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", ["/no/such/binary"])
    for lifecycle in (False, True):
        result = run_container(_runc(), bundle, lifecycle=lifecycle)
        assert result.returncode != 0, result.describe()
        assert "no/such/binary" in result.describe()


def test_timeout_kills_and_deletes(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", ["sleep", "60"])
    state = tmp_path / "state"
    result = run_container(_runc(), bundle, root=state, timeout=2)
    assert result.timed_out, result.describe()
    assert result.returncode is None
    # delete -f removed the container from the state folder.
    assert not (state / result.container_id).exists(), result.describe()


def test_unique_ids_and_private_state(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", ["true"])
    ids = {run_container(_runc(), bundle).check(0).container_id for _ in range(3)}
    assert len(ids) == 3


def test_busybox_links(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    for applet in ("sh", "cat", "ls", "echo", "test", "readlink", "stat", "head", "env"):
        assert os.readlink(bundle.rootfs / "bin" / applet) == "busybox"
    assert json.loads(bundle.config_path.read_text())["process"]["args"] == ["sh", "-c", "true"]


def test_require_working_runtime_accepts_runc() -> None:
    runc_support.require_working_runtime(_runc())
