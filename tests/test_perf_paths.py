"""The fast paths give exactly what the slow ones give.

nvshim avoids tomllib, cattrs and importlib.metadata where it can (see
docs/performance.md); each fast path hands what it does not handle to the
slow one.  These tests compare the two on generated and on real inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvshim import _configfile, config, records
from nvshim.records import Device, Hook, Mount

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# ------------------------------------------------------------------ TOML


def _tomllib(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "error"


def _check_toml(text: str) -> None:
    simple = _configfile.parse_simple_toml(text.encode("utf-8"))
    if simple is not None:
        assert simple == _tomllib(text), text


bare = st.text("abcAZ09_-", min_size=1, max_size=6)
plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8)
value = st.one_of(
    plain.map(lambda s: '"' + s + '"'),
    plain.map(lambda s: "'" + s + "'"),
    st.sampled_from(["true", "false", "0", "-0", "+7", "1.5", "007", "1.", "1e3", "inf", "[]"]),
    st.integers(-(10**20), 10**20).map(str),
    st.lists(plain.map(lambda s: '"' + s + '"'), max_size=3).map(
        lambda items: "[" + ", ".join(items) + "]"
    ),
    plain,
)
line = st.one_of(
    st.tuples(
        bare,
        st.sampled_from([" = ", "=", " =", "  =  "]),
        value,
        st.sampled_from(["", " # c", "#", " x"]),
    ).map("".join),
    st.lists(bare, min_size=1, max_size=3).map(lambda keys: "[" + ".".join(keys) + "]"),
    st.lists(bare, min_size=1, max_size=2).map(lambda keys: "[ " + " . ".join(keys) + " ] # t"),
    st.sampled_from(["", "# comment", "   ", "\t# x", "[[a]]", "a.b = 1", '"q" = 1', "a = {}"]),
    plain,
)


@settings(max_examples=600, deadline=None)
@given(st.lists(line, max_size=12))
def test_simple_toml_agrees_with_tomllib(lines: list[str]) -> None:
    _check_toml("\n".join(lines))


@pytest.mark.parametrize(
    "text",
    [
        "",
        '[nvidia-container-runtime]\nruntimes = ["docker-runc", "runc", "crun"]\n',
        "[a]\nx = 1\n[a]\ny = 2\n",  # a table defined twice: tomllib refuses
        "[a.b]\n[a]\nb = 1\n",  # b is already a table
        "[a]\nb = 1\n[a.b]\n",  # b is not a table
        "[a.b]\nc = 1\n[a]\nd = 2\n",  # defining the super-table later is fine
        "x = 1\nx = 2\n",
        'x = "a\\"b"\n',
        "x = 'it''s'\n",
        'x = ["a",]\n',
        "x = [ \"a\" , 'b' ]  # c\n",
        "x = [,]\n",
        'x = "" # "\n',
        "x = '''a'''\n",
        "x = 1_000\n",
        "x = 0x10\n",
        "x = -1.25\n",
        "x = true # yes\n",
        "x = truex\n",
        "x = 1 2\n",
        "[a] x = 1\n",
        "x = 1\r\n",
        'x = "caf\u00e9"\n',
        "=1\n",
        "[]\n",
    ],
)
def test_simple_toml_cases(text: str) -> None:
    _check_toml(text)


def test_nvidias_default_config_takes_the_fast_path() -> None:
    from test_config import NVIDIA_DEFAULT_CONFIG as text

    simple = _configfile.parse_simple_toml(text.encode())
    assert simple is not None
    assert simple == tomllib.loads(text)


def test_pass_through_does_not_import_tomllib_or_typing(tmp_path: Any) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[nvidia-container-runtime]\nruntimes = ["/bin/true"]\n')
    code = """
import os, sys
before = set(sys.modules)  # what the interpreter and site loaded already
def fake_execv(path, args):
    # Not json: it imports re.
    print(repr([path, sorted(m for m in ('tomllib', 'typing', 're', 'collections',
                                         'contextlib') if m in set(sys.modules) - before)]))
    sys.exit(0)
