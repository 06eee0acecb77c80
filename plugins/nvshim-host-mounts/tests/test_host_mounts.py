"""Tests of the host-mounts modifier, through nvshim's real chain (nvshim.testing)."""

from __future__ import annotations

import json
from pathlib import Path

import nvshim_host_mounts
import pytest

from nvshim import ConfigError, NvshimError
from nvshim.testing import (
    BundleFactory,
    ConfigFactory,
    PluginRegistrar,
    RunModifiers,
    SpecFactory,
)

ANNOTATION = nvshim_host_mounts.DEFAULT_ANNOTATION


@pytest.fixture
def plugin(register_plugin: PluginRegistrar) -> str:
    """The plugin, registered under its entry-point name."""
    return register_plugin(nvshim_host_mounts, name="host-mounts")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An allowed host folder with a sub-folder."""
    folder = tmp_path / "data"
    (folder / "imagenet").mkdir(parents=True)
    return folder


def allow(folder: Path, extra: str = "") -> str:
    return f'[nvshim.plugins.host-mounts]\nallow = ["{folder}"]\n{extra}'


def test_mounts_an_allowed_folder(
    plugin: str, data: Path, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    spec = oci_spec(annotations={ANNOTATION: f"{data}/imagenet:/data"})
    result = run_modifiers(spec, config=allow(data))
    mount = next(m for m in result.spec.mounts() if m.destination == "/data")
    assert mount.source == str(data / "imagenet")
    assert mount.type == "bind"
    assert "ro" in mount.options
    assert [(c.modifier, c.kind, c.key) for c in result.changes] == [
        ("host-mounts", "mount", "/data")
    ]


def test_container_path_defaults_to_host_path_and_rw_is_configurable(
    plugin: str, data: Path, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    spec = oci_spec(annotations={ANNOTATION: str(data)})
    result = run_modifiers(spec, config=allow(data, "read-only = false"))
    mount = next(m for m in result.spec.mounts() if m.destination == str(data))
    assert "rw" in mount.options


def test_no_annotation_changes_nothing(
    plugin: str, data: Path, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    spec = oci_spec()
    before = spec.to_dict()
    result = run_modifiers(spec, config=allow(data))
    assert result.changes == ()
    assert result.spec.to_dict() == before


@pytest.mark.parametrize(
    ("request_value", "message"),
    [
        ("/etc:/host-etc", "/etc is outside the allowed folders"),
        ("{data}/../secret:/x", "is not a clean absolute path"),
        ("relative/path", "is not a clean absolute path"),
        ("{data}:relative", "is not absolute"),
        ("{data}/missing:/m", "is not a folder on this host"),
    ],
)
def test_refused_requests_name_the_plugin(
    plugin: str,
    data: Path,
    oci_spec: SpecFactory,
    run_modifiers: RunModifiers,
    request_value: str,
    message: str,
) -> None:
    spec = oci_spec(annotations={ANNOTATION: request_value.format(data=data)})
    with pytest.raises(NvshimError) as error:
        run_modifiers(spec, config=allow(data))
    assert error.value.line.startswith("nvshim: modifier 'host-mounts' (host-mounts): ")
    assert message in error.value.line


def test_a_symlink_cannot_lead_out_of_an_allowed_folder(
    plugin: str, data: Path, tmp_path: Path, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "escape").symlink_to(outside)
    spec = oci_spec(annotations={ANNOTATION: f"{data}/escape:/x"})
    with pytest.raises(NvshimError, match="resolves to"):
        run_modifiers(spec, config=allow(data))


def test_empty_allow_list_refuses_everything(
    plugin: str, data: Path, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    spec = oci_spec(annotations={ANNOTATION: str(data)})
    with pytest.raises(NvshimError, match="allow is empty"):
        run_modifiers(spec)


def test_bad_config_table_is_a_config_error(
    plugin: str, oci_spec: SpecFactory, run_modifiers: RunModifiers, nvshim_config: ConfigFactory
) -> None:
    config = nvshim_config('[nvshim.plugins.host-mounts]\nallow = ["relative"]\n')
    spec = oci_spec(annotations={ANNOTATION: "/srv"})
    with pytest.raises(NvshimError, match="is not an absolute path"):
        run_modifiers(spec, config=config)
    typo = nvshim_config('[nvshim.plugins.host-mounts]\nalow = ["/srv"]\n')
    with pytest.raises(NvshimError, match="alow"):
        run_modifiers(spec, config=typo)
    with pytest.raises(ConfigError):
        nvshim_config("[nvshim]\nmodifier-timeout = 'x'\n")


def test_bundle_is_rewritten_only_when_allowed(
    plugin: str, data: Path, oci_bundle: BundleFactory, run_modifiers: RunModifiers
) -> None:
    refused = oci_bundle(name="refused", annotations={ANNOTATION: "/etc"})
    before = (refused / "config.json").read_bytes()
    with pytest.raises(NvshimError):
        run_modifiers(refused, config=allow(data))
    assert (refused / "config.json").read_bytes() == before

    good = oci_bundle(name="good", annotations={ANNOTATION: f"{data}:/data"})
    result = run_modifiers(good, config=allow(data))
    assert result.written
    written = json.loads((good / "config.json").read_text())
    assert {
        "destination": "/data",
        "source": str(data),
        "type": "bind",
        "options": ["rbind", "nosuid", "nodev", "ro"],
    } in written["mounts"]
