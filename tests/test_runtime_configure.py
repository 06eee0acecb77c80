"""`nvshim-ctl runtime configure`: editing Docker, containerd, CRI-O and Podman files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from support.runtime import fake_nvshim, runtime_ctl

from nvshim import _engines
from nvshim._ctl import runtime_cmd

SHIM = "/opt/nvshim/bin/nvshim"


@pytest.fixture
def shim(tmp_path: Path) -> str:
    """An executable file standing in for the installed nvshim."""
    return fake_nvshim(tmp_path / "bin")


def configure(*argv: str) -> int:
    """Run `nvshim-ctl runtime configure ARGV...`; its exit status."""
    return runtime_ctl("configure", *argv)


def toml(path: Path) -> Any:
    return tomlkit.parse(path.read_text()).unwrap()


def backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + runtime_cmd.BACKUP_SUFFIX + "*"))


def leftovers(folder: Path) -> list[Path]:
    """Temporary files an interrupted write would leave."""
    return [p for p in folder.iterdir() if p.name.startswith(".")]


ENGINE_FILES = {
    "docker": "daemon.json",
    "containerd": "config.toml",
    "crio": "99-nvshim.toml",
    "podman": "containers.conf",
}


def registered(engine: str, path: Path, name: str = "nvshim") -> Any:
    """The runtime entry the engine will read from the file."""
    if engine == "docker":
        return json.loads(path.read_text())["runtimes"][name]["path"]
    data = toml(path)
    if engine == "containerd":
        plugin = _engines.CONTAINERD_CRI_PLUGINS[data.get("version", 1)]
        runtime = data["plugins"][plugin]["containerd"]["runtimes"][name]
        assert runtime["runtime_type"] == "io.containerd.runc.v2"
        return runtime["options"]["BinaryName"]
    if engine == "crio":
        runtime = data["crio"]["runtime"]["runtimes"][name]
        assert runtime["runtime_type"] == "oci"
        return runtime["runtime_path"]
    return data["engine"]["runtimes"][name][0]


def default_of(engine: str, path: Path) -> Any:
    if engine == "docker":
        return json.loads(path.read_text()).get("default-runtime")
    data = toml(path)
    if engine == "containerd":
        plugin = _engines.CONTAINERD_CRI_PLUGINS[data["version"]]
        return data["plugins"][plugin]["containerd"].get("default_runtime_name")
    if engine == "crio":
        return data["crio"]["runtime"].get("default_runtime")
    return data["engine"].get("runtime")


# --- every engine: fresh file, idempotency, dry run ----------------------------------


@pytest.mark.parametrize("engine", _engines.ENGINES)
@pytest.mark.parametrize("as_default", [False, True])
def test_fresh_file_then_second_run_changes_nothing(
    engine: str, as_default: bool, tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "etc" / ENGINE_FILES[engine]  # the folder does not exist yet
    extra = ["--set-as-default"] if as_default else []
    assert configure("--engine", engine, "--config", str(target), "--path", shim, *extra) == 0
    assert registered(engine, target) == shim
    assert default_of(engine, target) == ("nvshim" if as_default else None)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    out = capsys.readouterr().out
    assert "registered runtime 'nvshim'" in out
    assert "next:" in out
    assert backups(target.parent) == []  # nothing existed before: nothing to back up

    first = target.read_bytes()
    before = target.stat()
    assert configure("--engine", engine, "--config", str(target), "--path", shim, *extra) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert target.read_bytes() == first
    assert target.stat().st_ino == before.st_ino  # not even rewritten
    assert backups(target.parent) == []
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("engine", _engines.ENGINES)
def test_dry_run_prints_and_writes_nothing(
    engine: str, tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / ENGINE_FILES[engine]
    assert configure("--engine", engine, "--config", str(target), "--path", shim, "--dry-run") == 0
    captured = capsys.readouterr()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [Path(shim).parent]
    # stdout is exactly the file that would be written: no chatter mixed in.
    assert captured.out == _engines.configure(engine, "", "nvshim", shim)
    assert "--dry-run" in captured.err


def test_dry_run_on_existing_file_leaves_it(
    tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "daemon.json"
    target.write_text('{"debug": true}\n')
    assert (
        configure("--engine", "docker", "--config", str(target), "--path", shim, "--dry-run") == 0
    )
    assert target.read_text() == '{"debug": true}\n'
    assert json.loads(capsys.readouterr().out)["runtimes"]["nvshim"]["path"] == shim
    assert backups(tmp_path) == []


# --- Docker --------------------------------------------------------------------------------


def test_docker_keeps_other_keys_and_their_order(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "daemon.json"
    original: dict[str, Any] = {
        "log-driver": "json-file",
        "runtimes": {"other": {"path": "/usr/bin/other", "runtimeArgs": ["--x"]}},
        "storage-driver": "overlay2",
        "default-runtime": "runc",
    }
    target.write_text(json.dumps(original, indent=2))
    assert configure("--engine", "docker", "--config", str(target), "--path", shim) == 0
    text = target.read_text()
    data = json.loads(text)
    assert list(data) == ["log-driver", "runtimes", "storage-driver", "default-runtime"]
    assert data["runtimes"]["other"] == original["runtimes"]["other"]
    assert data["runtimes"]["nvshim"] == {"path": shim, "args": []}
    assert data["default-runtime"] == "runc"  # not asked to change it
    assert text.startswith('{\n    "log-driver"')  # indent 4, like nvidia-ctk
    assert text.endswith("}\n")


def test_docker_existing_entry_keeps_its_runtime_args(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(json.dumps({"runtimes": {"nvshim": {"path": "/old", "runtimeArgs": ["-d"]}}}))
    assert configure("--engine", "docker", "--config", str(target), "--path", shim) == 0
    entry = json.loads(target.read_text())["runtimes"]["nvshim"]
    assert entry == {"path": shim, "runtimeArgs": ["-d"], "args": []}


def test_docker_already_configured_with_other_formatting_is_left_alone(
    tmp_path: Path, shim: str
) -> None:
    target = tmp_path / "daemon.json"
    entry = json.dumps({"args": [], "path": shim}, separators=(",", ":"))
    text = '{"runtimes":{"nvshim":' + entry + '},"default-runtime":"nvshim"}'
    target.write_text(text)
    cmd = ("--engine", "docker", "--config", str(target), "--path", shim, "--set-as-default")
    assert configure(*cmd) == 0
    assert target.read_text() == text
    assert backups(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"runtimes": ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"runtimes": []}', "'runtimes' must be an object"),
        ('{"runtimes": {"nvshim": "/x"}}', "'runtimes.nvshim' must be an object"),
        ('{"a": NaN}', "NaN is not allowed"),
    ],
)
def test_docker_bad_file_is_left_untouched(
    content: str, why: str, tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(content)
    target.chmod(0o600)
    assert configure("--engine", "docker", "--config", str(target), "--path", shim) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"nvshim-ctl: {target}: ")
    assert why in err
    assert target.read_text() == content
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert backups(tmp_path) == []
    assert leftovers(tmp_path) == []


# --- containerd ------------------------------------------------------------------------

CONTAINERD_V2 = """\
# containerd config, managed by hand
version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"  # pinned
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"
"""

CONTAINERD_V3 = """\
version = 3
# the CRI runtime plugin moved in version 3
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "crun"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.crun]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.crun.options]
    BinaryName = "/usr/bin/crun"
    SystemdCgroup = false
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
"""


def test_containerd_v2_copies_runc_options_and_keeps_the_rest(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "config.toml"
    target.write_text(CONTAINERD_V2)
    cmd = ("--engine", "containerd", "--config", str(target), "--path", shim, "--set-as-default")
    assert configure(*cmd) == 0
    text = target.read_text()
    assert text.startswith("# containerd config, managed by hand\n")
    assert 'sandbox_image = "registry.k8s.io/pause:3.9"  # pinned' in text
    data = toml(target)
    cri = data["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["default_runtime_name"] == "nvshim"
    assert cri["containerd"]["runtimes"]["runc"] == {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": True},
    }
    # nvidia-ctk's rule: a new runtime starts as a copy of runc's settings.
    assert cri["containerd"]["runtimes"]["nvshim"] == {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": True, "BinaryName": shim},
    }
    assert data["plugins"]["io.containerd.internal.v1.opt"] == {"path": "/opt/containerd"}
    assert data["root"] == "/var/lib/containerd"
    assert "io.containerd.cri.v1.runtime" not in data["plugins"]
    assert configure(*cmd) == 0
    assert target.read_text() == text
    assert len(backups(tmp_path)) == 1
    assert backups(tmp_path)[0].read_text() == CONTAINERD_V2


def test_containerd_v3_uses_the_runtime_plugin_and_copies_the_default(
    tmp_path: Path, shim: str
) -> None:
    target = tmp_path / "config.toml"
    target.write_text(CONTAINERD_V3)
    assert configure("--engine", "containerd", "--config", str(target), "--path", shim) == 0
    data = toml(target)
    assert data["version"] == 3
    assert "io.containerd.grpc.v1.cri" not in data["plugins"]
    ctd = data["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
    assert ctd["default_runtime_name"] == "crun"
    assert ctd["runtimes"]["nvshim"] == {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"BinaryName": shim, "SystemdCgroup": False},
    }
    assert ctd["runtimes"]["crun"]["options"]["BinaryName"] == "/usr/bin/crun"
    assert data["plugins"]["io.containerd.cri.v1.images"] == {"snapshotter": "overlayfs"}
    assert "# the CRI runtime plugin moved in version 3" in target.read_text()


def test_containerd_fresh_file_keeps_runc_defined(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "config.toml"
    target.write_text("")  # empty counts as missing: a version-2 file
    assert configure("--engine", "containerd", "--config", str(target), "--path", shim) == 0
    data = toml(target)
    assert data["version"] == 2
    # containerd replaces its built-in runtimes (runc, the default) by the
    # file's table: without a runc entry the CRI plugin would not load.
    assert data["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"] == {
        "runc": {"runtime_type": "io.containerd.runc.v2"},
        "nvshim": {"runtime_type": "io.containerd.runc.v2", "options": {"BinaryName": shim}},
    }


def test_containerd_without_runc_type_runtime_gets_nvidia_ctk_defaults(
    tmp_path: Path, shim: str
) -> None:
    target = tmp_path / "config.toml"
    target.write_text(
        "version = 2\n"
        '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
        '  default_runtime_name = "kata"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]\n'
        '  runtime_type = "io.containerd.kata.v2"\n'
    )
    assert configure("--engine", "containerd", "--config", str(target), "--path", shim) == 0
    runtimes = toml(target)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes["kata"] == {"runtime_type": "io.containerd.kata.v2"}
    # kata's settings are not a runc shim's: nothing is copied from it.
    assert runtimes["nvshim"] == {
        "runtime_type": "io.containerd.runc.v2",
        "runtime_root": "",
        "runtime_engine": "",
        "privileged_without_host_devices": False,
        "options": {"BinaryName": shim},
    }
    assert "runc" not in runtimes


def test_containerd_without_version_is_version_1(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "config.toml"
    target.write_text('root = "/var/lib/containerd"\n')
    assert configure("--engine", "containerd", "--config", str(target), "--path", shim) == 0
    data = toml(target)
    assert "version" not in data  # containerd reads it as version 1, as before
    runtime = data["plugins"]["cri"]["containerd"]["runtimes"]["nvshim"]
    assert runtime["options"]["BinaryName"] == shim


def test_containerd_existing_runtime_keeps_its_settings(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "config.toml"
    target.write_text(
        "version = 2\n"
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvshim]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
        "  privileged_without_host_devices = true\n"
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvshim.options]\n'
        '  BinaryName = "/old/nvshim"  # moved\n'
    )
    assert configure("--engine", "containerd", "--config", str(target), "--path", shim) == 0
    runtime = toml(target)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"][
        "nvshim"
    ]
    assert runtime == {
        "runtime_type": "io.containerd.runc.v2",
        "privileged_without_host_devices": True,
        "options": {"BinaryName": shim},
    }


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("version = 2\n[plugins\n", "invalid TOML"),
        ("version = 7\n", "unsupported config version 7"),
        ('version = "2"\n', "'version' must be an integer"),
        ('version = 2\nplugins = "none"\n', "'plugins' must be a table"),
    ],
)
def test_containerd_bad_file_is_left_untouched(
    content: str, why: str, tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "config.toml"
    target.write_text(content)
    assert configure("--engine", "containerd", "--config", str(target), "--path", shim) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(target) in err
    assert why in err
    assert target.read_text() == content
    assert backups(tmp_path) == []
    assert leftovers(tmp_path) == []


# --- CRI-O ---------------------------------------------------------------------------------


def test_crio_drop_in_copies_runc_and_keeps_comments(tmp_path: Path, shim: str) -> None:
    dropins = tmp_path / "crio.conf.d"
    dropins.mkdir()
    target = dropins / "99-nvshim.toml"
    original = (
        "# site settings\n"
        "[crio.runtime]\n"
        'default_runtime = "runc"\n'
        "[crio.runtime.runtimes.runc]\n"
        'runtime_path = ""\n'
        'runtime_type = "oci"\n'
        'runtime_root = "/run/runc"\n'
        'monitor_path = "/usr/libexec/crio/conmon"\n'
    )
    target.write_text(original)
    cmd = ("--engine", "crio", "--config", str(target), "--path", shim, "--set-as-default")
    assert configure(*cmd) == 0
    assert target.read_text().startswith("# site settings\n")
    runtime = toml(target)["crio"]["runtime"]
    assert runtime["default_runtime"] == "nvshim"
    assert runtime["runtimes"]["nvshim"] == {
        "runtime_path": shim,
        "runtime_type": "oci",
        "runtime_root": "/run/runc",
        "monitor_path": "/usr/libexec/crio/conmon",
    }
    # CRI-O loads every file of crio.conf.d: the backup lives beside the folder.
    assert backups(dropins) == []
    (backup,) = backups(tmp_path)
    assert backup.name.startswith("99-nvshim.toml" + runtime_cmd.BACKUP_SUFFIX)
    assert backup.read_text() == original


# --- Podman ---------------------------------------------------------------------------------


def test_podman_keeps_other_engine_settings(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "containers.conf"
    target.write_text(
        "# local podman settings\n"
        "[containers]\n"
        'log_driver = "k8s-file"\n\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"  # no systemd here\n'
        "[engine.runtimes]\n"
        'crun = ["/usr/bin/crun"]\n'
        'nvshim = ["/old/nvshim", "/usr/local/bin/nvshim"]\n'
    )
    cmd = ("--engine", "podman", "--config", str(target), "--path", shim, "--set-as-default")
    assert configure(*cmd) == 0
    text = target.read_text()
    assert 'cgroup_manager = "cgroupfs"  # no systemd here' in text
    data = toml(target)
    assert data["containers"] == {"log_driver": "k8s-file"}
    assert data["engine"]["runtime"] == "nvshim"
    assert data["engine"]["cgroup_manager"] == "cgroupfs"
    assert data["engine"]["runtimes"] == {
        "crun": ["/usr/bin/crun"],
        "nvshim": [shim, "/old/nvshim", "/usr/local/bin/nvshim"],
    }


def test_podman_bad_runtime_entry(
    tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "containers.conf"
    target.write_text('[engine.runtimes]\nnvshim = "/usr/bin/nvshim"\n')
    assert configure("--engine", "podman", "--config", str(target), "--path", shim) == 1
    assert "'engine.runtimes.nvshim' must be a list of paths" in capsys.readouterr().err


# --- files: backup, mode, owner, links --------------------------------------------------------


def test_backup_holds_the_previous_bytes_and_mode(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "daemon.json"
    target.write_bytes(b'{"debug": true}')
    target.chmod(0o640)
    assert configure("--engine", "docker", "--config", str(target), "--path", shim) == 0
    (backup,) = backups(tmp_path)
    assert backup.read_bytes() == b'{"debug": true}'
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the file keeps its mode
    # A second, different change keeps both earlier versions.
    assert configure("--engine", "docker", "--config", str(target), "--path", "/usr/bin/x") == 0
    assert len(backups(tmp_path)) == 2
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_is_kept(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "containers.conf"
    target.write_text("[engine]\n")
    os.chown(target, 4321, 4322)
    assert configure("--engine", "podman", "--config", str(target), "--path", shim) == 0
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (4321, 4322)
    (backup,) = backups(tmp_path)
    assert (backup.stat().st_uid, backup.stat().st_gid) == (4321, 4322)


def test_symlinked_config_edits_the_file_it_points_to(tmp_path: Path, shim: str) -> None:
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "daemon.json"
    link.symlink_to(real)
    assert configure("--engine", "docker", "--config", str(link), "--path", shim) == 0
    assert link.is_symlink()
    assert json.loads(real.read_text())["runtimes"]["nvshim"]["path"] == shim


def test_not_a_regular_file(tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "daemon.json"
    os.mkfifo(fifo)
    assert configure("--engine", "docker", "--config", str(fifo), "--path", shim) == 1
    assert f"{fifo}: not a regular file" in capsys.readouterr().err


def test_not_utf8(tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "config.toml"
    target.write_bytes(b"version = 2\n# \xff\n")
    assert configure("--engine", "containerd", "--config", str(target), "--path", shim) == 1
    assert "not UTF-8 text" in capsys.readouterr().err
    assert target.read_bytes() == b"version = 2\n# \xff\n"


# --- options ---------------------------------------------------------------------------------


def test_custom_name(tmp_path: Path, shim: str) -> None:
    target = tmp_path / "containers.conf"
    assert (
        configure("--engine", "podman", "--config", str(target), "--path", shim, "--name", "gpu")
        == 0
    )
    assert registered("podman", target, "gpu") == shim


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", 'a"b'])
def test_bad_name(name: str, tmp_path: Path, shim: str, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "daemon.json"
    assert (
        configure("--engine", "docker", "--config", str(target), "--path", shim, f"--name={name}")
        == 1
    )
    assert "invalid runtime name" in capsys.readouterr().err
    assert not target.exists()


def test_relative_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "daemon.json"
    assert configure("--engine", "docker", "--config", str(target), "--path", "bin/nvshim") == 1
    assert "--path must be an absolute path" in capsys.readouterr().err
    assert not target.exists()


def test_missing_path_warns_but_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A path of the test's own: /opt/nvshim exists on a host that ran the quick start.
    missing = str(tmp_path / "nowhere" / "nvshim")
    target = tmp_path / "daemon.json"
    assert configure("--engine", "docker", "--config", str(target), "--path", missing) == 0
    assert f"warning: {missing} is not an executable file here" in capsys.readouterr().err
    assert registered("docker", target) == missing


def test_default_path_is_the_nvshim_beside_this_interpreter(
    tmp_path: Path, shim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sysconfig.get_path", lambda _name: str(Path(shim).parent))
    assert runtime_cmd.default_nvshim_path() == shim
    target = tmp_path / "daemon.json"
    assert configure("--engine", "docker", "--config", str(target)) == 0
    assert registered("docker", target) == shim


def test_default_path_falls_back_to_path_search(
    tmp_path: Path, shim: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sysconfig.get_path", lambda _name: str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(Path(shim).parent))
    assert runtime_cmd.default_nvshim_path() == shim
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert runtime_cmd.default_nvshim_path() is None
    assert configure("--engine", "docker", "--config", str(tmp_path / "d.json")) == 1
    assert "give its absolute path with --path" in capsys.readouterr().err


def test_engine_is_required_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        configure("--engine", "lxc")
    assert exc.value.code == 2
    assert "invalid choice: 'lxc'" in capsys.readouterr().err


def test_default_config_paths() -> None:
    assert _engines.DEFAULT_CONFIG_PATHS == {
        "docker": "/etc/docker/daemon.json",
        "containerd": "/etc/containerd/config.toml",
        "crio": "/etc/crio/crio.conf.d/99-nvshim.toml",
        "podman": "/etc/containers/containers.conf",
    }


def test_backup_name_beside_file_or_drop_in_folder() -> None:
    import datetime

    when = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert (
        runtime_cmd.backup_path_for("/etc/docker/daemon.json", when)
        == "/etc/docker/daemon.json.nvshim-backup-20250102T030405Z"
    )
    assert (
        runtime_cmd.backup_path_for("/etc/crio/crio.conf.d/99-nvshim.toml", when)
        == "/etc/crio/99-nvshim.toml.nvshim-backup-20250102T030405Z"
    )


def test_unknown_engine_in_library_call() -> None:
    with pytest.raises(ValueError, match="unknown engine 'lxc'"):
        _engines.configure("lxc", "", "nvshim", SHIM)
