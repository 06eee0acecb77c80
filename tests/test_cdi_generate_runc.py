"""A generated spec used for real: runc gives a busybox container one GPU of the simulated host.

``nvshim-ctl cdi generate`` writes the spec for the simulated dgxa100 host
(device nodes made with mknod as ``c 1 3``, ELF libraries with their
sonames, the fake NVML).  nvshim in cdi mode injects ``nvidia.com/gpu=0``;
runc runs the createContainer hooks the spec names (create-symlinks,
enable-cuda-compat, update-ldcache, all through the installed
``nvshim-ctl``).  Inside the container the GPU's nodes, the libraries
(registered in the container's own ``/etc/ld.so.cache``) and the links
must be there, and the other GPUs must not.
"""

from __future__ import annotations

import json
from pathlib import Path

import host_support
import pytest
import runc_support

pytestmark = runc_support.RUNC_MARKS

simulated_host = host_support.simulated_host
LIB = host_support.LIB_DIR

CHECK = (
    "stat -c 'node0=%F %t:%T' /dev/nvidia0;"
    " stat -c 'ctl=%F' /dev/nvidiactl;"
    " test -e /dev/nvidia1 || echo no-nvidia1;"
    " stat -c 'card=%F' /dev/dri/card1;"
    " echo by-path=$(readlink /dev/dri/by-path/pci-0000:07:00.0-card);"
    " grep -q libcuda.so.1 /etc/ld.so.cache && echo cache-has-libcuda;"
    " grep -q libnvidia-ml.so.1 /etc/ld.so.cache && echo cache-has-nvml;"
    f" echo libcuda.so=$(readlink {LIB}/libcuda.so);"
    f" echo libcuda.so.1=$(readlink {LIB}/libcuda.so.1);"
    " /usr/bin/nvidia-smi;"
    " echo NVD=$NVIDIA_VISIBLE_DEVICES;"
    f" echo x > {LIB}/libcuda.so.$VERSION 2>/dev/null || echo lib-read-only"
)


def test_container_gets_gpu_0(
    tmp_path: Path, simulated_host: host_support.SimulatedHost, nvshim_ctl: str, nvshim_exe: str
) -> None:
    pytest.importorskip("pynvml")
    host = simulated_host
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    host_support.generate_spec_file(nvshim_ctl, host.root, spec_dir / "nvidia.yaml")
    config = tmp_path / "config.toml"
    config.write_text(
        "[nvidia-container-runtime]\n"
        'mode = "cdi"\n'
        "[nvidia-container-runtime.modes.cdi]\n"
        f"spec-dirs = [{json.dumps(str(spec_dir))}]\n"
        'default-kind = "nvidia.com/gpu"\n'
    )
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ["sh", "-c", CHECK],
        env=[
            *runc_support.DEFAULT_ENV,
            "NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=0",
            f"VERSION={host.version}",
        ],
    )
    result = runc_support.run_container(
        [nvshim_exe], bundle, env={"NVSHIM_CONFIG": str(config)}
    ).check()
    out = result.stdout
    assert "node0=character special file 1:3" in out, result.describe()
    assert "ctl=character special file" in out
    assert "no-nvidia1" in out
    assert "card=character special file" in out  # GPU 0's DRM node, found by PCI bus id
    assert "by-path=../card1" in out  # and its by-path link, remade by a hook
    assert "cache-has-libcuda" in out
    assert "cache-has-nvml" in out
    assert "libcuda.so=libcuda.so.1" in out  # the create-symlinks hook
    assert f"libcuda.so.1=libcuda.so.{host.version}" in out  # ldconfig, in the container
    assert "fake nvidia-smi" in out
    assert "NVD=void" in out
    assert "lib-read-only" in out
