"""Support for the host-discovery tests: NVIDIA's reference roots and a simulated GPU host.

Tests import this module as ``import host_support``.

- :func:`copy_reference_root` copies one of NVIDIA's fake host roots from
  ``tests/data/reference-data/nvidia-lookup`` into a temp folder.  The
  stored copy keeps the symbolic links of NVIDIA's repository as small files
  holding the link text (``libcuda.so.1`` holds ``libcuda.so.999.88.77``);
  the copy turns them back into links.
- :func:`build_simulated_host` builds an NVIDIA GPU server in a folder: real
  ELF libraries with their sonames (``libcuda.so.<ver>``...), a fake
  ``libnvidia-ml.so.1`` compiled from ``fakenvml/fakenvml.c`` that reports
  the GPUs of a JSON inventory, an ``ld.so.cache`` built by ``ldconfig -r``,
  device nodes made with mknod (``c 1 3``) and the MIG minors file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
LOOKUP = TESTS / "data" / "reference-data" / "nvidia-lookup"
FAKENVML_SOURCE = TESTS / "fakenvml" / "fakenvml.c"
DGXA100 = TESTS / "fakenvml" / "dgxa100.json"
LIB_DIR = "/usr/lib/x86_64-linux-gnu"
CONTROL = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")

#: Driver libraries of the simulated host: (name without version, soname).
SIM_LIBRARIES = (
    ("libcuda.so", "libcuda.so.1"),
    ("libnvidia-ptxjitcompiler.so", "libnvidia-ptxjitcompiler.so.1"),
    ("libnvidia-nvvm.so", "libnvidia-nvvm.so.4"),
    ("libnvcuvid.so", "libnvcuvid.so.1"),
    ("libnvidia-encode.so", "libnvidia-encode.so.1"),
    ("libEGL_nvidia.so", "libEGL_nvidia.so.0"),
    ("libGLX_nvidia.so", "libGLX_nvidia.so.0"),
    ("libnvidia-cfg.so", "libnvidia-cfg.so.1"),
    ("libnvidia-allocator.so", "libnvidia-allocator.so.1"),
)


def reference_root(name: str) -> Path:
    """NVIDIA's reference root ``name``, from tests/data (part of the repository)."""
    path = LOOKUP / name
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: test data missing from the repository")
    return path


def _looks_like_link(path: Path) -> str | None:
    """The link text a flattened link file holds, when it names an existing sibling path."""
    try:
        if path.stat().st_size > 200:
            return None
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text or "\n" in text or text.startswith("/") or " " in text:
        return None
    target = path.parent / text
    return text if target.exists() and target.resolve() != path.resolve() else None


def copy_reference_root(name: str, dest: Path) -> Path:
    """A writable copy of reference root ``name`` at ``dest``, links restored."""
    shutil.copytree(reference_root(name), dest, symlinks=True)
    for folder, _dirs, files in os.walk(dest):
        os.chmod(folder, 0o755)
        for item in files:
            path = Path(folder) / item
            os.chmod(path, 0o644)
    for folder, _dirs, files in os.walk(dest):
        for item in files:
            path = Path(folder) / item
            text = _looks_like_link(path)
            if text is not None:
                path.unlink()
                path.symlink_to(text)
    return dest


