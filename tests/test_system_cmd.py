"""`nvshim-ctl system create-dev-char-symlinks|create-device-nodes`.

The commands run for real, as root, in a private mount namespace
(`unshare -m`) whose /dev is a fresh tmpfs; the driver's interfaces are
simulated where the kernel shows them: a /proc/devices listing the NVIDIA
majors and a /sys/bus/pci/devices with NVIDIA GPUs are bind-mounted over the
real ones, and the GPU nodes are made with mknod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nvshim import _devnodes

PROC_DEVICES = """\
Character devices:
  1 mem
  4 /dev/vc/0
195 nvidia
237 nvidia-caps
508 nvidia-uvm
511 nvidia-nvswitch

Block devices:
  8 sd
"""

# Dumps /dev as seen inside the namespace: type, numbers, link target, mode.
DUMP = textwrap.dedent(
    """\
    import json, os, stat
    out = {}
    for folder, dirs, files in os.walk("/dev"):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                out[path] = ["link", os.readlink(path)]
            elif stat.S_ISCHR(info.st_mode):
                out[path] = ["char", os.major(info.st_rdev), os.minor(info.st_rdev),
                             oct(stat.S_IMODE(info.st_mode))]
    print(json.dumps(out))
    """
)


def _unshare_works() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount namespace, mknod)"
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "t", "/mnt"],
        capture_output=True, timeout=30, check=False,
    )
    if probe.returncode != 0:
        return f"cannot make a private mount namespace: {probe.stderr.decode().strip()}"
    return None


_WHY_NOT = _unshare_works()
needs_namespace = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


@pytest.fixture
def fake_host(tmp_path: Path) -> Path:
    """/proc/devices and a PCI bus with two NVIDIA GPUs, an NVSwitch and an Intel GPU."""
    (tmp_path / "proc-devices").write_text(PROC_DEVICES)
    pci = tmp_path / "pci"
    for address, vendor, klass in [
        ("0000:3b:00.0", "0x10de", "0x030200"),  # NVIDIA 3D controller
        ("0000:86:00.0", "0x10de", "0x030000"),  # NVIDIA VGA controller
        ("0000:c1:00.0", "0x10de", "0x068000"),  # NVSwitch: a bridge, not a GPU
        ("0000:00:02.0", "0x8086", "0x030000"),  # Intel integrated graphics
    ]:
        (pci / address).mkdir(parents=True)
        (pci / address / "vendor").write_text(vendor + "\n")
        (pci / address / "class").write_text(klass + "\n")
    return tmp_path


def in_namespace(fake_host: Path, nvshim_ctl: str, setup: str, *commands: str) -> Any:
    """Run *commands* in a private mount namespace with a tmpfs /dev; /dev afterwards."""
    script = "\n".join([
        "set -e",
        "mount -t tmpfs -o mode=755 tmpfs /dev",
        f"mount --bind {fake_host}/proc-devices /proc/devices",
        f"mount --bind {fake_host}/pci /sys/bus/pci/devices",
        setup,
        *(f"{nvshim_ctl} {command}" for command in commands),
        f"{sys.executable} -c '{DUMP}'",
    ])
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1]), result.stderr


GPU_NODES = """
mknod /dev/nvidia0 c 195 0
mknod /dev/nvidia1 c 195 1
mknod /dev/nvidiactl c 195 255
mknod /dev/nvidia-nvswitch0 c 511 0
ln -s nvidia0 /dev/nvidia-alias
mkdir /dev/nvidia-caps
mknod /dev/nvidia-caps/nvidia-cap1 c 237 1
"""


@needs_namespace
def test_links_for_the_nodes_that_exist(fake_host: Path, nvshim_ctl: str) -> None:
    dev, out, _err = in_namespace(
        fake_host, nvshim_ctl, GPU_NODES,
        "system create-dev-char-symlinks", "system create-dev-char-symlinks",
    )
    links = {k: v[1] for k, v in dev.items() if k.startswith("/dev/char/")}
    assert links == {
        "/dev/char/195:0": "/dev/nvidia0",
        "/dev/char/195:1": "/dev/nvidia1",
        "/dev/char/195:255": "/dev/nvidiactl",
        "/dev/char/237:1": "/dev/nvidia-caps/nvidia-cap1",
    }
    # The second run found everything in place.
    assert "all 4 links already in /dev/char" in out


@needs_namespace
def test_create_all_links_every_possible_node_and_makes_control_nodes(
    fake_host: Path, nvshim_ctl: str
) -> None:
    dev, _out, _err = in_namespace(
        fake_host, nvshim_ctl, "true",
        "system create-dev-char-symlinks --create-all --create-device-nodes",
    )
    links = {k: v[1] for k, v in dev.items() if k.startswith("/dev/char/")}
    assert links == {
        "/dev/char/195:0": "/dev/nvidia0",
        "/dev/char/195:1": "/dev/nvidia1",
        "/dev/char/195:254": "/dev/nvidia-modeset",
        "/dev/char/195:255": "/dev/nvidiactl",
        "/dev/char/508:0": "/dev/nvidia-uvm",
        "/dev/char/508:1": "/dev/nvidia-uvm-tools",
    }
    assert dev["/dev/nvidiactl"] == ["char", 195, 255, "0o666"]
    assert dev["/dev/nvidia-uvm-tools"] == ["char", 508, 1, "0o666"]


@needs_namespace
def test_control_device_nodes(fake_host: Path, nvshim_ctl: str) -> None:
    dev, out, err = in_namespace(
        fake_host, nvshim_ctl, "mknod /dev/nvidiactl c 195 255\nmknod /dev/nvidia-modeset c 1 3",
        "system create-device-nodes --control-devices",
    )
    assert dev["/dev/nvidiactl"][:3] == ["char", 195, 255]
    assert dev["/dev/nvidia-uvm"] == ["char", 508, 0, "0o666"]
    assert dev["/dev/nvidia-uvm-tools"] == ["char", 508, 1, "0o666"]
    # A node with other numbers is someone else's: left, with a warning.
    assert dev["/dev/nvidia-modeset"][:3] == ["char", 1, 3]
    assert "/dev/nvidia-modeset: exists but is not character device 195:254" in err
    assert "Created /dev/nvidia-uvm (c 508 0)" in out
    assert "nvidiactl" not in out


@needs_namespace
def test_missing_uvm_module_fails_after_making_the_rest(
    fake_host: Path, nvshim_ctl: str
) -> None:
    (fake_host / "proc-devices").write_text(PROC_DEVICES.replace("508 nvidia-uvm\n", ""))
    script = "\n".join([
        "mount -t tmpfs tmpfs /dev",
        f"mount --bind {fake_host}/proc-devices /proc/devices",
        f"{nvshim_ctl} system create-device-nodes --control-devices; echo rc=$?",
        "ls /dev",
    ])
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert "rc=1" in result.stdout
    assert "/dev/nvidia-uvm: no 'nvidia-uvm' major in /proc/devices" in result.stderr
    assert {"nvidiactl", "nvidia-modeset"} <= set(result.stdout.split())


def test_proc_devices_parsing_both_gpu_major_names(tmp_path: Path) -> None:
    path = tmp_path / "devices"
    path.write_text(PROC_DEVICES.replace("195 nvidia\n", "195 nvidia-frontend\n")
                    + "  9 nvidia\n")  # a block device of that name is not the GPU
    majors = _devnodes.char_majors(str(path))
    assert majors["nvidia-frontend"] == 195
    assert "nvidia" not in majors
    assert _devnodes.gpu_major(majors) == 195


def test_mig_caps_of_present_gpus_only(tmp_path: Path) -> None:
    minors = tmp_path / "mig-minors"
    minors.write_text("config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu0/gi0/ci0/access 4\n"
                      "gpu1/gi0/access 66\n")
    nodes = _devnodes.all_possible_nodes(
        "/", {"nvidia": 195, "nvidia-caps": 237}, 1, _devnodes.mig_minors(str(minors))
    )
    caps = [n.path for n in nodes if n.major == 237]
    assert caps == [f"/dev/nvidia-caps/nvidia-cap{m}" for m in (1, 2, 3, 4)]
    assert _devnodes.mig_minors(str(tmp_path / "absent")) == {}


@needs_namespace
def test_no_gpu_major_is_an_error(fake_host: Path, nvshim_ctl: str) -> None:
    (fake_host / "proc-devices").write_text("Character devices:\n  1 mem\n")
    script = "\n".join([
        "mount -t tmpfs tmpfs /dev",
        f"mount --bind {fake_host}/proc-devices /proc/devices",
        f"{nvshim_ctl} system create-dev-char-symlinks --create-all; echo rc=$?",
        "ls /dev",
    ])
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.stdout.split() == ["rc=1"], "nothing made, not even /dev/char"
    assert "is the nvidia kernel module loaded?" in result.stderr


def test_dry_run_and_existing_nodes_under_a_driver_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nvshim._ctl.main import main

    root = tmp_path / "driver"
    (root / "dev").mkdir(parents=True)
    if os.geteuid() == 0:
        os.mknod(root / "dev" / "nvidia0", 0o20666, os.makedev(195, 0))
    else:
        pytest.skip("mknod needs root")
    char = tmp_path / "char"
    assert main(["system", "create-dev-char-symlinks", "--driver-root", str(root),
                 "--dev-char-path", str(char), "--dry-run"]) == 0
    assert f"would create {char}/195:0 -> {root}/dev/nvidia0" in capsys.readouterr().out
    assert not char.exists()
