"""The plugin platform: conflicts, validation, policy hooks, bad plugins, inspection commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_support import Modify, bundle_with, chain, plugin_dist, run_tool, tool_env
from schema_support import schema_errors
from support import FakeRuntime, minimal_spec, shared_path

from nvshim import (
    Device,
    Hook,
    Logger,
    Modifier,
    ModifierError,
    Mount,
    NvshimError,
    Spec,
    apply_modifiers,
    hookimpl,
)
from nvshim.changes import Change, ChangeTracker, spec_diff
from nvshim.config import Config
from nvshim.validation import validate_spec

if TYPE_CHECKING:
    from nvshim.testing import PluginRegistrar, RunModifiers, SpecFactory

# Imported by pytest (not above), so that its assertions are rewritten.
pytest_plugins = ["nvshim.testing"]

REPO = Path(__file__).resolve().parent.parent


# -- conflicts -----------------------------------------------------------------


def _raw_env(value: str) -> Modify:
    def modify(spec: Spec, _ctx: Any) -> None:
        env = spec.raw["process"]["env"]
        env[:] = [e for e in env if not e.startswith("X=")] + [f"X={value}"]

    return modify


CONFLICTS: dict[str, tuple[Modify, Modify, str]] = {
    "env": (
        lambda s, c: s.set_env("X", "1"),
        lambda s, c: s.set_env("X", "2"),
        "changes env 'X' that modifier 'a' (plugin-a) set (from '1' to '2')",
    ),
    "annotation": (
        lambda s, c: s.set_annotation("k", "1"),
        lambda s, c: s.set_annotation("k", "2"),
        "changes annotation 'k'",
    ),
    "mount source": (
        lambda s, c: s.add_mount(Mount("/data", source="/srv/a", type="bind", options=["rbind"])),
        lambda s, c: s.add_mount(Mount("/data", source="/srv/b", type="bind", options=["rbind"])),
        "changes mount '/data'",
    ),
    "device numbers": (
        lambda s, c: s.add_device(Device("/dev/nvidia0", "c", 195, 0)),
        lambda s, c: s.add_device(Device("/dev/nvidia0", "c", 195, 1)),
        "changes device '/dev/nvidia0'",
    ),
    "removed env": (
        lambda s, c: s.set_env("X", "1"),
        lambda s, c: s.unset_env("X"),
        "removes env 'X' that modifier 'a' (plugin-a) set",
    ),
    "removed mount": (
        lambda s, c: s.add_mount(Mount("/data", source="/srv/a", type="bind")),
        lambda s, c: s.remove_mount("/data"),
        "removes mount '/data'",
    ),
    "removed hook": (
        lambda s, c: s.add_hook("prestart", Hook("/usr/bin/hook")),
        lambda s, c: s.remove_hooks("prestart", lambda h: True),
        "removes hook 'prestart:/usr/bin/hook'",
    ),
    "raw edit": (
        lambda s, c: s.set_env("X", "1"),
        _raw_env("2"),
        "changes env 'X' that modifier 'a' (plugin-a) set",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFLICTS))
def test_conflicts_name_both_modifiers_and_the_field(
    case: str,
    register_plugin: PluginRegistrar,
    oci_spec: SpecFactory,
    run_modifiers: RunModifiers,
) -> None:
    first, second, message = CONFLICTS[case]
    chain(register_plugin, ("a", first), ("b", second))
    with pytest.raises(NvshimError) as error:
        run_modifiers(oci_spec(), mode="legacy")
    line = error.value.line
    assert line.startswith("nvshim: conflicting modifiers: modifier 'b' (plugin-b) ")
    assert message in line
    assert "\n" not in line


@pytest.mark.parametrize("case", sorted(CONFLICTS))
def test_an_override_is_allowed_and_logged(
    case: str,
    register_plugin: PluginRegistrar,
    plugin_manager: pluggy.PluginManager,
    oci_spec: SpecFactory,
    tmp_path: Path,
) -> None:
    first, second, _ = CONFLICTS[case]
    chain(register_plugin, ("a", first), ("b", second), b={"overrides": ("a",)})
    log = tmp_path / "log.txt"
    logger = Logger("info")
    logger.add_file(str(log))
    # run_modifiers takes no logger: call the library function it wraps.
    apply_modifiers(
        oci_spec(), config=Config(), mode="legacy", plugin_manager=plugin_manager, logger=logger
    )
    logger.close()
    text = log.read_text()
    assert "modifier 'b' (plugin-b) " in text
    assert "allowed, it overrides 'a'" in text


def test_override_of_another_modifier_does_not_cover_this_one(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    chain(
        register_plugin,
        ("a", lambda s, c: s.set_env("X", "1")),
        ("b", lambda s, c: s.set_env("X", "2")),
        b={"overrides": ("someone-else",)},
    )
    with pytest.raises(NvshimError, match="conflicting modifiers"):
        run_modifiers(oci_spec(), mode="legacy")
    # "*" overrides anyone.
    tracker = ChangeTracker()
    info = _Info("c", ("*",))
    tracker.recorder_for(_Info("a"))(Change("env", "X", "add", None, "1"))
    tracker.recorder_for(info)(Change("env", "X", "replace", "1", "2"))
    assert tracker.error is None
    assert tracker.overridden


class _Info:
    def __init__(self, name: str, overrides: tuple[str, ...] = ()) -> None:
        self.name = name
        self.modifier = Modifier(name, lambda s, c: None, overrides=list(overrides))


def test_what_the_engine_wrote_is_not_a_conflict(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    spec = oci_spec(env={"X": "engine"}, annotations={"k": "engine"})

    def engine_fields(spec: Spec, _ctx: Any) -> None:
        spec.set_env("X", "a")
        spec.set_annotation("k", "a")

    def engine_removals(spec: Spec, _ctx: Any) -> None:
        spec.remove_mount("/proc")
        spec.unset_env("PATH")

    chain(register_plugin, ("a", engine_fields), ("b", engine_removals))
    result = run_modifiers(spec, mode="legacy")
    assert result.spec.get_env("X") == "a"
    assert [(c.modifier, c.kind, c.key, c.action) for c in result.changes] == [
        ("a", "env", "X", "replace"),
        ("a", "annotation", "k", "replace"),
        ("b", "mount", "/proc", "remove"),
        ("b", "env", "PATH", "remove"),
    ]


def test_same_value_and_extra_hooks_are_not_conflicts(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    def both(spec: Spec, _ctx: Any) -> None:
        spec.set_env("X", "same")
        spec.add_hook("prestart", Hook("/usr/bin/hook", args=("hook", spec.get_env("X") or "")))
        spec.add_device(Device("/dev/fuse", "c", 10, 229))
        spec.add_additional_gids([44])

    chain(register_plugin, ("a", both), ("b", both))
    result = run_modifiers(oci_spec(), mode="legacy")
    assert len(result.spec.hooks("prestart")) == 2


def test_raw_changes_are_found_and_attributed(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    def raw(spec: Spec, _ctx: Any) -> None:
        spec.raw["process"]["args"] = ["nvidia-smi"]
        spec.raw["linux"]["namespaces"].append({"type": "ipc"})
        spec.raw.setdefault("annotations", {})["a"] = "b"
        spec.set_env("API", "1")

    chain(register_plugin, ("raw", raw))
    result = run_modifiers(oci_spec(), mode="legacy")
    found = {(c.kind, c.key, c.source) for c in result.changes}
    assert found == {
        ("env", "API", "api"),
        ("field", "process.args", "raw"),
        ("field", "linux.namespaces", "raw"),
        ("annotation", "a", "raw"),
    }
    assert {c.modifier for c in result.changes} == {"raw"}


def test_spec_diff_of_identical_specs_is_empty() -> None:
    data = json.loads(
        shared_path("oci-runtime-spec", "test", "config", "good", "spec-example.json").read_text()
    )
    assert spec_diff(data, json.loads(json.dumps(data))) == []
    changed = json.loads(json.dumps(data))
    changed["mounts"][0]["options"] = ["ro"]
    changed["linux"]["devices"].append({"path": "/dev/x", "type": "c", "major": 1, "minor": 2})
    kinds = {(c.kind, c.key, c.action) for c in spec_diff(data, changed)}
    assert kinds == {
        ("mount", changed["mounts"][0]["destination"], "replace"),
        ("device", "/dev/x", "add"),
    }


# -- validation ----------------------------------------------------------------


def _set(path: str, value: Any) -> Modify:
    def modify(spec: Spec, _ctx: Any) -> None:
        *parents, last = path.split(".")
        node = spec.raw
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return modify


def _append(path: str, value: Any) -> Modify:
    def modify(spec: Spec, _ctx: Any) -> None:
        *parents, last = path.split(".")
        node = spec.raw
        for key in parents:
            node = node.setdefault(key, {})
        node.setdefault(last, []).append(value)

    return modify


def _del(path: str) -> Modify:
    def modify(spec: Spec, _ctx: Any) -> None:
        *parents, last = path.split(".")
        node = spec.raw
        for key in parents:
            node = node[key]
        del node[last]

    return modify


#: (modification, expected message, whether the OCI schema refuses it too)
INVALID: dict[str, tuple[Modify, str, bool]] = {
    "relative mount destination": (
        _append("mounts", {"destination": "data", "source": "/srv", "type": "bind"}),
        "mount destination 'data' is not a clean absolute path",
        False,
    ),
    "dotdot mount destination": (
        _append("mounts", {"destination": "/a/../etc", "type": "bind"}),
        "is not a clean absolute path",
        False,
    ),
    "two mounts on one destination": (
        _append("mounts", {"destination": "/proc", "type": "bind", "source": "/x"}),
        "two mounts on /proc",
        False,
    ),
    "mount options not strings": (
        _append("mounts", {"destination": "/m", "options": ["ro", 1]}),
        "mounts[1].options[1] must be a string",
        True,
    ),
    "device without numbers": (
        _append("linux.devices", {"path": "/dev/nvidia0", "type": "c"}),
        "device /dev/nvidia0: major missing",
        False,
    ),
    "device bad type": (
        _append("linux.devices", {"path": "/dev/x", "type": "x", "major": 1, "minor": 1}),
        "must be one of c, b, u, p",
        True,
    ),
    "device relative path": (
        _append("linux.devices", {"path": "dev/x", "type": "c", "major": 1, "minor": 1}),
        "device path 'dev/x' is not a clean absolute path",
        False,
    ),
    "device mode out of range": (
        _append(
            "linux.devices",
            {"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "fileMode": 8630},
        ),
        "fileMode 8630 is out of range",
        True,
    ),
    "relative hook path": (
        _append("hooks.prestart", {"path": "bin/hook"}),
        "hook path 'bin/hook' is not absolute",
        False,
    ),
    "hook timeout zero": (
        _append("hooks.poststart", {"path": "/bin/h", "timeout": 0}),
        "out of range",
        True,
    ),
    "env entry without =": (
        _append("process.env", "NOVALUE"),
        "environment entry 'NOVALUE' is not NAME=value",
        False,
    ),
    "env name invalid": (
        _append("process.env", "1X=2"),
        "environment entry '1X=2' is not NAME=value",
        False,
    ),
    "args not strings": (_set("process.args", "sh -c x"), "process.args must be an array", True),
    "cwd removed": (_del("process.cwd"), "process has no cwd", True),
    "namespace type": (_append("linux.namespaces", {"type": "gpu"}), "must be one of mount", True),
    "annotation not string": (
        _set("annotations", {"a": 1}),
        "annotations.a must be a string",
        True,
    ),
    "gid negative": (_set("process.user.additionalGids", [-1]), "out of range", True),
    "root without path": (_set("root", {"readonly": True}), "root has no path", True),
    "cgroup rule without allow": (
        _set("linux.resources", {"devices": [{"type": "c", "major": 195}]}),
        "has no allow",
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_validation_refuses_and_names_the_modifier(
    case: str,
    register_plugin: PluginRegistrar,
    oci_spec: SpecFactory,
    run_modifiers: RunModifiers,
) -> None:
    modify, message, schema_refuses = INVALID[case]
    chain(register_plugin, ("bad", modify))
    spec = oci_spec()
    with pytest.raises(NvshimError) as error:
        run_modifiers(spec, mode="legacy")
    line = error.value.line
    assert line.startswith("nvshim: invalid spec: "), line
    assert message in line
    assert line.endswith("(set by modifier 'bad' (plugin-bad))")
    # Cross-check with the official schema: where it refuses, so does nvshim;
    # where it accepts, nvshim's rule is one of its documented extra ones.
    assert bool(schema_errors(spec.raw)) == schema_refuses, schema_errors(spec.raw)


def test_parts_no_modifier_touched_are_not_checked(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    spec = oci_spec(mounts=[{"destination": "proc", "type": "proc"}])  # engine's quirk
    chain(register_plugin, ("a", lambda s, c: s.set_env("A", "1")))
    assert run_modifiers(spec, mode="legacy").spec.get_env("A") == "1"


GOOD = [
    "minimal.json",
    "minimal-for-start.json",
    "spec-example.json",
    "linux-rdma.json",
    "linux-netdevice.json",
]


def _everything_touched(data: dict[str, Any]) -> list[Change]:
    return [Change("field", key, "add", None, value) for key, value in data.items()] + [
        Change("mount", m["destination"], "add", None, m) for m in data.get("mounts", [])
    ]


@pytest.mark.parametrize("name", GOOD)
def test_schema_valid_configs_pass_validation_entirely(name: str) -> None:
    data = json.loads(shared_path("oci-runtime-spec", "test", "config", "good", name).read_text())
    assert schema_errors(data) == []
    assert validate_spec(Spec.from_dict(data), _everything_touched(data)) is None


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.text(max_size=5)
    | st.sampled_from(["/abs", "/dev/x", "c", "p", "RLIMIT_NOFILE", "A=1", "mount", "rel"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "path",
                    "type",
                    "major",
                    "minor",
                    "destination",
                    "source",
                    "options",
                    "allow",
                    "cwd",
                    "args",
                    "env",
                    "uid",
                    "gid",
                    "timeout",
                    "soft",
                    "hard",
                    "containerID",
                    "hostID",
                    "size",
                    "readonly",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=8,
)
FIELDS = [
    "process",
    "root",
    "mounts",
    "hooks",
    "annotations",
    "hostname",
    "process.args",
    "process.env",
    "process.user",
    "process.rlimits",
    "process.capabilities",
    "linux.devices",
    "linux.namespaces",
    "linux.uidMappings",
    "linux.resources",
    "linux.maskedPaths",
    "linux.sysctl",
]
STRICTER = (
    "is not a clean absolute path",
    "is not absolute",
    "is not NAME=value",
    "missing",
    "two mounts on",
    "has no path",
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_validation_agrees_with_the_schema(field: str, value: Any) -> None:
    """Any value a modifier writes into a modelled field: schema-invalid -> refused.

    nvshim may refuse more than the schema (clean container paths, env names,
    complete devices, one mount per destination), never less.
    """
    before = minimal_spec(linux={"namespaces": [{"type": "pid"}]})
    spec = Spec.from_dict(before)
    data = spec.raw  # as a modifier writing through Spec.raw would
    *parents, last = field.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    changes = spec_diff(before, data)
    problem = validate_spec(spec, changes)
    errors = schema_errors(data)
    if errors:
        assert problem is not None, errors
    elif problem is not None:
        assert any(reason in problem for reason in STRICTER), problem


# -- nvshim_validate ------------------------------------------------------------


class NoPrivilegedGpus:
    """A policy plugin: refuse privileged containers that ask for a GPU."""

    @hookimpl
    def nvshim_validate(self, spec: Spec) -> None:  # takes a subset of the arguments
        if spec.privileged and spec.get_env("NVIDIA_VISIBLE_DEVICES"):
            raise ModifierError("no privileged GPU containers")


def test_nvshim_validate_refuses_a_finished_spec(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    register_plugin(NoPrivilegedGpus(), name="policy")
    chain(register_plugin, ("gpu", lambda s, c: s.set_env("NVIDIA_VISIBLE_DEVICES", "all")))
    plain = run_modifiers(oci_spec(), mode="legacy")
    assert plain.spec.get_env("NVIDIA_VISIBLE_DEVICES") == "all"
    privileged = oci_spec()
    privileged.raw["process"]["capabilities"] = {"bounding": ["CAP_SYS_ADMIN"]}
    with pytest.raises(NvshimError) as error:
        run_modifiers(privileged, mode="legacy")
    assert error.value.line == "nvshim: validator 'policy' (policy): no privileged GPU containers"


def test_nvshim_validate_must_not_change_the_spec(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    class Sneaky:
        @hookimpl
        def nvshim_validate(self, spec: Spec, context: Any) -> None:
            assert context.modifier == ""
            assert context.options is None
            spec.raw["hostname"] = "changed"

    register_plugin(Sneaky(), name="sneaky")
    with pytest.raises(NvshimError, match=r"validator 'sneaky' .*changed the spec"):
        run_modifiers(oci_spec(), mode="legacy")


def test_nvshim_validate_crash_is_one_line(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    class Crashing:
        @hookimpl
        def nvshim_validate(self, spec: Spec) -> None:
            raise ValueError("multi\nline")

    register_plugin(Crashing(), name="crash")
    with pytest.raises(NvshimError) as error:
        run_modifiers(oci_spec(), mode="legacy")
    assert error.value.line == "nvshim: validator 'crash' (crash): ValueError: multi"


# -- bad plugins, installed through entry points ---------------------------------

BAD_PLUGINS: dict[str, tuple[str, str]] = {
    "fails to import": (
        "import nvshim_no_such_module\n",
        "nvshim: plugin error: plugin 'bad' (nvshim-bad 2.0) is broken: cannot import "
        "nvshim_bad: ModuleNotFoundError: No module named 'nvshim_no_such_module'",
    ),
    "raises in nvshim_modifiers": (
        """
        from nvshim import hookimpl
        @hookimpl
        def nvshim_modifiers():
            raise RuntimeError("no GPU library\\nsecond line")
        """,
        "nvshim: plugin error: plugin 'bad' (nvshim-bad 2.0) is broken: nvshim_modifiers() "
        "raised RuntimeError: no GPU library",
    ),
    "returns a non-Modifier": (
        """
        from nvshim import hookimpl
        @hookimpl
        def nvshim_modifiers():
            return [lambda spec, context: None]
        """,
        "nvshim: plugin error: plugin 'bad' (nvshim-bad 2.0) is broken: nvshim_modifiers() "
        "returned function",
    ),
    "returns a bare Modifier": (
        """
        from nvshim import Modifier, hookimpl
        @hookimpl
        def nvshim_modifiers():
            return Modifier("bad", lambda spec, context: None)
        """,
        "nvshim: plugin error: plugin 'bad' (nvshim-bad 2.0) is broken: nvshim_modifiers() "
        "returned Modifier",
    ),
    "two modifiers one name": (
        """
        from nvshim import Modifier, hookimpl
        @hookimpl
        def nvshim_modifiers():
            return [Modifier("twin", lambda s, c: None), Modifier("twin", lambda s, c: None)]
        """,
        "nvshim: plugin error: modifier name 'twin' is provided twice: by plugin 'bad' "
        "(nvshim-bad 2.0) and by plugin 'bad' (nvshim-bad 2.0)",
    ),
    "too slow": (
        """
        import time
        from nvshim import Modifier, hookimpl
        def slow(spec, context):
            spec.set_env("HALF", "done")
            time.sleep(30)
        @hookimpl
        def nvshim_modifiers():
            return [Modifier("slow", slow)]
        """,
        "nvshim: modifier 'slow' (nvshim-bad 2.0): did not finish within 0.5 s",
    ),
    "edits the spec into something invalid": (
        """
        from nvshim import Modifier, hookimpl
        def wreck(spec, context):
            spec.raw["mounts"].append({"destination": "../../etc", "type": "bind"})
        @hookimpl
        def nvshim_modifiers():
            return [Modifier("wreck", wreck)]
        """,
        "nvshim: invalid spec: mount destination '../../etc' is not a clean absolute path "
        "(set by modifier 'wreck' (nvshim-bad 2.0))",
    ),
    "raises in modify": (
        """
        import sys
        from nvshim import Modifier, hookimpl
        def leave(spec, context):
            sys.exit("bye\\nnow")
        @hookimpl
        def nvshim_modifiers():
            return [Modifier("leave", leave)]
        """,
        "nvshim: modifier 'leave' (nvshim-bad 2.0): SystemExit: bye",
    ),
}


@pytest.fixture
def config_toml(tmp_path: Path, fake_runtime: FakeRuntime) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[nvidia-container-runtime]\nruntimes = ["{fake_runtime.path}"]\nmode = "legacy"\n'
        "[nvshim]\nmodifier-timeout = 0.5\n"
    )
    return path


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_a_bad_plugin_gives_one_line_and_leaves_config_json(
    case: str, tmp_path: Path, nvshim_exe: str, config_toml: Path, fake_runtime: FakeRuntime
) -> None:
    source, expected = BAD_PLUGINS[case]
    site = plugin_dist(tmp_path / "site", "nvshim-bad", source, version="2.0")
    bundle = bundle_with(tmp_path / "bundle", minimal_spec(mounts=[]))
    before = (bundle / "config.json").read_bytes()
    started = time.monotonic()
    result = run_tool(
        nvshim_exe, ["create", "--bundle", str(bundle), "ctr"], tool_env(site, config_toml)
    )
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), lines[0]
    assert (bundle / "config.json").read_bytes() == before
    assert fake_runtime.calls() == []


def test_a_good_plugin_in_a_create_rewrites_config_json(
    tmp_path: Path, nvshim_exe: str, config_toml: Path, fake_runtime: FakeRuntime
) -> None:
    source = """
        from nvshim import Modifier, hookimpl
        @hookimpl
        def nvshim_modifiers():
            return [Modifier("hello", lambda spec, ctx: spec.set_env("HELLO", "1"))]
    """
    site = plugin_dist(tmp_path / "site", "nvshim-hello", source)
    bundle = bundle_with(tmp_path / "bundle", minimal_spec())
    result = run_tool(
        nvshim_exe, ["create", "--bundle", str(bundle), "ctr"], tool_env(site, config_toml)
    )
    assert result.returncode == 0, result.stderr
    assert "HELLO=1" in json.loads((bundle / "config.json").read_text())["process"]["env"]
    assert len(fake_runtime.calls()) == 1


# -- nvshim-ctl plugins / modify / config -----------------------------------------

POLICY_PLUGIN = """
    import attrs
    from nvshim import Modifier, ModifierError, hookimpl

    @attrs.frozen
    class Options:
        value: str = "default"

    def tag(spec, context):
        spec.set_env("TAG", context.options.value)
        spec.raw["hostname"] = "tagged"

    @hookimpl
    def nvshim_modifiers():
        return [Modifier("tag", tag, order=70, description="tags", config_class=Options)]

    @hookimpl
    def nvshim_validate(spec, context):
        if spec.get_env("TAG") == "forbidden":
            raise ModifierError("TAG may not be forbidden")
