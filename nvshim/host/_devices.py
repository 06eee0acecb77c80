"""The NVIDIA device nodes under a device root (``/`` on a normal host).

A node counts when its path exists, whatever it is: NVIDIA's reference roots
hold empty files, and a CDI spec leaves the type and numbers to be read where
it is applied.  MIG capability nodes take their minor numbers from
``proc/driver/nvidia-caps/mig-minors`` under the device root (the host's
``/proc`` when the device root is ``/``).
"""

from __future__ import annotations

import glob
import os
import re
from functools import cached_property

import attrs

from nvshim.host._errors import HostError
from nvshim.rootpath import container_path, host_path, normalise_root

__all__ = ["CONTROL_NODES", "DeviceNode", "Devices", "normalise_bus_id"]

#: The control nodes every GPU container needs, when present.
CONTROL_NODES: tuple[str, ...] = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
)
_MIG_MINORS = "/proc/driver/nvidia-caps/mig-minors"
_CAPS_DIR = "/dev/nvidia-caps"
_GPU_NODE_RE = re.compile(r"^nvidia(\d+)$")
_NUMBERED_RE = re.compile(r"(\d+)$")


@attrs.frozen
class DeviceNode:
    """A device node: ``path`` in the container, ``host_path`` on the host."""

    path: str
    host_path: str


def normalise_bus_id(bus_id: str) -> str:
    """``00000000:07:00.0`` (NVML) to ``0000:07:00.0`` (sysfs, ``/dev/dri/by-path``)."""
    domain, sep, rest = bus_id.strip().lower().partition(":")
    if not sep:
        return bus_id.strip().lower()
    return f"{int(domain, 16):04x}:{rest}"


def _numbered(paths: list[str]) -> list[str]:
    """Sort ``channel10`` after ``channel2``."""

    def key(path: str) -> tuple[str, int]:
        match = _NUMBERED_RE.search(path)
        return (path[: match.start()] if match else path, int(match.group(1)) if match else -1)

    return sorted(paths, key=key)


