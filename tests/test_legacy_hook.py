"""legacy-hook: NVIDIA's prestart hook in legacy mode, through the real chain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from nvshim_legacy_hook.modifier import DEFAULT_HOOK_PATH, HOOK_ENV, find_hook
from support import create_through_nvshim, make_bundle_dir, minimal_spec

from nvshim import Logger, Spec, apply_modifiers
from nvshim.config import Config, structure_config
from nvshim.errors import NvshimError

GPU_ENV = ["PATH=/usr/bin:/bin", "NVIDIA_VISIBLE_DEVICES=all"]


class RecordingLogger(Logger):
    """A logger that keeps the warnings it gets."""

    def __init__(self) -> None:
        super().__init__("debug")
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args if args else msg)


def make_hook(folder: Path, name: str = "nvidia-container-runtime-hook") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def legacy_config(hook: str | None = None) -> Config:
    raw: dict[str, Any] = {"nvidia-container-runtime": {"mode": "legacy"}}
    if hook is not None:
        raw["nvidia-container-runtime-hook"] = {"path": hook}
    return structure_config(raw, "<test>")


def run_chain(spec: dict[str, Any], config: Config, logger: Logger | None = None) -> Any:
    return apply_modifiers(Spec.from_dict(spec), config=config, logger=logger)


def test_adds_the_hook_after_existing_prestart_hooks(tmp_path: Path) -> None:
    hook = make_hook(tmp_path / "bin")
    other = {"path": "/usr/bin/other-hook", "args": ["other-hook"]}
    spec = minimal_spec(process={"env": GPU_ENV}, hooks={"prestart": [other]})
    result = run_chain(spec, legacy_config(hook))
    assert result.mode == "legacy"
    assert result.spec.to_dict()["hooks"]["prestart"] == [
        other,
        {"path": hook, "args": [hook, "prestart"], "env": list(HOOK_ENV)},
    ]
    assert [c.modifier for c in result.changes] == ["legacy-hook"]


def test_hook_is_added_to_containers_without_gpus_too(tmp_path: Path) -> None:
    hook = make_hook(tmp_path / "bin")
    result = run_chain(minimal_spec(), legacy_config(hook))
    assert [h.path for h in result.spec.hooks("prestart")] == [hook]


@pytest.mark.parametrize("name", ["nvidia-container-runtime-hook", "nvidia-container-toolkit"])
def test_existing_nvidia_hook_means_no_change(tmp_path: Path, name: str) -> None:
    hook = make_hook(tmp_path / "bin")
    docker_hook = {"path": f"/usr/local/bin/{name}", "args": [name, "prestart"]}
    spec = minimal_spec(process={"env": GPU_ENV}, hooks={"prestart": [docker_hook]})
    result = run_chain(spec, legacy_config(hook))
    assert result.changes == ()
    assert result.spec.to_dict() == spec


def test_hook_found_in_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = make_hook(tmp_path / "somewhere")
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}:{tmp_path / 'somewhere'}")
    path, looked = find_hook(Config())
    assert path == hook
    assert looked[0] == str(tmp_path / "empty" / "nvidia-container-runtime-hook")


def _installed_standin() -> Path:
    """nvshim's own stand-in for NVIDIA's hook, as the wheel installs it."""
    import sysconfig

    path = Path(sysconfig.get_path("scripts")) / "nvidia-container-runtime-hook"
    if not path.is_file():
        pytest.skip(f"the stand-in is not installed beside this Python ({path})")
    return path


def test_the_stand_in_is_never_taken_for_nvidias_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dockerd's `--gpus` needs the stand-in on PATH; legacy mode must look past it.
    standin = _installed_standin()
    first = tmp_path / "first"
    first.mkdir()
    (first / "nvidia-container-runtime-hook").symlink_to(standin)
    real = make_hook(tmp_path / "later")
    monkeypatch.setenv("PATH", f"{first}:{tmp_path / 'later'}")
    assert find_hook(Config())[0] == real


def test_only_the_stand_in_refuses_a_gpu_container(tmp_path: Path) -> None:
    standin = str(_installed_standin())
    with pytest.raises(NvshimError) as info:
        run_chain(minimal_spec(process={"env": GPU_ENV}), legacy_config(standin))
    assert "asks for GPUs" in info.value.line


def test_missing_hook_falls_back_to_default_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any(
        os.access(os.path.join(d, "nvidia-container-runtime-hook"), os.X_OK)
        for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
    ):
        pytest.skip("this host has NVIDIA's hook installed")
    monkeypatch.setenv("PATH", str(tmp_path))
    path, looked = find_hook(Config())
    assert path == DEFAULT_HOOK_PATH
    assert looked[0] == str(tmp_path / "nvidia-container-runtime-hook")
    assert DEFAULT_HOOK_PATH in looked


def test_missing_hook_refuses_a_gpu_container(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    with pytest.raises(NvshimError) as info:
        run_chain(minimal_spec(process={"env": GPU_ENV}), legacy_config(missing))
    line = info.value.line
    assert line.startswith("nvshim: modifier 'legacy-hook' (nvshim-runtime ")
    assert "asks for GPUs" in line
    assert missing in line


def test_missing_hook_lets_a_plain_container_run_with_a_warning(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    logger = RecordingLogger()
    spec = minimal_spec(process={"env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void"]})
    result = run_chain(spec, legacy_config(missing), logger)
    assert result.changes == ()
    assert len(logger.warnings) == 1
    assert missing in logger.warnings[0]


def test_legacy_cuda_image_counts_as_gpu_container(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    spec = minimal_spec(process={"env": ["CUDA_VERSION=11.8.0"]})
    with pytest.raises(NvshimError, match="asks for GPUs"):
        run_chain(spec, legacy_config(missing))


@pytest.mark.parametrize("mode", ["csv", "cdi"])
def test_other_modes_get_no_hook(tmp_path: Path, mode: str) -> None:
    hook = make_hook(tmp_path / "bin")
    config = structure_config(
        {
            "nvidia-container-runtime": {"mode": mode},
            "nvidia-container-runtime-hook": {"path": hook},
            "nvshim": {"disabled-modifiers": ["cdi", "csv-discovery"]},
        },
        "<test>",
    )
    result = run_chain(minimal_spec(), config)
    assert "legacy-hook" in result.applied
    assert result.spec.hooks("prestart") == []


def test_through_the_nvshim_cli(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any, shim_env: dict[str, str]
) -> None:
    hook = make_hook(tmp_path / "bin")
    config = Path(shim_env["NVSHIM_CONFIG"])
    config.write_text(
        config.read_text().replace(
            "[nvidia-container-runtime]\n", '[nvidia-container-runtime]\nmode = "legacy"\n'
        )
        + f'[nvidia-container-runtime-hook]\npath = "{hook}"\n'
    )
    bundle = make_bundle_dir(tmp_path / "bundle", minimal_spec(process={"env": GPU_ENV}))
    written = create_through_nvshim(nvshim_exe, bundle, shim_env)
    assert written["hooks"]["prestart"][-1]["args"] == [hook, "prestart"]
    assert fake_runtime.calls()[0]["argv"][1:] == ["create", "--bundle", str(bundle), "ctr"]


def test_configured_bare_hook_name_is_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NVIDIA's config.toml says `path = "nvidia-container-runtime-hook"`: a PATH lookup."""
    from nvshim_legacy_hook.modifier import find_hook

    from nvshim.config import Config, HookConfig

    folder = tmp_path / "bin"
    folder.mkdir()
    hook = folder / "nvidia-container-runtime-hook"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    config = Config(nvidia_container_runtime_hook=HookConfig(path="nvidia-container-runtime-hook"))
    path, looked = find_hook(config)
    assert path == str(hook)
    assert looked[0] == str(hook)
