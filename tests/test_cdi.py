"""The cdi modifier: spec files and versions, the registry, requests, edits, nvshim-ctl cdi."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nvshim_cdi
import pytest
import yaml
from nvshim_cdi import CdiSpecError, Registry, ResolveError, read_spec_file
from nvshim_cdi._edits import host_device_info
from nvshim_cdi._names import annotation_devices
from nvshim_cdi._spec import parse_spec
from schema_support import cdi_validator
from support import shared_path

from nvshim import Logger
from nvshim._ctl.main import main as ctl_main
from nvshim.config import structure_config
from nvshim.modifier import ModifierContext, ModifierError
from nvshim.plugins import get_plugin_manager
from nvshim.records import DEFAULT_HOOK_ENV
from nvshim.runtime import apply_modifiers
from nvshim.spec import Spec

# --------------------------------------------------------------------------- helpers


def cdi_spec(
    kind: str = "vendor.com/device",
    devices: Any = None,
    version: str = "0.6.0",
    **top: Any,
) -> dict[str, Any]:
    """A CDI spec document."""
    if devices is None:
        devices = [{"name": "dev0", "containerEdits": {"env": ["DEV0=1"]}}]
    return {"cdiVersion": version, "kind": kind, "devices": devices, **top}


def write_spec(folder: Path, name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` as JSON or YAML (by the name's ending) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".json"):
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def make_config(spec_dirs: list[Path], **cdi: Any) -> Any:
    """A Config in mode cdi reading ``spec_dirs``."""
    table: dict[str, Any] = {"spec-dirs": [str(d) for d in spec_dirs], **cdi}
    return structure_config(
        {"nvidia-container-runtime": {"mode": "cdi", "modes": {"cdi": table}}}, "<test>"
    )


def oci_spec(env: list[str] | None = None, annotations: dict[str, str] | None = None) -> Spec:
    """A small OCI spec of a container."""
    data: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/bin:/bin", *(env or [])],
            "cwd": "/",
        },
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]}},
    }
    if annotations is not None:
        data["annotations"] = annotations
    return Spec.from_dict(data)


class RecordingLogger(Logger):
    """A Logger that keeps the warnings it gets."""

    def __init__(self) -> None:
        super().__init__("debug")
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args if args else msg)


def run_modify(spec: Spec, config: Any, mode: str = "cdi") -> None:
    """Call the modifier directly, as the core would."""
    context = ModifierContext(
        config=config, mode=mode, bundle=None, argv=(), logger=Logger("error"), modifier="cdi"
    )
    nvshim_cdi.modify(spec, context)


FAKE_DEVICE = {
    "name": "gpu0",
    "containerEdits": {
        "env": ["GPU0=yes"],
        "deviceNodes": [{"path": "/dev/fake0", "type": "c", "major": 1, "minor": 3}],
    },
}


# --------------------------------------------------------------------------- CDI's own examples


def test_cdi_testdata_good_specs_load() -> None:
    folder = shared_path("cdi-spec", "testdata", "good")
    paths = sorted(folder.glob("*.json"))
    assert paths
    for path in paths:
        spec = read_spec_file(str(path))
        assert spec.kind == "vendor.com/device"
        assert [d.name for d in spec.devices] == ["myDevice"]
    example = read_spec_file(str(folder / "spec-example.json"))
    assert example.version == "0.6.0"
    assert example.devices[0].edits.device_nodes[0].host_path == "/vendorroot/dev/card1"
    assert example.edits.env == ("FOO=CDI_SPEC", "BAR=BARVALUE1")
    assert [h.hook_name for h in example.edits.hooks] == ["createContainer", "startContainer"]
    assert example.edits.device_nodes[0].uid == 1000


def test_cdi_testdata_bad_specs_are_refused() -> None:
    folder = shared_path("cdi-spec", "testdata", "bad")
    paths = sorted(folder.glob("*.json"))
    assert paths
    for path in paths:
        with pytest.raises(CdiSpecError, match=str(path)):
            read_spec_file(str(path))


def test_good_specs_satisfy_cdi_schema() -> None:
    """Specs this module accepts are also accepted by CDI's own JSON schema."""
    folder = shared_path("cdi-spec")
    validator = cdi_validator()
    written = cdi_spec(
        version="1.1.0",
        devices=[FAKE_DEVICE],
        containerEdits={
            "mounts": [
                {"hostPath": "/a", "containerPath": "/b", "options": ["ro"], "type": "none"}
            ],
            "hooks": [{"hookName": "createContainer", "path": "/bin/true", "timeout": 5}],
            "additionalGids": [44],
            "intelRdt": {"closID": "x", "schemata": ["L3:0=f"], "enableMonitoring": True},
        },
        annotations={"a": "b"},
    )
    parse_spec(written, "written.json")
    assert list(validator.iter_errors(written)) == []
    for path in sorted((folder / "testdata" / "good").glob("*.json")):
        assert list(validator.iter_errors(json.loads(path.read_text()))) == []


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("ext", [".json", ".yaml", ".yml"])
def test_json_and_yaml_specs_load_the_same(tmp_path: Path, ext: str) -> None:
    data = cdi_spec(
        devices=[FAKE_DEVICE],
        containerEdits={
            "mounts": [{"hostPath": "/usr/lib/x.so", "containerPath": "/usr/lib/x.so"}]
        },
    )
    path = write_spec(tmp_path, "spec" + ext, data)
    spec = read_spec_file(str(path))
    assert spec.path == str(path)
    assert spec.devices[0].edits.device_nodes[0].major == 1
    assert spec.edits.mounts[0].container_path == "/usr/lib/x.so"
    assert spec == parse_spec(data, str(path))


