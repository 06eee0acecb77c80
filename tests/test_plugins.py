"""The plugin host: factory, entry points, ordering, broken plugins, `nvshim-ctl plugins`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import minimal_spec, write_plugin_distribution

from nvshim import Modifier, Spec, apply_modifiers, hookimpl
from nvshim.config import Config, NvshimConfig
from nvshim.errors import NvshimError
from nvshim.plugins import collect_modifiers, get_plugin_manager, load_entry_points


def _plugin(*modifiers: Modifier) -> Any:
    @hookimpl
    def nvshim_modifiers() -> list[Modifier]:
        return list(modifiers)

    return SimpleNamespace(nvshim_modifiers=nvshim_modifiers)


def _noop(spec: Spec, context: Any) -> None:
    pass


def test_factory_returns_a_fresh_manager_each_time() -> None:
    a = get_plugin_manager()
    b = get_plugin_manager()
    assert a is not b
    assert a.get_plugins() == set()
    assert a.project_name == "nvshim"


def test_modifiers_are_ordered_by_order_then_name() -> None:
    pm = get_plugin_manager()
    pm.register(_plugin(Modifier("b", _noop, order=20), Modifier("a", _noop, order=20)), "p1")
    pm.register(_plugin(Modifier("z", _noop, order=5), Modifier("c", _noop)), "p2")
    result = collect_modifiers(pm)
    assert [m.name for m in result.active] == ["z", "a", "b", "c"]
    assert result.errors == ()


def test_disabled_modifiers_are_dropped() -> None:
    pm = get_plugin_manager()
    pm.register(_plugin(Modifier("keep", _noop), Modifier("drop", _noop)), "p")
    result = collect_modifiers(pm, disabled=["drop"])
    assert [m.name for m in result.active] == ["keep"]
    assert [(m.name, m.status) for m in result.disabled] == [("drop", "disabled")]


def test_two_modifiers_with_one_name_are_refused() -> None:
    pm = get_plugin_manager()
    pm.register(_plugin(Modifier("same", _noop)), "first")
    pm.register(_plugin(Modifier("same", _noop)), "second")
    result = collect_modifiers(pm)
    assert len(result.errors) == 1
    assert "'same' is provided twice" in result.errors[0]
    assert "'first'" in result.errors[0]
    assert "'second'" in result.errors[0]


def test_a_plugin_returning_junk_is_broken_alone() -> None:
    pm = get_plugin_manager()
    pm.register(_plugin(Modifier("good", _noop)), "good")
    pm.register(_plugin("not a modifier"), "junk")  # type: ignore[arg-type]
    result = collect_modifiers(pm)
    assert [m.name for m in result.active] == ["good"]
    assert "plugin 'junk' (junk) is broken" in result.errors[0]
    assert "not a nvshim.Modifier" in result.errors[0]


def test_a_plugin_raising_in_the_hook_is_broken() -> None:
    @hookimpl
    def nvshim_modifiers() -> list[Modifier]:
        raise RuntimeError("cannot")

    pm = get_plugin_manager()
    pm.register(SimpleNamespace(nvshim_modifiers=nvshim_modifiers), "raiser")
    result = collect_modifiers(pm)
    assert result.errors == (
        "plugin 'raiser' (raiser) is broken: nvshim_modifiers() raised RuntimeError: cannot",
    )


def test_a_misspelled_hook_is_reported() -> None:
    @hookimpl
    def nvshim_modifier() -> list[Modifier]:  # missing the final "s"
        return []

    pm = get_plugin_manager()
    pm.register(SimpleNamespace(nvshim_modifier=nvshim_modifier), "typo")
    result = collect_modifiers(pm)
    assert "unknown hook 'nvshim_modifier'" in result.errors[0]


@pytest.fixture
def on_sys_path(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "site"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.startswith("nvshim_t_")]:
            del sys.modules[name]


def test_entry_points_are_loaded_with_their_distribution(on_sys_path: Path) -> None:
    write_plugin_distribution(
        on_sys_path,
        "nvshim-t-hello",
        {
            "nvshim_t_hello": """
                from nvshim import Modifier, hookimpl
                def hello(spec, context):
                    spec.set_env("HELLO", "world")
                @hookimpl
                def nvshim_modifiers():
                    return [Modifier("hello", hello, description="says hello")]
            """,
            "nvshim_t_bad": "raise ImportError('half installed')\n",
        },
        {"hello": "nvshim_t_hello", "bad": "nvshim_t_bad"},
        version="3.1",
    )
    pm = get_plugin_manager()
    infos = {p.name: p for p in load_entry_points(pm)}
    assert infos["hello"].dist == "nvshim-t-hello"
    assert infos["hello"].version == "3.1"
    assert infos["hello"].error is None
    assert infos["bad"].error == "cannot import nvshim_t_bad: ImportError: half installed"
    result = collect_modifiers(pm, list(infos.values()))
    hello = next(m for m in result.active if m.name == "hello")
    assert hello.plugin.label == "nvshim-t-hello 3.1"
    assert any("plugin 'bad' (nvshim-t-hello 3.1) is broken" in e for e in result.errors)
    # Disabling the broken entry point by name means it is not even imported.
    pm2 = get_plugin_manager()
    infos2 = {p.name: p for p in load_entry_points(pm2, disabled=["bad"])}
    assert infos2["bad"].disabled
    assert infos2["bad"].error is None


def test_apply_modifiers_to_a_spec_in_process() -> None:
    pm = get_plugin_manager()

    def add(spec: Spec, context: Any) -> None:
        spec.set_env("MODE", context.mode)

    pm.register(_plugin(Modifier("adder", add)), "adder")
    spec = Spec.from_dict(minimal_spec())
    result = apply_modifiers(spec, config=Config(), mode="csv", plugin_manager=pm)
    assert spec.get_env("MODE") == "csv"
    assert result.applied == ("adder",)
    assert [(c.modifier, c.kind, c.key) for c in result.changes] == [("adder", "env", "MODE")]


def test_apply_modifiers_refuses_with_plugin_errors() -> None:
    pm = get_plugin_manager()
    pm.register(_plugin(Modifier("x", _noop)), "one")
    pm.register(_plugin(Modifier("x", _noop)), "two")
    with pytest.raises(NvshimError, match="provided twice"):
        apply_modifiers(Spec.from_dict(minimal_spec()), config=Config(), plugin_manager=pm)


def test_disabled_modifiers_from_config() -> None:
    pm = get_plugin_manager()

    def add(spec: Spec, context: Any) -> None:
        spec.set_env("X", "1")

    pm.register(_plugin(Modifier("adder", add)), "adder")
    config = Config(nvshim=NvshimConfig(disabled_modifiers=("adder",)))
    spec = Spec.from_dict(minimal_spec())
    result = apply_modifiers(spec, config=config, mode="legacy", plugin_manager=pm)
    assert result.applied == ()
    assert spec.get_env("X") is None


def test_nvshim_ctl_plugins_lists_broken_plugins(nvshim_ctl: str, tmp_path: Path) -> None:
    site = write_plugin_distribution(
        tmp_path / "site",
        "nvshim-t-broken",
        {"nvshim_t_broken": "raise SyntaxError('nope')\n"},
        {"t-broken": "nvshim_t_broken"},
    )
    env = {
        "PYTHONPATH": str(site),
        "NVSHIM_CONFIG": "/dev/null",
        "NVSHIM_CACHE_DIR": str(tmp_path / "cache"),  # never the host's
    }
    result = subprocess.run(
        [nvshim_ctl, "plugins", "--json"], env=env, capture_output=True, timeout=60
    )
    # Every create fails while a plugin is broken: the listing says so in its status.
    assert result.returncode == 1, result.stderr
    listing = json.loads(result.stdout)
    rows = {row["name"]: row for row in listing["modifiers"]}
    assert rows["t-broken"]["status"].startswith("broken: cannot import nvshim_t_broken")
    assert listing["problems"] == [
        {
            "plugin": "t-broken",
            "distribution": "nvshim-t-broken",
            "kind": "import",
            "message": "cannot import nvshim_t_broken: SyntaxError: nope",
        }
    ]
    assert rows["t-broken"]["distribution"] == "nvshim-t-broken"
    for builtin in ("legacy-hook", "csv-discovery", "docker-gpus-detector", "cdi"):
        if builtin in rows:
            assert rows[builtin]["distribution"] == "nvshim-runtime"
    listed = subprocess.run([nvshim_ctl, "plugins"], env=env, capture_output=True, timeout=60)
    assert listed.returncode == 1
    text = listed.stdout.decode()
    assert text.splitlines()[0].split() == ["NAME", "ORDER", "DISTRIBUTION", "VERSION", "STATUS"]
    assert "t-broken" in text
    assert b"disabled-modifiers" in listed.stderr


def test_nvshim_ctl_plugins_exits_0_when_a_broken_plugin_is_disabled(
    nvshim_ctl: str, tmp_path: Path
) -> None:
    site = write_plugin_distribution(
        tmp_path / "site",
        "nvshim-t-broken",
        {"nvshim_t_broken": "raise SyntaxError('nope')\n"},
        {"t-broken": "nvshim_t_broken"},
    )
    config = tmp_path / "config.toml"
    config.write_text('[nvshim]\ndisabled-modifiers = ["t-broken"]\n')
    env = {
        "PYTHONPATH": str(site),
        "NVSHIM_CONFIG": str(config),
        "NVSHIM_CACHE_DIR": str(tmp_path / "cache"),  # never the host's
    }
    result = subprocess.run(
        [nvshim_ctl, "plugins", "--json"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["problems"] == []
    assert {row["name"]: row["status"] for row in listing["modifiers"]}["t-broken"] == "disabled"


def test_pass_through_imports_nothing_heavy() -> None:
    code = """