def compiler() -> str:
    """The C compiler (skips the test when there is none)."""
    for name in ("cc", "gcc"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no C compiler (cc/gcc) to build the fake libraries")


def compile_library(output: Path, soname: str, source: Path | None = None) -> Path:
    """Compile ``source`` (default: an empty library) into ``output`` with ``soname``."""
    if source is None:
        source = output.parent / f".{output.name}.c"
        source.write_text(f'const char *nvshim_fake_library = "{soname}";\n')
    subprocess.run(
        [
            compiler(),
            "-shared",
            "-fPIC",
            f"-Wl,-soname,{soname}",
            "-o",
            str(output),
            str(source),
            "-ldl",
        ],
        check=True,
        capture_output=True,
    )
    if source.parent == output.parent and source.name.startswith("."):
        source.unlink()
    return output


def write_inventory(inventory: dict[str, Any], path: Path) -> None:
    """The fake NVML's line format (see fakenvml.c) from the JSON inventory."""
    lines = [f"driver {inventory['driver_version']}"]
    for gpu in inventory["gpus"]:
        migs = gpu.get("mig", [])
        lines.append(
            f"gpu {gpu['index']} {gpu['minor']} {gpu['uuid']} {gpu['pci_bus_id']}"
            f" {1 if migs else 0} {7 if migs else 0} {gpu['name']}"
        )
        for slot, mig in enumerate(migs):
            lines.append(
                f"mig {gpu['index']} {slot} {mig['gpu_instance']} {mig['compute_instance']}"
                f" {mig['uuid']}"
            )
    path.write_text("\n".join(lines) + "\n")


def mig_minors(inventory: dict[str, Any]) -> dict[str, int]:
    """A ``mig-minors`` table as the driver writes it, for the inventory's GPUs."""
    minors = {"config": 1, "monitor": 2}
    number = 3
    for gpu in inventory["gpus"]:
        for gi in range(8):
            minors[f"gpu{gpu['minor']}/gi{gi}/access"] = number
            number += 1
            for ci in range(4):
                minors[f"gpu{gpu['minor']}/gi{gi}/ci{ci}/access"] = number
                number += 1
    return minors


def mknod(path: Path) -> None:
    """A character device ``c 1 3`` (like /dev/null) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))


@dataclass
class SimulatedHost:
    """A simulated GPU server under :attr:`root` (driver root and device root)."""

    root: Path
    inventory: dict[str, Any]
    minors: dict[str, int] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.inventory["driver_version"])

    @property
    def lib_dir(self) -> Path:
        return self.root / LIB_DIR.lstrip("/")

    def gpus(self) -> list[dict[str, Any]]:
        return list(self.inventory["gpus"])


def build_simulated_host(root: Path, inventory_path: Path = DGXA100) -> SimulatedHost:
    """Build the simulated host at ``root`` (needs root for mknod and ``ldconfig -r``)."""
    if os.geteuid() != 0:
        pytest.skip("the simulated GPU host needs root (mknod, ldconfig -r)")
    ldconfig = next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if ldconfig is None:
        pytest.skip("no ldconfig to build the simulated host's ld.so.cache")
    inventory = json.loads(inventory_path.read_text())
    host = SimulatedHost(root, inventory)
    version = host.version
    lib_dir = host.lib_dir
    lib_dir.mkdir(parents=True)
    for stem, soname in SIM_LIBRARIES:
        compile_library(lib_dir / f"{stem}.{version}", soname)
    (lib_dir / "vdpau").mkdir()
    compile_library(lib_dir / "vdpau" / f"libvdpau_nvidia.so.{version}", "libvdpau_nvidia.so.1")
    compile_library(lib_dir / f"libnvidia-ml.so.{version}", "libnvidia-ml.so.1", FAKENVML_SOURCE)
    write_inventory(inventory, lib_dir / "fakenvml-inventory.txt")
    (root / "etc").mkdir()
    (root / "etc" / "ld.so.conf").write_text(f"{LIB_DIR}\n{LIB_DIR}/vdpau\n")
    # ldconfig makes the soname links (libcuda.so.1 -> libcuda.so.<ver>) and the cache.
    subprocess.run([ldconfig, "-r", str(root)], check=True, capture_output=True, env={})
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'fake nvidia-smi'\n")
    smi.chmod(0o755)
    firmware = root / "lib" / "firmware" / "nvidia" / version
    firmware.mkdir(parents=True)
    (firmware / "gsp_ga10x.bin").write_bytes(b"\0" * 16)
    icd = root / "etc" / "vulkan" / "icd.d"
    icd.mkdir(parents=True)
    (icd / "nvidia_icd.json").write_text('{"file_format_version": "1.0.0"}\n')
    sock = root / "run" / "nvidia-persistenced"
    sock.mkdir(parents=True)
    (sock / "socket").write_text("")
    dev = root / "dev"
    for name in CONTROL:
        mknod(dev / name)
    for gpu in host.gpus():
        mknod(dev / f"nvidia{gpu['minor']}")
    host.minors = mig_minors(inventory)
    caps = root / "proc" / "driver" / "nvidia-caps"
    caps.mkdir(parents=True)
    (caps / "mig-minors").write_text("".join(f"{k} {v}\n" for k, v in host.minors.items()))
    for minor in host.minors.values():
        mknod(dev / "nvidia-caps" / f"nvidia-cap{minor}")
    # DRM nodes of GPU 0, through udev's by-path links.
    mknod(dev / "dri" / "card1")
    mknod(dev / "dri" / "renderD128")
    (dev / "dri" / "by-path").mkdir()
    (dev / "dri" / "by-path" / "pci-0000:07:00.0-card").symlink_to("../card1")
    (dev / "dri" / "by-path" / "pci-0000:07:00.0-render").symlink_to("../renderD128")
    return host


def generate_spec_file(nvshim_ctl: str, driver_root: Path, output: Path) -> Path:
    """``nvshim-ctl cdi generate`` for ``driver_root`` into ``output`` (extension: format)."""
    subprocess.run(
        [nvshim_ctl, "cdi", "generate", "--driver-root", str(driver_root), "--output", str(output)],
        check=True,
        capture_output=True,
    )
    return output


def names(spec: dict[str, Any]) -> list[str]:
    """The device names of a generated spec, in order."""
    return [d["name"] for d in spec["devices"]]


def device(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The device ``name`` of a spec."""
    for item in spec["devices"]:
        if item["name"] == name:
            return dict(item)
    raise AssertionError(f"no device {name!r} in {names(spec)}")


def node_paths(edits: dict[str, Any]) -> list[str]:
    """The container paths of the device nodes of some edits."""
    return [n["path"] for n in edits.get("deviceNodes", ())]


def hook_args(spec: dict[str, Any], name: str) -> list[str] | None:
    """The arguments after the hook name of the common ``name`` hook, or None."""
    for hook in spec.get("containerEdits", {}).get("hooks", ()):
        args = hook["args"]
        if name in args:
            return list(args[args.index(name) + 1 :])
    return None


def put_file(path: Path, data: bytes = b"") -> Path:
    """A regular file at ``path`` (parents made), standing for a node where mknod is not allowed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def simulated_host(tmp_path_factory: pytest.TempPathFactory) -> SimulatedHost:
    """One simulated dgxa100 host for the session (built once: compiling takes a while)."""
    return build_simulated_host(tmp_path_factory.mktemp("simhost") / "root")
