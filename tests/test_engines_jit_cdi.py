"""jit-cdi under real engines, on the simulated GPU host, with nothing of NVIDIA's toolkit.

nvshim is configured in mode ``auto`` (which resolves to jit-cdi) with the
simulated host (fake NVML, fake driver root, nodes made with mknod) as its
driver root.  dockerd finds nvshim's own ``nvidia-container-runtime-hook``
stand-in on its PATH, so it accepts ``--gpus``; the docker-gpus-detector
removes the hook (the stand-in fails if run) and jit-cdi injects the devices.
Podman and ``ctr`` ask through ``NVIDIA_VISIBLE_DEVICES=0``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import engines_support as es
import host_support
import pytest
import script_support

pytestmark = [pytest.mark.engine, pytest.mark.root, pytest.mark.slow]

LIBCUDA = f"{host_support.LIB_DIR}/libcuda.so.550.54.15"
PROBE = (
    "for n in 0 1 2 3 4 5 6 7; do test -c /dev/nvidia$n && echo has-nvidia$n; done;"
    " test -c /dev/nvidiactl && echo has-nvidiactl;"
    f" test -f {LIBCUDA} && echo has-libcuda;"
    " echo NVD=$NVIDIA_VISIBLE_DEVICES"
)


def gpus_seen(output: str) -> list[int]:
    return [n for n in range(8) if f"has-nvidia{n}\n" in output]


def assert_driver(output: str) -> None:
    assert "has-nvidiactl" in output, output
    assert "has-libcuda" in output, output
    assert "NVD=void" in output, output


@pytest.fixture(scope="module")
def area() -> Iterator[es.Area]:
    es.skip_unless_root()
    pytest.importorskip("pynvml", reason="the nvml extra (nvidia-ml-py) is not installed")
    with es.area("nvshim-jit-") as made:
        yield made


@pytest.fixture(scope="module")
def nvshim() -> str:
    return es.find_nvshim()


@pytest.fixture(scope="module")
def env(area: es.Area) -> dict[str, str]:
    host = host_support.build_simulated_host(area.path / "gpu-host")
    config = area.sub("nvshim") / "config.toml"
    config.write_text(
        "[nvidia-container-runtime]\n"
        'runtimes = ["runc"]\n'
        'mode = "auto"\n'
        f'debug = "{area.path / "nvshim" / "debug.log"}"\n'
        'log-level = "debug"\n'
        "[nvidia-container-cli]\n"
        f'root = "{host.root}"\n'
    )
    return {"NVSHIM_CONFIG": str(config), "NVSHIM_CACHE_DIR": str(area.sub("cache"))}


@pytest.fixture(scope="module")
def rootfs(area: es.Area) -> Path:
    return es.make_rootfs(area.path / "rootfs")


@pytest.fixture(scope="module")
def containerd(area: es.Area, nvshim: str, env: dict[str, str]) -> es.Containerd:
    return es.Containerd(area, "containerd", nvshim, env)


@pytest.fixture(scope="module")
def dockerd(area: es.Area, containerd: es.Containerd, nvshim: str, rootfs: Path) -> es.Dockerd:
    # nvshim's stand-in, as the documented install puts it on dockerd's PATH.
    bin_dir = area.sub("standin-bin")
    standin = script_support.installed_script(es.NVIDIA_HOOK)
    (bin_dir / es.NVIDIA_HOOK).symlink_to(standin)
    daemon = es.Dockerd(area, containerd, nvshim, extra_path=bin_dir)
    daemon.import_rootfs(rootfs, "nvshim-busybox:jit")
    return daemon


@pytest.fixture(scope="module")
def podman(area: es.Area, nvshim: str, env: dict[str, str]) -> Iterator[es.Podman]:
    engine = es.Podman(area, nvshim, env)
    try:
        yield engine
    finally:
        engine.close()


@pytest.mark.parametrize(("gpus", "expected"), [("all", list(range(8))), ("device=1", [1])])
def test_docker_gpus(
    dockerd: es.Dockerd, env: dict[str, str], gpus: str, expected: list[int]
) -> None:
    proc = dockerd.client(
        "run", "--rm", "--runtime", "nvshim", "--network", "none", "--gpus", gpus,
        "nvshim-busybox:jit", "sh", "-c", PROBE,
    )  # fmt: skip
    assert "nvshim's stand-in" not in proc.stderr
    out = es.check(proc)
    assert gpus_seen(out) == expected, out
    assert_driver(out)
    log = (Path(env["NVSHIM_CONFIG"]).parent / "debug.log").read_text()
    assert "docker-gpus-detector: removed 1 NVIDIA prestart hook(s) (" in log, log[-2000:]
    assert "mode auto resolved to jit-cdi" in log, log[-2000:]


def test_podman_run(podman: es.Podman, rootfs: Path) -> None:
    proc = podman.client(
        "run", "--rm", "--network", "none", *es.PODMAN_ULIMITS,
        "-e", "NVIDIA_VISIBLE_DEVICES=0", "--rootfs", str(rootfs), "sh", "-c", PROBE,
    )  # fmt: skip
    out = es.check(proc)
    assert gpus_seen(out) == [0], out
    assert_driver(out)


def test_ctr_run(containerd: es.Containerd, nvshim: str, rootfs: Path) -> None:
    cid = f"jit-{uuid.uuid4().hex[:10]}"
    proc = containerd.client(
        "run", "--rm", "--runtime", "io.containerd.runc.v2", "--runc-binary", nvshim,
        "--runc-root", str(containerd.runc_root), "--env", f"PATH={es.SYSTEM_PATH}",
        "--env", "NVIDIA_VISIBLE_DEVICES=0", "--rootfs", str(rootfs), cid, "sh", "-c", PROBE,
    )  # fmt: skip
    out = es.check(proc)
    assert gpus_seen(out) == [0], out
    assert_driver(out)


def test_inventory_was_cached(env: dict[str, str], containerd: es.Containerd) -> None:
    files = list(Path(env["NVSHIM_CACHE_DIR"]).glob("host-inventory-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert len(data["inventory"]["gpus"]) == 8
