"""The jit-cdi mode: mode resolution, every request form, capabilities, requirements.

The host inventory here is hand-made (tests/jit_cdi_support.py) and found in
the cache by the real create path; tests/test_jit_cdi_host.py runs the same
on the simulated GPU host, through the fake NVML.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jit_cdi_support import LIBS, gpu_uuid, mig_uuid, seed_inventory

from nvshim import NvshimError
from nvshim.modes import decide_mode

pytest_plugins = ["nvshim.testing"]

LIBCUDA = "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"
LIBNVCUVID = "/usr/lib/x86_64-linux-gnu/libnvcuvid.so.550.54.15"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A driver root whose inventory is in a temp cache folder (``NVSHIM_CACHE_DIR``)."""
    root = tmp_path / "driver-root"
    cache = tmp_path / "cache"
    monkeypatch.setenv("NVSHIM_CACHE_DIR", str(cache))
    seed_inventory(root, cache)
    return root


def _config(root: Path, mode: str = "auto", extra: str = "") -> str:
    return (
        f'[nvidia-container-runtime]\nmode = "{mode}"\n'
        f'[nvidia-container-cli]\nroot = "{root}"\n{extra}'
    )


def _create(
    run_modifiers: Any,
    oci_spec: Any,
    root: Path,
    env: dict[str, str],
    mode: str = "auto",
    extra: str = "",
    **fields: Any,
) -> Any:
    spec = oci_spec(env=env, **fields)
    return run_modifiers(spec, config=_config(root, mode, extra), entry_points=True)


def _nodes(result: Any) -> list[str]:
    return [d["path"] for d in result.spec.raw.get("linux", {}).get("devices", [])]


def _mounts(result: Any) -> list[str]:
    return [m["destination"] for m in result.spec.raw.get("mounts", [])]


# ------------------------------------------------------------------ mode


def test_auto_picks_cdi_only_for_qualified_names_of_other_kinds() -> None:
    assert decide_mode("auto", ["nvidia.com/gpu=0"], tegra=False).mode == "cdi"
    assert decide_mode("auto", ["runtime.nvidia.com/gpu=0"], tegra=False).mode == "jit-cdi"
    mixed = ["nvidia.com/gpu=0", "runtime.nvidia.com/gpu=1"]
    assert decide_mode("auto", mixed, tegra=False).mode == "jit-cdi"
    assert decide_mode("auto", ["0"], tegra=False).mode == "jit-cdi"
    assert decide_mode("auto", [], tegra=False).mode == "jit-cdi"


