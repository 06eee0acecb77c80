"""The Spec API: round trips, helpers, records, atomic save."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from schema_support import schema_errors
from support import DATA, SHARED, minimal_spec, shared_path

from nvshim import Device, Hook, Mount, Spec, SpecError


def _reference_specs() -> list[Path]:
    folders = [DATA / "reference-data" / "specs", SHARED / "oci-runtime-spec/test/config/good"]
    return sorted(p for folder in folders if folder.exists() for p in folder.glob("*.json"))


def _ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]


REFERENCE = _reference_specs()


@pytest.mark.skipif(not REFERENCE, reason="no reference specs found")
@pytest.mark.parametrize("path", REFERENCE, ids=_ids(REFERENCE))
def test_round_trip_keeps_every_field_and_key_order(path: Path, tmp_path: Path) -> None:
    original = json.loads(path.read_text())
    out = tmp_path / "config.json"
    Spec.load(path).save(out)
    written = json.loads(out.read_text())
    assert written == original
    # Key order, at every depth, survives too.
    assert json.dumps(written) == json.dumps(original)


def test_nulls_and_unknown_fields_survive(tmp_path: Path) -> None:
    data = minimal_spec(
        zzz={"nested": [None, {"b": 1, "a": None}]}, linux=None, annotations={"x": "y"}
    )
    data["process"]["unknownKey"] = None
    src = tmp_path / "config.json"
    src.write_text(json.dumps(data))
    spec = Spec.load(src)
    spec.set_env("A", "1")
    spec.save(src)
    written = json.loads(src.read_text())
    assert written["zzz"] == data["zzz"]
    assert list(written) == list(data)
    assert written["process"]["unknownKey"] is None
    assert "linux" in written
    assert written["linux"] is None


def test_modified_docker_spec_validates_against_the_oci_schema() -> None:
    path = shared_path("reference-data", "specs", "docker-clone3.json")
    spec = Spec.load(path)
    spec.add_mount(Mount("/usr/lib/libcuda.so.1", "/usr/lib/libcuda.so.1", "bind", ("ro", "bind")))
    spec.add_device(Device("/dev/nvidia0", "c", 195, 0, file_mode=0o666, uid=0, gid=0))
    spec.add_hook("prestart", Hook("/usr/bin/nvidia-container-runtime-hook", ("x", "prestart")))
    spec.add_hook("createContainer", Hook("/usr/bin/true", env=("PATH=/bin",), timeout=5))
    spec.set_env("NVIDIA_VISIBLE_DEVICES", "void")
    spec.set_annotation("nvshim/test", "1")
    spec.add_additional_gids([44])
    assert schema_errors(spec.to_dict()) == []


# -- env -----------------------------------------------------------------

ENV = ["PATH=/bin", "EMPTY=", "BARE", "A=1=2", "A=second", "NAME_X=no"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("PATH", "/bin"), ("EMPTY", ""), ("BARE", ""), ("A", "second"), ("NAME", None), ("X", None)],
)
def test_get_env(name: str, value: str | None) -> None:
    spec = Spec.from_dict(minimal_spec(process={"env": ENV}))
    assert spec.get_env(name) == value


def test_set_env_replaces_in_place_or_appends() -> None:
    spec = Spec.from_dict(minimal_spec(process={"env": list(ENV)}))
    spec.set_env("EMPTY", "now")
    spec.set_env("NEW", "v")
    env = spec.env
    assert env[1] == "EMPTY=now"
    assert env[-1] == "NEW=v"
    assert len(env) == len(ENV) + 1


def test_set_env_replaces_every_duplicate() -> None:
    """A later duplicate would win in the container: set_env leaves one entry."""
    spec = Spec.from_dict(minimal_spec(process={"env": ["X=1", "A=1", "Y=2", "A=2", "A=3"]}))
    spec.set_env("A", "void")
    assert spec.env == ["X=1", "A=void", "Y=2"]
    assert spec.get_env("A") == "void"


def test_set_env_creates_process_env() -> None:
    spec = Spec.from_dict({"ociVersion": "1.0.2"})
    spec.set_env("A", "b")
    assert spec.to_dict()["process"] == {"env": ["A=b"]}


@pytest.mark.parametrize("bad", ["", "A=B", "A\0"])
def test_set_env_refuses_bad_names(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid environment variable name"):
        Spec.from_dict(minimal_spec()).set_env(bad, "x")


# -- mounts, devices, hooks, annotations -----------------------------------


def test_add_mount_replaces_the_same_destination() -> None:
    spec = Spec.from_dict(minimal_spec(mounts=[{"destination": "/proc", "type": "proc"}]))
    spec.add_mount(Mount("/data", "/srv/data", "bind", ["rbind", "ro"]))
    spec.add_mount(Mount("/data", "/srv/other", "bind", ["rbind"]))
    mounts = spec.to_dict()["mounts"]
    assert mounts == [
        {"destination": "/proc", "type": "proc"},
        {"destination": "/data", "type": "bind", "source": "/srv/other", "options": ["rbind"]},
    ]
    assert spec.mounts()[1] == Mount("/data", "/srv/other", "bind", ("rbind",))


def test_add_device_adds_the_cgroup_rule() -> None:
    spec = Spec.from_dict(minimal_spec())
    spec.add_device(Device("/dev/nvidia0", "c", 195, 0, file_mode=0o666))
    spec.add_device(Device("/dev/nvidia0", "c", 195, 0, file_mode=0o666))
    spec.add_device(Device("/dev/fifo", "p", 0, 0))
    spec.add_device(Device("/dev/sda", "b", 8, 0, access="r"))
    data = spec.to_dict()
    assert data["linux"]["devices"][0] == {
        "path": "/dev/nvidia0",
        "type": "c",
        "major": 195,
        "minor": 0,
        "fileMode": 0o666,
    }
    assert len(data["linux"]["devices"]) == 3
    assert data["linux"]["resources"]["devices"] == [
        {"allow": True, "type": "c", "major": 195, "minor": 0, "access": "rwm"},
        {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
    ]
    assert spec.devices()[0].file_mode == 0o666


def test_hooks_by_stage() -> None:
    spec = Spec.from_dict(
        minimal_spec(hooks={"prestart": [{"path": "/a", "args": ["a"], "unknown": 1}]})
    )
    spec.add_hook("prestart", Hook("/b", ("b", "x"), ("K=V",), 3))
    assert [h.path for h in spec.hooks("prestart")] == ["/a", "/b"]
    assert spec.hooks("poststop") == []
    assert spec.to_dict()["hooks"]["prestart"][1] == {
        "path": "/b",
        "args": ["b", "x"],
        "env": ["K=V"],
        "timeout": 3,
    }
    removed = spec.remove_hooks("prestart", lambda h: h.path == "/a")
    assert removed == 1
    assert spec.to_dict()["hooks"]["prestart"] == [
        {"path": "/b", "args": ["b", "x"], "env": ["K=V"], "timeout": 3}
    ]


@pytest.mark.parametrize("call", ["hooks", "add_hook", "remove_hooks"])
def test_unknown_hook_stage_is_an_error(call: str) -> None:
    spec = Spec.from_dict(minimal_spec())
    args: dict[str, tuple[Any, ...]] = {
        "hooks": (),
        "add_hook": (Hook("/x"),),
        "remove_hooks": (lambda h: True,),
    }
    with pytest.raises(ValueError, match="unknown hook stage 'preStart'"):
        getattr(spec, call)("preStart", *args[call])


def test_annotations_are_read_only() -> None:
    spec = Spec.from_dict(minimal_spec(annotations={"a": "1"}))
    with pytest.raises(TypeError):
        spec.annotations["b"] = "2"  # type: ignore[index]
    spec.set_annotation("b", "2")
    assert dict(spec.annotations) == {"a": "1", "b": "2"}


# -- records ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["relative", "/a/../etc", "..", "", "/a/.."])
def test_records_refuse_bad_container_paths(path: str) -> None:
    with pytest.raises(ValueError, match=r"absolute|'\.\.'|non-empty"):
        Mount(path)
    with pytest.raises(ValueError, match=r"absolute|'\.\.'|non-empty"):
        Device(path, "c", 1, 3)


def test_device_type_and_numbers_are_checked() -> None:
    with pytest.raises(ValueError, match="'type' must be in"):
        Device("/dev/x", "x", 1, 3)
    with pytest.raises(ValueError, match="major must be a non-negative int"):
        Device("/dev/x", "c", -1, 3)
    with pytest.raises(ValueError, match="access must be made of"):
        Device("/dev/x", "c", 1, 3, access="rwx")


def test_hook_path_must_be_absolute_and_timeout_positive() -> None:
    with pytest.raises(ValueError, match="path must be an absolute path"):
        Hook("hook")
    with pytest.raises(ValueError, match="timeout must be positive"):
        Hook("/hook", timeout=0)
    with pytest.raises(TypeError):
        Hook("/hook", args="prestart")  # type: ignore[arg-type]


def test_records_are_frozen() -> None:
    mount = Mount("/a")
    with pytest.raises(AttributeError):
        mount.source = "/b"  # type: ignore[misc]


# -- loading and saving ----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b"{", "not valid JSON"),
        (b"[]", "must hold a JSON object, not an array"),
        (b'"x"', "must hold a JSON object, not a string"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b'{"process": {"env": "A=B"}}', "process.env: expected an array of strings, got a string"),
        (b'{"process": {"env": ["A", 1]}}', "process.env[1]: expected a string"),
        (b'{"hooks": {"prestart": {}}}', "hooks.prestart: expected an array"),
        (b'{"mounts": [{"source": "/x"}]}', "mounts[0]: missing destination"),
    ],
)
def test_load_errors_are_one_clear_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        Spec.load(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_deep_nesting_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError, match=r"nested too deeply|must hold a JSON object"):
        Spec.load(path)


def test_save_is_atomic_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(minimal_spec()))
    os.chmod(path, 0o600)
    spec = Spec.load(path)
    spec.set_env("A", "1")
    spec.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert Spec.load(path).get_env("A") == "1"


def test_save_failure_leaves_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    path = folder / "config.json"
    path.write_text(json.dumps(minimal_spec()))
    before = path.read_bytes()
    spec = Spec.load(path)
    with pytest.raises(SpecError, match="cannot write"):
        spec.save(folder / "missing" / "config.json")
    assert path.read_bytes() == before


def test_from_dict_copies() -> None:
    data = minimal_spec()
    spec = Spec.from_dict(data)
    spec.set_env("A", "1")
    assert data["process"]["env"] == ["PATH=/usr/bin:/bin"]
    out = spec.to_dict()
    out["process"]["env"].append("B=2")
    assert spec.get_env("B") is None


@pytest.mark.parametrize(
    ("capabilities", "privileged"),
    [
        ({"bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}, True),
        ({"bounding": ["CAP_CHOWN"], "effective": ["CAP_SYS_ADMIN"]}, False),
        (["CAP_SYS_ADMIN"], True),  # OCI 1.0.0-rc1 to rc4: a flat list
        (["CAP_CHOWN"], False),
        ({"bounding": "CAP_SYS_ADMIN"}, False),
        ("CAP_SYS_ADMIN", False),
        (None, False),
    ],
)
def test_privileged_has_one_answer(capabilities: Any, privileged: bool) -> None:
    from nvshim.requests import read_request
    from nvshim.spec import is_privileged

    data = {"ociVersion": "1.0.0-rc2", "process": {"env": [], "capabilities": capabilities}}
    assert is_privileged(data) is privileged
    assert read_request(data).privileged is privileged
    try:
        spec = Spec.from_dict(data)
    except SpecError:
        return  # a shape Spec refuses (a flat list, a string): read only as a request
    assert spec.privileged is privileged


def test_add_mount_index_follows_every_change() -> None:
    """add_mount keeps an index of destinations; changes through raw or remove_mount are seen."""
    spec = Spec.from_dict(minimal_spec())
    spec.raw.pop("mounts", None)
    fresh = Spec.from_dict(spec.to_dict())  # data never handed out: the index is kept
    for i in range(3):
        fresh.add_mount(Mount(destination=f"/m{i}", source=f"/h{i}", options=("bind",)))
    fresh.add_mount(Mount(destination="/m1", source="/other", options=("bind",)))
    assert [m.source for m in fresh.mounts()] == ["/h0", "/other", "/h2"]
    assert fresh.remove_mount("/m0")
    fresh.add_mount(Mount(destination="/m2", source="/again", options=("bind",)))
    assert [(m.destination, m.source) for m in fresh.mounts()] == [
        ("/m1", "/other"),
        ("/m2", "/again"),
    ]
    # Changed in place through raw: the next add_mount replaces the renamed entry.
    fresh.raw["mounts"][0]["destination"] = "/renamed"
    fresh.add_mount(Mount(destination="/renamed", source="/new", options=("bind",)))
    assert [(m.destination, m.source) for m in fresh.mounts()] == [
        ("/renamed", "/new"),
        ("/m2", "/again"),
    ]
