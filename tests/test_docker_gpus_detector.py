"""docker-gpus-detector: Docker's --gpus hook removed (or refused) outside legacy mode."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import create_through_nvshim, make_bundle_dir, minimal_spec
from nvshim_docker_gpus_detector.modifier import DetectorOptions

from nvshim import Spec, apply_modifiers
from nvshim.config import Config, ConfigError, plugin_options, structure_config
from nvshim.errors import NvshimError

DOCKER_HOOK = {
    "path": "/usr/bin/nvidia-container-runtime-hook",
    "args": ["/usr/bin/nvidia-container-runtime-hook", "prestart"],
}
TOOLKIT_HOOK = {"path": "/usr/local/bin/nvidia-container-toolkit", "args": ["x", "prestart"]}
NETWORK_HOOK = {"path": "/proc/4242/exe", "args": ["libnetwork-setkey", "-exec-root=/x", "abc"]}
OTHER_HOOK = {"path": "/usr/bin/true", "args": ["true"]}


def make_config(mode: str, on_hook: str | None = None) -> Config:
    raw: dict[str, Any] = {
        "nvidia-container-runtime": {"mode": mode},
        # Only this modifier: the mode's own modifiers have their own tests.
        "nvshim": {"disabled-modifiers": ["cdi", "csv-discovery", "legacy-hook"]},
    }
    if on_hook is not None:
        raw["nvshim"]["plugins"] = {"docker-gpus-detector": {"on-hook": on_hook}}
    return structure_config(raw, "<test>")


def spec_with(*hooks: dict[str, Any]) -> dict[str, Any]:
    return minimal_spec(
        process={"env": ["NVIDIA_VISIBLE_DEVICES=all"]}, hooks={"prestart": list(hooks)}
    )


@pytest.mark.parametrize("mode", ["csv", "cdi"])
def test_removes_nvidia_hooks_keeping_the_others_in_order(mode: str) -> None:
    spec = spec_with(NETWORK_HOOK, DOCKER_HOOK, OTHER_HOOK, TOOLKIT_HOOK)
    result = apply_modifiers(Spec.from_dict(spec), config=make_config(mode))
    assert result.spec.to_dict()["hooks"]["prestart"] == [NETWORK_HOOK, OTHER_HOOK]
    removed = [c for c in result.changes if c.action == "remove"]
    assert len(removed) == 2
    assert {c.modifier for c in removed} == {"docker-gpus-detector"}


def test_legacy_mode_keeps_the_hook() -> None:
    spec = spec_with(DOCKER_HOOK)
    result = apply_modifiers(Spec.from_dict(spec), config=make_config("legacy"))
    assert result.changes == ()
    assert result.spec.to_dict() == spec


def test_no_hook_no_change() -> None:
    spec = spec_with(OTHER_HOOK)
    result = apply_modifiers(Spec.from_dict(spec), config=make_config("csv"))
    assert result.changes == ()


def test_on_hook_error_refuses_the_container() -> None:
    with pytest.raises(NvshimError) as info:
        apply_modifiers(Spec.from_dict(spec_with(DOCKER_HOOK)), config=make_config("cdi", "error"))
    line = info.value.line
    assert line.startswith("nvshim: modifier 'docker-gpus-detector' (nvshim-runtime ")
    assert "--runtime=nvshim" in line
    assert "--gpus" in line


def test_on_hook_error_without_hook_is_fine() -> None:
    result = apply_modifiers(Spec.from_dict(spec_with()), config=make_config("csv", "error"))
    assert result.changes == ()


def test_options_table() -> None:
    assert plugin_options(make_config("csv"), "docker-gpus-detector", DetectorOptions) == (
        DetectorOptions("remove")
    )
    assert plugin_options(
        make_config("csv", "error"), "docker-gpus-detector", DetectorOptions
    ) == DetectorOptions("error")


def test_bad_option_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="on"):
        plugin_options(make_config("csv", "explode"), "docker-gpus-detector", DetectorOptions)


def test_unknown_option_is_a_config_error() -> None:
    config = structure_config(
        {"nvshim": {"plugins": {"docker-gpus-detector": {"on-hok": "error"}}}}, "<test>"
    )
    with pytest.raises(ConfigError, match="on-hok"):
        plugin_options(config, "docker-gpus-detector", DetectorOptions)


def test_runs_first() -> None:
    result = apply_modifiers(
        Spec.from_dict(minimal_spec()),
        config=structure_config({"nvidia-container-runtime": {"mode": "csv"}}, "<t>"),
    )
    assert result.applied[0] == "docker-gpus-detector"


def test_through_the_nvshim_cli(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any, shim_env: dict[str, str]
) -> None:
    config = Path(shim_env["NVSHIM_CONFIG"])
    config.write_text(
        config.read_text().replace(
            "[nvidia-container-runtime]\n", '[nvidia-container-runtime]\nmode = "cdi"\n'
        )
        + '[nvshim]\ndisabled-modifiers = ["cdi"]\n'
    )
    bundle = make_bundle_dir(tmp_path / "bundle", spec_with(DOCKER_HOOK, OTHER_HOOK))
    written = create_through_nvshim(nvshim_exe, bundle, shim_env)
    assert written["hooks"]["prestart"] == [OTHER_HOOK]
    assert len(fake_runtime.calls()) == 1

    config.write_text(
        config.read_text() + '[nvshim.plugins.docker-gpus-detector]\non-hook = "error"\n'
    )
    bundle2 = make_bundle_dir(tmp_path / "bundle2", spec_with(DOCKER_HOOK))
    before = (bundle2 / "config.json").read_bytes()
    proc = subprocess.run(
        [nvshim_exe, "create", "--bundle", str(bundle2), "ctr2"],
        env=shim_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "nvshim: modifier 'docker-gpus-detector'" in proc.stderr
    assert (bundle2 / "config.json").read_bytes() == before
    assert len(fake_runtime.calls()) == 1
