"""The cache of parsed CDI spec files (plugins/nvshim_cdi/_cache.py) and the C YAML loader."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from nvshim_cdi import _cache, _spec
from nvshim_cdi._registry import Registry

SPEC = """\
cdiVersion: 0.5.0
kind: vendor.com/gpu
containerEdits:
  env:
  - SHARED=1
devices:
- name: "0"
  containerEdits:
    env:
    - GPU=zero
"""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NVSHIM_CACHE_DIR", str(folder))
    return folder


def _write(path: Path, text: str, age: float = 60.0) -> Path:
    """Write ``text`` and move its mtime ``age`` seconds back (the ctime stays now)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def _gpu_env(registry: Registry) -> tuple[str, ...]:
    return registry.resolve(["vendor.com/gpu=0"])[0].device.edits.env


def _wait_out_racy_window() -> None:
    # A file changed within RACY_SECONDS of its parse is not cached (its ctime is now).
    time.sleep(_cache.RACY_SECONDS + 0.1)


def test_yaml_uses_the_c_loader_when_pyyaml_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[Any] = []
    real_load = yaml.load

    def spy(stream: Any, Loader: Any) -> Any:
        used.append(Loader)
        return real_load(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load", spy)
    assert _spec._parse_yaml(SPEC, "x.yaml")["kind"] == "vendor.com/gpu"
    assert used == [getattr(yaml, "CSafeLoader", yaml.SafeLoader)]
    # Same safety as safe_load: no Python objects from tags.
    with pytest.raises(_spec.CdiSpecError, match="not valid YAML"):
        _spec._parse_yaml("!!python/object/apply:os.system ['true']", "x.yaml")


def test_pure_loader_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    assert _spec._parse_yaml(SPEC, "x.yaml")["devices"][0]["name"] == "0"


def test_warm_load_reads_no_yaml_and_sees_every_edit(tmp_path: Path, cache_dir: Path) -> None:
    spec = _write(tmp_path / "cdi" / "gpu.yaml", SPEC)
    _wait_out_racy_window()
    assert _gpu_env(Registry.load([str(spec.parent)])) == ("GPU=zero",)
    files = list(cache_dir.glob("cdi-specs-*.json"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700

    # A fresh interpreter: the warm load neither imports yaml nor parses the file.
    probe = (
        "import sys; from nvshim_cdi._registry import Registry;"
        f"r = Registry.load([{str(spec.parent)!r}]);"
        "print(r.resolve(['vendor.com/gpu=0'])[0].device.edits.env[0], 'yaml' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["GPU=zero", "False"]

    # Same size, mtime put back: the ctime still tells.
    before = spec.stat()
    spec.write_text(SPEC.replace("zero", "ZERO"))
    os.utime(spec, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert spec.stat().st_size == before.st_size
    assert spec.stat().st_mtime_ns == before.st_mtime_ns
    assert _gpu_env(Registry.load([str(spec.parent)])) == ("GPU=ZERO",)

    # Replaced by another file (new inode), and removed.
    replacement = _write(tmp_path / "new.yaml", SPEC.replace("zero", "one!"))
    os.replace(replacement, spec)
    assert _gpu_env(Registry.load([str(spec.parent)])) == ("GPU=one!",)
    spec.unlink()
    assert Registry.load([str(spec.parent)]).devices == {}


def test_recently_changed_file_is_not_cached(tmp_path: Path, cache_dir: Path) -> None:
    spec = _write(tmp_path / "cdi" / "gpu.yaml", SPEC)
    Registry.load([str(spec.parent)])  # the ctime is now: inside the racy window
    content = json.loads(next(cache_dir.glob("cdi-specs-*.json")).read_text())
    assert content["files"] == {}


def test_refused_file_is_not_cached_and_warned_each_time(tmp_path: Path, cache_dir: Path) -> None:
    bad = _write(tmp_path / "cdi" / "bad.yaml", SPEC.replace("0.5.0", "9.9.9"))
    _wait_out_racy_window()
    for _ in range(2):
        registry = Registry.load([str(bad.parent)])
        assert [path for path, _why in registry.errors] == [str(bad)]
    # Nothing to remember: no cache file, or one without the file.
    assert not any(json.loads(f.read_text())["files"] for f in cache_dir.glob("cdi-*.json"))


def _poison(cache_dir: Path, spec: Path, mode: int) -> None:
    """Put another document into the cache entry of ``spec`` (its key still matching)."""
    cache_file = next(cache_dir.glob("cdi-specs-*.json"))
    content = json.loads(cache_file.read_text())
    entry = content["files"][str(spec)]
    entry["doc"]["devices"][0]["containerEdits"]["env"] = ["GPU=poisoned"]
    cache_file.write_text(json.dumps(content))
    cache_file.chmod(mode)


def test_cache_file_others_may_write_is_ignored(tmp_path: Path, cache_dir: Path) -> None:
    spec = _write(tmp_path / "cdi" / "gpu.yaml", SPEC)
    _wait_out_racy_window()
    Registry.load([str(spec.parent)])
    _poison(cache_dir, spec, 0o666)
    assert _gpu_env(Registry.load([str(spec.parent)])) == ("GPU=zero",)
    # The same file, private: it is used (so the mode is what made the difference),
    # and its document is checked again like a parsed one.
    _poison(cache_dir, spec, 0o600)
    assert _gpu_env(Registry.load([str(spec.parent)])) == ("GPU=poisoned",)


def test_cached_document_is_checked_again(tmp_path: Path, cache_dir: Path) -> None:
    spec = _write(tmp_path / "cdi" / "gpu.yaml", SPEC)
    _wait_out_racy_window()
    Registry.load([str(spec.parent)])
    cache_file = next(cache_dir.glob("cdi-specs-*.json"))
    content = json.loads(cache_file.read_text())
    content["files"][str(spec)]["doc"]["devices"][0]["containerEdits"]["env"] = ["no-equals"]
    cache_file.write_text(json.dumps(content))
    registry = Registry.load([str(spec.parent)])
    assert registry.devices == {}
    assert "is not NAME=value" in registry.errors[0][1]


def test_no_cache_folder_means_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVSHIM_CACHE_DIR", "")
    spec = _write(tmp_path / "cdi" / "gpu.yaml", SPEC)
    assert _gpu_env(Registry.load([str(spec.parent)])) == ("GPU=zero",)
    assert _cache.SpecCache.open([str(spec.parent)]).folder is None


def test_a_document_json_cannot_hold_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cache, "RACY_SECONDS", 0.0)  # the file below was just written
    cache = _cache.SpecCache(str(tmp_path), "c.json", [1, []], {})
    st = os.stat(_write(tmp_path / "x.yaml", "a: 1"))
    cache.put("/x.yaml", st, {"when": __import__("datetime").date(2024, 1, 1)})
    cache.put("/y.yaml", st, {1: "int key"})
    cache.put("/z.yaml", st, {"fine": [1, "two", None, True]})
    cache.save()
    content = json.loads((tmp_path / "c.json").read_text())
    assert list(content["files"]) == ["/z.yaml"]


def test_edited_spec_is_seen_by_the_next_create(tmp_path: Path, cache_dir: Path) -> None:
    spec = _write(tmp_path / "cdi" / "gpu.yaml", SPEC)
    config = tmp_path / "config.toml"
    config.write_text(
        '[nvidia-container-runtime]\nruntimes = ["/bin/true"]\nmode = "cdi"\n'
        "[nvidia-container-runtime.modes.cdi]\n"
        f'spec-dirs = ["{spec.parent}"]\ndefault-kind = "vendor.com/gpu"\n'
    )
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    original = {
        "ociVersion": "1.0.2",
        "process": {"args": ["true"], "cwd": "/", "env": ["NVIDIA_VISIBLE_DEVICES=0"]},
        "root": {"path": "rootfs"},
    }
    env = {**os.environ, "NVSHIM_CONFIG": str(config), "NVSHIM_CACHE_DIR": str(cache_dir)}

    def create() -> list[str]:
        (bundle / "config.json").write_text(json.dumps(original))
        subprocess.run(
            [sys.executable, "-m", "nvshim", "create", "--bundle", str(bundle), "c1"],
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
        )
        result: list[str] = json.loads((bundle / "config.json").read_text())["process"]["env"]
        return result

    _wait_out_racy_window()
    assert "GPU=zero" in create()
    assert "GPU=zero" in create()  # from the cache
    assert list(cache_dir.glob("cdi-specs-*.json"))
    before = spec.stat()
    spec.write_text(SPEC.replace("zero", "ZERO"))
    os.utime(spec, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "GPU=ZERO" in create()
