"""Change tracking costs what modifiers touch: no whole-spec copy for API-only modifiers.

Changes made through the Spec's methods are recorded as they happen; only a
modifier that gets ``Spec.raw`` (or runs after one did: it may have kept the
reference) has the whole spec snapshotted and compared.  Attribution stays
exact: see also test_plugin_platform.py.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from plugin_support import Modify, chain

from nvshim import Mount, Spec

if TYPE_CHECKING:
    from nvshim.testing import PluginRegistrar, RunModifiers, SpecFactory

pytest_plugins = ["nvshim.testing"]


class CountingSpec(Spec):
    """A Spec that counts whole-spec copies (what a snapshot costs)."""

    __slots__ = ("copies",)

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.copies = 0

    def to_dict(self) -> dict[str, Any]:
        self.copies += 1
        return super().to_dict()


def _spec(oci_spec: SpecFactory) -> CountingSpec:
    return CountingSpec(oci_spec().to_dict())


def _api(n: int) -> Modify:
    def modify(spec: Spec, context: Any) -> None:
        context.request(spec)  # nvshim's own reads do not hand the data out
        spec.set_env(f"API{n}", "1")
        spec.add_mount(Mount(f"/api/{n}", source=f"/srv/{n}"))

    return modify


def _raw_set(key: str, value: str) -> Modify:
    def modify(spec: Spec, _context: Any) -> None:
        spec.raw.setdefault("annotations", {})[key] = value

    return modify


def _found(result: Any) -> set[tuple[str, str, str, str | None]]:
    return {(c.kind, c.key, c.source, c.modifier) for c in result.changes}


def test_api_only_modifiers_take_no_snapshot(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    chain(register_plugin, ("a", _api(1)), ("b", _api(2)), ("c", _api(3)))
    spec = _spec(oci_spec)
    result = run_modifiers(spec, mode="legacy")
    assert spec.copies == 0
    assert ("env", "API2", "api", "b") in _found(result)
    assert ("mount", "/api/3", "api", "c") in _found(result)


def test_raw_edit_after_api_modifiers_is_attributed(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    def mixed(spec: Spec, _context: Any) -> None:
        spec.set_env("BEFORE", "1")  # recorded before the snapshot: still its own
        spec.raw["process"]["args"] = ["nvidia-smi"]
        spec.set_env("AFTER", "1")

    chain(register_plugin, ("a", _api(1)), ("raw", mixed), ("c", _api(3)))
    spec = _spec(oci_spec)
    result = run_modifiers(spec, mode="legacy")
    found = _found(result)
    assert {
        ("env", "BEFORE", "api", "raw"),
        ("field", "process.args", "raw", "raw"),
        ("env", "AFTER", "api", "raw"),
        ("env", "API3", "api", "c"),
    } <= found
    assert next(c for c in result.changes if c.source == "raw").modifier == "raw"
    # One snapshot at raw's first access, one for "c" (raw was handed out).
    assert spec.copies == 2


def test_reference_kept_from_an_earlier_modifier_is_still_seen(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    kept: list[dict[str, Any]] = []

    def keep(spec: Spec, _context: Any) -> None:
        kept.append(spec.raw)

    def sneaky(_spec: Spec, _context: Any) -> None:
        kept[0].setdefault("annotations", {})["late"] = "1"

    chain(register_plugin, ("keep", keep), ("sneaky", sneaky))
    result = run_modifiers(_spec(oci_spec), mode="legacy")
    assert ("annotation", "late", "raw", "sneaky") in _found(result)


def test_value_given_to_set_linux_is_copied(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    held: list[dict[str, Any]] = []

    def owner(spec: Spec, _context: Any) -> None:
        value = {"eth0": {"name": "gpu0"}}
        spec.set_linux("netDevices", value)
        held.append(value)

    def later(_spec: Spec, _context: Any) -> None:
        held[0]["eth1"] = {"name": "gpu1"}  # the caller's object, not the spec

    chain(register_plugin, ("owner", owner), ("later", later))
    result = run_modifiers(_spec(oci_spec), mode="legacy")
    assert result.spec.raw["linux"]["netDevices"] == {"eth0": {"name": "gpu0"}}
    assert {c.modifier for c in result.changes} == {"owner"}


def test_conflicting_raw_edits_are_still_detected(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    from nvshim import NvshimError

    chain(register_plugin, ("a", _raw_set("k", "1")), ("b", _api(2)), ("c", _raw_set("k", "2")))
    with pytest.raises(NvshimError, match=r"modifier 'c'.*annotation 'k'"):
        run_modifiers(_spec(oci_spec), mode="legacy")


def test_large_spec_chain_of_api_modifiers_stays_cheap(
    register_plugin: PluginRegistrar, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    # 2,000 mounts and 20 API-only modifiers: no copy of the spec per modifier.
    base = oci_spec().to_dict()
    base["mounts"] = [
        {"destination": f"/data/m{i:04d}", "source": f"/srv/m{i:04d}", "type": "bind"}
        for i in range(2000)
    ]
    chain(register_plugin, *((f"m{i:02d}", _api(i)) for i in range(20)))
    spec = CountingSpec(base)
    started = time.perf_counter()
    result = run_modifiers(spec, mode="legacy")
    elapsed = time.perf_counter() - started
    assert spec.copies == 0
    assert len(result.spec.mounts()) == 2020
    assert elapsed < 5  # a loose bound; the count above is the real check


@pytest.mark.parametrize("mode", ["legacy", "cdi"])
def test_built_in_modifiers_take_no_snapshot(
    mode: str, tmp_path: Any, oci_spec: SpecFactory, run_modifiers: RunModifiers
) -> None:
    # The built-ins only read through nvshim's own accessor: a GPU create in
    # these modes copies the spec never (a new `spec.raw` in one would show here).
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    (spec_dir / "gpu.json").write_text(
        '{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [{"name": "0",'
        ' "containerEdits": {"env": ["GPU0=1"]}}], "containerEdits": {"env": ["ALL=1"]}}'
    )
    config = (
        '[nvidia-container-runtime-hook]\npath = "/bin/true"\n'
        f'[nvidia-container-runtime.modes.cdi]\nspec-dirs = ["{spec_dir}"]\n'
    )
    base = oci_spec(env={"NVIDIA_VISIBLE_DEVICES": "0"}).to_dict()
    spec = CountingSpec(base)
    result = run_modifiers(spec, config=config, mode=mode, entry_points=True)
    assert result.changes  # the GPU request was served
    assert spec.copies == 0
