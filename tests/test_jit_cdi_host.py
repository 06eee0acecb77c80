"""jit-cdi on the simulated GPU host: fake NVML, fake driver root, nodes made with mknod.

The host (tests/host_support.py) is NVIDIA's dgxa100 mock: 8 GPUs, GPUs 2
and 5 in MIG mode with two MIG devices each.  Everything goes through the
real code: the inventory is built by asking the fake ``libnvidia-ml.so.1``
through pynvml, cached in a temp ``NVSHIM_CACHE_DIR``, and read by creates.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import host_support
import pytest
import runc_support
from schema_support import cdi_schema_errors

from nvshim.inventory import HostInventory

pytest_plugins = ["nvshim.testing"]

MIG_5_1 = "MIG-2b3c4d5e-0000-4000-8000-000000000505"
GPU_3 = "GPU-5a7d5e2a-0b1c-4a53-9d64-3a2f1e0c0003"
GATED_NODES = (
    "nvidia-fs0",
    "infiniband/uverbs0",
    "gdrdrv",
    "nvidia-nvswitch0",
    "nvidia-caps-imex-channels/channel0",
    "nvidia-caps-imex-channels/channel1",
)


def build_host(root: Path) -> host_support.SimulatedHost:
    pytest.importorskip("pynvml", reason="the nvml extra (nvidia-ml-py) is not installed")
    host = host_support.build_simulated_host(root)
    for name in GATED_NODES:
        host_support.mknod(root / "dev" / name)
    return host


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> host_support.SimulatedHost:
    return build_host(tmp_path_factory.mktemp("sim") / "root")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NVSHIM_CACHE_DIR", str(folder))
    return folder


def _config(root: Path, mode: str = "auto", extra: str = "") -> str:
    return (
        f'[nvidia-container-runtime]\nmode = "{mode}"\n'
        f'[nvidia-container-cli]\nroot = "{root}"\n{extra}'
    )


class Refused(Exception):
    """``nvshim create`` refused the container; ``line`` is what it printed."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def _nodes(config: dict[str, Any]) -> list[str]:
    return [d["path"] for d in config.get("linux", {}).get("devices", [])]


def _host_sources(config: dict[str, Any]) -> list[str]:
    return [m.get("source", "") for m in config.get("mounts", [])]


def _bundle(folder: Path, env: list[str]) -> Path:
    """A bundle folder whose config.json is a minimal spec with ``env`` added."""
    from nvshim.testing import minimal_spec_dict

    spec = minimal_spec_dict()
    spec["process"]["env"] = [*spec["process"].get("env", []), *env]
    folder.mkdir(parents=True)
    (folder / "rootfs").mkdir()
    (folder / "config.json").write_text(json.dumps(spec))
    return folder


