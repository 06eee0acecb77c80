"""The entry-point cache (nvshim._epcache): current when used, safe when not."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import write_plugin_distribution

from nvshim import _epcache
from nvshim.plugins import _scan, get_plugin_manager, load_entry_points

HELLO = """
from nvshim import Modifier, hookimpl
def modify(spec, context):
    spec.set_env("FROM_{upper}", "1")
@hookimpl
def nvshim_modifiers():
    return [Modifier("{name}", modify)]
"""


def _age(path: Path, seconds: float = 60.0) -> None:
    """Make ``path`` look modified ``seconds`` ago (past the racy window)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _install(site: Path, name: str) -> None:
    module = f"nvshim_tc_{name}"
    write_plugin_distribution(
        site,
        f"nvshim-tc-{name}",
        {module: HELLO.format(name=name, upper=name.upper())},
        {name: module},
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder that, with the standard library, is all of ``sys.path``.

    The test run's own path holds folders being edited (the checkout), which
    would keep every cache write inside the racy window; nvshim itself is
    already imported.
    """
    folder = tmp_path / "site"
    folder.mkdir()
    stdlib = [p for p in sys.path if p.startswith(sys.base_prefix)]
    monkeypatch.setattr(sys, "path", [str(folder), *stdlib])
    try:
        yield folder
    finally:
        for name in [m for m in sys.modules if m.startswith("nvshim_tc_")]:
            del sys.modules[name]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NVSHIM_CACHE_DIR", str(folder))
    return folder


def _age_all(site: Path) -> None:
    for path in [site, *site.rglob("*")]:
        _age(path)


class CountingScan:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> list[_epcache.ScanRow]:
        self.calls += 1
        return _scan()


def _names(eps: list[_epcache.CachedEntryPoint]) -> list[str]:
    return [ep.name for ep in eps]


def test_second_call_comes_from_the_cache(site: Path, cache: Path) -> None:
    _install(site, "one")
    _age_all(site)
    scan = CountingScan()
    first = _epcache.entry_points("nvshim", scan)
    second = _epcache.entry_points("nvshim", scan)
    assert scan.calls == 1
    assert _names(first) == _names(second)
    assert "one" in _names(second)
    one = next(ep for ep in second if ep.name == "one")
    assert (one.dist, one.version, one.value) == ("nvshim-tc-one", "1.0", "nvshim_tc_one")
    files = list(cache.iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


def test_a_newly_installed_plugin_is_seen_at_once(site: Path, cache: Path) -> None:
    _install(site, "one")
    _age_all(site)
    pm = get_plugin_manager()
    assert "one" in {p.name for p in load_entry_points(pm)}
    assert list(cache.iterdir()), "the first call should have written the cache"
    # pip install: a new dist-info folder in site-packages, then the next create.
    _install(site, "two")
    names = {p.name for p in load_entry_points(get_plugin_manager())}
    assert {"one", "two"} <= names


def test_an_uninstalled_plugin_is_gone_at_once(site: Path, cache: Path) -> None:
    _install(site, "one")
    _install(site, "two")
    _age_all(site)
    assert {"one", "two"} <= set(_names(_epcache.entry_points("nvshim", _scan)))
    import shutil

    shutil.rmtree(site / "nvshim_tc_two-1.0.dist-info")
    assert "two" not in _names(_epcache.entry_points("nvshim", _scan))


def test_entry_points_edited_in_place_are_seen(site: Path, cache: Path) -> None:
    _install(site, "one")
    _age_all(site)
    scan = CountingScan()
    _epcache.entry_points("nvshim", scan)
    eps = site / "nvshim_tc_one-1.0.dist-info" / "entry_points.txt"
    eps.write_text("[nvshim]\nrenamed = nvshim_tc_one\n")
    names = _names(_epcache.entry_points("nvshim", scan))
    assert scan.calls == 2
    assert "renamed" in names
    assert "one" not in names


def test_a_recently_changed_folder_is_not_cached(site: Path, cache: Path) -> None:
    _install(site, "one")  # just now: within the racy window
    scan = CountingScan()
    _epcache.entry_points("nvshim", scan)
    _epcache.entry_points("nvshim", scan)
    assert scan.calls == 2
    assert not cache.exists() or not list(cache.iterdir())


def test_cache_and_scan_load_the_same_plugins(site: Path, cache: Path) -> None:
    _install(site, "one")
    _age_all(site)
    _epcache.entry_points("nvshim", _scan)  # writes
    cached = {ep.name: ep for ep in _epcache.entry_points("nvshim", CountingScan())}
    assert cached["one"].load().__name__ == "nvshim_tc_one"


def test_load_follows_the_attribute_path(site: Path) -> None:
    (site / "nvshim_tc_attr.py").write_text("class Outer:\n    class Inner:\n        pass\n")
    ep = _epcache.CachedEntryPoint("x", "nvshim_tc_attr:Outer.Inner [extra]", "nvshim", None, None)
    assert ep.load().__qualname__ == "Outer.Inner"


def test_a_bad_value_fails_as_importlib_metadata_does() -> None:
    from importlib.metadata import EntryPoint

    value = "not a valid:value!"
    ours = _epcache.CachedEntryPoint("x", value, "nvshim", None, None)
    with pytest.raises((AttributeError, ValueError)) as expected:
        EntryPoint("x", value, "nvshim").load()
    with pytest.raises(type(expected.value)):
        ours.load()


def test_an_unwritable_cache_folder_changes_nothing(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("NVSHIM_CACHE_DIR", str(blocker / "cache"))
    _install(site, "one")
    _age_all(site)
    assert "one" in _names(_epcache.entry_points("nvshim", _scan))
    assert "one" in _names(_epcache.entry_points("nvshim", _scan))


def test_a_cache_others_can_write_is_ignored(site: Path, cache: Path) -> None:
    _install(site, "one")
    _age_all(site)
    _epcache.entry_points("nvshim", _scan)
    (path,) = cache.iterdir()
    # Someone else could have put any module name there: never trust it.
    content = json.loads(path.read_text())
    content["entry_points"] = [["evil", "os:system", "nvshim", "x", "1"]]
    path.write_text(json.dumps(content))
    path.chmod(0o666)
    names = _names(_epcache.entry_points("nvshim", _scan))
    assert "evil" not in names
    assert "one" in names
    path.chmod(0o600)
    cache.chmod(0o777)
    names = _names(_epcache.entry_points("nvshim", _scan))
    assert "evil" not in names
    assert "one" in names


@pytest.mark.parametrize("garbage", ["", "{", "[]", '{"key": 1}', "\x00\xff"])
def test_a_damaged_cache_file_means_a_scan(site: Path, cache: Path, garbage: str) -> None:
    _install(site, "one")
    _age_all(site)
    _epcache.entry_points("nvshim", _scan)
    (path,) = cache.iterdir()
    path.write_text(garbage)
    scan = CountingScan()
    assert "one" in _names(_epcache.entry_points("nvshim", scan))
    assert scan.calls == 1


def test_an_empty_cache_dir_setting_turns_the_cache_off(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NVSHIM_CACHE_DIR", "")
    assert _epcache.cache_dir() is None
    _install(site, "one")
    _age_all(site)
    scan = CountingScan()
    _epcache.entry_points("nvshim", scan)
    _epcache.entry_points("nvshim", scan)
    assert scan.calls == 2


def test_default_cache_folder() -> None:
    env = {"XDG_CACHE_HOME": "/x/cache"}
    expected = "/var/cache/nvshim" if os.geteuid() == 0 else "/x/cache/nvshim"
    assert _epcache.cache_dir(env) == expected


def test_create_sees_a_plugin_installed_between_two_creates(
    tmp_path: Path, nvshim_exe: str
) -> None:
    """End to end: two `nvshim create` processes, a plugin installed in between."""
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "one")
    _age_all(site)
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["true"], "env": [], "cwd": "/"},
        "root": {"path": "rootfs"},
    }
    config = tmp_path / "config.toml"
    config.write_text(
        '[nvidia-container-runtime]\nruntimes = ["/bin/true"]\nmode = "csv"\n'
        "[nvidia-container-runtime.modes.csv]\n"
        f'mount-spec-path = "{tmp_path / "no-csv"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    env.update(
        PYTHONPATH=str(site), NVSHIM_CONFIG=str(config), NVSHIM_CACHE_DIR=str(tmp_path / "cache")
    )

    def create() -> list[str]:
        (bundle / "config.json").write_text(json.dumps(spec))
        proc = subprocess.run(
            [nvshim_exe, "create", "--bundle", str(bundle), "c"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        written = json.loads((bundle / "config.json").read_text())
        return [e for e in written["process"]["env"] if e.startswith("FROM_")]

    assert create() == ["FROM_ONE=1"]
    # The create caches its entry points unless a folder on its sys.path changed
    # in the last seconds (an editable checkout being edited, a fresh venv): the
    # in-process tests above pin the cache down; this one pins the behaviour.
    assert create() == ["FROM_ONE=1"]
    _install(site, "two")
    assert sorted(create()) == ["FROM_ONE=1", "FROM_TWO=1"]
