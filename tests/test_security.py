"""Security: nothing of the container reaches a host program; paths and modes are checked.

- Hooks nvshim injects carry an explicit ``env``: an image's ``LD_PRELOAD``,
  ``PATH`` or ``PYTHONPATH`` never reaches them (CVE-2025-23266), and the
  ldconfig the hook runs gets an empty environment even when the hook itself
  was started with the container's.
- The ldconfig that update-ldcache runs is a host binary, never the image's
  (CVE-2024-0136/0137).
- Paths from CSV files and CDI specs: relative and ``..`` refused, naming the file.
- Modes: config.json keeps its mode and owner; log files 0600; ld.so.conf.d
  entries 0644, whatever the umask.

Symlinks planted in the rootfs (CVE-2025-23267, CVE-2024-0132) are covered by
test_rootfs.py and test_hookcmd.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from reliability_support import Shim, base_spec, nvshim_ctl_command, stamped

from nvshim.spec import Spec

IS_ROOT = os.geteuid() == 0

#: What an image can set in its env to take over a host program.
HOSTILE_ENV = [
    "LD_PRELOAD=/proc/self/cwd/evil.so",
    "LD_LIBRARY_PATH=/proc/self/cwd/lib",
    "PATH=/proc/self/cwd/bin:/evil/bin",
    "PYTHONPATH=/proc/self/cwd/py",
    "PYTHONHOME=/proc/self/cwd",
    "NVIDIA_VISIBLE_DEVICES=all",
    "NVIDIA_DRIVER_CAPABILITIES=all",
]


# -- injected hooks never inherit the container's env ----------------------------


def _csv_spec_with_hooks(tmp_path: Path) -> Spec:
    """Run the csv-discovery modifier on a spec whose env is hostile."""
    csv_host_support = pytest.importorskip("csv_host_support")
    pytest.importorskip("nvshim_csv_discovery")
    import nvshim_csv_discovery

    from nvshim.plugins import get_plugin_manager
    from nvshim.runtime import apply_modifiers

    root = tmp_path / "driver"
    csv_host_support.make_file(root, "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1.1", b"\x7fELF")
    csv_host_support.make_link(
        root, "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so", "libcuda.so.1.1"
    )
    csv_dir = tmp_path / "csv"
    csv_host_support.write_csv(
        csv_dir,
        "l4t.csv",
        [
            "lib, /usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1.1",
            "sym, /usr/lib/aarch64-linux-gnu/tegra/libcuda.so",
        ],
    )
    config = csv_host_support.csv_config(csv_dir, root)
    pm = get_plugin_manager()
    pm.register(nvshim_csv_discovery, name="csv-discovery")
    spec = Spec.from_dict(base_spec(process={"env": list(HOSTILE_ENV), "cwd": "/"}))
    apply_modifiers(spec, config=config, mode="csv", plugin_manager=pm)
    return spec


def test_injected_hooks_have_an_explicit_env_without_the_containers(tmp_path: Path) -> None:
    spec = _csv_spec_with_hooks(tmp_path)
    hooks = spec.hooks("createContainer")
    assert hooks, "csv-discovery injected no hook"
    container_env = set(HOSTILE_ENV)
    for hook in hooks:
        assert os.path.isabs(hook.path)
        assert hook.env, f"{hook.path}: no explicit env (runc would pass none, but be explicit)"
        assert not container_env & set(hook.env)
        for entry in hook.env:
            name, _, value = entry.partition("=")
            assert name not in ("LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME")
            assert "/proc/self/cwd" not in value
            assert "/evil" not in value
    # The raw JSON the runtime reads says the same.
    for entry in spec.raw["hooks"]["createContainer"]:
        assert "env" in entry
        assert not container_env & set(entry["env"])


def _rootfs_bundle(tmp_path: Path) -> tuple[Path, Path]:
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "usr" / "lib").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (bundle / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    return bundle, rootfs


def _recording_ldconfig(folder: Path) -> tuple[Path, Path]:
    """A host 'ldconfig' that records the environment it was started with."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "ldconfig-environ"
    script = folder / "fake-ldconfig"
    script.write_text(f"#!/bin/sh\n/usr/bin/tr '\\0' '\\n' < /proc/$$/environ > '{record}'\n")
    script.chmod(0o755)
    return script, record