def test_yaml_is_parsed_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text('cdiVersion: "0.6.0"\nkind: !!python/object/apply:os.system ["true"]\n')
    with pytest.raises(CdiSpecError, match="not valid YAML"):
        read_spec_file(str(path))


def test_handwritten_yaml_spec(tmp_path: Path) -> None:
    path = tmp_path / "vendor.yaml"
    path.write_text(
        """\
cdiVersion: 0.5.0
kind: vendor.com/device
devices:
  - name: "0"
    containerEdits:
      deviceNodes:
        - path: /dev/card0
          hostPath: /dev/null
containerEdits:
  env: [A=1]
"""
    )
    spec = read_spec_file(str(path))
    assert spec.devices[0].name == "0"
    assert spec.edits.env == ("A=1",)


@pytest.mark.parametrize(
    ("version", "edits", "field"),
    [
        ("0.3.0", {"mounts": [{"hostPath": "/a", "containerPath": "/b", "type": "bind"}]}, "type"),
        ("0.4.0", {"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null"}]}, "hostPath"),
        ("0.6.0", {"additionalGids": [5]}, "additionalGids"),
        ("0.6.0", {"intelRdt": {"closID": "c"}}, "intelRdt"),
        ("1.0.0", {"intelRdt": {"schemata": ["L3:0=f"]}}, "schemata"),
        ("1.0.0", {"intelRdt": {"enableMonitoring": True}}, "enableMonitoring"),
        ("1.0.0", {"netDevices": [{"hostInterfaceName": "eth1", "name": "n"}]}, "netDevices"),
        ("1.1.0", {"intelRdt": {"enableCMT": True}}, "enableCMT"),
    ],
)
def test_field_newer_than_declared_version_is_refused(
    version: str, edits: dict[str, Any], field: str
) -> None:
    data = cdi_spec(version=version, devices=[{"name": "d", "containerEdits": edits}])
    with pytest.raises(CdiSpecError) as info:
        parse_spec(data, "/etc/cdi/v.json")
    message = str(info.value)
    assert message.startswith("/etc/cdi/v.json: devices[0].containerEdits.")
    assert field in message
    assert "cdiVersion" in message