"""


@pytest.fixture
def tag_site(tmp_path: Path) -> Path:
    return plugin_dist(tmp_path / "site", "nvshim-tag", POLICY_PLUGIN, version="1.5")


def test_ctl_plugins_json_lists_hooks_and_config_table(nvshim_ctl: str, tag_site: Path) -> None:
    result = run_tool(nvshim_ctl, ["plugins", "--json"], tool_env(tag_site, None))
    assert result.returncode == 0, result.stderr
    row = next(r for r in json.loads(result.stdout)["modifiers"] if r["name"] == "tag")
    assert row["hooks"] == ["nvshim_modifiers", "nvshim_validate"]
    assert row["config_table"] == "nvshim.plugins.tag"
    assert (row["distribution"], row["version"], row["status"]) == ("nvshim-tag", "1.5", "active")


def test_ctl_modify_prints_a_diff_and_writes_nothing(
    nvshim_ctl: str, tag_site: Path, tmp_path: Path
) -> None:
    bundle = bundle_with(tmp_path / "bundle", minimal_spec())
    before = (bundle / "config.json").read_bytes()
    config = tmp_path / "config.toml"
    config.write_text(
        '[nvidia-container-runtime]\nmode = "legacy"\n[nvshim.plugins.tag]\nvalue = "blue"\n'
    )
    result = run_tool(
        nvshim_ctl,
        ["modify", "--bundle", str(bundle), "--config", str(config)],
        tool_env(tag_site, None),
    )
    assert result.returncode == 0, result.stderr
    assert '+      "TAG=blue"' in result.stdout.splitlines()
    assert result.stdout.startswith("---")
    assert (bundle / "config.json").read_bytes() == before

    as_json = run_tool(
        nvshim_ctl,
        ["modify", "--bundle", str(bundle), "--json", "--config", str(config)],
        tool_env(tag_site, None),
    )
    assert as_json.returncode == 0, as_json.stderr
    changes = json.loads(as_json.stdout)
    assert [(c["modifier"], c["kind"], c["key"], c["source"]) for c in changes] == [
        ("tag", "env", "TAG", "api"),
        ("tag", "field", "hostname", "raw"),
    ]
    assert (bundle / "config.json").read_bytes() == before


def test_ctl_modify_exits_1_with_the_create_error(
    nvshim_ctl: str, tag_site: Path, tmp_path: Path
) -> None:
    bundle = bundle_with(tmp_path / "bundle", minimal_spec())
    config = tmp_path / "config.toml"
    config.write_text(
        '[nvidia-container-runtime]\nmode = "legacy"\n[nvshim.plugins.tag]\nvalue = "forbidden"\n'
    )
    result = run_tool(
        nvshim_ctl,
        ["modify", "--bundle", str(bundle), "--config", str(config)],
        tool_env(tag_site, None),
    )
    assert result.returncode == 1
    assert result.stderr == ("nvshim: validator 'tag' (nvshim-tag 1.5): TAG may not be forbidden\n")
    missing = run_tool(
        nvshim_ctl, ["modify", "--bundle", str(tmp_path / "none")], tool_env(None, None)
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("nvshim: cannot load the spec: cannot read ")


def test_ctl_config_show_and_validate(nvshim_ctl: str, tag_site: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[nvidia-container-runtime]\nmode = "cdi"\nfuture-key = 1\n'
        "[nvshim]\nmodifier-timeout = 3\n[nvshim.plugins.tag]\nvalue = 'x'\n"
    )
    env = tool_env(tag_site, config)
    shown = run_tool(nvshim_ctl, ["config", "show", "--json"], env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["source"] == str(config)
    assert data["config"]["nvidia-container-runtime"]["mode"] == "cdi"
    assert data["config"]["nvshim"]["modifier-timeout"] == 3.0
    assert data["config"]["nvshim"]["plugins"] == {"tag": {"value": "x"}}
    assert data["ignored_keys"] == ["nvidia-container-runtime.future-key"]
    text = run_tool(nvshim_ctl, ["config", "show"], env)
    assert text.stdout.startswith(f"# source: {config}\n")
    assert 'mode = "cdi"' in text.stdout
    defaults = run_tool(nvshim_ctl, ["config", "show"], tool_env(None, None))
    assert "defaults" in defaults.stdout.splitlines()[0]

    # future-key is no key of NVIDIA's: refused unless --lenient.
    assert run_tool(nvshim_ctl, ["config", "validate", str(config)], env).returncode == 1
    valid = run_tool(nvshim_ctl, ["config", "validate", "--lenient", str(config)], env)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.endswith(f"{config}: valid\n")

    bad = tmp_path / "bad.toml"
    bad.write_text("[nvshim]\nmodifier-timeot = 3\n")
    refused = run_tool(nvshim_ctl, ["config", "validate", str(bad)], env)
    assert refused.returncode == 1
    assert "modifier-timeot" in refused.stderr

    table = tmp_path / "table.toml"
    table.write_text("[nvshim.plugins.tag]\nvalu = 'x'\n[nvshim.plugins.nobody]\nx = 1\n")
    refused = run_tool(nvshim_ctl, ["config", "validate", str(table)], env)
    assert refused.returncode == 1
    assert "nvshim.plugins.tag" in refused.stderr
    assert "unknown key(s): valu" in refused.stderr
    assert "no installed modifier is named 'nobody'" in refused.stderr


# -- the example plugin, installed with pip --------------------------------------


@pytest.mark.slow
def test_example_plugin_installs_and_is_found_by_its_entry_point(
    tmp_path: Path, nvshim_ctl: str
) -> None:
    source = REPO / "plugins" / "nvshim-host-mounts"
    site = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot build the example plugin here: {pip.stderr.strip()[-300:]}")
    data = tmp_path / "datasets"
    data.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[nvidia-container-runtime]\nmode = "legacy"\n'
        f'[nvshim.plugins.host-mounts]\nallow = ["{data}"]\n'
    )
    env = tool_env(site, config)
    listed = run_tool(nvshim_ctl, ["plugins", "--json"], env)
    row = next(r for r in json.loads(listed.stdout)["modifiers"] if r["name"] == "host-mounts")
    assert (row["distribution"], row["status"]) == ("nvshim-host-mounts", "active")
    assert row["config_table"] == "nvshim.plugins.host-mounts"
    bundle = bundle_with(
        tmp_path / "bundle", minimal_spec(annotations={"nvshim.io/host-mounts": f"{data}:/data"})
    )
    result = run_tool(nvshim_ctl, ["modify", "--bundle", str(bundle), "--json"], env)
    assert result.returncode == 0, result.stderr
    assert [(c["modifier"], c["key"]) for c in json.loads(result.stdout)] == [
        ("host-mounts", "/data")
    ]
    shutil.rmtree(site)


def test_set_linux_and_a_raw_write_to_the_same_field_conflict(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    def api(spec: Spec, _ctx: Any) -> None:
        spec.set_linux("intelRdt", {"closID": "gpu"})

    def raw(spec: Spec, _ctx: Any) -> None:
        spec.raw["linux"]["intelRdt"] = {"closID": "other"}

    chain(register_plugin, ("a", api))
    result = run_modifiers(oci_spec(), mode="legacy")
    assert [(c.kind, c.key, c.source) for c in result.changes] == [("linux", "intelRdt", "api")]
    chain(register_plugin, ("b", raw))
    with pytest.raises(NvshimError, match=r"modifier 'b' .* changes field 'linux.intelRdt'"):
        run_modifiers(oci_spec(), mode="legacy")


def test_set_linux_value_is_validated(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    def bad(spec: Spec, _ctx: Any) -> None:
        spec.set_linux("namespaces", [{"type": "gpu"}])

    chain(register_plugin, ("ns", bad))
    with pytest.raises(NvshimError, match=r"must be one of mount.*\(set by modifier 'ns'"):
        run_modifiers(oci_spec(), mode="legacy")
