"""`runtime configure --cdi.enabled / --drop-in-config` and `runtime unconfigure`.

Each engine's default configuration goes through configure (with every
option) and unconfigure, and must come back byte for byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from support.runtime import fake_nvshim, runtime_ctl

from nvshim._ctl import runtime_cmd

DATA = Path(__file__).resolve().parent / "data" / "engines"
CONTAINERD_DEFAULT = (DATA / "containerd-1.6-config-default.toml").read_text()

# CRI-O's main file as its documentation shows it (crio.conf(5), `crio config`
# output: commented defaults, crun the default runtime since CRI-O 1.31).
# Debian 12 has no cri-o package to ask.
CRIO_CONF = """\
# The CRI-O configuration file specifies all of the available configuration
# options and command-line flags for the crio(8) OCI Kubernetes Container Runtime
# daemon, but in a TOML format that can be more easily modified and versioned.

[crio]

# Path to the "root directory". CRI-O stores all of its data, including
# containers images, in this directory.
# root = "/var/lib/containers/storage"

[crio.runtime]

# default_runtime is the _name_ of the OCI runtime to be used as the default.
default_runtime = "crun"

# The "crio.runtime.runtimes" table defines a list of OCI compatible runtimes.
[crio.runtime.runtimes.crun]
runtime_path = "/usr/libexec/crio/crun"
runtime_type = "oci"
runtime_root = "/run/crun"
monitor_path = "/usr/libexec/crio/conmon"
allowed_annotations = [
	"io.containers.trace-syscall",
]

[crio.runtime.runtimes.runc]
runtime_path = "/usr/libexec/crio/runc"
runtime_type = "oci"
runtime_root = "/run/runc"
monitor_path = "/usr/libexec/crio/conmon"

[crio.image]

# pause_image = "registry.k8s.io/pause:3.10"
"""

# Podman's containers.conf as shipped: every setting commented out.
PODMAN_CONF = """\
# The containers configuration file specifies all of the available configuration
# command-line options/flags for container engine tools like Podman & Buildah,
# but in a TOML format that can be easily modified and versioned.

[containers]

# log_driver = "k8s-file"

[engine]

# Default OCI runtime
#
#runtime = "crun"

[engine.runtimes]
#crun = [
#  "/usr/bin/crun",
#]
"""


@pytest.fixture
def shim(tmp_path: Path) -> str:
    """An executable file standing in for the installed nvshim."""
    return fake_nvshim(tmp_path / "bin")


ctl = runtime_ctl


def toml(path: Path) -> Any:
    return tomlkit.parse(path.read_text()).unwrap()


def files_in(folder: Path) -> list[str]:
    """Everything in *folder* but the backups, which unconfigure leaves on purpose."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and runtime_cmd.BACKUP_SUFFIX not in p.name
    )


CASES = {
    "docker-no-file": ("docker", "daemon.json", None),
    "docker-log-level": ("docker", "daemon.json", '{\n    "log-level": "warn"\n}\n'),
    "containerd-default": ("containerd", "config.toml", CONTAINERD_DEFAULT),
    "containerd-no-file": ("containerd", "config.toml", None),
    "crio-main-file": ("crio", "crio.conf", CRIO_CONF),
    "crio-drop-in-no-file": ("crio", "crio.conf.d/99-nvshim.toml", None),
    "podman-shipped": ("podman", "containers.conf", PODMAN_CONF),
    "podman-no-file": ("podman", "containers.conf", None),
}


@pytest.mark.parametrize("as_default", [False, True], ids=["plain", "set-as-default"])
@pytest.mark.parametrize("case", list(CASES))
def test_unconfigure_gives_back_the_default_config(
    case: str, as_default: bool, tmp_path: Path, shim: str
) -> None:
    engine, name, original = CASES[case]
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if original is not None:
        target.write_text(original)
    options = ["--engine", engine, "--config", str(target)]
    extra = ["--set-as-default"] if as_default else []
    if engine in ("docker", "containerd"):
        extra.append("--cdi.enabled")
    assert ctl("configure", *options, "--path", shim, *extra) == 0
    assert target.read_text() != (original or "")
    assert Path(runtime_cmd.record_path_for(str(target))).exists()

    assert ctl("unconfigure", *options) == 0
    if original is None:
        assert not target.exists(), "configure created the file: unconfigure removes it"
    else:
        assert target.read_text() == original
    assert files_in(tmp_path) == sorted(
        ["bin/nvshim", *([name] if original is not None else [])]
    )
    # Nothing left to undo: a second run changes nothing.
    before = target.read_text() if target.exists() else None
    assert ctl("unconfigure", *options) == 0
    assert (target.read_text() if target.exists() else None) == before