@pytest.mark.parametrize(
    ("version", "edits"),
    [
        ("0.4.0", {"mounts": [{"hostPath": "/a", "containerPath": "/b", "type": "bind"}]}),
        ("0.5.0", {"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null"}]}),
        ("0.7.0", {"additionalGids": [5], "intelRdt": {"closID": "c", "enableCMT": True}}),
        ("0.8.0", {"additionalGids": [5]}),
        ("1.1.0", {"intelRdt": {"schemata": ["L3:0=f"], "enableMonitoring": False}}),
        ("1.1.0", {"netDevices": [{"hostInterfaceName": "eth1", "name": "n"}]}),
    ],
)
def test_field_accepted_from_its_version(version: str, edits: dict[str, Any]) -> None:
    parse_spec(cdi_spec(version=version, devices=[{"name": "d", "containerEdits": edits}]), "f")


def test_version_rules_outside_edits() -> None:
    with pytest.raises(CdiSpecError, match=r"f\.json: annotations: .*0\.6\.0"):
        parse_spec(cdi_spec(version="0.5.0", annotations={"a": "b"}), "f.json")
    devices = [{"name": "d", "containerEdits": {}, "annotations": {"a": "b"}}]
    with pytest.raises(CdiSpecError, match=r"devices\[0\]\.annotations"):
        parse_spec(cdi_spec(version="0.5.0", devices=devices), "f.json")
    with pytest.raises(CdiSpecError, match=r"kind: .*0\.6\.0"):
        parse_spec(cdi_spec(kind="vendor.com/dev.ice", version="0.5.0"), "f.json")
    parse_spec(cdi_spec(kind="vendor.com/dev.ice", version="0.6.0"), "f.json")
    with pytest.raises(CdiSpecError, match=r"devices\[0\]\.name: .*0\.5\.0"):
        parse_spec(cdi_spec(version="0.4.0", devices=[{"name": "0", "containerEdits": {}}]), "f")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (cdi_spec(version="2.0.0"), "cdiVersion '2.0.0' is not supported"),
        (cdi_spec(version="0.2.0"), "not supported"),
        (cdi_spec(kind="nokind"), "kind: 'nokind' is not vendor/class"),
        (cdi_spec(devices=[]), "at least one device"),
        (cdi_spec(extra=1), "extra: unknown field"),
        (
            cdi_spec(devices=[{"name": "d", "containerEdits": {"mounts": [{"hostPath": "/a"}]}}]),
            "missing containerPath",
        ),
        (
            cdi_spec(
                devices=[
                    {
                        "name": "d",
                        "containerEdits": {"mounts": [{"hostPath": "/a", "containerPath": "b"}]},
                    }
                ]
            ),
            r"containerPath: .*not absolute",
        ),
        (
            cdi_spec(
                devices=[
                    {
                        "name": "d",
                        "containerEdits": {
                            "mounts": [{"hostPath": "/a", "containerPath": "/usr/../etc"}]
                        },
                    }
                ]
            ),
            r"containerPath: .*'\.\.'",
        ),
        (
            cdi_spec(devices=[{"name": "d", "containerEdits": {"deviceNodes": [{"path": "x"}]}}]),
            r"deviceNodes\[0\]\.path",
        ),
        (
            cdi_spec(
                devices=[
                    {"name": "d", "containerEdits": {"hooks": [{"hookName": "pre", "path": "/x"}]}}
                ]
            ),
            r"hookName: 'pre' is not one of prestart",
        ),
        (
            cdi_spec(devices=[{"name": "d", "containerEdits": {"env": ["NOVALUE"]}}]),
            r"env\[0\]: 'NOVALUE' is not NAME=value",
        ),
        (
            cdi_spec(
                devices=[
                    {
                        "name": "d",
                        "containerEdits": {
                            "deviceNodes": [{"path": "/dev/x", "permissions": "rx"}]
                        },
                    }
                ]
            ),
            "permissions",
        ),
        (
            cdi_spec(
                devices=[
                    {"name": "d", "containerEdits": {"deviceNodes": [{"path": "/d", "type": "z"}]}}
                ]
            ),
            "is not one of b, c, u, p",
        ),
        (
            cdi_spec(
                devices=[{"name": "d", "containerEdits": {}}, {"name": "d", "containerEdits": {}}]
            ),
            "defined twice",
        ),
        (cdi_spec(devices=[{"name": "-bad", "containerEdits": {}}]), "not a valid device name"),
        (cdi_spec(devices=[{"name": "d"}]), "missing containerEdits"),
        (
            cdi_spec(
                devices=[
                    {"name": "d", "containerEdits": {"deviceNodes": [{"path": "/d", "uid": -1}]}}
                ]
            ),
            "uid: -1 is out of range",
        ),
    ],
)
def test_bad_spec_is_refused_naming_file_and_field(data: dict[str, Any], match: str) -> None:
    with pytest.raises(CdiSpecError, match=match) as info:
        parse_spec(data, "/etc/cdi/bad.json")
    assert str(info.value).startswith("/etc/cdi/bad.json: ")


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(CdiSpecError, match=r"broken\.json: not valid JSON"):
        read_spec_file(str(broken))
    with pytest.raises(CdiSpecError, match=r"missing\.json: cannot read"):
        read_spec_file(str(tmp_path / "missing.json"))
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(CdiSpecError, match="must be an object"):
        read_spec_file(str(scalar))


