"""The built-in modifiers under real runc: busybox containers run through nvshim as root.

- legacy mode: a stand-in ``nvidia-container-runtime-hook`` records the OCI
  state runc hands it on stdin;
- csv mode: a fake host root (a library behind a two-link chain, a folder, a
  char device 1:3, a real ``.so`` in a folder) whose files the container then
  reads, writes, links and finds in its ``/etc/ld.so.cache``; the prestart
  hook Docker's ``--gpus`` inserts is removed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

import pytest
import runc_support
from csv_host_support import make_char_device, make_file, make_link, write_csv
from support import installed_script

pytestmark = runc_support.RUNC_MARKS

STATE_RECORDER = """#!/bin/sh
# Stand-in for NVIDIA's hook: keep the OCI state runc gives on stdin, and argv.
cat > {state}
echo "$@" > {argv}
env > {env}
"""


def _nvshim() -> str:
    return installed_script("nvshim")


def _write_config(path: Path, body: str) -> Path:
    runc = runc_support.find_runc()
    path.write_text(f'[nvidia-container-runtime]\nruntimes = ["{runc}"]\n' + body)
    return path


def test_legacy_mode_runs_the_hook_with_the_oci_state(tmp_path: Path) -> None:
    hook = tmp_path / "bin" / "nvidia-container-runtime-hook"
    hook.parent.mkdir()
    state, argv, env = tmp_path / "state.json", tmp_path / "argv", tmp_path / "env"
    hook.write_text(STATE_RECORDER.format(state=state, argv=argv, env=env))
    hook.chmod(0o755)
    config = _write_config(
        tmp_path / "config.toml",
        f'mode = "legacy"\n[nvidia-container-runtime-hook]\npath = "{hook}"\n',
    )
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ["sh", "-c", "echo inside"],
        env=[*runc_support.DEFAULT_ENV, "NVIDIA_VISIBLE_DEVICES=all", "LD_PRELOAD=/nope.so"],
    )
    result = runc_support.run_container(
        [_nvshim()], bundle, env={"NVSHIM_CONFIG": str(config)}
    ).check()
    assert "inside" in result.stdout
    recorded = json.loads(state.read_text())
    assert recorded["id"] == result.container_id
    assert recorded["bundle"] == str(bundle.path)
    assert recorded["pid"] > 0
    assert argv.read_text().split() == ["prestart"]
    # The hook's environment is the one nvshim set, nothing of the container's.
    assert "LD_PRELOAD" not in env.read_text()
    assert "NVIDIA_VISIBLE_DEVICES" not in env.read_text()


def _real_shared_object() -> str:
    for pattern in ("/lib/*-linux-gnu/libz.so.1", "/usr/lib/*-linux-gnu/libz.so.1"):
        for path in glob.glob(pattern):
            return os.path.realpath(path)
    for path in sorted(glob.glob("/usr/lib/*-linux-gnu/lib*.so.*")):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as handle:
            if handle.read(4) == b"\x7fELF":
                return os.path.realpath(path)
    pytest.skip("no shared library on this host to copy")


def _csv_host(tmp_path: Path) -> tuple[Path, Path, bytes]:
    root = tmp_path / "host-root"
    lib = b"FAKE-LIBFOO-" + os.urandom(8).hex().encode()
    make_file(root, "/usr/lib/nvfake/libfoo.so.1.0.0", lib)
    make_link(root, "/usr/lib/nvfake/libfoo.so.1", "libfoo.so.1.0.0")
    make_link(root, "/usr/lib/nvfake/libfoo.so", "libfoo.so.1")
    make_file(root, "/usr/share/nvfake/data.txt", b"folder-ok\n")
    make_char_device(root, "/dev/nvfake0", 1, 3)
    elf = Path(_real_shared_object()).read_bytes()
    make_file(root, "/opt/nvfake/lib/libnvreal.so", elf)
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "devices.csv", ["dev, nvfake0"])
    write_csv(
        csv_dir,
        "drivers.csv",
        [
            "# a fake Jetson host",
            "lib, /usr/lib/nvfake/libfoo.so",
            "dir, /usr/share/nvfake",
            "lib, /opt/nvfake/lib/libnvreal.so",
        ],
    )
    return root, csv_dir, lib


SCRIPT = """
set -e
cat /usr/lib/nvfake/libfoo.so; echo
echo "link1=$(readlink /usr/lib/nvfake/libfoo.so)"
echo "link2=$(readlink /usr/lib/nvfake/libfoo.so.1)"
echo written > /dev/nvfake0 && echo device-write-ok
stat -c 'dev=%F %t:%T' /dev/nvfake0
cat /usr/share/nvfake/data.txt
echo "cache=$(grep -c /opt/nvfake/lib /etc/ld.so.cache)"
"""


def test_csv_mode_container_sees_the_host_files(tmp_path: Path) -> None:
    root, csv_dir, lib = _csv_host(tmp_path)
    marker = tmp_path / "docker-hook-ran"
    docker_hook = tmp_path / "docker" / "nvidia-container-runtime-hook"
    docker_hook.parent.mkdir()
    docker_hook.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    docker_hook.chmod(0o755)
    config = _write_config(
        tmp_path / "config.toml",
        'mode = "csv"\n'
        "[nvidia-container-runtime.modes.csv]\n"
        f'mount-spec-path = "{csv_dir}"\n'
        "[nvidia-container-cli]\n"
        f'root = "{root}"\n',
    )

    def add_docker_hook(spec: dict[str, object]) -> None:
        spec["hooks"] = {
            "prestart": [{"path": str(docker_hook), "args": [str(docker_hook), "prestart"]}]
        }

    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ["sh", "-c", SCRIPT],
        env=[*runc_support.DEFAULT_ENV, "NVIDIA_VISIBLE_DEVICES=all"],
        edit=add_docker_hook,
    )
    result = runc_support.run_container(
        [_nvshim()], bundle, env={"NVSHIM_CONFIG": str(config)}
    ).check()
    out = result.stdout.splitlines()
    assert out[0] == lib.decode()
    assert "link1=libfoo.so.1" in out
    assert "link2=libfoo.so.1.0.0" in out
    assert "device-write-ok" in out
    assert "dev=character special file 1:3" in out
    assert "folder-ok" in out
    cache = [line for line in out if line.startswith("cache=")]
    assert cache, result.describe()
    assert int(cache[0].split("=")[1]) >= 1, result.describe()
    assert not marker.exists(), "Docker's hook ran in csv mode"
    written = json.loads(bundle.config_path.read_text())
    assert "prestart" not in written.get("hooks", {}) or written["hooks"]["prestart"] == []
    # Nothing was written outside the rootfs, nor into the host root.
    assert hashlib.sha256((root / "usr/lib/nvfake/libfoo.so.1.0.0").read_bytes()).digest() == (
        hashlib.sha256(lib).digest()
    )


def test_csv_mode_plain_container_is_untouched(tmp_path: Path) -> None:
    root, csv_dir, _ = _csv_host(tmp_path)
    config = _write_config(
        tmp_path / "config.toml",
        'mode = "csv"\n'
        "[nvidia-container-runtime.modes.csv]\n"
        f'mount-spec-path = "{csv_dir}"\n'
        "[nvidia-container-cli]\n"
        f'root = "{root}"\n',
    )
    bundle = runc_support.make_bundle(
        tmp_path / "bundle", ["sh", "-c", "test ! -e /usr/lib/nvfake && echo clean"]
    )
    before = bundle.config_path.read_bytes()
    result = runc_support.run_container(
        [_nvshim()], bundle, env={"NVSHIM_CONFIG": str(config)}
    ).check()
    assert "clean" in result.stdout
    assert bundle.config_path.read_bytes() == before


def test_demo_runs_a_container(tmp_path: Path) -> None:
    import subprocess

    ctl = installed_script("nvshim-ctl")
    proc = subprocess.run([ctl, "demo"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "device:  /dev/nvdemo0: character special file 1:3" in out
    assert "write:   ok" in out
    assert "link:    /usr/lib/nvdemo/libnvdemo.so -> libnvdemo.so.1" in out
    assert "folder:  hello from the simulated driver" in out
    assert "found 0 time(s)" not in out
