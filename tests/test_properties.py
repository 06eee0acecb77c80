"""Property tests (hypothesis): the argv parser, the spec round trip, env helpers, CSV lines.

The requirement grammar has its own property tests in test_requirements.py.
Each test counts its examples in the reliability summary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import reliability_report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvshim._argv import FLAG_OPTIONS, VALUE_OPTIONS, ArgvError, bundle_from, parse_args
from nvshim.spec import MAX_SPEC_DEPTH, Spec, SpecError, parse_json

EXAMPLES = int(os.environ.get("NVSHIM_PROPERTY_EXAMPLES", "150"))
common = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# -- the argv parser -------------------------------------------------------------

_words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12
)
_commands = st.sampled_from(["create", "run", "start", "state", "delete", "kill", "exec", "ps"])
_value_names = st.sampled_from(sorted(VALUE_OPTIONS))
_flag_names = st.sampled_from(sorted(FLAG_OPTIONS - {"h", "help", "v", "version"}))


@st.composite
def _global_options(draw: Any) -> tuple[list[str], dict[str, str], set[str]]:
    """Global options in every accepted spelling, with what they mean."""
    argv: list[str] = []
    options: dict[str, str] = {}
    flags: set[str] = set()
    for _ in range(draw(st.integers(0, 5))):
        dashes = draw(st.sampled_from(["-", "--"]))
        if draw(st.booleans()):
            name = draw(_value_names)
            value = draw(_words)
            if draw(st.booleans()):
                argv.append(f"{dashes}{name}={value}")
            else:
                argv += [f"{dashes}{name}", value]
            options[name] = value
        else:
            name = draw(_flag_names)
            argv.append(f"{dashes}{name}")
            flags.add(name)
    return argv, options, flags


@common
@given(_global_options(), _commands, st.lists(_words.filter(lambda w: not w.startswith("-"))))
def test_argv_global_options_then_command(
    options: tuple[list[str], dict[str, str], set[str]], command: str, rest: list[str]
) -> None:
    reliability_report.count("fuzz_examples")
    argv, expected_options, expected_flags = options
    args = parse_args([*argv, command, *rest])
    assert args.command == command
    assert args.options == expected_options  # the last one wins, like runc
    assert args.flags == frozenset(expected_flags)
    assert args.command_args == tuple(rest)
    assert args.argv == (*argv, command, *rest)  # nothing dropped or reordered
    assert args.is_create == (command in ("create", "run"))


@common
@given(st.lists(_words, max_size=10))
def test_argv_parser_never_fails_but_with_argv_error(argv: list[str]) -> None:
    reliability_report.count("fuzz_examples")
    try:
        args = parse_args(argv)
    except ArgvError as exc:
        message = str(exc)
        args = None
    if args is None:
        assert "needs a value" in message
        return
    assert args.argv == tuple(argv)
    if args.command is not None:
        assert argv[args.command_index] == args.command


@common
@given(
    st.lists(st.sampled_from(["-b", "--bundle", "-bundle", "--bundle=", "-b="]), min_size=1),
    st.lists(_words.filter(lambda w: bool(w) and not w.startswith("-")), min_size=1),
    st.lists(st.sampled_from(["--pid-file", "/run/x.pid", "--no-pivot", "--console-socket"])),
)
def test_bundle_is_the_last_one_given(
    flags: list[str], values: list[str], noise: list[str]
) -> None:
    reliability_report.count("fuzz_examples")
    args: list[str] = []
    last = None
    for i, flag in enumerate(flags):
        value = values[i % len(values)]
        args += [flag + value] if flag.endswith("=") else [flag, value]
        last = value
    args += noise
    assert bundle_from(args) == last
    parsed = parse_args(["create", *args, "ctr"])
    # Resolved as runc resolves it (it chdirs): links first, then "..".
    assert parsed.bundle(cwd="/base") == os.path.realpath(os.path.join("/base", last))


# -- the spec round trip ------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_keys = st.text(max_size=10)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=30,
)


@st.composite
def _specs_with_unknown_fields(draw: Any) -> dict[str, Any]:
    """A spec with unknown fields at the top, inside known objects, and deep down."""
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"env": draw(st.lists(st.text(max_size=15), max_size=5)), "cwd": "/"},
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}]},
    }
    for _ in range(draw(st.integers(1, 6))):
        where = draw(
            st.sampled_from([spec, spec["process"], spec["root"], spec["mounts"][0], spec["linux"]])
        )
        key = draw(st.text(min_size=1, max_size=10).map(lambda k: "x-" + k))
        value: Any = draw(_json)
        for _depth in range(draw(st.integers(0, 20))):  # deep, but a real spec's limit
            value = {draw(_keys): value} if draw(st.booleans()) else [value]
        where[key] = value
    return spec


@common
@given(_specs_with_unknown_fields())
def test_unknown_fields_survive_with_order_and_nulls(data: dict[str, Any]) -> None:
    reliability_report.count("fuzz_examples")
    text = json.dumps(data, separators=(",", ":"))
    spec = Spec(parse_json(text.encode()))
    assert spec.to_json() == text  # same keys, same order, same nulls
    assert spec.to_dict() == data
    assert Spec.from_dict(data).to_json() == text


@common
@given(_specs_with_unknown_fields(), st.text(min_size=1, max_size=8))
def test_env_change_touches_nothing_else(data: dict[str, Any], value: str) -> None:
    reliability_report.count("fuzz_examples")
    spec = Spec.from_dict(data)
    spec.set_env("NVSHIM_PROPERTY", value)
    out = spec.to_dict()
    assert out["process"].pop("env") == [*data["process"]["env"], f"NVSHIM_PROPERTY={value}"]
    expected = json.loads(json.dumps(data))
    expected["process"].pop("env")
    assert json.dumps(out) == json.dumps(expected)


@common
@given(_json)
def test_parse_json_accepts_only_objects_and_never_crashes(value: Any) -> None:
    reliability_report.count("fuzz_examples")
    text = json.dumps(value).encode()
    if not isinstance(value, dict):
        with pytest.raises(SpecError, match="must hold a JSON object"):
            parse_json(text)
        return
    assert parse_json(text) == value


def test_depth_limit_is_exact() -> None:
    ok: Any = 1
    for _ in range(MAX_SPEC_DEPTH - 1):
        ok = [ok]
    Spec(parse_json(json.dumps({"x": ok}).encode()))
    with pytest.raises(SpecError, match="nested too deeply"):
        parse_json(json.dumps({"x": [ok]}).encode())
    with pytest.raises(SpecError, match="nested too deeply"):
        Spec.from_dict({"x": [ok]})


@settings(max_examples=max(10, EXAMPLES // 5), deadline=None)
@given(_specs_with_unknown_fields())
def test_no_op_chain_gives_back_the_same_json(tmp_path_factory: Any, data: dict[str, Any]) -> None:
    """A chain whose modifiers change nothing leaves the spec and the file as they were."""
    from nvshim import Modifier, hookimpl
    from nvshim.config import Config
    from nvshim.plugins import get_plugin_manager
    from nvshim.runtime import apply_modifiers

    reliability_report.count("fuzz_examples")

    class NoOp:
        @hookimpl
        def nvshim_modifiers(self) -> list[Modifier]:
            def really_nothing(spec: Spec, _context: Any) -> None:
                spec.get_env("PATH")
                spec.mounts()
                spec.hooks("prestart")
                for mount in spec.mounts():
                    spec.add_mount(mount)  # the same mount again: no change

            return [Modifier("reads-only", really_nothing), Modifier("noop-2", really_nothing)]

    pm = get_plugin_manager()
    pm.register(NoOp(), name="noop")
    text = json.dumps(data, indent=1)
    bundle = Path(tmp_path_factory.mktemp("noop"))
    (bundle / "config.json").write_text(text)
    result = apply_modifiers(bundle, config=Config(), mode="legacy", plugin_manager=pm)
    assert result.spec.to_dict() == data
    assert json.dumps(result.spec.to_dict()) == json.dumps(data)
    assert (bundle / "config.json").read_text() == text  # not even reformatted
    assert result.written is False


# -- env helpers ---------------------------------------------------------------------

_names = st.text(alphabet="ABCDXY_", min_size=1, max_size=4)
_entries = st.lists(
    st.tuples(_names, st.one_of(st.none(), st.text(max_size=5))).map(
        lambda t: t[0] if t[1] is None else f"{t[0]}={t[1]}"
    ),
    max_size=8,
)


def _reference_get(env: list[str], name: str) -> str | None:
    """The rule, written plainly: last entry whose name is ``name``; ``NAME`` alone is ""."""
    for entry in reversed(env):
        if "=" in entry:
            key, value = entry.split("=", 1)
        else:
            key, value = entry, ""
        if key == name:
            return value
    return None


@common
@given(_entries, _names)
def test_get_env_matches_the_rule(env: list[str], name: str) -> None:
    reliability_report.count("fuzz_examples")
    spec = Spec.from_dict({"process": {"env": env}})
    assert spec.get_env(name) == _reference_get(env, name)


@common
@given(_entries, _names, st.text(max_size=5))
def test_set_env_leaves_one_entry_in_place_or_appends(
    env: list[str], name: str, value: str
) -> None:
    reliability_report.count("fuzz_examples")
    spec = Spec.from_dict({"process": {"env": env}})
    spec.set_env(name, value)
    after = spec.env
    assert spec.get_env(name) == value
    positions = [i for i, e in enumerate(env) if e.partition("=")[0] == name]
    if positions:
        # The first entry is replaced in place, every later one of the name removed.
        expected = [
            f"{name}={value}" if i == positions[0] else e
            for i, e in enumerate(env)
            if i not in positions[1:]
        ]
        assert after == expected
    else:
        assert after == [*env, f"{name}={value}"]


@common
@given(_entries, _names)
def test_unset_env_removes_every_entry_and_only_those(env: list[str], name: str) -> None:
    reliability_report.count("fuzz_examples")
    spec = Spec.from_dict({"process": {"env": env}})
    removed = spec.unset_env(name)
    assert removed == any(e.partition("=")[0] == name for e in env)
    assert spec.env == [e for e in env if e.partition("=")[0] != name]
    assert spec.get_env(name) is None


@common
@given(
    st.one_of(
        st.just(""),
        st.tuples(st.text(max_size=3), st.sampled_from("=\0"), st.text(max_size=3)).map("".join),
    )
)
def test_set_env_refuses_bad_names(name: str) -> None:
    reliability_report.count("fuzz_examples")
    spec = Spec.from_dict({})
    with pytest.raises(ValueError, match="invalid environment variable name"):
        spec.set_env(name, "x")
    assert spec.to_dict() == {}


# -- the CSV parser (csv-discovery) ------------------------------------------------


def _csvfiles() -> Any:
    return pytest.importorskip("nvshim_csv_discovery.csvfiles")


_segments = st.text(alphabet="abc.-_ ,*", min_size=1, max_size=5)
_paths = st.lists(_segments | st.just(".."), min_size=1, max_size=5).map(
    lambda parts: "/".join(parts)
)


@common
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["dev", "lib", "sym", "dir", "DEV", "bin", ""]),
            st.sampled_from(["", "/", "//"]),
            _paths,
            st.sampled_from([",", ", ", " , ", ""]),
        ),
        max_size=8,
    )
)
def test_csv_entries_are_absolute_clean_paths_or_warnings(
    lines: list[tuple[str, str, str, str]],
) -> None:
    reliability_report.count("fuzz_examples")
    csvfiles = _csvfiles()
    text = [f"{kind}{sep}{lead}{path}" for kind, lead, path, sep in lines]
    warnings: list[str] = []
    entries = csvfiles.parse_csv(text, "test.csv", warnings.append)
    # Every line is an entry, a warning naming file:line, or blank/comment.
    assert len(entries) + len(warnings) <= len(text)
    for warning in warnings:
        assert warning.startswith("test.csv:")
    for entry in entries:
        assert entry.type in csvfiles.ENTRY_TYPES
        assert entry.path.startswith("/")
        assert not entry.path.startswith("//")
        assert ".." not in entry.path.split("/")
        assert "." not in entry.path.split("/")
        assert entry.path != "/"
        number = int(entry.where.rpartition(":")[2])
        assert 1 <= number <= len(text)


@common
@given(st.binary(max_size=200))
def test_csv_parser_never_raises_on_bytes(data: bytes) -> None:
    reliability_report.count("fuzz_examples")
    csvfiles = _csvfiles()
    warnings: list[str] = []
    entries = csvfiles.parse_csv(data.splitlines(), "fuzz.csv", warnings.append)
    for entry in entries:
        assert entry.path.startswith("/")
        assert ".." not in entry.path.split("/")