# --------------------------------------------------------------------------- registry


def test_registry_priority_later_folder_wins(tmp_path: Path) -> None:
    low, high = tmp_path / "etc", tmp_path / "run"
    write_spec(
        low, "a.json", cdi_spec(devices=[{"name": "d", "containerEdits": {"env": ["X=low"]}}])
    )
    write_spec(
        high, "b.yaml", cdi_spec(devices=[{"name": "d", "containerEdits": {"env": ["X=high"]}}])
    )
    registry = Registry.load([str(low), str(high)])
    resolved = registry.resolve(["vendor.com/device=d"])
    assert [r.path for r in resolved] == [str(high / "b.yaml")]
    assert resolved[0].device.edits.env == ("X=high",)
    assert registry.conflicts == {}


def test_registry_same_priority_duplicate_is_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "cdi"
    write_spec(
        folder, "a.json", cdi_spec(devices=[{"name": "d", "containerEdits": {}}, FAKE_DEVICE])
    )
    write_spec(folder, "b.json", cdi_spec(devices=[{"name": "d", "containerEdits": {}}]))
    registry = Registry.load([str(folder)])
    assert "vendor.com/device=d" not in registry.devices
    assert "vendor.com/device=gpu0" in registry.devices
    with pytest.raises(ResolveError) as info:
        registry.resolve(["vendor.com/device=d"])
    assert str(folder / "a.json") in str(info.value)
    assert str(folder / "b.json") in str(info.value)
    # A higher-priority definition settles the conflict.
    write_spec(tmp_path / "run", "c.json", cdi_spec(devices=[{"name": "d", "containerEdits": {}}]))
    registry = Registry.load([str(folder), str(tmp_path / "run")])
    assert registry.resolve(["vendor.com/device=d"])[0].path == str(tmp_path / "run" / "c.json")


def test_registry_skips_bad_files_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "cdi"
    write_spec(folder, "good.json", cdi_spec(devices=[FAKE_DEVICE]))
    (folder / "broken.yaml").write_text("cdiVersion: [\n")
    write_spec(folder, "old.json", cdi_spec(version="0.3.0", annotations={"a": "b"}))
    (folder / "notes.txt").write_text("not a spec")
    logger = RecordingLogger()
    registry = Registry.load([str(folder), str(tmp_path / "missing")], logger)
    assert list(registry.devices) == ["vendor.com/device=gpu0"]
    assert sorted(Path(p).name for p, _ in registry.errors) == ["broken.yaml", "old.json"]
    assert len(logger.warnings) == 2
    assert any(str(folder / "broken.yaml") in w for w in logger.warnings)
    assert any(str(folder / "old.json") in w and "annotations" in w for w in logger.warnings)


