"""``nvshim-ctl cdi generate`` on NVIDIA's reference roots and on the simulated GPU host.

Every spec is produced by the installed command (a subprocess, as an admin
runs it), then checked field by field, against CDI's JSON schema, and by
nvshim's own CDI reader and ``nvshim-ctl cdi validate``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import host_support
import pytest
import yaml
from host_support import device, hook_args, names, node_paths
from nvshim_cdi._spec import read_spec_file
from schema_support import cdi_schema_errors

from nvshim.host.cdi import HOOK_ENV, MOUNT_OPTIONS, minimum_version

simulated_host = host_support.simulated_host

HOOK = "/usr/local/bin/nvshim-ctl"


class Generated:
    """One run of the command: exit status, stderr and the spec it wrote."""

    def __init__(self, result: subprocess.CompletedProcess[str], output: Path | None) -> None:
        self.rc = result.returncode
        self.stderr = result.stderr
        text = output.read_text() if output is not None and output.exists() else result.stdout
        self.text = text
        self.spec: dict[str, Any] = yaml.safe_load(text) if self.rc == 0 and text else {}


def run_generate(ctl: str, *args: str, output: Path | None = None) -> Generated:
    argv = [ctl, "cdi", "generate", *args]
    if output is not None:
        argv += ["--output", str(output)]
    if not any(
        a.startswith(("--nvidia-cdi-hook-path", "--hook-path", "--nvidia-ctk-path")) for a in args
    ):
        argv += ["--nvidia-cdi-hook-path", HOOK]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    return Generated(result, output)


def check_valid(ctl: str, gen: Generated, tmp_path: Path) -> dict[str, Any]:
    """The spec passes CDI's schema, nvshim's reader and ``cdi validate``; returns it."""
    assert gen.rc == 0, gen.stderr
    spec = gen.spec
    assert cdi_schema_errors(spec) == []
    assert spec["cdiVersion"] == minimum_version(spec)
    path = tmp_path / f"check-{len(list(tmp_path.glob('check-*')))}.json"
    path.write_text(json.dumps(spec))
    parsed = read_spec_file(str(path))
    assert [d.name for d in parsed.devices] == names(spec)
    validate = subprocess.run([ctl, "cdi", "validate", str(path)], capture_output=True, text=True)
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith(f"ok: {path} (cdiVersion {spec['cdiVersion']}")
    return spec


def check_mounts(spec: dict[str, Any], driver_root: Path, expected: list[str]) -> None:
    mounts = spec["containerEdits"]["mounts"]
    assert [m["containerPath"] for m in mounts] == expected
    for mount in mounts:
        assert mount["hostPath"] == f"{driver_root}{mount['containerPath']}"
        assert mount["options"] == list(MOUNT_OPTIONS)
        assert "type" not in mount


def check_hooks(spec: dict[str, Any], hook_path: str = HOOK) -> None:
    for hook in spec["containerEdits"]["hooks"]:
        assert hook["hookName"] == "createContainer"
        assert hook["path"] == hook_path
        assert hook["env"] == list(HOOK_ENV)
        assert hook["args"][:2] == [os.path.basename(hook_path), "hook"]


# --------------------------------------------------------------------------- reference roots


def test_management_mode_on_rootfs_1(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    gen = run_generate(
        nvshim_ctl, "--mode", "management", "--driver-root", str(root), "--format", "json"
    )
    spec = check_valid(nvshim_ctl, gen, tmp_path)
    assert spec["kind"] == "management.nvidia.com/gpu"
    assert spec["cdiVersion"] == "0.5.0"  # hostPath in device nodes
    assert names(spec) == ["all"]
    all_edits = device(spec, "all")["containerEdits"]
    # Every node in the one device; the common edits hold the driver only.
    assert node_paths(all_edits) == [
        "/dev/nvidiactl",
        "/dev/nvidia0",
        "/dev/nvidia-caps/nvidia-cap1",
    ]
    for node in all_edits["deviceNodes"]:
        assert node["hostPath"] == f"{root}{node['path']}"
    common = spec["containerEdits"]
    assert common["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    assert "deviceNodes" not in common
    check_mounts(
        spec,
        root,
        [
            "/lib/x86_64-linux-gnu/libcuda.so.999.88.77",
            "/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.999.88.77",
        ],
    )
    check_hooks(spec)
    assert hook_args(spec, "create-symlinks") == [
        "--link",
        "libcuda.so.1::/lib/x86_64-linux-gnu/libcuda.so",
    ]
    assert hook_args(spec, "enable-cuda-compat") == ["--host-driver-version=999.88.77"]
    assert hook_args(spec, "update-ldcache") == [
        "--folder",
        "/lib/x86_64-linux-gnu",
        "--folder",
        "/lib/x86_64-linux-gnu/vdpau",
    ]
    assert [h["args"][2] for h in common["hooks"]] == [
        "create-symlinks",
        "enable-cuda-compat",
        "update-ldcache",
    ]


@pytest.mark.parametrize(
    ("name", "folder"),
    [("rootfs-2", "/var/lib/nvidia/lib64"), ("rootfs-no-cache-lib64", "/usr/lib64")],
)
def test_management_mode_finds_the_libraries(
    nvshim_ctl: str, tmp_path: Path, name: str, folder: str
) -> None:
    """rootfs-2: only its ld.so.cache knows the folder; no-cache: the default folders."""
    root = host_support.copy_reference_root(name, tmp_path / "root")
    dev = host_support.copy_reference_root("rootfs-1", tmp_path / "dev")
    gen = run_generate(
        nvshim_ctl, "--mode", "management", "--driver-root", str(root), "--dev-root", str(dev)
    )
    spec = check_valid(nvshim_ctl, gen, tmp_path)
    check_mounts(spec, root, [f"{folder}/libcuda.so.999.88.77"])
    assert hook_args(spec, "update-ldcache") == ["--folder", folder]
    assert hook_args(spec, "create-symlinks") == ["--link", f"libcuda.so.1::{folder}/libcuda.so"]
    nodes = spec["devices"][0]["containerEdits"]["deviceNodes"]
    assert [n["hostPath"] for n in nodes] == [
        f"{dev}/dev/nvidiactl",
        f"{dev}/dev/nvidia0",
        f"{dev}/dev/nvidia-caps/nvidia-cap1",
    ]


def test_split_driver_and_dev_root(nvshim_ctl: str, tmp_path: Path) -> None:
    split = host_support.copy_reference_root("rootfs-split", tmp_path / "split")
    driver_root, dev_root = split / "driver-root", split / "dev-root"
    base = ["--driver-root", str(driver_root), "--dev-root", str(dev_root)]
    spec = check_valid(
        nvshim_ctl, run_generate(nvshim_ctl, "--mode", "management", *base), tmp_path
    )
    assert device(spec, "all")["containerEdits"]["deviceNodes"][0] == {
        "path": "/dev/nvidiactl",
        "hostPath": f"{dev_root}/dev/nvidiactl",
    }
    # In this root libcuda.so.1 is a regular (empty) file, not a link: it is mounted too.
    check_mounts(
        spec,
        driver_root,
        [
            "/lib/x86_64-linux-gnu/libcuda.so.1",
            "/lib/x86_64-linux-gnu/libcuda.so.999.88.77",
            "/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.999.88.77",
        ],
    )
    gds = check_valid(nvshim_ctl, run_generate(nvshim_ctl, "--mode", "gds", *base), tmp_path)
    edits = device(gds, "all")["containerEdits"]
    assert edits["deviceNodes"] == [
        {"path": "/dev/nvidia-fs0", "hostPath": f"{dev_root}/dev/nvidia-fs0"}
    ]
    assert [(m["hostPath"], m["containerPath"]) for m in edits["mounts"]] == [
        (f"{driver_root}/etc/cufile.json", "/etc/cufile.json"),
        (f"{driver_root}/run/udev", "/run/udev"),
    ]
    imex = check_valid(nvshim_ctl, run_generate(nvshim_ctl, "--mode", "imex", *base), tmp_path)
    assert names(imex) == ["0", "1", "2047", "all"]
    assert node_paths(device(imex, "2047")["containerEdits"]) == [
        "/dev/nvidia-caps-imex-channels/channel2047"
    ]


@pytest.mark.parametrize(
    ("mode", "kind", "nodes"),
    [
        ("gds", "nvidia.com/gds", ["/dev/nvidia-fs0"]),
        ("mofed", "nvidia.com/mofed", ["/dev/infiniband/uverbs0", "/dev/infiniband/rdma_cm"]),
        ("gdrcopy", "nvidia.com/gdrcopy", ["/dev/gdrdrv"]),
        ("nvswitch", "nvidia.com/nvswitch", ["/dev/nvidia-nvswitchctl", "/dev/nvidia-nvswitch0"]),
    ],
)
def test_gated_modes_on_rootfs_1(
    nvshim_ctl: str, tmp_path: Path, mode: str, kind: str, nodes: list[str]
) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    spec = check_valid(
        nvshim_ctl, run_generate(nvshim_ctl, "--mode", mode, "--driver-root", str(root)), tmp_path
    )
    assert spec["kind"] == kind
    assert names(spec) == ["all"]
    assert node_paths(device(spec, "all")["containerEdits"]) == nodes
    assert "containerEdits" not in spec  # no driver files, no hooks
    # --vendor/--class, when given, set the kind in every mode.
    custom = run_generate(
        nvshim_ctl,
        "--mode",
        mode,
        "--driver-root",
        str(root),
        "--vendor",
        "acme.com",
        "--class",
        "x",
    )
    assert check_valid(nvshim_ctl, custom, tmp_path)["kind"] == "acme.com/x"


def test_imex_device_ids(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    gen = run_generate(
        nvshim_ctl,
        "--mode",
        "imex",
        "--driver-root",
        str(root),
        "--device-id",
        "1",
        "--no-all-device",
    )
    spec = check_valid(nvshim_ctl, gen, tmp_path)
    assert spec["kind"] == "nvidia.com/imex-channel"
    assert names(spec) == ["1"]
    bad = run_generate(nvshim_ctl, "--mode", "imex", "--driver-root", str(root), "--device-id", "7")
    assert bad.rc == 1
    assert bad.stderr == "nvshim-ctl: --device-id 7: no such IMEX channel\n"


def test_nvswitch_root(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-with-nvswitch", tmp_path / "root")
    spec = check_valid(
        nvshim_ctl,
        run_generate(nvshim_ctl, "--mode", "nvswitch", "--driver-root", str(root)),
        tmp_path,
    )
    assert node_paths(device(spec, "all")["containerEdits"]) == [
        "/dev/nvidia-nvswitchctl",
        "/dev/nvidia-nvswitch0",
        "/dev/nvidia-nvswitch1",
    ]


@pytest.mark.parametrize(
    ("name", "nodes", "libraries"),
    [
        (
            "rootfs-orin",
            ["/dev/nvidia0"],
            [
                "/usr/lib/aarch64-linux-gnu/nvidia/libcuda.so.1.1",
                "/usr/lib/aarch64-linux-gnu/nvidia/libnvidia-ml.so.1",
            ],
        ),
        (
            "rootfs-thor-dgpu",
            ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvmap"],
            [
                "/usr/lib/aarch64-linux-gnu/nvidia/libcuda.so.1.1",
                "/usr/lib/aarch64-linux-gnu/nvidia/libnvidia-ml.so.1",
            ],
        ),
        ("csv-mode", ["/dev/nvidia0"], []),
    ],
)
def test_csv_mode_on_jetson_roots(
    nvshim_ctl: str, tmp_path: Path, name: str, nodes: list[str], libraries: list[str]
) -> None:
    root = host_support.copy_reference_root(name, tmp_path / "root")
    gen = run_generate(nvshim_ctl, "--mode", "csv", "--driver-root", str(root))
    spec = check_valid(nvshim_ctl, gen, tmp_path)
    assert spec["kind"] == "nvidia.com/gpu"
    assert names(spec) == ["0", "all"]  # uuid needs NVML: csv mode names by index only
    assert node_paths(device(spec, "0")["containerEdits"]) == nodes
    assert device(spec, "all")["containerEdits"] == device(spec, "0")["containerEdits"]
    common = spec["containerEdits"]
    assert common["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    assert [m["containerPath"] for m in common.get("mounts", [])] == libraries
    if libraries:
        assert hook_args(spec, "update-ldcache") == [
            "--folder",
            "/usr/lib/aarch64-linux-gnu/nvidia",
        ]
        check_hooks(spec)


def test_csv_file_option(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-thor-dgpu", tmp_path / "root")
    csv = tmp_path / "only.csv"
    csv.write_text("dev, /dev/nvmap\n")
    gen = run_generate(
        nvshim_ctl, "--mode", "csv", "--driver-root", str(root), "--csv.file", str(csv)
    )
    spec = check_valid(nvshim_ctl, gen, tmp_path)
    assert node_paths(device(spec, "0")["containerEdits"]) == ["/dev/nvmap"]
    missing = run_generate(
        nvshim_ctl,
        "--mode",
        "csv",
        "--driver-root",
        str(root),
        "--csv.file",
        str(tmp_path / "no.csv"),
    )
    assert missing.rc == 1
    assert missing.stderr == f"nvshim-ctl: --csv.file {tmp_path / 'no.csv'}: no such file\n"


def test_auto_mode_picks_csv_on_a_tegra_root_without_nvml(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-orin", tmp_path / "root")
    (root / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    spec = check_valid(nvshim_ctl, run_generate(nvshim_ctl, "--driver-root", str(root)), tmp_path)
    assert names(spec) == ["0", "all"]
    assert node_paths(device(spec, "0")["containerEdits"]) == ["/dev/nvidia0"]


@pytest.mark.parametrize(
    "mode", ["auto", "nvml", "management", "csv", "gds", "mofed", "gdrcopy", "nvswitch", "imex"]
)
def test_empty_root_is_one_line(nvshim_ctl: str, tmp_path: Path, mode: str) -> None:
    root = host_support.copy_reference_root("rootfs-empty", tmp_path / "root")
    out = tmp_path / "spec.yaml"
    gen = run_generate(nvshim_ctl, "--mode", mode, "--driver-root", str(root), output=out)
    assert gen.rc == 1
    assert gen.stderr.startswith("nvshim-ctl: ")
    assert gen.stderr.count("\n") == 1, gen.stderr
    assert not out.exists()


def test_nvml_mode_without_libnvidia_ml(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    gen = run_generate(nvshim_ctl, "--mode", "nvml", "--driver-root", str(root))
    assert gen.rc == 1
    assert gen.stderr == (
        f"nvshim-ctl: driver root {root}: libnvidia-ml.so.1 not found"
        " (is the NVIDIA driver installed?)\n"
    )


# --------------------------------------------------------------------------- output rules


def test_output_file_is_atomic_and_extension_picks_format(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    args = ["--mode", "gdrcopy", "--driver-root", str(root)]
    out_json = tmp_path / "cdi" / "nvidia.json"
    out_json.parent.mkdir()
    gen = run_generate(nvshim_ctl, *args, output=out_json)
    assert gen.rc == 0, gen.stderr
    assert json.loads(out_json.read_text())["kind"] == "nvidia.com/gdrcopy"  # JSON, not YAML
    assert stat.S_IMODE(out_json.stat().st_mode) == 0o644
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["nvidia.json"]  # no temp left
    out_yaml = tmp_path / "cdi" / "nvidia.yaml"
    assert run_generate(nvshim_ctl, *args, output=out_yaml).rc == 0
    text = out_yaml.read_text()
    assert text.startswith("---\ncdiVersion: 0.5.0\nkind: nvidia.com/gdrcopy\n")
    assert "&id" not in text  # no YAML anchors
    clash = run_generate(nvshim_ctl, *args, "--format", "yaml", output=tmp_path / "x.json")
    assert clash.rc == 1
    assert "does not match --format yaml" in clash.stderr
    stdout = run_generate(nvshim_ctl, *args, "--format", "json")
    assert json.loads(stdout.text)["kind"] == "nvidia.com/gdrcopy"


def test_disable_hook_and_hook_path_forms(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    args = ["--mode", "management", "--driver-root", str(root)]
    spec = run_generate(
        nvshim_ctl,
        *args,
        "--disable-hook",
        "enable-cuda-compat",
        "--disable-hook",
        "create-symlinks",
    ).spec
    assert [h["args"][2] for h in spec["containerEdits"]["hooks"]] == ["update-ldcache"]
    spec = run_generate(nvshim_ctl, *args, "--disable-hook", "all").spec
    assert "hooks" not in spec["containerEdits"]
    bad = run_generate(nvshim_ctl, *args, "--disable-hook", "chmod")
    assert bad.rc == 1
    assert "--disable-hook chmod: unknown" in bad.stderr
    # NVIDIA's nvidia-cdi-hook takes the hook name first, nvidia-ctk after "hook".
    for option in ("--nvidia-cdi-hook-path", "--nvidia-ctk-path", "--hook-path"):
        spec = run_generate(nvshim_ctl, *args, option, "/usr/bin/nvidia-cdi-hook").spec
        assert [h["args"][:2] for h in spec["containerEdits"]["hooks"]] == [
            ["nvidia-cdi-hook", "create-symlinks"],
            ["nvidia-cdi-hook", "enable-cuda-compat"],
            ["nvidia-cdi-hook", "update-ldcache"],
        ]
    spec = run_generate(nvshim_ctl, *args, "--hook-path", "/usr/bin/nvidia-ctk").spec
    assert spec["containerEdits"]["hooks"][0]["args"][:3] == [
        "nvidia-ctk",
        "hook",
        "create-symlinks",
    ]


def test_default_hook_path_is_the_installed_nvshim_ctl(nvshim_ctl: str, tmp_path: Path) -> None:
    root = host_support.copy_reference_root("rootfs-1", tmp_path / "root")
    result = subprocess.run(
        [nvshim_ctl, "cdi", "generate", "--mode", "management", "--driver-root", str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    hooks = yaml.safe_load(result.stdout)["containerEdits"]["hooks"]
    assert {h["path"] for h in hooks} == {nvshim_ctl}
    assert os.path.isabs(nvshim_ctl)


def test_minimum_version_rules() -> None:
    base: dict[str, Any] = {
        "kind": "nvidia.com/gpu",
        "devices": [{"name": "gpu0", "containerEdits": {}}],
    }
    assert minimum_version(base) == "0.3.0"
    with_type = {
        **base,
        "containerEdits": {"mounts": [{"hostPath": "/a", "containerPath": "/a", "type": "bind"}]},
    }
    assert minimum_version(with_type) == "0.4.0"
    assert minimum_version({**base, "devices": [{"name": "0", "containerEdits": {}}]}) == "0.5.0"
    host_path = {
        **base,
        "containerEdits": {"deviceNodes": [{"path": "/dev/x", "hostPath": "/h/dev/x"}]},
    }
    assert minimum_version(host_path) == "0.5.0"
    assert minimum_version({**base, "kind": "nvidia.com/imex.channel"}) == "0.6.0"


# --------------------------------------------------------------------------- the simulated GPU host


def nvml_generate(ctl: str, host: host_support.SimulatedHost, *args: str) -> Generated:
    pytest.importorskip("pynvml")
    return run_generate(ctl, "--mode", "nvml", "--driver-root", str(host.root), *args)


def test_nvml_mode_default_names(
    nvshim_ctl: str, simulated_host: host_support.SimulatedHost, tmp_path: Path
) -> None:
    host = simulated_host
    spec = check_valid(nvshim_ctl, nvml_generate(nvshim_ctl, host), tmp_path)
    assert spec["kind"] == "nvidia.com/gpu"
    expected = []
    for gpu in host.gpus():
        expected += [str(gpu["index"]), gpu["uuid"]]
        for slot, mig in enumerate(gpu.get("mig", [])):
            expected += [f"{gpu['index']}:{slot}", mig["uuid"]]
    assert names(spec) == [*expected, "all"]
    root = host.root
    # A full GPU: its node (and, for GPU 0, its DRM nodes found by PCI bus id).
    gpu0_hooks = device(spec, "0")["containerEdits"]["hooks"]
    assert [h["args"] for h in gpu0_hooks] == [
        [
            "nvshim-ctl",
            "hook",
            "create-symlinks",
            "--link",
            "../card1::/dev/dri/by-path/pci-0000:07:00.0-card",
            "--link",
            "../renderD128::/dev/dri/by-path/pci-0000:07:00.0-render",
        ]
    ]
    assert gpu0_hooks[0]["env"] == list(HOOK_ENV)
    assert "hooks" not in device(spec, "3")["containerEdits"]  # no DRM nodes for GPU 3
    gpu0 = device(spec, "0")["containerEdits"]["deviceNodes"]
    assert gpu0 == [
        {"path": "/dev/nvidia0", "hostPath": f"{root}/dev/nvidia0"},
        {"path": "/dev/dri/card1", "hostPath": f"{root}/dev/dri/card1"},
        {"path": "/dev/dri/renderD128", "hostPath": f"{root}/dev/dri/renderD128"},
    ]
    assert (
        device(spec, host.gpus()[0]["uuid"])["containerEdits"]
        == device(spec, "0")["containerEdits"]
    )
    assert node_paths(device(spec, "3")["containerEdits"]) == ["/dev/nvidia3"]
    # A MIG device: the parent's node and its GPU/compute instance caps.
    mig = host.gpus()[5]["mig"][1]
    gi_minor = host.minors[f"gpu5/gi{mig['gpu_instance']}/access"]
    ci_minor = host.minors[f"gpu5/gi{mig['gpu_instance']}/ci{mig['compute_instance']}/access"]
    assert node_paths(device(spec, "5:1")["containerEdits"]) == [
        "/dev/nvidia5",
        f"/dev/nvidia-caps/nvidia-cap{gi_minor}",
        f"/dev/nvidia-caps/nvidia-cap{ci_minor}",
    ]
    assert device(spec, mig["uuid"])["containerEdits"] == device(spec, "5:1")["containerEdits"]
    # all: every node of every device, once.
    all_nodes = node_paths(device(spec, "all")["containerEdits"])
    assert len(all_nodes) == len(set(all_nodes))
    assert {f"/dev/nvidia{i}" for i in range(8)} <= set(all_nodes)
    # Common edits: control nodes, driver files, env, hooks.
    common = spec["containerEdits"]
    assert node_paths(common) == [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-modeset",
    ]
    mounted = {m["containerPath"] for m in common["mounts"]}
    v = host.version
    lib = host_support.LIB_DIR
    assert {
        f"{lib}/libcuda.so.{v}",
        f"{lib}/libnvidia-ml.so.{v}",
        f"{lib}/vdpau/libvdpau_nvidia.so.{v}",
        "/usr/bin/nvidia-smi",
        f"/lib/firmware/nvidia/{v}/gsp_ga10x.bin",
        "/run/nvidia-persistenced/socket",
        "/etc/vulkan/icd.d/nvidia_icd.json",
    } <= mounted
    assert all(m["hostPath"] == f"{root}{m['containerPath']}" for m in common["mounts"])
    check_hooks(spec)
    assert hook_args(spec, "enable-cuda-compat") == [f"--host-driver-version={v}"]
    assert hook_args(spec, "update-ldcache") == ["--folder", lib, "--folder", f"{lib}/vdpau"]
    links = hook_args(spec, "create-symlinks")
    assert links is not None
    assert f"libcuda.so.1::{lib}/libcuda.so" in links
    assert f"libnvidia-ml.so.1::{lib}/libnvidia-ml.so" in links


@pytest.mark.parametrize(
    ("strategies", "gpu_name", "mig_name"),
    [
        (["index"], "2", "2:1"),
        (
            ["uuid"],
            "GPU-5a7d5e2a-0b1c-4a53-9d64-3a2f1e0c0002",
            "MIG-2b3c4d5e-0000-4000-8000-000000000202",
        ),
        (["type-index"], "gpu2", "mig2:1"),
    ],
)
def test_nvml_name_strategies(
    nvshim_ctl: str,
    simulated_host: host_support.SimulatedHost,
    tmp_path: Path,
    strategies: list[str],
    gpu_name: str,
    mig_name: str,
) -> None:
    args = [a for s in strategies for a in ("--device-name-strategy", s)]
    spec = check_valid(nvshim_ctl, nvml_generate(nvshim_ctl, simulated_host, *args), tmp_path)
    assert len(spec["devices"]) == 8 + 4 + 1
    assert node_paths(device(spec, gpu_name)["containerEdits"]) == ["/dev/nvidia2"]
    assert node_paths(device(spec, mig_name)["containerEdits"])[0] == "/dev/nvidia2"
    if strategies == ["type-index"]:
        # "gpu2" starts with a letter: nothing needs more than 0.5.0's hostPath.
        assert spec["cdiVersion"] == "0.5.0"


def test_nvml_device_id_subsets(
    nvshim_ctl: str, simulated_host: host_support.SimulatedHost, tmp_path: Path
) -> None:
    host = simulated_host
    uuid7 = host.gpus()[7]["uuid"]
    spec = check_valid(
        nvshim_ctl,
        nvml_generate(
            nvshim_ctl,
            host,
            "--device-id",
            "3",
            "--device-id",
            uuid7,
            "--device-id",
            "5:1",
            "--device-name-strategy",
            "index",
        ),
        tmp_path,
    )
    assert names(spec) == ["3", "5:1", "7", "all"]
    assert node_paths(device(spec, "all")["containerEdits"])[:1] == ["/dev/nvidia3"]
    no_all = nvml_generate(nvshim_ctl, host, "--device-id", "0", "--no-all-device")
    assert names(check_valid(nvshim_ctl, no_all, tmp_path)) == ["0", host.gpus()[0]["uuid"]]
    unknown = nvml_generate(nvshim_ctl, host, "--device-id", "9")
    assert unknown.rc == 1
    assert (
        unknown.stderr
        == "nvshim-ctl: --device-id 9: no such GPU or MIG device (by index or UUID)\n"
    )


def test_auto_mode_on_the_simulated_host(
    nvshim_ctl: str, simulated_host: host_support.SimulatedHost, tmp_path: Path
) -> None:
    pytest.importorskip("pynvml")
    gen = run_generate(nvshim_ctl, "--driver-root", str(simulated_host.root))
    spec = check_valid(nvshim_ctl, gen, tmp_path)
    assert "GPU-5a7d5e2a-0b1c-4a53-9d64-3a2f1e0c0000" in names(spec)  # nvml, not csv


def test_management_mode_on_the_simulated_host(
    nvshim_ctl: str, simulated_host: host_support.SimulatedHost, tmp_path: Path
) -> None:
    host = simulated_host
    gen = run_generate(nvshim_ctl, "--mode", "management", "--driver-root", str(host.root))
    spec = check_valid(nvshim_ctl, gen, tmp_path)
    nodes = node_paths(device(spec, "all")["containerEdits"])
    control = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    assert nodes[:12] == [*control, *(f"/dev/nvidia{i}" for i in range(8))]
    assert len(nodes) == 12 + len(set(host.minors.values()))


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [("orin.json", "csv"), ("dgxa100.json", "nvml")],
    ids=["integrated-gpu", "discrete-gpus"],
)
def test_auto_mode_on_a_tegra_host_with_nvml(
    nvshim_ctl: str, tmp_path: Path, inventory: str, expected: str
) -> None:
    """A Tegra root whose NVML works: csv when the only GPU is integrated, else nvml."""
    pytest.importorskip("pynvml")
    host = host_support.build_simulated_host(
        tmp_path / "root", host_support.TESTS / "fakenvml" / inventory
    )
    (host.root / "etc" / "nv_tegra_release").write_text("# R36 (release)\n")
    csv_dir = host.root / "etc" / "nvidia-container-runtime" / "host-files-for-container.d"
    csv_dir.mkdir(parents=True)
    (csv_dir / "devices.csv").write_text("dev, /dev/nvidia0\ndev, /dev/nvidiactl\n")
    spec = check_valid(
        nvshim_ctl, run_generate(nvshim_ctl, "--driver-root", str(host.root)), tmp_path
    )
    uuid = host.gpus()[0]["uuid"]
    if expected == "csv":
        assert names(spec) == ["0", "all"]
        assert node_paths(device(spec, "0")["containerEdits"]) == ["/dev/nvidia0", "/dev/nvidiactl"]
    else:
        assert uuid in names(spec)


def test_generate_options_are_nvidia_ctks() -> None:
    """The option names, aliases, defaults and repeatables the issue names, and no others."""
    import argparse

    from nvshim._ctl.main import build_parser

    parser = build_parser()
    cdi = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cdi_parser = cdi.choices["cdi"]
    sub = next(a for a in cdi_parser._actions if isinstance(a, argparse._SubParsersAction))
    gen = sub.choices["generate"]
    options = {
        tuple(a.option_strings): a for a in gen._actions if a.option_strings and a.dest != "help"
    }
    assert set(options) == {
        ("--mode",),
        ("--output",),
        ("--format",),
        ("--driver-root",),
        ("--dev-root",),
        ("--device-name-strategy",),
        ("--vendor",),
        ("--class",),
        ("--no-all-device",),
        ("--device-id",),
        ("--csv.file",),
        ("--library-search-path",),
        ("--disable-hook",),
        ("--nvidia-cdi-hook-path", "--nvidia-ctk-path", "--hook-path"),
    }
    repeatable = {k[0] for k, a in options.items() if isinstance(a, argparse._AppendAction)}
    assert repeatable == {
        "--device-name-strategy",
        "--device-id",
        "--csv.file",
        "--library-search-path",
        "--disable-hook",
    }
    assert options[("--mode",)].default == "auto"
    assert options[("--driver-root",)].default == "/"
    assert list(options[("--mode",)].choices or ()) == [
        "auto",
        "nvml",
        "csv",
        "management",
        "gds",
        "mofed",
        "gdrcopy",
        "nvswitch",
        "imex",
    ]
    ns = parser.parse_args(["cdi", "generate"])
    assert (ns.vendor, ns.device_class, ns.format, ns.output) == (None, None, None, "")
