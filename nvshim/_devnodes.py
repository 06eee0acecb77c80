"""NVIDIA device nodes and their ``/dev/char`` links, for ``nvshim-ctl system``.

- ``create-dev-char-symlinks``: systemd rebuilds a container's cgroup device
  rules from ``/dev/char/<major>:<minor>`` on ``systemctl daemon-reload``; the
  NVIDIA nodes are not made by udev, so the links are missing and the
  container loses its GPUs. The links are made for the nodes that exist, or
  with ``--create-all`` for every node the driver can have.
- ``create-device-nodes --control-devices``: ``/dev/nvidiactl``,
  ``/dev/nvidia-modeset``, ``/dev/nvidia-uvm`` and ``/dev/nvidia-uvm-tools``,
  with the majors the loaded modules registered in ``/proc/devices``.

Everything reads the kernel's real interfaces (``/proc/devices``,
``/sys/bus/pci/devices``, ``/proc/driver/nvidia-caps/mig-minors``); the paths
are parameters so that a test can give a fake host's.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

import attrs

__all__ = [
    "CONTROL_MINORS",
    "DeviceNode",
    "all_possible_nodes",
    "char_majors",
    "control_nodes",
    "create_links",
    "create_nodes",
    "existing_nodes",
    "mig_minors",
    "nvidia_gpu_count",
]

PROC_DEVICES = "/proc/devices"
PCI_DEVICES = "/sys/bus/pci/devices"
MIG_MINORS = "/proc/driver/nvidia-caps/mig-minors"
DEV_CHAR = "/dev/char"

#: The GPU driver's major: "nvidia" since driver 550.40, "nvidia-frontend" before.
GPU_MAJOR_NAMES = ("nvidia", "nvidia-frontend")
UVM_MAJOR_NAME = "nvidia-uvm"
CAPS_MAJOR_NAME = "nvidia-caps"

#: (path under the dev root, major name, minor) of the control devices.
CONTROL_MINORS = (
    ("dev/nvidiactl", "gpu", 255),
    ("dev/nvidia-modeset", "gpu", 254),
    ("dev/nvidia-uvm", UVM_MAJOR_NAME, 0),
    ("dev/nvidia-uvm-tools", UVM_MAJOR_NAME, 1),
)
#: Nodes that are not GPUs' and whose links nvidia-ctk does not make either.
_NOT_LINKED = ("nvidia-fs", "nvidia-nvswitch", "nvidia-nvlink")
_NVIDIA_VENDOR = "0x10de"
_DISPLAY_CLASS = "0x03"  # PCI base class 03: display controllers (VGA, 3D)
_NODE_MODE = 0o666  # as nvidia-modprobe makes them: access is the cgroup's job


@attrs.frozen
class DeviceNode:
    """A character device node: its path and numbers."""

    path: str
    major: int
    minor: int

    @property
    def char_name(self) -> str:
        """Its name in ``/dev/char``: ``<major>:<minor>``."""
        return f"{self.major}:{self.minor}"


def char_majors(path: str = PROC_DEVICES) -> dict[str, int]:
    """The character-device majors of ``/proc/devices``, by driver name."""
    majors: dict[str, int] = {}
    in_char = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.strip()
            if text.endswith(":"):
                in_char = text == "Character devices:"
                continue
            fields = text.split()
            if in_char and len(fields) == 2 and fields[0].isdigit():
                majors.setdefault(fields[1], int(fields[0]))
    return majors


def gpu_major(majors: dict[str, int]) -> int | None:
    """The GPU driver's major, under either of its names."""
    for name in GPU_MAJOR_NAMES:
        if name in majors:
            return majors[name]
    return None


def _major(majors: dict[str, int], name: str) -> int | None:
    return gpu_major(majors) if name == "gpu" else majors.get(name)


def control_nodes(dev_root: str, majors: dict[str, int]) -> tuple[list[DeviceNode], list[str]]:
    """The control device nodes, and one line per node whose driver is not loaded."""
    nodes: list[DeviceNode] = []
    missing: list[str] = []
    for relative, name, minor in CONTROL_MINORS:
        path = os.path.join(dev_root, relative)
        major = _major(majors, name)
        if major is None:
            shown = " or ".join(GPU_MAJOR_NAMES) if name == "gpu" else name
            missing.append(f"{path}: no '{shown}' major in {PROC_DEVICES} (module not loaded?)")
            continue
        nodes.append(DeviceNode(path, major, minor))
    return nodes, missing