def test_registry_all_and_unknown(tmp_path: Path) -> None:
    folder = tmp_path / "cdi"
    devices: list[dict[str, Any]] = [{"name": n, "containerEdits": {}} for n in ("a", "b", "c")]
    write_spec(folder, "x.json", cdi_spec(devices=devices))
    write_spec(
        folder,
        "y.json",
        cdi_spec(kind="other.com/thing", devices=[{"name": "all", "containerEdits": {}}]),
    )
    registry = Registry.load([str(folder)])
    assert [r.name for r in registry.resolve(["vendor.com/device=all"])] == [
        "vendor.com/device=a",
        "vendor.com/device=b",
        "vendor.com/device=c",
    ]
    # A device literally named "all" is used as defined.
    assert [r.name for r in registry.resolve(["other.com/thing=all"])] == ["other.com/thing=all"]
    both = registry.resolve(["vendor.com/device=b", "vendor.com/device=all"])
    assert [r.name for r in both] == [f"vendor.com/device={n}" for n in ("b", "a", "c")]
    with pytest.raises(
        ResolveError,
        match=r"unknown CDI device vendor\.com/device=z: known devices of kind"
        r" vendor\.com/device: a, b, c",
    ):
        registry.resolve(["vendor.com/device=z"])
    with pytest.raises(ResolveError, match=r"no CDI spec defines kind nvidia\.com/gpu"):
        registry.resolve(["nvidia.com/gpu=all"])
    with pytest.raises(ResolveError, match="no CDI spec was found in /nonexistent"):
        Registry.load(["/nonexistent"]).resolve(["nvidia.com/gpu=0"])


# --------------------------------------------------------------------------- requests and edits


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    """A spec folder with nvidia.com/gpu=0,1 and vendor.com/device=gpu0."""
    folder = tmp_path / "cdi"
    gpus = [
        {
            "name": str(i),
            "containerEdits": {
                "deviceNodes": [{"path": f"/dev/nvidia{i}", "type": "c", "major": 195, "minor": i}]
            },
        }
        for i in (0, 1)
    ]
    write_spec(
        folder,
        "nvidia.yaml",
        cdi_spec(
            kind="nvidia.com/gpu",
            devices=gpus,
            containerEdits={"env": ["NVIDIA_CTK=1"]},
        ),
    )
    write_spec(folder, "vendor.json", cdi_spec(devices=[FAKE_DEVICE]))
    return folder


def test_env_request_with_unqualified_names(spec_dir: Path) -> None:
    spec = oci_spec(["NVIDIA_VISIBLE_DEVICES=1,vendor.com/device=gpu0"])
    run_modify(spec, make_config([spec_dir]))
    assert [d.path for d in spec.devices()] == ["/dev/nvidia1", "/dev/fake0"]
    assert spec.get_env("NVIDIA_VISIBLE_DEVICES") == "void"
    assert spec.get_env("NVIDIA_CTK") == "1"
    assert spec.get_env("GPU0") == "yes"


def test_env_all_means_every_device_of_default_kind(spec_dir: Path) -> None:
    spec = oci_spec(["NVIDIA_VISIBLE_DEVICES=all"])
    run_modify(spec, make_config([spec_dir]))
    assert [d.path for d in spec.devices()] == ["/dev/nvidia0", "/dev/nvidia1"]
    spec = oci_spec(["NVIDIA_VISIBLE_DEVICES=all"])
    run_modify(spec, make_config([spec_dir], **{"default-kind": "vendor.com/device"}))
    assert [d.path for d in spec.devices()] == ["/dev/fake0"]


def test_annotations_win_over_env(spec_dir: Path) -> None:
    spec = oci_spec(
        ["NVIDIA_VISIBLE_DEVICES=0"],
        {"cdi.k8s.io/pod": "vendor.com/device=gpu0, nvidia.com/gpu=1", "other": "nvidia.com/gpu=0"},
    )
    run_modify(spec, make_config([spec_dir]))
    assert [d.path for d in spec.devices()] == ["/dev/fake0", "/dev/nvidia1"]
    assert spec.get_env("NVIDIA_VISIBLE_DEVICES") == "void"


def test_annotation_prefixes_are_configurable(spec_dir: Path) -> None:
    spec = oci_spec(annotations={"example.org/cdi": "nvidia.com/gpu=0"})
    run_modify(spec, make_config([spec_dir], **{"annotation-prefixes": ["example.org/"]}))
    assert [d.path for d in spec.devices()] == ["/dev/nvidia0"]