def _nvshim_create(nvshim: str, bundle: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nvshim, "create", "--bundle", str(bundle), "ctr"],
        env={**os.environ, "NVSHIM_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


Create = Callable[..., dict[str, Any]]


@pytest.fixture
def create(sim: host_support.SimulatedHost, cache: Path, tmp_path: Path, nvshim_exe: str) -> Create:
    """``create(env, mode="auto", extra="")``: config.json after ``nvshim create``.

    Through the ``nvshim`` executable: NVML is loaded once per process, and
    the suite's other tests load another simulated host's library in theirs.
    """
    count = [0]

    def run(env: dict[str, str], mode: str = "auto", extra: str = "") -> dict[str, Any]:
        count[0] += 1
        folder = tmp_path / f"create-{count[0]}"
        folder.mkdir()
        config = folder / "config.toml"
        config.write_text(
            _config(sim.root, mode, extra).replace(
                'mode = "', 'runtimes = ["/bin/true"]\nmode = "', 1
            )
        )
        bundle = _bundle(folder / "bundle", [f"{k}={v}" for k, v in env.items()])
        proc = _nvshim_create(nvshim_exe, bundle, config)
        if proc.returncode != 0:
            raise Refused(proc.stderr.strip())
        result: dict[str, Any] = json.loads((bundle / "config.json").read_text())
        return result

    return run


def _inventory(nvshim_ctl: str, root: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [nvshim_ctl, "cdi", "inventory", "--driver-root", str(root), "--json", *args],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


CONTROL = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]


def test_inventory_from_the_fake_nvml(
    sim: host_support.SimulatedHost, cache: Path, nvshim_ctl: str
) -> None:
    result = _inventory(nvshim_ctl, sim.root)
    assert not result["cached"]
    inv = HostInventory.from_json(result["inventory"])
    assert inv.driver_version == "550.54.15"
    assert inv.cuda_version == "12.4"
    assert [g.uuid for g in inv.gpus] == [g["uuid"] for g in sim.gpus()]
    assert [g.index for g in inv.gpus if g.mig_enabled] == [2, 5]
    assert [m.uuid for m in inv.gpus[5].migs][1] == MIG_5_1
    assert {g.compute_capability for g in inv.gpus} == {"8.0"}
    assert {g.brand for g in inv.gpus} == {"tesla"}
    assert inv.capabilities[f"{host_support.LIB_DIR}/libcuda.so.550.54.15"] == ("compute",)
    assert cdi_schema_errors(inv.spec) == []
    assert _inventory(nvshim_ctl, sim.root)["cached"]


def test_inventory_command(sim: host_support.SimulatedHost, cache: Path, nvshim_ctl: str) -> None:
    def run(*args: str) -> dict[str, Any]:
        return _inventory(nvshim_ctl, sim.root, *args)

    first = run()
    assert first["cached"] is False
    assert len(first["inventory"]["gpus"]) == 8
    assert run()["cached"] is True
    refreshed = run("--refresh")
    assert refreshed["cached"] is False
    assert refreshed["reason"] == "refresh asked for"
    proc = subprocess.run(
        [nvshim_ctl, "cdi", "inventory", "--driver-root", str(sim.root)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    assert "source: cache" in proc.stdout
    assert f"  5:1: {MIG_5_1} (gi 5, ci 1)" in proc.stdout


def test_inventory_command_without_a_driver(tmp_path: Path, cache: Path, nvshim_ctl: str) -> None:
    proc = subprocess.run(
        [nvshim_ctl, "cdi", "inventory", "--driver-root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("nvshim-ctl: cannot build the host inventory:")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", ["/dev/nvidia0", "/dev/dri/card1", "/dev/dri/renderD128"]),
        ("3", ["/dev/nvidia3"]),
        (GPU_3, ["/dev/nvidia3"]),
        ("runtime.nvidia.com/gpu=7", ["/dev/nvidia7"]),
        ("2:0", ["/dev/nvidia2"]),
        (MIG_5_1, ["/dev/nvidia5"]),
        ("all", None),
    ],
)
def test_request_forms(
    sim: host_support.SimulatedHost,
    create: Create,
    value: str,
    expected: list[str] | None,
) -> None:
    result = create({"NVIDIA_VISIBLE_DEVICES": value})
    nodes = _nodes(result)
    assert nodes[:4] == CONTROL
    if expected is None:
        assert {f"/dev/nvidia{i}" for i in range(8)} <= set(nodes)
    else:
        assert nodes[4 : 4 + len(expected)] == expected
    if ":" in value or value.startswith("MIG-"):
        caps = [n for n in nodes if n.startswith("/dev/nvidia-caps/")]
        assert len(caps) >= 2, nodes  # the GPU instance's and compute instance's access nodes
    assert "NVIDIA_VISIBLE_DEVICES=void" in result["process"]["env"]
    assert str(sim.lib_dir / "libcuda.so.550.54.15") in _host_sources(result)


def test_none(sim: host_support.SimulatedHost, create: Create) -> None:
    result = create({"NVIDIA_VISIBLE_DEVICES": "none"})
    assert _nodes(result) == CONTROL
    assert str(sim.lib_dir / "libcuda.so.550.54.15") in _host_sources(result)


def test_unknown_id(sim: host_support.SimulatedHost, create: Create) -> None:
    with pytest.raises(Refused) as info:
        create({"NVIDIA_VISIBLE_DEVICES": "8"})
    assert "unknown GPU '8'" in info.value.line
    assert f"3 ({GPU_3})" in info.value.line
    assert f"5:1 ({MIG_5_1})" in info.value.line


def test_capability_filter(sim: host_support.SimulatedHost, create: Create) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "0", "NVIDIA_DRIVER_CAPABILITIES": "video"}
    sources = _host_sources(create(env))
    assert str(sim.lib_dir / "libnvcuvid.so.550.54.15") in sources
    assert str(sim.lib_dir / "libcuda.so.550.54.15") not in sources
    env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    sources = _host_sources(create(env))
    assert str(sim.lib_dir / "libnvcuvid.so.550.54.15") not in sources
    assert str(sim.lib_dir / "libcuda.so.550.54.15") in sources


@pytest.mark.parametrize(
    ("variable", "value", "node"),
    [
        ("NVIDIA_GDS", "enabled", "/dev/nvidia-fs0"),
        ("NVIDIA_MOFED", "enabled", "/dev/infiniband/uverbs0"),
        ("NVIDIA_GDRCOPY", "enabled", "/dev/gdrdrv"),
        ("NVIDIA_NVSWITCH", "enabled", "/dev/nvidia-nvswitch0"),
        ("NVIDIA_IMEX_CHANNELS", "1", "/dev/nvidia-caps-imex-channels/channel1"),
        ("NVIDIA_IMEX_CHANNELS", "all", "/dev/nvidia-caps-imex-channels/channel0"),
    ],
)
def test_gated_devices_only_with_gpus(
    sim: host_support.SimulatedHost,
    create: Create,
    variable: str,
    value: str,
    node: str,
) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "0", variable: value}
    assert node in _nodes(create(env))
    env["NVIDIA_VISIBLE_DEVICES"] = "none"
    assert node not in _nodes(create(env))
    env = {"NVIDIA_VISIBLE_DEVICES": "0", variable: "disabled" if value == "enabled" else "none"}
    assert node not in _nodes(create(env))