def test_cdi_enabled_sets_docker_feature_and_containerd_enable_cdi(
    tmp_path: Path, shim: str
) -> None:
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"features": {"buildkit": true}}')
    assert ctl("configure", "--engine", "docker", "--config", str(daemon), "--path", shim,
               "--cdi.enabled") == 0
    assert json.loads(daemon.read_text())["features"] == {"buildkit": True, "cdi": True}
    ctd = tmp_path / "config.toml"
    ctd.write_text(CONTAINERD_DEFAULT)
    assert ctl("configure", "--engine", "containerd", "--config", str(ctd), "--path", shim,
               "--enable-cdi") == 0
    assert toml(ctd)["plugins"]["io.containerd.grpc.v1.cri"]["enable_cdi"] is True
    v3 = tmp_path / "v3.toml"
    v3.write_text("version = 3\n")
    assert ctl("configure", "--engine", "containerd", "--config", str(v3), "--path", shim,
               "--cdi.enable") == 0
    assert toml(v3)["plugins"]["io.containerd.cri.v1.runtime"]["enable_cdi"] is True


def test_cdi_enabled_is_a_note_for_engines_that_always_read_cdi(
    tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "containers.conf"
    assert ctl("configure", "--engine", "podman", "--config", str(target), "--path", shim,
               "--cdi.enabled") == 0
    assert "always reads CDI specs" in capsys.readouterr().err
    assert set(toml(target)) == {"engine"}


def test_containerd_drop_in_with_imports_line(tmp_path: Path, shim: str) -> None:
    main = tmp_path / "config.toml"
    main.write_text(CONTAINERD_DEFAULT)
    drop_in = tmp_path / "conf.d" / "99-nvshim.toml"
    options = ["--engine", "containerd", "--config", str(main), "--drop-in-config", str(drop_in)]
    assert ctl("configure", *options, "--path", shim, "--set-as-default", "--cdi.enabled") == 0
    assert toml(main)["imports"] == [f"{tmp_path}/conf.d/*.toml"]
    # Only the imports line changed in the main file.
    assert main.read_text() == CONTAINERD_DEFAULT.replace(
        "imports = []", f'imports = ["{tmp_path}/conf.d/*.toml"]'
    )
    cri = toml(drop_in)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["nvshim"]["options"]["BinaryName"] == shim
    assert cri["containerd"]["default_runtime_name"] == "nvshim"
    assert cri["enable_cdi"] is True
    # containerd < 2.1 replaces a plugin's table with an imported one: the
    # drop-in carries the whole CRI table, runc included.
    assert "runc" in cri["containerd"]["runtimes"]
    assert ctl("configure", *options, "--path", shim, "--set-as-default", "--cdi.enabled") == 0
    assert toml(main)["imports"] == [f"{tmp_path}/conf.d/*.toml"]

    assert ctl("unconfigure", *options) == 0
    assert main.read_text() == CONTAINERD_DEFAULT
    assert not drop_in.exists()


@pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd is not installed")
def test_real_containerd_reads_the_drop_in(tmp_path: Path, shim: str) -> None:
    main = tmp_path / "config.toml"
    main.write_text(CONTAINERD_DEFAULT)
    drop_in = tmp_path / "conf.d" / "99-nvshim.toml"
    assert ctl("configure", "--engine", "containerd", "--config", str(main),
               "--drop-in-config", str(drop_in), "--path", shim) == 0
    dump = subprocess.run(
        ["containerd", "--config", str(main), "config", "dump"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    merged = tomlkit.parse(dump).unwrap()
    assert str(drop_in) in merged["imports"]
    runtimes = merged["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes["nvshim"]["options"]["BinaryName"] == shim
    assert "runc" in runtimes


def test_containerd_version_1_has_no_drop_in(
    tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main = tmp_path / "config.toml"
    main.write_text('[plugins.cri]\nsandbox_image = "pause"\n')
    drop_in = tmp_path / "conf.d" / "99-nvshim.toml"
    assert ctl("configure", "--engine", "containerd", "--config", str(main),
               "--drop-in-config", str(drop_in), "--path", shim) == 1
    assert "version 1 has no drop-in files" in capsys.readouterr().err
    assert main.read_text() == '[plugins.cri]\nsandbox_image = "pause"\n'
    assert not drop_in.exists()


def test_crio_drop_in_default_and_given(tmp_path: Path, shim: str) -> None:
    drop_in = tmp_path / "crio.conf.d" / "50-gpu.toml"
    main = tmp_path / "crio.conf"
    main.write_text(CRIO_CONF)
    assert ctl("configure", "--engine", "crio", "--config", str(main),
               "--drop-in-config", str(drop_in), "--path", shim) == 0
    assert main.read_text() == CRIO_CONF, "CRI-O's main file is not touched"
    assert toml(drop_in)["crio"]["runtime"]["runtimes"]["nvshim"]["runtime_path"] == shim
    assert ctl("unconfigure", "--engine", "crio", "--drop-in-config", str(drop_in)) == 0
    assert not drop_in.exists()


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_drop_in_refused_where_the_engine_has_none(
    engine: str, tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("configure", "--engine", engine, "--config", str(tmp_path / "f"),
               "--drop-in-config", "--path", shim) == 1
    assert f"{engine} has no drop-in files" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "bin"]


def test_a_setting_changed_by_hand_since_is_left(
    tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "config.toml"
    target.write_text(CONTAINERD_DEFAULT)
    options = ["--engine", "containerd", "--config", str(target)]
    assert ctl("configure", *options, "--path", shim, "--set-as-default") == 0
    target.write_text(target.read_text().replace(
        'default_runtime_name = "nvshim"', 'default_runtime_name = "kata"'
    ))
    assert ctl("unconfigure", *options) == 0
    assert "changed since configure" in capsys.readouterr().err
    cri = toml(target)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["default_runtime_name"] == "kata"
    assert "nvshim" not in cri["runtimes"]


def test_without_a_record_the_entry_and_its_default_go(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(json.dumps({
        "default-runtime": "nvidia",
        "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "args": []},
                     "kata": {"path": "/usr/bin/kata-runtime"}},
    }))
    assert ctl("unconfigure", "--engine", "docker", "--config", str(target),
               "--name", "nvidia") == 0
    kata = {"path": "/usr/bin/kata-runtime"}
    assert json.loads(target.read_text()) == {"runtimes": {"kata": kata}}


def test_unconfigure_dry_run_writes_nothing(
    tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "containers.conf"
    target.write_text(PODMAN_CONF)
    options = ["--engine", "podman", "--config", str(target)]
    assert ctl("configure", *options, "--path", shim) == 0
    configured = target.read_text()
    capsys.readouterr()
    assert ctl("unconfigure", *options, "--dry-run") == 0
    assert capsys.readouterr().out.endswith(PODMAN_CONF)
    assert target.read_text() == configured
    assert Path(runtime_cmd.record_path_for(str(target))).exists()


# NVIDIA's runtime as `nvidia-ctk runtime configure --runtime=docker --set-as-default` leaves it.
NVIDIA_DAEMON_JSON = """\
{
    "default-runtime": "nvidia",
    "runtimes": {
        "nvidia": {
            "args": [],
            "path": "nvidia-container-runtime"
        }
    }
}
"""


def test_migration_under_the_name_nvidia_and_back(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(NVIDIA_DAEMON_JSON)
    options = ["--engine", "docker", "--config", str(target), "--name", "nvidia"]
    assert ctl("configure", *options, "--path", shim) == 0
    data = json.loads(target.read_text())
    assert data == {"default-runtime": "nvidia", "runtimes": {"nvidia": {"args": [], "path": shim}}}
    # Switching back puts NVIDIA's entry back as it was, not just removes ours.
    assert ctl("unconfigure", *options) == 0
    assert target.read_text() == NVIDIA_DAEMON_JSON


def test_migration_on_containerd_keeps_nvidias_runtime_options(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "config.toml"
    nvidia = CONTAINERD_DEFAULT.replace(
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
        '        runtime_type = "io.containerd.runc.v2"\n'
        '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n'
        '          BinaryName = "/usr/bin/nvidia-container-runtime"\n'
        '          SystemdCgroup = true\n\n'
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    )
    assert nvidia != CONTAINERD_DEFAULT
    target.write_text(nvidia)
    options = ["--engine", "containerd", "--config", str(target), "--name", "nvidia"]
    assert ctl("configure", *options, "--path", shim) == 0
    cri = toml(target)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["runtimes"]["nvidia"]["options"] == {"BinaryName": shim, "SystemdCgroup": True}
    assert ctl("unconfigure", *options) == 0
    cri = toml(target)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["runtimes"]["nvidia"]["options"] == {
        "BinaryName": "/usr/bin/nvidia-container-runtime", "SystemdCgroup": True}


def test_unconfiguring_another_name_keeps_the_record(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "containers.conf"
    options = ["--engine", "podman", "--config", str(target)]
    assert ctl("configure", *options, "--path", shim, "--set-as-default") == 0
    record = Path(runtime_cmd.record_path_for(str(target)))
    assert ctl("unconfigure", *options, "--name", "other") == 0
    assert record.exists()
    assert toml(target)["engine"]["runtime"] == "nvshim"
    assert ctl("unconfigure", *options) == 0
    assert not target.exists()
    assert not record.exists()