def test_annotation_with_unqualified_name_is_refused() -> None:
    with pytest.raises(ModifierError, match=r"annotation cdi\.k8s\.io/x: '0' is not a fully"):
        annotation_devices({"cdi.k8s.io/x": "0"}, ("cdi.k8s.io/",))
    assert annotation_devices({"cdi.k8s.io/x": " , a.com/b=c,a.com/b=c"}, ("cdi.k8s.io/",)) == (
        ["a.com/b=c"],
        ["cdi.k8s.io/x"],
    )


def test_unknown_device_refuses_the_container(spec_dir: Path) -> None:
    spec = oci_spec(["NVIDIA_VISIBLE_DEVICES=7"])
    with pytest.raises(
        ModifierError, match=r"nvidia\.com/gpu=7: known devices of kind nvidia\.com/gpu: 0, 1"
    ):
        run_modify(spec, make_config([spec_dir]))


@pytest.mark.parametrize(
    "env", [[], ["NVIDIA_VISIBLE_DEVICES=void"], ["NVIDIA_VISIBLE_DEVICES=none"]]
)
def test_no_request_no_change(spec_dir: Path, env: list[str]) -> None:
    spec = oci_spec(env)
    before = spec.to_dict()
    run_modify(spec, make_config([spec_dir]))
    assert spec.to_dict() == before


def test_other_modes_are_left_alone(spec_dir: Path) -> None:
    # The modifier declares modes=("cdi",): the core does not run it in others.
    pm = get_plugin_manager()
    pm.register(nvshim_cdi, "cdi")
    spec = oci_spec(["NVIDIA_VISIBLE_DEVICES=0"])
    before = spec.to_dict()
    result = apply_modifiers(spec, config=make_config([spec_dir]), mode="legacy", plugin_manager=pm)
    assert result.skipped == ("cdi",)
    assert spec.to_dict() == before