@pytest.mark.skipif(
    not IS_ROOT, reason="update-ldcache isolates ldconfig in a mount namespace: needs root"
)
def test_ldconfig_child_gets_an_empty_env_even_from_a_hook_with_the_containers(
    tmp_path: Path,
) -> None:
    """The worst case: the hook itself started with the image's env."""
    bundle, _rootfs = _rootfs_bundle(tmp_path)
    ldconfig, record = _recording_ldconfig(tmp_path / "host")
    env = dict(e.split("=", 1) for e in HOSTILE_ENV)
    # The interpreter must still start: drop what would break it, not what tests the hook.
    env.pop("PYTHONHOME")
    env["LD_PRELOAD"] = ""  # the loader would warn on a missing file; the value is checked below
    env["CONTAINER_SECRET"] = "from-the-image"
    result = subprocess.run(
        [
            *nvshim_ctl_command(),
            "hook",
            "update-ldcache",
            "--folder",
            "/usr/lib",
            "--ldconfig-path",
            str(ldconfig),
        ],
        input=json.dumps({"bundle": str(bundle)}).encode(),
        env={**env, "PATH": env["PATH"] + ":" + os.environ.get("PATH", "")},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    seen = [line for line in record.read_text().splitlines() if line]
    names = {line.partition("=")[0] for line in seen}
    assert not names & {"LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "CONTAINER_SECRET"}
    assert all("/proc/self/cwd" not in line and "/evil" not in line for line in seen)
    assert names <= {"PWD", "SHLVL", "_", "OLDPWD"}, seen  # what sh itself may add


@pytest.mark.skipif(
    not IS_ROOT, reason="update-ldcache isolates ldconfig in a mount namespace: needs root"
)
def test_injected_hook_runs_with_its_own_env_only(tmp_path: Path) -> None:
    """Run the hook the way runc does (argv and env from the spec) and check ldconfig's env."""
    spec = _csv_spec_with_hooks(tmp_path / "host")
    hook = next(h for h in spec.hooks("createContainer") if "update-ldcache" in h.args)
    bundle, _rootfs = _rootfs_bundle(tmp_path)
    ldconfig, record = _recording_ldconfig(tmp_path / "bin")
    args = [a for a in hook.args[1:] if a]
    if "--ldconfig-path" in args:
        i = args.index("--ldconfig-path")
        args[i + 1] = str(ldconfig)
    else:
        args += ["--ldconfig-path", str(ldconfig)]
    result = subprocess.run(
        [hook.path, *args],
        input=json.dumps({"bundle": str(bundle)}).encode(),
        env=dict(e.split("=", 1) for e in hook.env),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    seen = record.read_text()
    assert "LD_PRELOAD" not in seen
    assert "/evil" not in seen


# -- ldconfig from the image refused ------------------------------------------------


def _run_ldcache(bundle: Path, ldconfig: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *nvshim_ctl_command(),
            "hook",
            "update-ldcache",
            "--folder",
            "/usr/lib",
            "--ldconfig-path",
            ldconfig,
        ],
        input=json.dumps({"bundle": str(bundle)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("how", ["inside", "at-inside", "host-link-into-rootfs", "relative"])
def test_ldconfig_from_the_image_is_refused(tmp_path: Path, how: str) -> None:
    bundle, rootfs = _rootfs_bundle(tmp_path)
    planted, record = _recording_ldconfig(rootfs / "sbin")
    link = tmp_path / "host-ldconfig"
    link.symlink_to(planted)
    ldconfig = {
        "inside": str(planted),
        "at-inside": f"@{planted}",
        "host-link-into-rootfs": str(link),
        "relative": "sbin/ldconfig",
    }[how]
    result = _run_ldcache(bundle, ldconfig)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nvshim-ctl hook update-ldcache: ldconfig ")
    assert ("not an absolute host path" in lines[0]) == (how == "relative")
    assert not record.exists(), "the image's ldconfig ran"


# -- paths from CSV files and CDI specs --------------------------------------------


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("lib, usr/lib/libcuda.so", "relative path"),
        ("lib, ./libcuda.so", "relative path"),
        ("dir, /usr/lib/../../etc", "'..' components are not allowed"),
        ("sym, /usr/lib/..", "'..' components are not allowed"),
        ("dev, ../dev/nvhost-ctrl", "relative path"),
    ],
)
def test_csv_paths_relative_or_with_dotdot_are_refused_with_file_and_line(
    tmp_path: Path, line: str, why: str
) -> None:
    csvfiles = pytest.importorskip("nvshim_csv_discovery.csvfiles")
    path = tmp_path / "l4t.csv"
    path.write_text(f"# comment\nlib, /usr/lib/libgood.so\n{line}\n")
    warnings: list[str] = []
    entries = csvfiles.parse_csv_file(str(path), warnings.append)
    assert [e.path for e in entries] == ["/usr/lib/libgood.so"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}:3: ")
    assert why in warnings[0]


def _cdi_spec(path: Path, edits: dict[str, Any]) -> Path:
    path.write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": "nvidia.com/gpu",
                "devices": [{"name": "0", "containerEdits": edits}],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "edits",
    [
        {"deviceNodes": [{"path": "dev/nvidia0"}]},
        {"deviceNodes": [{"path": "/dev/../etc/shadow"}]},
        {"mounts": [{"hostPath": "/usr/lib/libcuda.so", "containerPath": "usr/lib/libcuda.so"}]},
        {"mounts": [{"hostPath": "/usr/lib/libcuda.so", "containerPath": "/usr/../../etc/x"}]},
        {"hooks": [{"hookName": "createContainer", "path": "bin/hook"}]},
    ],
    ids=[
        "device-relative",
        "device-dotdot",
        "mount-container-relative",
        "mount-container-dotdot",
        "hook-relative",
    ],
)
def test_cdi_paths_relative_or_with_dotdot_are_refused_naming_the_file(
    tmp_path: Path, edits: dict[str, Any]
) -> None:
    cdi_spec = pytest.importorskip("nvshim_cdi._spec")
    path = _cdi_spec(tmp_path / "nvidia.json", edits)
    with pytest.raises(cdi_spec.CdiSpecError) as info:
        cdi_spec.read_spec_file(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


# -- file modes ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_config_json_keeps_its_mode_and_owner(tmp_path: Path, mode: int) -> None:
    shim = Shim(tmp_path)
    bundle = shim.bundle()
    config = bundle / "config.json"
    config.chmod(mode)
    if IS_ROOT:
        os.chown(config, 1234, 5678)
    before = config.stat()
    result = subprocess.run(
        ["sh", "-c", 'umask 077; exec "$@"', "sh", *shim.argv(bundle)],
        env=shim.environ("mode-test"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    after = config.stat()
    assert json.loads(config.read_text()) == stamped(base_spec(), "mode-test")
    assert after.st_ino != before.st_ino  # really rewritten
    assert stat.S_IMODE(after.st_mode) == mode
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


def test_new_log_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    bundle = shim.bundle()
    log = tmp_path / "logs" / "runc.log"
    debug = tmp_path / "logs" / "debug.log"
    shim.write_config(f'debug = "{debug}"\nlog-level = "debug"')
    result = subprocess.run(
        ["sh", "-c", 'umask 000; exec "$@"', "sh", *shim.argv(bundle, extra=["--log", str(log)])],
        env=shim.environ("log-mode"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for path in (log, debug):
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.skipif(
    not IS_ROOT, reason="update-ldcache isolates ldconfig in a mount namespace: needs root"
)
def test_ld_so_conf_d_entry_is_0644_whatever_the_umask(tmp_path: Path) -> None:
    bundle, rootfs = _rootfs_bundle(tmp_path)
    ldconfig, _record = _recording_ldconfig(tmp_path / "host")
    result = subprocess.run(
        [
            "sh",
            "-c",
            'umask 077; exec "$@"',
            "sh",
            *nvshim_ctl_command(),
            "hook",
            "update-ldcache",
            "--folder",
            "/usr/lib",
            "--ldconfig-path",
            str(ldconfig),
        ],
        input=json.dumps({"bundle": str(bundle)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    entries = list((rootfs / "etc" / "ld.so.conf.d").iterdir())
    assert len(entries) == 1
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o644
    assert entries[0].read_text().splitlines()[-1] == "/usr/lib"


def test_cdi_spec_file_over_8_mib_is_refused_naming_it(tmp_path: Path) -> None:
    """Spec files are read on every create: a huge one is not read whole."""
    cdi_spec = pytest.importorskip("nvshim_cdi._spec")
    path = _cdi_spec(tmp_path / "nvidia.json", {"env": ["A=1"]})
    with open(path, "a") as handle:
        handle.write(" " * cdi_spec.MAX_SPEC_FILE_BYTES)  # still valid JSON
    with pytest.raises(cdi_spec.CdiSpecError) as info:
        cdi_spec.read_spec_file(str(path))
    assert str(info.value) == f"{path}: larger than 8 MiB, not read"