os.execv = fake_execv
from nvshim._cli import main
main(['nvshim', 'state', 'x'])
"""
    env = {"NVSHIM_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(tmp_path),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['/bin/true', []]"


# ------------------------------------------------------------------ config

toml_scalar = st.one_of(
    st.text(max_size=5),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.lists(st.text(max_size=3), max_size=2),
    st.lists(st.integers(0, 3), min_size=1, max_size=2),
)


def _table(keys: list[str]) -> Any:
    return st.dictionaries(st.sampled_from(keys), toml_scalar, max_size=4)


runtime_keys = ["debug", "log-level", "runtimes", "experimental", "discover-mode", "log_level"]
config_data = st.fixed_dictionaries(
    {},
    optional={
        "nvidia-container-runtime": st.one_of(
            _table(runtime_keys),
            st.fixed_dictionaries(
                {
                    "modes": st.fixed_dictionaries(
                        {},
                        optional={
                            "cdi": _table(["spec-dirs", "default-kind", "annotation-prefixes"]),
                            "csv": _table(["mount-spec-path", "other"]),
                        },
                    )
                }
            ),
        ),
        "nvidia-container-cli": _table(["root", "ldconfig", "path", "load-kmods"]),
        "nvidia-ctk": _table(["path"]),
        "nvidia-container-runtime-hook": _table(["path", "skip-mode-detection"]),
        "nvshim": st.one_of(
            _table(["disabled-modifiers", "modifier-timeout", "unknown"]),
            st.fixed_dictionaries(
                {"plugins": st.dictionaries(st.sampled_from(["a", "b"]), _table(["x", "y"]))}
            ),
        ),
        "disable-require": toml_scalar,
        "swarm-resource": toml_scalar,
        "supported-driver-capabilities": toml_scalar,
        "unknown-top": toml_scalar,
    },
)


def _with_cattrs(data: dict[str, Any]) -> Any:
    try:
        return ("ok", config._structure_with_cattrs(data, "<t>"))
    except config.ConfigError as exc:
        return ("error", str(exc))


@settings(max_examples=400, deadline=None)
@given(config_data)
def test_quick_config_agrees_with_cattrs(data: dict[str, Any]) -> None:
    quick = config._quick_config(data)
    if quick is not None:
        assert ("ok", quick) == _with_cattrs(data)
        # Same types too: tuples, floats (== would not tell 1 from 1.0).
        reference = _with_cattrs(data)[1]
        assert repr(quick) == repr(reference)


def test_the_usual_configs_take_the_quick_path() -> None:
    data = {
        "nvidia-container-runtime": {
            "runtimes": ["runc"],
            "mode": "csv",
            "log-level": "debug",
            "modes": {"csv": {"mount-spec-path": "/x"}},
        },
        "nvidia-container-cli": {"root": "/", "ldconfig": "@/sbin/ldconfig", "load-kmods": True},
        "nvshim": {"modifier-timeout": 3, "plugins": {"x": {"a": 1}}},
    }
    quick = config._quick_config(data)
    assert quick is not None
    assert quick == _with_cattrs(data)[1]
    assert quick.nvshim.modifier_timeout == 3.0
    assert isinstance(quick.nvshim.modifier_timeout, float)


def test_plugin_options_quick_path_agrees_with_cattrs(monkeypatch: pytest.MonkeyPatch) -> None:
    import attrs

    @attrs.frozen
    class Options:
        on_hook: str = "remove"
        count: int = 1
        names: tuple[str, ...] = ()
        ratio: float = 0.5

    cfg = config.Config()
    tables: list[dict[str, Any]] = [
        {},
        {"on-hook": "error", "count": 3, "names": ["a"], "ratio": 2},
        {"on_hook": "x"},
        {"count": True},
        {"count": "3"},
        {"names": "ab"},
        {"ratio": "x"},
        {"unknown": 1},
    ]
    quick = {i: config._quick_options(t, Options) for i, t in enumerate(tables)}
    assert quick[0] == Options()
    assert quick[1] == Options("error", 3, ("a",), 2.0)
    # The cattrs path, as it was before the quick one.
    monkeypatch.setattr(config, "_quick_options", lambda _t, _c: config._GIVE_UP)
    for i, table in enumerate(tables):
        c = attrs.evolve(cfg, nvshim=attrs.evolve(cfg.nvshim, plugins={"p": table}))
        if quick[i] is not config._GIVE_UP:
            assert repr(quick[i]) == repr(config.plugin_options(c, "p", Options)), table


# ------------------------------------------------------------------ records

path = st.sampled_from(["/a", "/dev/nvidia0", "relative", "/x/../y", "", "/b c"])
maybe_str = st.one_of(st.none(), st.sampled_from(["bind", "tmpfs", ""]), st.integers(0, 2))
number = st.one_of(st.integers(-1, 300), st.booleans(), st.none(), st.sampled_from(["1", 1.5]))
strings = st.one_of(
    st.lists(st.sampled_from(["ro", "rbind", ""]), max_size=3),
    st.just("ro"),
    st.lists(st.integers(0, 2), max_size=2),
)
json_objects: dict[type, st.SearchStrategy[dict[str, Any]]] = {
    Mount: st.fixed_dictionaries(
        {},
        optional={
            "destination": path,
            "source": maybe_str,
            "type": maybe_str,
            "options": strings,
            "extra": st.just(1),
        },
    ),
    Device: st.fixed_dictionaries(
        {},
        optional={
            "path": path,
            "type": st.sampled_from(["c", "b", "x", 1]),
            "major": number,
            "minor": number,
            "fileMode": number,
            "uid": number,
            "gid": number,
        },
    ),
    Hook: st.fixed_dictionaries(
        {}, optional={"path": path, "args": strings, "env": strings, "timeout": number}
    ),
}


def _slow_from_json(cls: type, data: dict[str, Any]) -> Any:
    try:
        return ("ok", records._converter().structure(data, cls))
    except Exception as exc:
        return ("error", type(exc))


@pytest.mark.parametrize("cls", [Mount, Device, Hook], ids=lambda c: c.__name__)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_quick_records_agree_with_cattrs(cls: type, data: st.DataObject) -> None:
    import attrs

    obj = data.draw(json_objects[cls])
    known = {records._JSON_NAMES.get(a.name, a.name) for a in attrs.fields(cls)}
    filtered = {k: v for k, v in obj.items() if k in known}
    quick = records._quick_structure(cls, filtered)
    if quick is None:
        return
    slow = _slow_from_json(cls, filtered)
    assert slow[0] == "ok"
    assert repr(quick) == repr(slow[1])
    fast = records._quick_unstructure(quick)
    assert fast is not None
    assert fast == records._converter().unstructure(quick)
    # Key order included: to_json writes every record in the OCI order.
    assert list(records.to_json(quick)) == [k for k in known_order(cls) if k in fast]


def known_order(cls: type) -> list[str]:
    """The JSON keys of ``cls`` in the order the OCI spec (and runc spec) writes them."""
    return {
        Mount: ["destination", "type", "source", "options"],
        Device: ["path", "type", "major", "minor", "fileMode", "uid", "gid"],
        Hook: ["path", "args", "env", "timeout"],
    }[cls]


def test_quick_fields_cover_every_field() -> None:
    import attrs

    for cls, fields in records._QUICK_FIELDS.items():
        json_fields = [
            f.name for f in attrs.fields(cls) if f.name not in records._NOT_IN_JSON.get(cls, ())
        ]
        assert [f[0] for f in fields] == json_fields, cls
        for name, _key, _kind, default in fields:
            if name in records._ALWAYS_IN_JSON.get(cls, ()):
                assert default is attrs.NOTHING, (cls, name)  # never omitted
            else:
                assert attrs.fields_dict(cls)[name].default == default, (cls, name)


def test_subclasses_take_the_converter_path() -> None:
    assert records._quick_unstructure(Mount("/a")) == {"destination": "/a"}

    class Sub(Mount):
        pass

    assert records._quick_unstructure(Sub("/a")) is None
    assert records.to_json(Sub("/a", options=("ro",))) == {"destination": "/a", "options": ["ro"]}