def test_every_kind_of_edit(tmp_path: Path) -> None:
    folder = tmp_path / "cdi"
    write_spec(
        folder,
        "full.json",
        cdi_spec(
            version="1.1.0",
            devices=[
                {
                    "name": "full",
                    "containerEdits": {
                        "env": ["PATH=/cdi/bin", "NEW=1"],
                        "deviceNodes": [
                            {
                                "path": "/dev/null-copy",
                                "hostPath": "/dev/null",
                                "permissions": "rw",
                            },
                            {
                                "path": "/dev/owned",
                                "type": "c",
                                "major": 10,
                                "minor": 200,
                                "uid": 7,
                                "fileMode": 0o600,
                            },
                        ],
                        "mounts": [
                            {
                                "hostPath": "/usr/lib/libfake.so",
                                "containerPath": "/usr/lib/libfake.so",
                                "options": ["ro", "nosuid", "nodev", "bind"],
                            },
                            {"hostPath": "tmpfs", "containerPath": "/scratch", "type": "tmpfs"},
                        ],
                        "hooks": [
                            {
                                "hookName": "createContainer",
                                "path": "/usr/bin/hook",
                                "args": ["hook", "x"],
                                "env": ["A=b"],
                                "timeout": 9,
                            },
                            {"hookName": "poststop", "path": "/usr/bin/cleanup"},
                        ],
                        "additionalGids": [0, 44, 44],
                    },
                }
            ],
            containerEdits={
                "intelRdt": {"closID": "clos1", "l3CacheSchema": "L3:0=f"},
                "netDevices": [{"hostInterfaceName": "eth9", "name": "ctr0"}],
            },
        ),
    )
    spec = oci_spec(annotations={"cdi.k8s.io/x": "vendor.com/device=full"})
    spec.raw["process"]["user"] = {"uid": 1000, "gid": 1000}
    result = apply_through_core(spec, make_config([folder]))
    data = spec.to_dict()
    assert spec.get_env("PATH") == "/cdi/bin"
    assert data["process"]["env"][0] == "PATH=/cdi/bin"
    assert spec.get_env("NEW") == "1"
    null_type, null_major, null_minor = host_device_info("/dev/null")
    assert data["linux"]["devices"] == [
        {
            "path": "/dev/null-copy",
            "type": null_type,
            "major": null_major,
            "minor": null_minor,
            "uid": 1000,
            "gid": 1000,
        },
        {
            "path": "/dev/owned",
            "type": "c",
            "major": 10,
            "minor": 200,
            "fileMode": 0o600,
            "uid": 7,
            "gid": 1000,
        },
    ]
    rules = data["linux"]["resources"]["devices"]
    assert {
        "allow": True,
        "type": "c",
        "major": null_major,
        "minor": null_minor,
        "access": "rw",
    } in rules
    assert {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"} in rules
    assert data["mounts"][-2:] == [
        {
            "destination": "/usr/lib/libfake.so",
            "source": "/usr/lib/libfake.so",
            "options": ["ro", "nosuid", "nodev", "bind"],
        },
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"},
    ]
    assert data["hooks"]["createContainer"] == [
        {"path": "/usr/bin/hook", "args": ["hook", "x"], "env": ["A=b"], "timeout": 9}
    ]
    # A hook without env gets a host PATH only, never runc's (the container's) env.
    assert data["hooks"]["poststop"] == [
        {"path": "/usr/bin/cleanup", "env": list(DEFAULT_HOOK_ENV)}
    ]
    assert data["process"]["user"]["additionalGids"] == [44]
    assert data["linux"]["intelRdt"] == {"closID": "clos1", "l3CacheSchema": "L3:0=f"}
    assert data["linux"]["netDevices"] == {"eth9": {"name": "ctr0"}}
    assert result.applied == ("cdi",)
    assert {c.modifier for c in result.changes} == {"cdi"}
    kinds = {c.kind for c in result.changes}
    assert {"env", "device", "device-rule", "mount", "hook", "gid", "linux"} <= kinds


def test_host_device_type_mismatch_and_missing_node(tmp_path: Path) -> None:
    folder = tmp_path / "cdi"
    nodes = {
        "blk": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "b"}],
        "gone": [{"path": "/dev/y", "hostPath": str(tmp_path / "missing")}],
        "file": [{"path": "/dev/z", "hostPath": str(folder / "s.json")}],
    }
    devices = [{"name": n, "containerEdits": {"deviceNodes": v}} for n, v in nodes.items()]
    write_spec(folder, "s.json", cdi_spec(devices=devices))
    config = make_config([folder])
    with pytest.raises(ModifierError, match="has type 'b' but host node /dev/null has type 'c'"):
        run_modify(oci_spec(["NVIDIA_VISIBLE_DEVICES=vendor.com/device=blk"]), config)
    with pytest.raises(ModifierError, match=r"s\.json: cannot stat host device .*missing"):
        run_modify(oci_spec(["NVIDIA_VISIBLE_DEVICES=vendor.com/device=gone"]), config)
    with pytest.raises(ModifierError, match="is not a device node"):
        run_modify(oci_spec(["NVIDIA_VISIBLE_DEVICES=vendor.com/device=file"]), config)


def apply_through_core(spec: Spec, config: Any) -> Any:
    """Run only the cdi plugin through the core's apply_modifiers (validation included)."""
    pm = get_plugin_manager()
    pm.register(nvshim_cdi, name="cdi")
    return apply_modifiers(spec, config=config, mode="cdi", plugin_manager=pm)


def test_modified_spec_validates_against_oci_schema(spec_dir: Path) -> None:
    import schema_support

    example = shared_path("oci-runtime-spec", "test", "config", "good", "spec-example.json")
    spec = Spec.from_dict(json.loads(example.read_text()))
    spec.set_env("NVIDIA_VISIBLE_DEVICES", "0,1,vendor.com/device=gpu0")
    assert schema_support.schema_errors(spec.to_dict()) == []
    apply_through_core(spec, make_config([spec_dir]))
    assert [d.path for d in spec.devices()][-3:] == ["/dev/nvidia0", "/dev/nvidia1", "/dev/fake0"]
    assert schema_support.schema_errors(spec.to_dict()) == []


def test_plugin_registration() -> None:
    (modifier,) = nvshim_cdi.nvshim_modifiers()
    assert modifier.name == "cdi"
    assert modifier.order == 50
    assert modifier.description


