"""The NVIDIA driver's user-space files under a driver root.

The file lists follow the ones NVIDIA's ``libnvidia-container`` and
``nvcdi`` use (their capability names: ``compute``, ``utility``, ``video``,
``graphics``, ``display``, ``ngx``, ``compat32``).  Libraries are found
through the root's ``/etc/ld.so.cache`` (by name and architecture), else in
:data:`~nvshim.host.DEFAULT_LIBRARY_FOLDERS` and the extra search paths.
Every path a caller gets is a :class:`DriverFile`: the path as seen from the
root (what a container gets) and the host path (what is bind-mounted).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from functools import cached_property

import attrs

from nvshim.host._errors import DriverNotFound, LdCacheError
from nvshim.host._ldcache import (
    DEFAULT_LIBRARY_FOLDERS,
    LdCache,
    host_arch,
    read_ldcache,
    search_folders,
)
from nvshim.rootpath import container_path, host_path, normalise_root, resolve_in_root

__all__ = [
    "CAPABILITIES",
    "DRIVER_BINARIES",
    "DRIVER_CONFIG_FILES",
    "DRIVER_LIBRARIES",
    "Driver",
    "DriverFile",
]

#: The driver capabilities, in NVIDIA's names (``NVIDIA_DRIVER_CAPABILITIES``).
CAPABILITIES: tuple[str, ...] = (
    "compute",
    "utility",
    "video",
    "graphics",
    "display",
    "ngx",
    "compat32",
)

#: Library names (without version) per capability.  ``compat32`` means the
#: 32-bit builds of the compute, utility, video and graphics libraries.
DRIVER_LIBRARIES: dict[str, tuple[str, ...]] = {
    "utility": (
        "libnvidia-ml.so",
        "libnvidia-cfg.so",
        "libnvidia-nscq.so",
    ),
    "compute": (
        "libcuda.so",
        "libcudadebugger.so",
        "libnvidia-opencl.so",
        "libnvidia-gpucomp.so",
        "libnvidia-ptxjitcompiler.so",
        "libnvidia-fatbinaryloader.so",
        "libnvidia-allocator.so",
        "libnvidia-compiler.so",
        "libnvidia-pkcs11.so",
        "libnvidia-pkcs11-openssl3.so",
        "libnvidia-nvvm.so",
    ),
    "video": (
        "libvdpau_nvidia.so",
        "libnvidia-encode.so",
        "libnvidia-opticalflow.so",
        "libnvcuvid.so",
    ),
    "graphics": (
        "libnvidia-eglcore.so",
        "libnvidia-glcore.so",
        "libnvidia-tls.so",
        "libnvidia-glsi.so",
        "libnvidia-fbc.so",
        "libnvidia-ifr.so",
        "libnvidia-rtcore.so",
        "libnvoptix.so",
        "libGLX_nvidia.so",
        "libEGL_nvidia.so",
        "libGLESv2_nvidia.so",
        "libGLESv1_CM_nvidia.so",
        "libnvidia-glvkspirv.so",
        "libnvidia-cbl.so",
        "libnvidia-egl-gbm.so",
        "libnvidia-egl-wayland.so",
        "libnvidia-egl-xcb.so",
        "libnvidia-egl-xlib.so",
        "libnvidia-vksc-core.so",
    ),
    "display": (),
    "ngx": ("libnvidia-ngx.so",),
    "compat32": (),
}
_COMPAT32_FROM = ("compute", "utility", "video", "graphics")

#: Executables per capability, looked up in the root's usual bin folders.
DRIVER_BINARIES: dict[str, tuple[str, ...]] = {
    "utility": (
        "nvidia-smi",
        "nvidia-debugdump",
        "nvidia-persistenced",
        "nvidia-imex",
        "nvidia-imex-ctl",
    ),
    "compute": ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server"),
}

#: Configuration files and data per capability (absolute, as seen from the root).
DRIVER_CONFIG_FILES: dict[str, tuple[str, ...]] = {
    "graphics": tuple(
        f"{base}/{name}"
        for base in ("/etc", "/usr/local/share", "/usr/share")
        for name in (
            "glvnd/egl_vendor.d/10_nvidia.json",
            "vulkan/icd.d/nvidia_icd.json",
            "vulkan/icd.d/nvidia_layers.json",
            "vulkan/implicit_layer.d/nvidia_layers.json",
            "egl/egl_external_platform.d/15_nvidia_gbm.json",
            "egl/egl_external_platform.d/10_nvidia_wayland.json",
            "egl/egl_external_platform.d/20_nvidia_xcb.json",
            "egl/egl_external_platform.d/20_nvidia_xlib.json",
            "nvidia/nvoptix.bin",
        )
    ),
    "display": (
        "/etc/X11/xorg.conf.d/10-nvidia.conf",
        "/usr/share/X11/xorg.conf.d/10-nvidia.conf",
    ),
}

# Folders of the X server's NVIDIA modules (display capability).
_XORG_MODULE_FOLDERS = (
    "/usr/lib/xorg/modules",
    "/usr/lib64/xorg/modules",
    "/usr/lib/x86_64-linux-gnu/nvidia/xorg",
    "/usr/lib/aarch64-linux-gnu/nvidia/xorg",
)
_XORG_MODULES = (
    "drivers/nvidia_drv.so",
    "extensions/libglxserver_nvidia.so.{version}",
    "nvidia_drv.so",
    "libglxserver_nvidia.so.{version}",
)

_BIN_FOLDERS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_FIRMWARE_FOLDERS = ("/lib/firmware", "/usr/lib/firmware")
_IPC = {
    "utility": ("/nvidia-persistenced/socket", "/nvidia-fabricmanager/socket"),
    "compute": ("/nvidia-mps",),
}
_IPC_BASES = ("/run", "/var/run")
_MPS_PIPE_FOLDER = "/tmp/nvidia-mps"
# libcuda.so.<major>.<minor>[.<patch>]: the driver version is the file name's tail.
_VERSION_RE = re.compile(r"^libcuda\.so\.(\d+\.\d+(?:\.\d+)?)$")


@attrs.frozen
class DriverFile:
    """One file (or socket folder) of the driver.

    :ivar path: the path as seen from the driver root: where it goes in a container.
    :ivar host_path: the path on the host (``path`` under the driver root).
    :ivar kind: ``library``, ``binary``, ``firmware``, ``config`` or ``ipc``.
    :ivar capability: the capability it belongs to (one of :data:`CAPABILITIES`).
    """

    path: str
    host_path: str
    kind: str
    capability: str


def _check_capabilities(capabilities: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(capabilities))
    unknown = [c for c in wanted if c not in CAPABILITIES]
    if unknown:
        raise ValueError(
            f"unknown driver capability {unknown[0]!r} (known: {', '.join(CAPABILITIES)})"
        )
    return wanted


class Driver:
    """The NVIDIA driver installed under ``root`` (``/`` for the host's own).

    Nothing is read until asked; results are kept on the instance.

    :param root: the driver root (``--driver-root``).
    :param library_search_paths: extra folders (as seen from ``root``)
        searched for libraries before the default folders when the root has
        no ``ld.so.cache`` or the cache lacks a library
        (``--library-search-path``).
    :param arch: the :data:`~nvshim.host.ARCH_FLAGS` name of the libraries
        wanted; default the machine's own.
    """

    def __init__(
        self,
        root: str = "/",
        *,
        library_search_paths: Sequence[str] = (),
        arch: str | None = None,
    ) -> None:
        self.root = normalise_root(root)
        self.library_search_paths = tuple(library_search_paths)
        self.arch = arch or host_arch()

    def __repr__(self) -> str:
        return f"Driver(root={self.root!r})"

    # -- paths ---------------------------------------------------------------

    def host_path(self, path: str) -> str:
        """The host path of ``path`` (as seen from the driver root)."""
        return host_path(self.root, path)

    def container_path(self, host: str) -> str:
        """``host`` with the driver root prefix stripped."""
        return container_path(self.root, host)

    def resolve(self, path: str) -> str:
        """``path`` with its symbolic links resolved inside the root."""
        return resolve_in_root(self.root, path)

    def exists(self, path: str) -> bool:
        """Whether ``path`` (as seen from the root, links resolved in it) exists."""
        return os.path.lexists(self.host_path(self.resolve(path)))

    # -- libraries -----------------------------------------------------------

    @cached_property
    def ldcache_path(self) -> str:
        """The host path of the root's ``/etc/ld.so.cache``."""
        return self.host_path("/etc/ld.so.cache")

    @cached_property
    def ldcache(self) -> LdCache | None:
        """The root's parsed ``ld.so.cache``; None when the root has none.

        :raises LdCacheError: the file exists but is corrupt or truncated.
        """
        try:
            return read_ldcache(self.ldcache_path)
        except LdCacheError:
            if not os.path.lexists(self.ldcache_path):
                return None
            raise

    def find_libraries(self, *patterns: str, arch: str | None = None) -> list[str]:
        """Find libraries by name or :mod:`fnmatch` pattern (``libcuda.so.*``).

        Looks in the ld.so.cache first; a pattern the cache does not answer
        is searched in the library search paths and then
        :data:`~nvshim.host.DEFAULT_LIBRARY_FOLDERS`.

        :returns: existing files as seen from the root, links resolved
            (the versioned file ``libcuda.so.550.54.15``), without repeats.
        """
        wanted = arch or self.arch
        found: dict[str, None] = {}
        cache = self.ldcache
        for pattern in patterns:
            hits = cache.lookup(pattern, arch=wanted) if cache is not None else []
            if not hits and wanted == self.arch:
                hits = search_folders(
                    self.root, [pattern], (*self.library_search_paths, *DEFAULT_LIBRARY_FOLDERS)
                )
            for hit in hits:
                real = self.resolve(hit)
                if os.path.isfile(self.host_path(real)):
                    found.setdefault(real, None)
        return list(found)

    @cached_property
    def libcuda(self) -> str:
        """``libcuda.so.<version>`` as seen from the root.

        :raises DriverNotFound: no libcuda under the root.
        """
        for path in self.find_libraries("libcuda.so.*", "libcuda.so"):
            folder = os.path.dirname(path)
            # The cache names libcuda.so.1; its folder holds the versioned file.
            if _VERSION_RE.match(os.path.basename(path)):
                return path
            for candidate in sorted(
                glob.glob(glob.escape(self.host_path(folder)) + "/libcuda.so.*")
            ):
                if _VERSION_RE.match(os.path.basename(candidate)):
                    return self.container_path(candidate)
        where = self.ldcache_path if self.ldcache is not None else "the default library folders"
        raise DriverNotFound(
            f"driver root {self.root}", f"no libcuda.so.<version> found (searched {where})"
        )

    @cached_property
    def version(self) -> str:
        """The driver version, from the ``libcuda.so.<version>`` file name (``550.54.15``).

        :raises DriverNotFound: no libcuda under the root.
        """
        match = _VERSION_RE.match(os.path.basename(self.libcuda))
        assert match is not None  # libcuda only returns matching names
        return match.group(1)

    def library_folders(self) -> list[str]:
        """The driver's library folders: libcuda's folder and its ``vdpau`` subfolder."""
        folder = os.path.dirname(self.libcuda)
        folders = [folder]
        if os.path.isdir(self.host_path(folder + "/vdpau")):
            folders.append(folder + "/vdpau")
        return folders

    def _file(self, path: str, kind: str, capability: str) -> DriverFile:
        return DriverFile(path, self.host_path(path), kind, capability)

    def libraries(self, capabilities: Iterable[str] = CAPABILITIES) -> list[DriverFile]:
        """The driver libraries of ``capabilities`` that exist under the root."""
        wanted = _check_capabilities(capabilities)
        files: dict[str, DriverFile] = {}
        for capability in wanted:
            for name in DRIVER_LIBRARIES[capability]:
                for path in self.find_libraries(name + ".*"):
                    files.setdefault(path, self._file(path, "library", capability))
        if "compat32" in wanted:
            names = [n for c in _COMPAT32_FROM for n in DRIVER_LIBRARIES[c]]
            compat_arch = {"x86_64": "i386", "aarch64": "armhf"}.get(self.arch)
            if compat_arch is not None:
                for name in names:
                    for path in self.find_libraries(name + ".*", arch=compat_arch):
                        files.setdefault(path, self._file(path, "library", "compat32"))
        return list(files.values())

    def versioned_libraries(self) -> list[DriverFile]:
        """Every ``*.so.<version>`` file in :meth:`library_folders` (NVIDIA's nvml-mode set).

        This catches the driver libraries no list names yet.
        """
        files = []
        for folder in self.library_folders():
            pattern = glob.escape(self.host_path(folder)) + "/*.so." + glob.escape(self.version)
            for hit in sorted(glob.glob(pattern)):
                files.append(self._file(self.container_path(hit), "library", "compute"))
        return files

    # -- other files ---------------------------------------------------------

    def binaries(self, capabilities: Iterable[str] = CAPABILITIES) -> list[DriverFile]:
        """The driver's executables (``nvidia-smi``...) found in the root's bin folders."""
        files = []
        for capability in _check_capabilities(capabilities):
            for name in DRIVER_BINARIES.get(capability, ()):
                for folder in _BIN_FOLDERS:
                    path = f"{folder}/{name}"
                    host = self.host_path(self.resolve(path))
                    if os.path.isfile(host) and os.access(host, os.X_OK):
                        files.append(self._file(path, "binary", capability))
                        break
        return files

    def firmware(self) -> list[DriverFile]:
        """The GSP firmware files, ``/lib/firmware/nvidia/<version>/gsp*.bin``."""
        files: dict[str, DriverFile] = {}
        for base in _FIRMWARE_FOLDERS:
            folder = f"{base}/nvidia/{self.version}"
            for hit in sorted(glob.glob(glob.escape(self.host_path(folder)) + "/gsp*.bin")):
                path = self.container_path(hit)
                files.setdefault(path, self._file(path, "firmware", "utility"))
        return list(files.values())

    def ipc_sockets(self, capabilities: Iterable[str] = CAPABILITIES) -> list[DriverFile]:
        """The daemons' sockets and the MPS pipe folder that exist under the root."""
        files: dict[str, DriverFile] = {}
        for capability in _check_capabilities(capabilities):
            for tail in _IPC.get(capability, ()):
                for base in _IPC_BASES:
                    path = base + tail
                    if os.path.exists(self.host_path(path)):
                        files.setdefault(path, self._file(path, "ipc", capability))
                        break
            if capability == "compute" and os.path.isdir(self.host_path(_MPS_PIPE_FOLDER)):
                files.setdefault(_MPS_PIPE_FOLDER, self._file(_MPS_PIPE_FOLDER, "ipc", capability))
        return list(files.values())

    def config_files(self, capabilities: Iterable[str] = CAPABILITIES) -> list[DriverFile]:
        """Graphics and display configuration (ICD json files, X modules) under the root."""
        files: dict[str, DriverFile] = {}
        wanted = _check_capabilities(capabilities)
        for capability in wanted:
            for path in DRIVER_CONFIG_FILES.get(capability, ()):
                if os.path.isfile(self.host_path(self.resolve(path))):
                    files.setdefault(path, self._file(path, "config", capability))
        if "display" in wanted:
            for folder in _XORG_MODULE_FOLDERS:
                for module in _XORG_MODULES:
                    path = f"{folder}/{module.format(version=self.version)}"
                    if os.path.isfile(self.host_path(self.resolve(path))):
                        files.setdefault(path, self._file(path, "library", "display"))
        return list(files.values())

    def files(self, capabilities: Iterable[str] = CAPABILITIES) -> list[DriverFile]:
        """Everything of ``capabilities``: libraries (listed and versioned),
        binaries, firmware, IPC sockets and configuration files, without repeats.

        :raises DriverNotFound: no libcuda under the root.
        """
        wanted = _check_capabilities(capabilities)
        merged: dict[str, DriverFile] = {}
        groups: list[list[DriverFile]] = [self.libraries(wanted)]
        if set(wanted) >= {"compute", "utility", "video", "graphics"}:
            groups.append(self.versioned_libraries())
        groups += [self.binaries(wanted), self.ipc_sockets(wanted), self.config_files(wanted)]
        if "utility" in wanted or "compute" in wanted:
            groups.append(self.firmware())
        for group in groups:
            for item in group:
                merged.setdefault(item.path, item)
        return list(merged.values())

    def soname(self, library: str) -> str | None:
        """The soname the ld.so.cache gives for ``library`` (a resolved path), if any."""
        cache = self.ldcache
        if cache is not None:
            for entry in cache.entries:
                if entry.name != os.path.basename(entry.path):
                    continue
                if os.path.dirname(entry.path) == os.path.dirname(library) and (
                    self.resolve(entry.path) == library
                ):
                    return entry.name
        # Without a cache entry: the sibling link that points at the file.
        folder = self.host_path(os.path.dirname(library))
        base = os.path.basename(library)
        stem = base.split(".so.", 1)[0] + ".so."
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return None
        for name in names:
            if name.startswith(stem) and name != base:
                try:
                    if os.readlink(os.path.join(folder, name)) == base:
                        return name
                except OSError:
                    continue
        return None

    def dev_symlinks(self, libraries: Iterable[str]) -> list[tuple[str, str]]:
        """``(target, link)`` pairs for the ``.so`` links that compilers and
        ``dlopen("libcuda.so")`` need: ``libcuda.so -> libcuda.so.1``.

        ``libraries`` are resolved library paths; the soname comes from the
        ld.so.cache (or a sibling link), and ``libcuda.so.1`` is always used
        for libcuda.  Two graphics links are added as the driver's installer
        makes them: ``libGLX_indirect.so.0`` (GLVND's indirect rendering) to
        ``libGLX_nvidia``, and ``gbm/nvidia-drm_gbm.so`` (the GBM backend) to
        ``libnvidia-allocator.so.1``.
        """
        links: dict[str, str] = {}
        for library in libraries:
            base = os.path.basename(library)
            if ".so." not in base:
                continue
            stem = base.split(".so.", 1)[0]
            folder = os.path.dirname(library)
            if stem == "libGLX_nvidia":
                links.setdefault(f"{folder}/libGLX_indirect.so.0", base)
            elif stem == "libnvidia-allocator":
                links.setdefault(f"{folder}/gbm/nvidia-drm_gbm.so", "../libnvidia-allocator.so.1")
            soname = self.soname(library)
            if soname is None and stem == "libcuda":
                soname = "libcuda.so.1"
            if soname is None or soname == base or soname == f"{stem}.so":
                continue
            links.setdefault(f"{os.path.dirname(library)}/{stem}.so", soname)
        return [(target, link) for link, target in links.items()]