def test_auto_picks_csv_on_tegra_without_nvml(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R36\n")
    decision = decide_mode("auto", ["0"], driver_root=str(tmp_path), nvml=False)
    assert decision.mode == "csv"
    assert "Tegra" in decision.reason
    assert decide_mode("auto", ["0"], driver_root=str(tmp_path), nvml=True).mode == "jit-cdi"
    # The driver root decides: the same host files elsewhere are not looked at.
    assert decide_mode("auto", ["0"], driver_root=str(tmp_path / "x"), nvml=False).mode == "jit-cdi"


def test_configured_mode_is_kept() -> None:
    for mode in ("legacy", "csv", "cdi", "jit-cdi"):
        decision = decide_mode(mode, ["runtime.nvidia.com/gpu=0"])
        assert (decision.mode, decision.reason) == (mode, "configured")


def test_config_keys_of_the_jit_cdi_table(nvshim_config: Any) -> None:
    default = nvshim_config("").nvidia_container_runtime.modes.jit_cdi
    assert default.nvcdi_feature_flags == ()
    assert default.nvcdi_disable_hooks == ()
    config = nvshim_config(
        '[nvidia-container-runtime]\nmode = "jit-cdi"\n'
        "[nvidia-container-runtime.modes.jit-cdi]\n"
        'nvcdi-feature-flags = ["disable-nvsandboxutils"]\nnvcdi-disable-hooks = ["all"]\n'
        "unknown-key = 1\n"
    )
    assert config.mode == "jit-cdi"
    assert config.runtime.modes.jit_cdi.nvcdi_feature_flags == ("disable-nvsandboxutils",)
    assert config.runtime.modes.jit_cdi.nvcdi_disable_hooks == ("all",)
    assert "nvidia-container-runtime.modes.jit-cdi.unknown-key" in config.ignored_keys


def test_config_rejects_a_bad_value(nvshim_config: Any) -> None:
    from nvshim import ConfigError

    with pytest.raises(ConfigError, match=r"modes\.jit-cdi\.nvcdi-disable-hooks"):
        nvshim_config('[nvidia-container-runtime.modes.jit-cdi]\nnvcdi-disable-hooks = "all"\n')


# ------------------------------------------------------------ requests


def test_one_index(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    result = _create(run_modifiers, oci_spec, host, {"NVIDIA_VISIBLE_DEVICES": "0"})
    assert result.mode == "jit-cdi"
    assert _nodes(result) == ["/dev/nvidiactl", "/dev/nvidia0"]
    assert result.spec.get_env("NVIDIA_VISIBLE_DEVICES") == "void"
    # Default capabilities utility,compute: no video or graphics library.
    assert LIBCUDA in _mounts(result)
    assert LIBNVCUVID not in _mounts(result)
    assert {c.modifier for c in result.changes} == {"jit-cdi"}


def test_node_owner_is_the_container_user(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    spec = oci_spec(env={"NVIDIA_VISIBLE_DEVICES": "3"})
    spec.raw["process"]["user"] = {"uid": 1000, "gid": 1001}
    result = run_modifiers(spec, config=_config(host), entry_points=True)
    device = next(d for d in result.spec.raw["linux"]["devices"] if d["path"] == "/dev/nvidia3")
    assert (device["uid"], device["gid"]) == (1000, 1001)
    rules = result.spec.raw["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 195, "minor": 3, "access": "rwm"} in rules


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", [f"/dev/nvidia{i}" for i in range(8)]),
        ("0,1", ["/dev/nvidia0", "/dev/nvidia1"]),
        ("2, 0", ["/dev/nvidia2", "/dev/nvidia0"]),
        (gpu_uuid(5), ["/dev/nvidia5"]),
        (f"4,{gpu_uuid(4)}", ["/dev/nvidia4"]),
        ("1:0", ["/dev/nvidia1", "/dev/nvidia-caps/nvidia-cap110"]),
        (mig_uuid(2, 1), ["/dev/nvidia2", "/dev/nvidia-caps/nvidia-cap121"]),
        ("runtime.nvidia.com/gpu=6", ["/dev/nvidia6"]),
        ("runtime.nvidia.com/gpu=all", [f"/dev/nvidia{i}" for i in range(8)]),
    ],
)
def test_request_forms(
    run_modifiers: Any, oci_spec: Any, host: Path, value: str, expected: list[str]
) -> None:
    result = _create(run_modifiers, oci_spec, host, {"NVIDIA_VISIBLE_DEVICES": value})
    assert _nodes(result) == ["/dev/nvidiactl", *expected]


def test_annotation_request(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    spec = oci_spec(annotations={"cdi.k8s.io/gpu": "runtime.nvidia.com/gpu=7"})
    result = run_modifiers(spec, config=_config(host), entry_points=True)
    assert result.mode == "jit-cdi"
    assert _nodes(result) == ["/dev/nvidiactl", "/dev/nvidia7"]


def test_none_gives_driver_files_and_control_nodes(
    run_modifiers: Any, oci_spec: Any, host: Path
) -> None:
    result = _create(run_modifiers, oci_spec, host, {"NVIDIA_VISIBLE_DEVICES": "none"})
    assert _nodes(result) == ["/dev/nvidiactl"]
    assert LIBCUDA in _mounts(result)


@pytest.mark.parametrize(
    "env", [{}, {"NVIDIA_VISIBLE_DEVICES": ""}, {"NVIDIA_VISIBLE_DEVICES": "void"}]
)
def test_no_request_changes_nothing(
    run_modifiers: Any, oci_spec: Any, host: Path, env: dict[str, str]
) -> None:
    result = _create(run_modifiers, oci_spec, host, env)
    assert result.changes == ()


def test_legacy_cuda_image_means_all(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    result = _create(run_modifiers, oci_spec, host, {"CUDA_VERSION": "12.2.0"})
    assert _nodes(result) == ["/dev/nvidiactl", *(f"/dev/nvidia{i}" for i in range(8))]


@pytest.mark.parametrize("wanted", ["9", "GPU-deadbeef", "3:0", "MIG-nope"])
def test_unknown_id_refuses_naming_it(
    run_modifiers: Any, oci_spec: Any, host: Path, wanted: str
) -> None:
    with pytest.raises(NvshimError) as info:
        _create(run_modifiers, oci_spec, host, {"NVIDIA_VISIBLE_DEVICES": wanted})
    line = info.value.line
    assert f"unknown GPU '{wanted}'" in line
    assert f"0 ({gpu_uuid(0)})" in line
    assert f"1:1 ({mig_uuid(1, 1)})" in line
    assert "\n" not in line


def test_mixing_kinds_is_refused(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "runtime.nvidia.com/gpu=0,nvidia.com/gpu=1"}
    with pytest.raises(NvshimError, match="cannot be asked for together"):
        _create(run_modifiers, oci_spec, host, env, mode="jit-cdi")


def test_qualified_names_of_other_kinds_go_to_cdi(
    run_modifiers: Any, oci_spec: Any, host: Path, tmp_path: Path
) -> None:
    # No CDI spec defines nvidia.com/gpu=0 here: the cdi modifier refuses, jit-cdi stays out.
    env = {"NVIDIA_VISIBLE_DEVICES": "nvidia.com/gpu=0"}
    extra = f'[nvidia-container-runtime.modes.cdi]\nspec-dirs = ["{tmp_path / "none"}"]\n'
    with pytest.raises(NvshimError, match="modifier 'cdi'"):
        _create(run_modifiers, oci_spec, host, env, extra=extra)


def test_cdi_mode_serves_the_automatic_kind(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "runtime.nvidia.com/gpu=1"}
    result = _create(run_modifiers, oci_spec, host, env, mode="cdi")
    assert _nodes(result) == ["/dev/nvidiactl", "/dev/nvidia1"]
    assert {c.modifier for c in result.changes} == {"jit-cdi"}


def test_legacy_mode_is_left_alone(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    spec = oci_spec(env={"NVIDIA_VISIBLE_DEVICES": "0"})
    result = run_modifiers(
        spec,
        config=_config(host, "legacy", '[nvidia-container-runtime-hook]\npath = "/bin/true"\n'),
        entry_points=True,
    )
    assert "jit-cdi" not in {c.modifier for c in result.changes}


def test_docker_gpus_hook_is_replaced(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    hook = {"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["x", "prestart"]}
    spec = oci_spec(
        env={"NVIDIA_VISIBLE_DEVICES": "1", "NVIDIA_DRIVER_CAPABILITIES": "all"},
        hooks={"prestart": [hook]},
    )
    result = run_modifiers(spec, config=_config(host), entry_points=True)
    assert not result.spec.raw["hooks"].get("prestart")
    assert _nodes(result) == ["/dev/nvidiactl", "/dev/nvidia1"]


# -------------------------------------------------------- capabilities


@pytest.mark.parametrize(
    ("caps", "present"),
    [
        ("video", {LIBNVCUVID}),
        ("compute", {LIBCUDA}),
        (
            "graphics,utility",
            {
                "/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.550.54.15",
                "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15",
                "/usr/bin/nvidia-smi",
            },
        ),
        ("all", set(LIBS)),
    ],
)
def test_capability_filter(
    run_modifiers: Any, oci_spec: Any, host: Path, caps: str, present: set[str]
) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "0", "NVIDIA_DRIVER_CAPABILITIES": caps}
    result = _create(run_modifiers, oci_spec, host, env)
    assert set(_mounts(result)) & set(LIBS) == present
    links = [
        a for hook in result.spec.raw["hooks"]["createContainer"] for a in hook["args"] if "::" in a
    ]
    assert ("libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so" in links) == (LIBCUDA in present)
    assert ("libnvcuvid.so.1::/usr/lib/x86_64-linux-gnu/libnvcuvid.so" in links) == (
        LIBNVCUVID in present
    )


def test_disabled_hooks(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    extra = '[nvidia-container-runtime.modes.jit-cdi]\nnvcdi-disable-hooks = ["update-ldcache"]\n'
    result = _create(run_modifiers, oci_spec, host, {"NVIDIA_VISIBLE_DEVICES": "0"}, extra=extra)
    names = [h["args"][2] for h in result.spec.raw["hooks"]["createContainer"]]
    assert names == ["create-symlinks"]
    extra = '[nvidia-container-runtime.modes.jit-cdi]\nnvcdi-disable-hooks = ["all"]\n'
    result = _create(run_modifiers, oci_spec, host, {"NVIDIA_VISIBLE_DEVICES": "0"}, extra=extra)
    assert "hooks" not in result.spec.raw


# -------------------------------------------------------- requirements


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"NVIDIA_REQUIRE_CUDA": "cuda>=12.0"}, True),
        ({"NVIDIA_REQUIRE_CUDA": "cuda>=12.5"}, False),
        ({"NVIDIA_REQUIRE_ARCH": "arch>=9.0"}, False),
        ({"NVIDIA_REQUIRE_DRIVER": "driver>=550"}, True),
        ({"NVIDIA_REQUIRE_BRAND": "brand=geforce"}, False),
        ({"NVIDIA_REQUIRE_CUDA": "cuda>=99.0", "NVIDIA_DISABLE_REQUIRE": "true"}, True),
    ],
)
def test_requirements_against_the_host(
    run_modifiers: Any, oci_spec: Any, host: Path, env: dict[str, str], ok: bool
) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "0", **env}
    if ok:
        assert _nodes(_create(run_modifiers, oci_spec, host, env))
    else:
        with pytest.raises(NvshimError, match="modifier 'jit-cdi'"):
            _create(run_modifiers, oci_spec, host, env)


def test_legacy_image_cuda_version_is_checked(
    run_modifiers: Any, oci_spec: Any, host: Path
) -> None:
    with pytest.raises(NvshimError, match=r"cuda>=12\.9"):
        _create(run_modifiers, oci_spec, host, {"CUDA_VERSION": "12.9.1"})


# ------------------------------------------------------------ commands


def test_modify_diff_names_the_mode(nvshim_ctl: str, host: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_config(host))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    from nvshim.testing import minimal_spec_dict

    data = minimal_spec_dict()
    data["process"]["env"] = ["NVIDIA_VISIBLE_DEVICES=2"]
    (bundle / "config.json").write_text(json.dumps(data))
    proc = subprocess.run(
        [nvshim_ctl, "modify", "--bundle", str(bundle), "--diff", "--config", str(config)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reason = "auto: default (devices generated just in time)"
    assert proc.stderr == f"nvshim-ctl: mode jit-cdi: {reason}\n"
    assert proc.stdout.startswith("--- ")
    assert proc.stdout.splitlines()[1].endswith("(changed by jit-cdi)")
    assert '"/dev/nvidia2"' in proc.stdout
    config.write_text(
        _config(host, "legacy", '[nvidia-container-runtime-hook]\npath = "/bin/true"\n')
    )
    proc = subprocess.run(
        [nvshim_ctl, "modify", "--bundle", str(bundle), "--config", str(config)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert proc.stderr == "nvshim-ctl: mode legacy: configured\n"
    assert "(changed by legacy-hook)" in proc.stdout


def test_standin_hook_refuses_in_one_line() -> None:
    from script_support import installed_script

    proc = subprocess.run(
        [installed_script("nvidia-container-runtime-hook"), "prestart"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "nvshim's stand-in" in proc.stderr
    assert "--runtime nvshim" in proc.stderr


def test_links_to_files_left_out_go_too(run_modifiers: Any, oci_spec: Any, host: Path) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "0", "NVIDIA_DRIVER_CAPABILITIES": "graphics"}
    result = _create(run_modifiers, oci_spec, host, env)
    names = [h["args"][2] for h in result.spec.raw["hooks"]["createContainer"]]
    # Both links of the hand-made spec point at compute/video libraries: no
    # create-symlinks hook is left, update-ldcache stays.
    assert names == ["update-ldcache"]