# --------------------------------------------------------------------------- nvshim-ctl cdi


def write_config(tmp_path: Path, spec_dirs: list[Path]) -> Path:
    path = tmp_path / "config.toml"
    dirs = ", ".join(json.dumps(str(d)) for d in spec_dirs)
    path.write_text(f"[nvidia-container-runtime.modes.cdi]\nspec-dirs = [{dirs}]\n")
    return path


def test_ctl_cdi_list(spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (spec_dir / "bad.json").write_text("{}")
    config = write_config(tmp_path, [spec_dir])
    assert ctl_main(["cdi", "list", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert any(
        line.split() == ["nvidia.com/gpu=0", str(spec_dir / "nvidia.yaml")] for line in lines
    )
    assert any(
        line.split() == ["vendor.com/device=gpu0", str(spec_dir / "vendor.json")] for line in lines
    )
    assert str(spec_dir / "bad.json") in err
    assert ctl_main(["cdi", "list", "--json", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {d["name"]: d["file"] for d in report["devices"]} == {
        "nvidia.com/gpu=0": str(spec_dir / "nvidia.yaml"),
        "nvidia.com/gpu=1": str(spec_dir / "nvidia.yaml"),
        "vendor.com/device=gpu0": str(spec_dir / "vendor.json"),
    }
    assert [e["file"] for e in report["errors"]] == [str(spec_dir / "bad.json")]


def test_ctl_cdi_validate(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = str(spec_dir / "vendor.json")
    assert ctl_main(["cdi", "validate", good]) == 0
    assert "ok: " + good in capsys.readouterr().out
    bad = write_spec(
        tmp_path,
        "bad.json",
        cdi_spec(
            version="0.3.0", devices=[{"name": "d", "containerEdits": {"additionalGids": [1]}}]
        ),
    )
    assert ctl_main(["cdi", "validate", good, str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "additionalGids" in err
    # Without files: the configured folders, conflicts included.
    config = write_config(tmp_path, [spec_dir])
    assert ctl_main(["cdi", "validate", "--config", str(config)]) == 0
    write_spec(spec_dir, "dup.json", cdi_spec(devices=[FAKE_DEVICE]))
    assert ctl_main(["cdi", "validate", "--config", str(config)]) == 1
    assert "vendor.com/device=gpu0 is defined by" in capsys.readouterr().err


def test_spec_files_are_not_found_through_hidden_names(tmp_path: Path) -> None:
    folder = tmp_path / "cdi"
    write_spec(folder, ".hidden.json", cdi_spec())
    os.symlink("/nonexistent", folder / "dangling.json")
    registry = Registry.load([str(folder)])
    assert registry.devices == {}
    assert registry.errors == []


def test_spec_part_records_behave_as_frozen_attrs_records() -> None:
    """DeviceNode & co. are plain FrozenRecords (cheaper to import) that behave as attrs.frozen."""
    import copy
    import pickle
    import weakref

    import attrs
    from nvshim_cdi._spec import CdiDevice, CdiHook, ContainerEdits, DeviceNode

    node = DeviceNode("/dev/nvidia0", major=195, minor=0)
    assert node == DeviceNode("/dev/nvidia0", None, None, 195, 0)
    assert node != DeviceNode("/dev/nvidia1", major=195, minor=1)
    assert hash(node) == hash(DeviceNode("/dev/nvidia0", major=195, minor=0))
    assert repr(CdiHook("createContainer", "/bin/h")) == (
        "CdiHook(hook_name='createContainer', path='/bin/h', args=(), env=None, timeout=None)"
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        node.path = "/dev/other"  # type: ignore[misc]
    device = CdiDevice("0", ContainerEdits(device_nodes=(node,)))
    assert device.annotations == {}
    assert pickle.loads(pickle.dumps(device)) == device
    assert copy.deepcopy(device) == device
    assert weakref.ref(node)() is node
    # Positional patterns (match statements, Python 3.10+) see the fields in order.
    assert DeviceNode.__match_args__[:3] == ("path", "host_path", "type")