import json, os, sys
def fake_execv(path, args):
    heavy = sorted(m for m in sys.modules
                   if m.split('.')[0] in ('pluggy', 'attr', 'attrs', 'cattrs', 'yaml', 'tomlkit')
                   or m in ('importlib.metadata', 'logging', 'argparse'))
    print(json.dumps(heavy))
    sys.exit(0)
os.execv = fake_execv
from nvshim._cli import main
main(['nvshim', 'state', 'x'])
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NVSHIM_CONFIG": "/dev/null"},
    )
    if result.returncode == 1 and b"cannot find the low-level runtime" in result.stderr:
        pytest.skip("no runc or crun installed")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_a_modifier_runs_only_in_the_modes_it_serves() -> None:
    def add(spec: Spec, context: Any) -> None:
        spec.set_env("SERVED", context.mode)

    pm = get_plugin_manager()
    pm.register(_plugin(Modifier("csv-only", add, modes="csv")), "p")
    legacy = apply_modifiers(Spec.from_dict(minimal_spec()), mode="legacy", plugin_manager=pm)
    assert legacy.skipped == ("csv-only",)
    assert legacy.spec.get_env("SERVED") is None
    csv = apply_modifiers(Spec.from_dict(minimal_spec()), mode="csv", plugin_manager=pm)
    assert (csv.applied, csv.skipped) == (("csv-only",), ())
    assert csv.spec.get_env("SERVED") == "csv"
    assert Modifier("any", add).serves("cdi")


def test_the_built_ins_declare_their_modes() -> None:
    pm = get_plugin_manager(load=True)
    modes = {m.name: m.modifier.modes for m in pm.collect_modifiers().active}
    assert modes["legacy-hook"] == ("legacy",)
    assert modes["csv-discovery"] == ("csv",)
    assert modes["cdi"] == ("cdi", "jit-cdi")
    assert modes["jit-cdi"] == ("jit-cdi", "cdi")
    assert "legacy" not in modes["docker-gpus-detector"]
    assert {"csv", "cdi"} <= set(modes["docker-gpus-detector"])