class Devices:
    """The device nodes under ``dev_root`` (``--dev-root``; ``/`` for the host).

    :param dev_root: the root holding ``/dev`` (and, on a normal host,
        ``/proc``).
    :param proc_root: where ``proc/driver/nvidia-caps/mig-minors`` is read;
        default ``dev_root``.
    """

    def __init__(self, dev_root: str = "/", *, proc_root: str | None = None) -> None:
        self.root = normalise_root(dev_root)
        self.proc_root = normalise_root(proc_root) if proc_root is not None else self.root

    def __repr__(self) -> str:
        return f"Devices(dev_root={self.root!r})"

    def node(self, path: str) -> DeviceNode | None:
        """The node at ``path`` if it exists (any file type), else None."""
        host = host_path(self.root, path)
        return DeviceNode(path, host) if os.path.lexists(host) else None

    def root_relative(self, host: str) -> str:
        """Host path ``host`` with the device root prefix stripped."""
        return container_path(self.root, host)

    def _glob(self, pattern: str) -> list[DeviceNode]:
        hits = glob.glob(
            glob.escape(host_path(self.root, os.path.dirname(pattern)))
            + "/"
            + os.path.basename(pattern)
        )
        return [DeviceNode(container_path(self.root, h), h) for h in _numbered(hits)]

    def control_nodes(self) -> list[DeviceNode]:
        """The nodes of :data:`CONTROL_NODES` that exist."""
        return [n for n in map(self.node, CONTROL_NODES) if n is not None]

    def gpu_node(self, minor: int) -> DeviceNode | None:
        """``/dev/nvidia<minor>`` if it exists."""
        return self.node(f"/dev/nvidia{minor}")

    def gpu_nodes(self) -> list[DeviceNode]:
        """Every ``/dev/nvidia<N>``, by N."""
        return [
            n for n in self._glob("/dev/nvidia*") if _GPU_NODE_RE.match(os.path.basename(n.path))
        ]

    @cached_property
    def mig_minors(self) -> dict[str, int]:
        """The MIG capability minors: ``{"gpu0/gi1/ci0/access": 44, "config": 1, ...}``.

        Read from ``proc/driver/nvidia-caps/mig-minors`` under ``proc_root``.

        Empty when the file is missing (no MIG support).

        :raises HostError: a line that is not ``<name> <minor>``.
        """
        path = host_path(self.proc_root, _MIG_MINORS)
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read(1 << 22).splitlines()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise HostError(path, str(exc)) from None
        minors: dict[str, int] = {}
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit():
                raise HostError(f"{path}:{number}", f"not '<capability> <minor>': {line!r}")
            minors[fields[0]] = int(fields[1])
        return minors

    def cap_node(self, capability: str) -> DeviceNode | None:
        """The ``/dev/nvidia-caps/nvidia-cap<minor>`` node of a mig-minors name, if present."""
        minor = self.mig_minors.get(capability)
        return None if minor is None else self.node(f"{_CAPS_DIR}/nvidia-cap{minor}")

    def mig_nodes(
        self, gpu_minor: int, gpu_instance: int, compute_instance: int
    ) -> list[DeviceNode]:
        """The capability nodes of one MIG device.

        Its GPU instance's and its compute instance's ``access`` nodes.

        :raises HostError: a capability is missing from mig-minors or its node is absent.
        """
        nodes = []
        for cap in (
            f"gpu{gpu_minor}/gi{gpu_instance}/access",
            f"gpu{gpu_minor}/gi{gpu_instance}/ci{compute_instance}/access",
        ):
            node = self.cap_node(cap)
            if node is None:
                minor = self.mig_minors.get(cap)
                why = (
                    f"no {cap} in {host_path(self.proc_root, _MIG_MINORS)}"
                    if minor is None
                    else f"{host_path(self.root, f'{_CAPS_DIR}/nvidia-cap{minor}')} is missing"
                )
                where = f"MIG device gpu{gpu_minor}/gi{gpu_instance}/ci{compute_instance}"
                raise HostError(where, why)
            nodes.append(node)
        return nodes

    def mig_management_nodes(self) -> list[DeviceNode]:
        """The MIG ``config`` and ``monitor`` capability nodes, when present."""
        return [n for n in (self.cap_node("config"), self.cap_node("monitor")) if n is not None]

    def cap_nodes(self) -> list[DeviceNode]:
        """Every ``/dev/nvidia-caps/nvidia-cap<N>``."""
        return self._glob(f"{_CAPS_DIR}/nvidia-cap*")

    def imex_channels(self) -> list[DeviceNode]:
        """Every IMEX channel, ``/dev/nvidia-caps-imex-channels/channel<N>``, by N."""
        return self._glob("/dev/nvidia-caps-imex-channels/channel*")

    def drm_nodes(self, pci_bus_id: str) -> list[DeviceNode]:
        """The ``/dev/dri/card*`` and ``renderD*`` nodes of the GPU at ``pci_bus_id``.

        Found through the ``/dev/dri/by-path/pci-<bus id>-{card,render}`` links.
        """
        bus_id = normalise_bus_id(pci_bus_id)
        nodes = []
        for suffix in ("card", "render"):
            link = host_path(self.root, f"/dev/dri/by-path/pci-{bus_id}-{suffix}")
            try:
                target = os.readlink(link)
            except OSError:
                continue
            path = os.path.normpath(os.path.join("/dev/dri/by-path", target))
            if not path.startswith("/dev/dri/"):
                continue  # a link that leaves /dev/dri is not udev's
            node = self.node(path)
            if node is not None:
                nodes.append(node)
        return nodes

    def drm_links(self, pci_bus_id: str) -> list[tuple[str, str]]:
        """``(target, link)`` of the GPU's ``/dev/dri/by-path`` links whose node exists.

        A container gets them back through the ``create-symlinks`` hook, so
        that software finding its GPU by PCI address (Vulkan, EGL) works.
        """
        bus_id = normalise_bus_id(pci_bus_id)
        links = []
        for suffix in ("card", "render"):
            link = f"/dev/dri/by-path/pci-{bus_id}-{suffix}"
            try:
                target = os.readlink(host_path(self.root, link))
            except OSError:
                continue
            path = os.path.normpath(os.path.join("/dev/dri/by-path", target))
            if path.startswith("/dev/dri/") and self.node(path) is not None:
                links.append((os.path.relpath(path, "/dev/dri/by-path"), link))
        return links

    def gds_nodes(self) -> list[DeviceNode]:
        """GPUDirect Storage: ``/dev/nvidia-fs*``."""
        return self._glob("/dev/nvidia-fs*")

    def mofed_nodes(self) -> list[DeviceNode]:
        """MOFED: ``/dev/infiniband/uverbs*`` and ``/dev/infiniband/rdma_cm``."""
        nodes = self._glob("/dev/infiniband/uverbs*")
        rdma = self.node("/dev/infiniband/rdma_cm")
        return nodes + ([rdma] if rdma else [])

    def gdrcopy_nodes(self) -> list[DeviceNode]:
        """GDRCopy: ``/dev/gdrdrv``."""
        node = self.node("/dev/gdrdrv")
        return [node] if node else []

    def nvswitch_nodes(self) -> list[DeviceNode]:
        """NVSwitch: ``/dev/nvidia-nvswitchctl`` and ``/dev/nvidia-nvswitch<N>``."""
        ctl = self.node("/dev/nvidia-nvswitchctl")
        numbered = [
            n for n in self._glob("/dev/nvidia-nvswitch*") if n.path != "/dev/nvidia-nvswitchctl"
        ]
        return ([ctl] if ctl else []) + numbered

    def all_nodes(self) -> list[DeviceNode]:
        """Control, GPU and capability nodes: what a management container gets."""
        return [*self.control_nodes(), *self.gpu_nodes(), *self.cap_nodes()]