def test_unknown_imex_channel(sim: host_support.SimulatedHost, create: Create) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "0", "NVIDIA_IMEX_CHANNELS": "7"}
    with pytest.raises(Refused, match="unknown IMEX channel 7; this host has: 0, 1"):
        create(env)


def test_requirements_use_the_host(sim: host_support.SimulatedHost, create: Create) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "1", "NVIDIA_REQUIRE_CUDA": "cuda>=12.4 brand=tesla"}
    assert "/dev/nvidia1" in _nodes(create(env))
    env["NVIDIA_REQUIRE_CUDA"] = "cuda>=12.5"
    with pytest.raises(Refused, match=r"cuda>=12\.5"):
        create(env)


def test_same_config_as_cdi_mode_with_a_generated_file(
    sim: host_support.SimulatedHost,
    cache: Path,
    tmp_path: Path,
    nvshim_ctl: str,
    nvshim_exe: str,
) -> None:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    host_support.generate_spec_file(nvshim_ctl, sim.root, spec_dir / "nvidia.json")
    results = {}
    for mode in ("jit-cdi", "cdi"):
        config = tmp_path / f"{mode}.toml"
        config.write_text(
            _config(
                sim.root,
                mode,
                f'[nvidia-container-runtime.modes.cdi]\nspec-dirs = ["{spec_dir}"]\n',
            ).replace('mode = "', 'runtimes = ["/bin/true"]\nmode = "')
        )
        for request in ("0", "all", "2:1", MIG_5_1):
            bundle = _bundle(
                tmp_path / f"{mode}-{request}",
                [f"NVIDIA_VISIBLE_DEVICES={request}", "NVIDIA_DRIVER_CAPABILITIES=all"],
            )
            proc = _nvshim_create(nvshim_exe, bundle, config)
            assert proc.returncode == 0, proc.stderr
            results[mode, request] = json.loads((bundle / "config.json").read_text())
    for request in ("0", "all", "2:1", MIG_5_1):
        assert results["jit-cdi", request] == results["cdi", request], request
        assert results["cdi", request]["linux"]["devices"]


@pytest.fixture
def fresh(tmp_path: Path, cache: Path) -> host_support.SimulatedHost:
    return build_host(tmp_path / "root")


