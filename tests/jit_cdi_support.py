"""A host inventory written by hand, for jit-cdi tests that need no NVML.

The inventory is put in the cache through :func:`nvshim.inventory.load_inventory`
with a ``builder`` (its public parameter), keyed on a temp driver root, so a
create through the real code path finds it as a cache hit.  Shaped like
NVIDIA's ``dgxa100`` mock: 8 GPUs, GPUs 1 and 2 in MIG mode with two MIG
devices each.  The tests on the simulated GPU host (fake NVML) cover the
builder itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nvshim.inventory import GpuInfo, HostInventory, InventoryResult, MigInfo, load_inventory

DRIVER_VERSION = "550.54.15"
CUDA_VERSION = "12.4"
NVIDIA_MAJOR = 195

LIBS = {
    # container path: capabilities
    "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15": ("compute",),
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15": ("utility",),
    "/usr/lib/x86_64-linux-gnu/libnvcuvid.so.550.54.15": ("video",),
    "/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.550.54.15": ("graphics",),
    "/usr/bin/nvidia-smi": ("utility",),
}


def gpu_uuid(index: int) -> str:
    return f"GPU-{index:08x}-1111-2222-3333-444444444444"


def mig_uuid(index: int, mig: int) -> str:
    return f"MIG-{index:08x}-{mig:04x}-2222-3333-444444444444"


def _node(path: str, minor: int) -> dict[str, Any]:
    return {"path": path, "type": "c", "major": NVIDIA_MAJOR, "minor": minor}


def make_inventory(driver_root: str, count: int = 8) -> HostInventory:
    """The inventory of an 8-GPU host, its CDI spec as ``cdi generate`` shapes it."""
    gpus = []
    devices: list[dict[str, Any]] = []
    for i in range(count):
        migs = tuple(MigInfo(m, mig_uuid(i, m), m + 1, 0) for m in range(2)) if i in (1, 2) else ()
        gpus.append(
            GpuInfo(
                i,
                i,
                gpu_uuid(i),
                f"0000:{i:02x}:00.0",
                "NVIDIA A100-SXM4-40GB",
                "8.0",
                "nvidia",
                bool(migs),
                migs,
            )
        )
        edits = {"deviceNodes": [_node(f"/dev/nvidia{i}", i)]}
        devices += [
            {"name": str(i), "containerEdits": edits},
            {"name": gpu_uuid(i), "containerEdits": edits},
        ]
        for m in migs:
            mig_edits = {
                "deviceNodes": [
                    _node(f"/dev/nvidia{i}", i),
                    _node(
                        f"/dev/nvidia-caps/nvidia-cap{100 + 10 * i + m.index}",
                        100 + 10 * i + m.index,
                    ),
                ]
            }
            devices += [
                {"name": f"{i}:{m.index}", "containerEdits": mig_edits},
                {"name": m.uuid, "containerEdits": mig_edits},
            ]
    devices.append(
        {
            "name": "all",
            "containerEdits": {"deviceNodes": [_node(f"/dev/nvidia{i}", i) for i in range(count)]},
        }
    )
    hook = "/usr/bin/nvshim-ctl"
    spec = {
        "cdiVersion": "0.5.0",
        "kind": "runtime.nvidia.com/gpu",
        "devices": devices,
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [_node("/dev/nvidiactl", 255)],
            "mounts": [
                {
                    "hostPath": driver_root.rstrip("/") + p,
                    "containerPath": p,
                    "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"],
                }
                for p in LIBS
            ],
            "hooks": [
                {
                    "hookName": "createContainer",
                    "path": hook,
                    "args": [
                        "nvshim-ctl",
                        "hook",
                        "create-symlinks",
                        "--link",
                        "libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so",
                        "--link",
                        "libnvcuvid.so.1::/usr/lib/x86_64-linux-gnu/libnvcuvid.so",
                    ],
                    "env": ["PATH=/usr/bin:/bin"],
                },
                {
                    "hookName": "createContainer",
                    "path": hook,
                    "args": [
                        "nvshim-ctl",
                        "hook",
                        "update-ldcache",
                        "--folder",
                        "/usr/lib/x86_64-linux-gnu",
                    ],
                    "env": ["PATH=/usr/bin:/bin"],
                },
            ],
        },
    }
    return HostInventory(
        driver_root, driver_root, DRIVER_VERSION, CUDA_VERSION, tuple(gpus), spec, dict(LIBS)
    )


def seed_inventory(driver_root: Path, cache_dir: Path, count: int = 8) -> InventoryResult:
    """Put the hand-made inventory for ``driver_root`` in ``cache_dir``; return what was stored."""
    driver_root.mkdir(parents=True, exist_ok=True)
    environ = {"NVSHIM_CACHE_DIR": str(cache_dir)}

    def builder(root: str, _dev_root: str) -> tuple[HostInventory, str | None]:
        return make_inventory(root, count), None

    return load_inventory(str(driver_root), refresh=True, environ=environ, builder=builder)