def existing_nodes(dev_root: str) -> list[DeviceNode]:
    """The NVIDIA character devices present in ``<dev_root>/dev`` and ``dev/nvidia-caps``."""
    found: list[DeviceNode] = []
    for folder, prefix in (("dev", "nvidia"), ("dev/nvidia-caps", "nvidia-")):
        where = os.path.join(dev_root, folder)
        try:
            names = sorted(os.listdir(where))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not name.startswith(prefix) or name.startswith(_NOT_LINKED):
                continue
            path = os.path.join(where, name)
            info = os.lstat(path)  # a symlink is not a node of ours to link
            if stat.S_ISCHR(info.st_mode):
                found.append(DeviceNode(path, os.major(info.st_rdev), os.minor(info.st_rdev)))
    return found


def nvidia_gpu_count(pci_devices: str = PCI_DEVICES) -> int:
    """How many NVIDIA display controllers (GPUs) the PCI bus has."""
    count = 0
    try:
        entries = os.listdir(pci_devices)
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            with open(os.path.join(pci_devices, entry, "vendor")) as f:
                vendor = f.read().strip()
            with open(os.path.join(pci_devices, entry, "class")) as f:
                klass = f.read().strip()
        except OSError:
            continue
        if vendor == _NVIDIA_VENDOR and klass.startswith(_DISPLAY_CLASS):
            count += 1
    return count


def mig_minors(path: str = MIG_MINORS) -> dict[str, int]:
    """The MIG capability minors (``config``, ``gpu0/gi1/access`` ...), empty without MIG."""
    minors: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 2 and fields[1].isdigit():
                    minors[fields[0]] = int(fields[1])
    except FileNotFoundError:
        pass
    return minors


def all_possible_nodes(
    dev_root: str, majors: dict[str, int], gpus: int, caps: dict[str, int]
) -> list[DeviceNode]:
    """Every node the driver can have: control devices, one per GPU, the MIG caps."""
    nodes, _missing = control_nodes(dev_root, majors)
    major = gpu_major(majors)
    if major is not None:
        nodes += [DeviceNode(os.path.join(dev_root, f"dev/nvidia{i}"), major, i)
                  for i in range(gpus)]
    caps_major = majors.get(CAPS_MAJOR_NAME)
    if caps_major is not None:
        for name, minor in sorted(caps.items(), key=lambda item: item[1]):
            gpu = name.split("/", 1)[0]
            if name in ("config", "monitor") or (
                gpu.startswith("gpu") and gpu[3:].isdigit() and int(gpu[3:]) < gpus
            ):
                path = os.path.join(dev_root, f"dev/nvidia-caps/nvidia-cap{minor}")
                nodes.append(DeviceNode(path, caps_major, minor))
    return nodes


def create_links(
    nodes: Iterable[DeviceNode], dev_char: str = DEV_CHAR, dry_run: bool = False
) -> tuple[list[str], list[str]]:
    """Make ``<dev_char>/<major>:<minor>`` -> node for each node.

    Returns (what was done, warnings). A link that already points to the
    node is left; one that points elsewhere is left too, with a warning:
    it is another device's, or an admin's.
    """
    done: list[str] = []
    warnings: list[str] = []
    nodes = list(nodes)
    if nodes and not dry_run:
        os.makedirs(dev_char, mode=0o755, exist_ok=True)
    for node in nodes:
        link = os.path.join(dev_char, node.char_name)
        try:
            current = os.readlink(link)
        except FileNotFoundError:
            current = None
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            warnings.append(f"{link}: exists and is not a symlink; left as it is")
            continue
        if current is not None:
            if os.path.normpath(os.path.join(dev_char, current)) != os.path.normpath(node.path):
                warnings.append(f"{link}: points to {current}, not {node.path}; left as it is")
            continue
        done.append(f"{link} -> {node.path}")
        if not dry_run:
            os.symlink(node.path, link)
    return done, warnings


def create_nodes(
    nodes: Iterable[DeviceNode], dry_run: bool = False
) -> tuple[list[str], list[str]]:
    """``mknod`` each node that is missing (mode 0666); returns (what was done, warnings)."""
    done: list[str] = []
    warnings: list[str] = []
    for node in nodes:
        try:
            info = os.lstat(node.path)
        except FileNotFoundError:
            info = None
        if info is not None:
            numbers = (os.major(info.st_rdev), os.minor(info.st_rdev))
            if not stat.S_ISCHR(info.st_mode) or numbers != (node.major, node.minor):
                warnings.append(
                    f"{node.path}: exists but is not character device {node.char_name}; "
                    "left as it is"
                )
            continue
        done.append(f"{node.path} (c {node.major} {node.minor})")
        if dry_run:
            continue
        os.makedirs(os.path.dirname(node.path), mode=0o755, exist_ok=True)
        os.mknod(node.path, stat.S_IFCHR | _NODE_MODE, os.makedev(node.major, node.minor))
        os.chmod(node.path, _NODE_MODE)  # mknod's mode is narrowed by the umask
    return done, warnings