class Creator:
    """Creates through the ``nvshim`` executable: NVML is loaded once per process,
    and a second simulated host's library must live in processes of its own."""

    def __init__(
        self, host: host_support.SimulatedHost, folder: Path, nvshim: str, ctl: str
    ) -> None:
        self.host = host
        self.folder = folder
        self.nvshim = nvshim
        self.ctl = ctl
        self.config = folder / "config.toml"
        self.config.write_text(
            _config(host.root).replace('mode = "', 'runtimes = ["/bin/true"]\nmode = "')
        )
        self.count = 0

    def create(self, env: dict[str, str]) -> tuple[int, Any]:
        self.count += 1
        bundle = _bundle(self.folder / f"bundle-{self.count}", [f"{k}={v}" for k, v in env.items()])
        proc = _nvshim_create(self.nvshim, bundle, self.config)
        if proc.returncode != 0:
            return proc.returncode, proc.stderr
        return 0, json.loads((bundle / "config.json").read_text())

    def inventory_cached(self) -> bool:
        proc = subprocess.run(
            [
                self.ctl,
                "cdi",
                "inventory",
                "--json",
                "--driver-root",
                str(self.host.root),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ.copy(),
        )
        cached: bool = json.loads(proc.stdout)["cached"]
        return cached


def _spec_nodes(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return []
    return [d["path"] for d in config.get("linux", {}).get("devices", [])]


def _spec_sources(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return []
    return [m.get("source", "") for m in config.get("mounts", [])]


def _bump(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def _add_gpu(host: host_support.SimulatedHost) -> None:
    gpus = host.inventory["gpus"]
    gpus.append(
        {
            **gpus[0],
            "index": 8,
            "minor": 8,
            "uuid": "GPU-5a7d5e2a-0b1c-4a53-9d64-3a2f1e0c0008",
            "pci_bus_id": "00000000:C0:00.0",
        }
    )
    host_support.write_inventory(host.inventory, host.lib_dir / "fakenvml-inventory.txt")
    host_support.mknod(host.root / "dev" / "nvidia8")


def _mig_reconfigure(host: host_support.SimulatedHost) -> None:
    gpu = host.inventory["gpus"][3]
    gpu["mig"] = [
        {
            "gpu_instance": 1,
            "compute_instance": 0,
            "uuid": "MIG-2b3c4d5e-0000-4000-8000-000000000301",
        }
    ]
    host_support.write_inventory(host.inventory, host.lib_dir / "fakenvml-inventory.txt")
    (host.root / "proc/driver/nvidia/capabilities/gpu3/mig/gi1/ci0").mkdir(parents=True)


def _driver_reload(host: host_support.SimulatedHost) -> None:
    # Same files, another kernel module: only /proc/driver/nvidia/version tells.
    host.inventory["driver_version"] = "550.54.15"
    text = host_support.write_inventory
    text(host.inventory, host.lib_dir / "fakenvml-inventory.txt")
    inv = host.lib_dir / "fakenvml-inventory.txt"
    inv.write_text(inv.read_text() + "cuda 12080\n")
    version = host.root / "proc/driver/nvidia/version"
    version.parent.mkdir(parents=True, exist_ok=True)
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15 (reloaded)\n")


def _reboot(host: host_support.SimulatedHost) -> None:
    # GPU indices may change at boot; the boot id says a boot happened.
    gpus = host.inventory["gpus"]
    gpus[0]["uuid"], gpus[1]["uuid"] = gpus[1]["uuid"], gpus[0]["uuid"]
    host_support.write_inventory(host.inventory, host.lib_dir / "fakenvml-inventory.txt")
    boot = host.root / "proc/sys/kernel/random/boot_id"
    boot.parent.mkdir(parents=True, exist_ok=True)
    boot.write_text("2b9c1a4e-boot-two\n")


def _driver_upgrade(host: host_support.SimulatedHost) -> None:
    lib = host.lib_dir / "libcuda.so.550.54.15"
    lib.rename(host.lib_dir / "libcuda.so.560.28.03")
    link = host.lib_dir / "libcuda.so.1"
    link.unlink()
    link.symlink_to("libcuda.so.560.28.03")
    ldconfig = next(p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK))
    subprocess.run([ldconfig, "-r", str(host.root)], check=True, capture_output=True, env={})


SCENARIOS = {
    # scenario: (before, (request, check on the result), key that tells)
    "new GPU node": (
        {},
        _add_gpu,
        {"NVIDIA_VISIBLE_DEVICES": "8"},
        lambda r: "/dev/nvidia8" in _spec_nodes(r),
    ),
    "MIG reconfigured": (
        {"mig_capabilities": True},
        _mig_reconfigure,
        {"NVIDIA_VISIBLE_DEVICES": "3:0"},
        lambda r: "/dev/nvidia3" in _spec_nodes(r),
    ),
    "driver reloaded": (
        {"proc_version": True},
        _driver_reload,
        {"NVIDIA_VISIBLE_DEVICES": "0", "NVIDIA_REQUIRE_CUDA": "cuda>=12.8"},
        lambda r: "/dev/nvidia0" in _spec_nodes(r),
    ),
    "rebooted": (
        {"boot_id": True},
        _reboot,
        {"NVIDIA_VISIBLE_DEVICES": "GPU-5a7d5e2a-0b1c-4a53-9d64-3a2f1e0c0000"},
        lambda r: "/dev/nvidia1" in _spec_nodes(r),
    ),
    "driver upgraded": (
        {},
        _driver_upgrade,
        {"NVIDIA_VISIBLE_DEVICES": "0"},
        lambda r: any(s.endswith("libcuda.so.560.28.03") for s in _spec_sources(r)),
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_next_create_sees_the_change(
    fresh: host_support.SimulatedHost,
    tmp_path: Path,
    nvshim_exe: str,
    nvshim_ctl: str,
    scenario: str,
) -> None:
    before, change, env, seen = SCENARIOS[scenario]
    # Files the change edits must exist before the inventory is first built.
    if "proc_version" in before:
        path = fresh.root / "proc/driver/nvidia/version"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    if "boot_id" in before:
        path = fresh.root / "proc/sys/kernel/random/boot_id"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("2b9c1a4e-boot-one\n")
    creator = Creator(fresh, tmp_path, nvshim_exe, nvshim_ctl)
    _rc, outcome = creator.create(env)  # builds and caches the inventory
    assert not seen(outcome), "the request is already served before the change"
    assert creator.inventory_cached()
    change(fresh)
    rc, result = creator.create(env)
    assert rc == 0, result
    assert seen(result), scenario
    assert creator.inventory_cached()  # the create rebuilt and cached it


# ------------------------------------------------------------- real runc


@pytest.mark.root
@pytest.mark.runc
def test_non_root_user_opens_its_node(
    sim: host_support.SimulatedHost, cache: Path, tmp_path: Path, nvshim_exe: str
) -> None:
    runc_support.require_working_runtime(["runc"])
    check = (
        "id -u; stat -c 'owner=%u:%g' /dev/nvidia1;"
        " echo data > /dev/nvidia1 && echo opened;"
        " ls /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15 && echo lib;"
        " echo NVD=$NVIDIA_VISIBLE_DEVICES"
    )
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ("sh", "-c", check),
        env=["PATH=/bin:/usr/bin", "NVIDIA_VISIBLE_DEVICES=1"],
        extra={"process": {"user": {"uid": 1000, "gid": 1000}}},
    )
    config = tmp_path / "config.toml"
    config.write_text(_config(sim.root, "auto"))
    result = runc_support.run_container(
        [nvshim_exe],
        bundle,
        env={"NVSHIM_CONFIG": str(config), "NVSHIM_CACHE_DIR": str(cache)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "1000"
    assert "owner=1000:1000" in result.stdout
    assert "opened" in result.stdout
    assert "lib" in lines
    assert "NVD=void" in result.stdout


def test_disabled_hooks_include_the_gpus_own(create: Create) -> None:
    # GPU 0 has DRM by-path links: its device edits hold a create-symlinks hook.
    hooks = create({"NVIDIA_VISIBLE_DEVICES": "0"})["hooks"]["createContainer"]
    assert len([h for h in hooks if "create-symlinks" in h["args"]]) >= 1
    extra = '[nvidia-container-runtime.modes.jit-cdi]\nnvcdi-disable-hooks = ["all"]\n'
    config = create({"NVIDIA_VISIBLE_DEVICES": "0"}, extra=extra)
    assert not (config.get("hooks") or {}).get("createContainer")
    assert "/dev/nvidia0" in _nodes(config)
