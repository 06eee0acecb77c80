"""nvshim.host: the ld.so.cache reader, the driver's files and the device nodes.

Real files: NVIDIA's reference roots (a real ld.so.cache from a driver host
in rootfs-1), caches built here by glibc's own ldconfig, and hand-built
caches in the old "ld.so-1.7.0" layout.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import host_support
import pytest

from nvshim import NvshimError
from nvshim.host import (
    CAPABILITIES,
    Devices,
    Driver,
    DriverNotFound,
    HostError,
    LdCacheError,
    NvmlError,
    is_tegra,
    normalise_bus_id,
    parse_ldcache,
    query_gpus,
    read_ldcache,
)

# The session's simulated GPU host (see host_support.build_simulated_host).
simulated_host = host_support.simulated_host

LDCONFIG = next(
    (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
)


# --------------------------------------------------------------------------- ld.so.cache


def test_reads_the_real_cache_of_a_driver_host() -> None:
    cache = read_ldcache(str(host_support.reference_root("rootfs-1") / "etc" / "ld.so.cache"))
    assert len(cache.entries) == 743
    libs = cache.libraries("x86_64")
    assert libs["libcuda.so.1"] == "/lib/x86_64-linux-gnu/libcuda.so.1"
    assert libs["libnvidia-ml.so.1"] == "/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    assert cache.lookup("libcuda.so.*", arch="x86_64") == ["/lib/x86_64-linux-gnu/libcuda.so.1"]
    assert "/lib/x86_64-linux-gnu" in cache.folders("x86_64")
    # That host also had 32-bit (lib32) and x32 (libx32) libraries: the
    # architecture flags keep them apart.
    assert {e.arch for e in cache.entries} >= {"x86_64", "i386", "x32"}
    assert cache.lookup("libutil.so.1", arch="i386") == ["/lib32/libutil.so.1"]
    assert cache.lookup("libutil.so.1", arch="x32") == ["/libx32/libutil.so.1"]
    assert cache.lookup("libcuda.so.*", arch="i386") == []  # no 32-bit driver there


def test_cache_only_library_location() -> None:
    cache = read_ldcache(str(host_support.reference_root("rootfs-2") / "etc" / "ld.so.cache"))
    assert cache.lookup("libcuda.so.1", arch="x86_64") == ["/var/lib/nvidia/lib64/libcuda.so.1"]


def _old_cache(entries: list[tuple[int, str, str]], with_new: bool) -> bytes:
    """A cache in the old layout (optionally followed by the new one), as glibc < 2.32 wrote."""
    strings = b""
    offsets = []
    for _flags, key, value in entries:
        offsets.append((len(strings), len(strings) + len(key) + 1))
        strings += key.encode() + b"\0" + value.encode() + b"\0"
    old = struct.pack("=12sI", b"ld.so-1.7.0", len(entries))
    for (flags, _k, _v), (k, v) in zip(entries, offsets):
        old += struct.pack("=iII", flags, k, v)
    if not with_new:
        return old + strings
    pad = b"\0" * ((-len(old)) % 8)
    header_size = 48
    table = header_size + 24 * len(entries)
    new = struct.pack("=20sIIB3xI12x", b"glibc-ld.so.cache1.1", len(entries), len(strings), 0, 0)
    for (flags, _k, _v), (k, v) in zip(entries, offsets):
        new += struct.pack("=iIIIQ", flags, table + k, table + v, 0, 0)
    return old + pad + new + strings


ENTRIES = [
    (0x0303, "libcuda.so.1", "/usr/lib64/libcuda.so.1"),
    (0x0003, "libcuda.so.1", "/usr/lib/libcuda.so.1"),
    (0x0A03, "libcuda.so.1", "/usr/lib/aarch64-linux-gnu/libcuda.so.1"),
]


@pytest.mark.parametrize("with_new", [False, True], ids=["old-only", "old-then-new"])
def test_old_layout(with_new: bool) -> None:
    cache = parse_ldcache(_old_cache(ENTRIES, with_new), "/x/ld.so.cache")
    assert [(e.name, e.path, e.arch) for e in cache.entries] == [
        ("libcuda.so.1", "/usr/lib64/libcuda.so.1", "x86_64"),
        ("libcuda.so.1", "/usr/lib/libcuda.so.1", "i386"),
        ("libcuda.so.1", "/usr/lib/aarch64-linux-gnu/libcuda.so.1", "aarch64"),
    ]
    assert cache.lookup("libcuda.so.1", arch="i386") == ["/usr/lib/libcuda.so.1"]
    assert cache.lookup("libcuda.so.1", arch="aarch64") == [
        "/usr/lib/aarch64-linux-gnu/libcuda.so.1"
    ]


@pytest.mark.skipif(LDCONFIG is None or os.geteuid() != 0, reason="needs root and ldconfig")
def test_cache_written_by_this_glibc(tmp_path: Path) -> None:
    root = tmp_path / "root"
    lib = root / "opt" / "drv"
    lib.mkdir(parents=True)
    host_support.compile_library(lib / "libfoo.so.1.2.3", "libfoo.so.1")
    (root / "etc").mkdir()
    (root / "etc" / "ld.so.conf").write_text("/opt/drv\n")
    assert LDCONFIG is not None
    subprocess.run([LDCONFIG, "-r", str(root)], check=True, env={})
    cache = read_ldcache(str(root / "etc" / "ld.so.cache"))
    assert cache.lookup("libfoo.so.*") == ["/opt/drv/libfoo.so.1"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "bad magic"),
        (b"not a cache at all, just text", "bad magic"),
        (b"glibc-ld.so.cache1.1", "truncated"),
        (b"ld.so-1.7.0", "truncated"),
    ],
)
def test_corrupt_cache_is_one_clear_error(tmp_path: Path, data: bytes, why: str) -> None:
    path = tmp_path / "ld.so.cache"
    path.write_bytes(data)
    with pytest.raises(LdCacheError, match=why) as info:
        read_ldcache(str(path))
    assert str(path) in str(info.value)
    assert isinstance(info.value, NvshimError)


def test_truncated_real_cache(tmp_path: Path) -> None:
    data = (host_support.reference_root("rootfs-1") / "etc" / "ld.so.cache").read_bytes()
    for cut in (30, 60, len(data) // 2, len(data) - 10):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        with pytest.raises(LdCacheError) as info:
            read_ldcache(str(path))
        assert info.value.what == str(path)


def test_string_offset_outside_the_file() -> None:
    data = bytearray(_old_cache(ENTRIES, with_new=True))
    start = data.index(b"glibc-ld.so.cache1.1")
    struct.pack_into("=I", data, start + 48 + 4, 10**6)  # key of the first entry
    with pytest.raises(LdCacheError, match="outside the file"):
        parse_ldcache(bytes(data), "/c")


# --------------------------------------------------------------------------- driver files


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("rootfs-1", "/lib/x86_64-linux-gnu"),
        ("rootfs-2", "/var/lib/nvidia/lib64"),
        ("rootfs-no-cache-lib64", "/usr/lib64"),
    ],
)
def test_driver_on_reference_roots(tmp_path: Path, name: str, folder: str) -> None:
    root = host_support.copy_reference_root(name, tmp_path / name)
    driver = Driver(str(root))
    assert driver.version == "999.88.77"
    assert driver.libcuda == f"{folder}/libcuda.so.999.88.77"
    assert driver.library_folders()[0] == folder
    files = driver.files()
    paths = [f.path for f in files]
    assert f"{folder}/libcuda.so.999.88.77" in paths
    assert f"{folder}/libcuda.so.1" not in paths  # links are made by the hooks, not mounted
    for item in files:
        assert item.host_path == f"{root}{item.path}"
    assert driver.dev_symlinks([driver.libcuda]) == [("libcuda.so.1", f"{folder}/libcuda.so")]


def test_vdpau_subfolder_and_capabilities(tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "r")
    driver = Driver(str(root))
    assert driver.library_folders() == ["/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu/vdpau"]
    vdpau = "/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.999.88.77"
    assert vdpau in [f.path for f in driver.versioned_libraries()]
    compute = [f.path for f in driver.libraries(["compute"])]
    assert compute == ["/lib/x86_64-linux-gnu/libcuda.so.999.88.77"]
    with pytest.raises(ValueError, match="unknown driver capability 'opengl'"):
        driver.libraries(["opengl"])
    assert set(CAPABILITIES) == {
        "compute",
        "utility",
        "video",
        "graphics",
        "display",
        "ngx",
        "compat32",
    }


def test_library_search_path(tmp_path: Path) -> None:
    root = tmp_path / "r"
    lib = root / "opt" / "nvidia"
    lib.mkdir(parents=True)
    (lib / "libcuda.so.560.1.2").write_bytes(b"")
    with pytest.raises(DriverNotFound, match=r"no libcuda\.so\.<version> found"):
        _ = Driver(str(root)).version
    assert Driver(str(root), library_search_paths=["/opt/nvidia"]).version == "560.1.2"


def test_corrupt_cache_of_a_driver_root(tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "r")
    (root / "etc" / "ld.so.cache").write_bytes(b"glibc-ld.so.cache1.1\x05")
    with pytest.raises(LdCacheError, match=str(root / "etc" / "ld.so.cache")):
        _ = Driver(str(root)).version


def test_links_do_not_leave_the_driver_root(tmp_path: Path) -> None:
    root = tmp_path / "r"
    lib = root / "usr" / "lib64"
    lib.mkdir(parents=True)
    # An absolute link in a driver root points into that root, never the host's.
    (lib / "libcuda.so.1").symlink_to("/usr/lib64/libcuda.so.555.1.1")
    (lib / "libcuda.so.555.1.1").write_bytes(b"")
    (lib / "escape").symlink_to("../../../../../../etc")
    driver = Driver(str(root))
    assert driver.version == "555.1.1"
    assert driver.resolve("/usr/lib64/escape/passwd") == "/etc/passwd"
    assert not driver.exists("/usr/lib64/escape/passwd")


def test_host_files_of_the_simulated_host(simulated_host: host_support.SimulatedHost) -> None:
    driver = Driver(str(simulated_host.root))
    v = simulated_host.version
    kinds = {f.path: (f.kind, f.capability) for f in driver.files()}
    assert kinds[f"/usr/lib/x86_64-linux-gnu/libcuda.so.{v}"] == ("library", "compute")
    assert kinds[f"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{v}"] == ("library", "utility")
    assert kinds[f"/usr/lib/x86_64-linux-gnu/libnvcuvid.so.{v}"] == ("library", "video")
    assert kinds[f"/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.{v}"] == ("library", "graphics")
    assert kinds["/usr/bin/nvidia-smi"] == ("binary", "utility")
    assert kinds[f"/lib/firmware/nvidia/{v}/gsp_ga10x.bin"] == ("firmware", "utility")
    assert kinds["/run/nvidia-persistenced/socket"] == ("ipc", "utility")
    assert kinds["/etc/vulkan/icd.d/nvidia_icd.json"] == ("config", "graphics")
    only_compute = [f.path for f in driver.files(["compute"])]
    assert f"/usr/lib/x86_64-linux-gnu/libnvcuvid.so.{v}" not in only_compute
    pairs = driver.dev_symlinks([f.path for f in driver.libraries()])
    links = {link: target for target, link in pairs}
    assert links["/usr/lib/x86_64-linux-gnu/libcuda.so"] == "libcuda.so.1"
    assert links["/usr/lib/x86_64-linux-gnu/libnvidia-nvvm.so"] == "libnvidia-nvvm.so.4"
    assert links["/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so"] == "libEGL_nvidia.so.0"
    assert links["/usr/lib/x86_64-linux-gnu/libGLX_indirect.so.0"] == f"libGLX_nvidia.so.{v}"
    gbm = "/usr/lib/x86_64-linux-gnu/gbm/nvidia-drm_gbm.so"
    assert links[gbm] == "../libnvidia-allocator.so.1"


# --------------------------------------------------------------------------- device nodes


def test_devices_of_rootfs_1(tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "r")
    devices = Devices(str(root))
    paths = lambda nodes: [n.path for n in nodes]  # noqa: E731
    assert paths(devices.control_nodes()) == ["/dev/nvidiactl"]
    assert paths(devices.gpu_nodes()) == ["/dev/nvidia0"]
    assert paths(devices.cap_nodes()) == ["/dev/nvidia-caps/nvidia-cap1"]
    assert paths(devices.imex_channels()) == [
        "/dev/nvidia-caps-imex-channels/channel0",
        "/dev/nvidia-caps-imex-channels/channel1",
        "/dev/nvidia-caps-imex-channels/channel2047",
    ]
    assert paths(devices.gds_nodes()) == ["/dev/nvidia-fs0"]
    assert paths(devices.mofed_nodes()) == ["/dev/infiniband/uverbs0", "/dev/infiniband/rdma_cm"]
    assert paths(devices.gdrcopy_nodes()) == ["/dev/gdrdrv"]
    assert paths(devices.nvswitch_nodes()) == ["/dev/nvidia-nvswitchctl", "/dev/nvidia-nvswitch0"]
    assert devices.mig_minors == {}  # no MIG on that root
    node = devices.gpu_node(0)
    assert node is not None
    assert node.host_path == f"{root}/dev/nvidia0"


def test_drm_nodes_by_pci_bus_id(tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-drm", tmp_path / "r")
    devices = Devices(str(root))
    assert [n.path for n in devices.drm_nodes("00000000:07:00.0")] == [
        "/dev/dri/card0",
        "/dev/dri/renderD128",
    ]
    assert devices.drm_nodes("0000:08:00.0") == []
    assert normalise_bus_id("00000000:0F:00.0") == "0000:0f:00.0"


def test_nvswitch_root(tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-with-nvswitch", tmp_path / "r")
    assert [n.path for n in Devices(str(root)).nvswitch_nodes()] == [
        "/dev/nvidia-nvswitchctl",
        "/dev/nvidia-nvswitch0",
        "/dev/nvidia-nvswitch1",
    ]


def test_mig_minors(tmp_path: Path) -> None:
    caps = tmp_path / "proc" / "driver" / "nvidia-caps"
    caps.mkdir(parents=True)
    (caps / "mig-minors").write_text(
        "config 1\nmonitor 2\ngpu0/gi1/access 21\ngpu0/gi1/ci0/access 22\n"
    )
    for minor in (1, 2, 21, 22):
        # Any file counts as a node (NVIDIA's reference roots hold empty files).
        host_support.put_file(tmp_path / "dev" / "nvidia-caps" / f"nvidia-cap{minor}")
    devices = Devices(str(tmp_path))
    assert [n.path for n in devices.mig_nodes(0, 1, 0)] == [
        "/dev/nvidia-caps/nvidia-cap21",
        "/dev/nvidia-caps/nvidia-cap22",
    ]
    assert [n.path for n in devices.mig_management_nodes()] == [
        "/dev/nvidia-caps/nvidia-cap1",
        "/dev/nvidia-caps/nvidia-cap2",
    ]
    with pytest.raises(HostError, match="no gpu0/gi2/access in"):
        devices.mig_nodes(0, 2, 0)
    (caps / "mig-minors").write_text("config one\n")
    with pytest.raises(HostError, match=r"mig-minors:1: not '<capability> <minor>'"):
        _ = Devices(str(tmp_path)).mig_minors


def test_is_tegra(tmp_path: Path) -> None:
    assert not is_tegra(str(tmp_path))
    (tmp_path / "sys" / "devices" / "soc0").mkdir(parents=True)
    (tmp_path / "sys" / "devices" / "soc0" / "family").write_text("tegra\n")
    assert is_tegra(str(tmp_path))
    other = tmp_path / "o"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "nv_tegra_release").write_text("# R36\n")
    assert is_tegra(str(other))


# --------------------------------------------------------------------------- NVML


def test_nvml_through_the_fake_library(simulated_host: host_support.SimulatedHost) -> None:
    pytest.importorskip("pynvml")
    gpus = query_gpus(Driver(str(simulated_host.root)))
    inventory = simulated_host.gpus()
    assert [g.index for g in gpus] == [g["index"] for g in inventory]
    assert [g.uuid for g in gpus] == [g["uuid"] for g in inventory]
    assert [g.minor for g in gpus] == [g["minor"] for g in inventory]
    assert [g.pci_bus_id for g in gpus] == [normalise_bus_id(g["pci_bus_id"]) for g in inventory]
    assert {g.name for g in gpus} == {"NVIDIA A100-SXM4-40GB"}
    mig = {g.index: g.mig_devices for g in gpus if g.mig_enabled}
    assert sorted(mig) == [2, 5]
    assert [(m.index, m.gpu_instance, m.compute_instance) for m in mig[5]] == [(0, 3, 0), (1, 5, 1)]
    assert mig[2][1].uuid == "MIG-2b3c4d5e-0000-4000-8000-000000000202"
    assert not any(g.is_integrated for g in gpus)


def test_nvml_missing_library_is_one_line(tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "r")
    with pytest.raises(NvmlError) as info:
        query_gpus(Driver(str(root)))
    assert "libnvidia-ml.so.1 not found" in str(info.value)
    assert "\n" not in str(info.value)


def test_nvml_without_the_binding(tmp_path: Path) -> None:
    """Without pynvml (a fresh interpreter that cannot import it), one line says what to install."""
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "from nvshim.host import Driver, query_gpus, NvmlError\n"
        "try:\n"
        f"    query_gpus(Driver({str(tmp_path)!r}))\n"
        "except NvmlError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == (
        "NVML: the Python binding is missing: pip install 'nvshim-runtime[nvml]' (nvidia-ml-py)"
    )


def test_nothing_of_nvshim_host_on_the_runtime_paths() -> None:
    """The runtime, the hooks and the CDI modifier never import nvshim.host.

    nvshim.host itself imports pynvml only when NVML is used.
    """
    code = (
        "import sys\n"
        "import nvshim, nvshim._cli, nvshim.runtime, nvshim._hookcmd, nvshim._ctl.main\n"
        "import nvshim_cdi\n"
        "print(sorted(m for m in sys.modules if m.startswith('nvshim.host') or m == 'pynvml'))\n"
        "import nvshim.host, nvshim.host.cdi\n"
        "print('pynvml' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "False"]


def test_drm_by_path_links(tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-drm", tmp_path / "r")
    assert Devices(str(root)).drm_links("00000000:07:00.0") == [
        ("../card0", "/dev/dri/by-path/pci-0000:07:00.0-card"),
        ("../renderD128", "/dev/dri/by-path/pci-0000:07:00.0-render"),
    ]


def test_compat32_libraries_through_the_cache(tmp_path: Path) -> None:
    """32-bit driver libraries are found by the cache's architecture flags."""
    root = tmp_path / "r"
    for folder in ("usr/lib64", "usr/lib32"):
        (root / folder).mkdir(parents=True)
    (root / "usr/lib64/libcuda.so.550.1.1").write_bytes(b"")
    (root / "usr/lib64/libcuda.so.1").symlink_to("libcuda.so.550.1.1")
    (root / "usr/lib32/libcuda.so.550.1.1").write_bytes(b"")
    (root / "usr/lib32/libcuda.so.1").symlink_to("libcuda.so.550.1.1")
    entries = [
        (0x0303, "libcuda.so.1", "/usr/lib64/libcuda.so.1"),
        (0x0003, "libcuda.so.1", "/usr/lib32/libcuda.so.1"),
    ]
    (root / "etc").mkdir()
    (root / "etc" / "ld.so.cache").write_bytes(_old_cache(entries, with_new=True))
    driver = Driver(str(root), arch="x86_64")
    assert [f.path for f in driver.libraries(["compute"])] == ["/usr/lib64/libcuda.so.550.1.1"]
    compat = [(f.path, f.capability) for f in driver.libraries(["compat32"])]
    assert compat == [("/usr/lib32/libcuda.so.550.1.1", "compat32")]
