"""csv-discovery: CSV parsing, host discovery, and the modifier through the real chain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import create_through_nvshim, minimal_spec, shared_path
from csv_host_support import (
    csv_config,
    make_char_device,
    make_file,
    make_link,
    populate_from_csv,
    requires_mknod,
    write_csv,
)
from nvshim_csv_discovery.csvfiles import find_csv_files, normalise_path, parse_csv
from nvshim_csv_discovery.discovery import discover, is_library, resolve_in_root
from nvshim_csv_discovery.hooks import find_nvshim_ctl

from nvshim import Spec, apply_modifiers
from nvshim._log import Logger
from nvshim.errors import NvshimError
from nvshim.requirements import HostProperties

GPU_ENV = ["PATH=/usr/bin:/bin", "NVIDIA_VISIBLE_DEVICES=all"]


class RecordingLogger(Logger):
    """A logger that keeps the warnings it gets."""

    def __init__(self) -> None:
        super().__init__("debug")
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args if args else msg)


def parse(text: str, name: str = "x.csv") -> tuple[list[tuple[str, str]], list[str]]:
    warnings: list[str] = []
    entries = parse_csv(text.splitlines(), name, warnings.append)
    return [(e.type, e.path) for e in entries], warnings


# -- CSV parsing -------------------------------------------------------------


def test_parse_basic_types_and_trimming() -> None:
    entries, warnings = parse(
        "dev, /dev/nvhost-gpu\n  lib ,  /usr/lib/libcuda.so.1  \nsym,/usr/lib/libcuda.so\n"
        "dir, /usr/local/cuda\n"
    )
    assert entries == [
        ("dev", "/dev/nvhost-gpu"),
        ("lib", "/usr/lib/libcuda.so.1"),
        ("sym", "/usr/lib/libcuda.so"),
        ("dir", "/usr/local/cuda"),
    ]
    assert warnings == []


def test_parse_skips_blank_lines_and_comments() -> None:
    entries, warnings = parse("# a comment\n\n   \n  # indented comment\nlib, /a.so\n")
    assert entries == [("lib", "/a.so")]
    assert warnings == []


def test_parse_bad_lines_warn_with_file_and_line() -> None:
    entries, warnings = parse(
        "lib, /ok.so\nnonsense\nfoo, /x\nlib,\nlib, relative/path.so\ndir, /usr/../etc\n",
        name="/etc/x/drivers.csv",
    )
    assert entries == [("lib", "/ok.so")]
    assert len(warnings) == 5
    for number, warning in zip((2, 3, 4, 5, 6), warnings):
        assert warning.startswith(f"/etc/x/drivers.csv:{number}: ")
    assert "unknown type 'foo'" in warnings[1]
    assert "relative path" in warnings[3]
    assert "'..'" in warnings[4]


def test_parse_dev_name_without_slash_lives_in_dev() -> None:
    entries, _ = parse("dev, nvhost-gpu\ndev, nvmap\n")
    assert entries == [("dev", "/dev/nvhost-gpu"), ("dev", "/dev/nvmap")]


def test_parse_relative_dev_path_with_slash_is_refused() -> None:
    entries, warnings = parse("dev, dri/card0\n")
    assert entries == []
    assert "x.csv:1" in warnings[0]


def test_parse_normalises_double_slashes_and_dots() -> None:
    entries, _ = parse("lib, //lib/firmware//tegra19x/./fw.bin\ndir, /usr/local/cuda/\n")
    assert entries == [("lib", "/lib/firmware/tegra19x/fw.bin"), ("dir", "/usr/local/cuda")]


def test_parse_splits_at_first_comma_so_paths_may_hold_commas() -> None:
    entries, warnings = parse("lib, /opt/a,b/lib,c.so\n")
    assert entries == [("lib", "/opt/a,b/lib,c.so")]
    assert warnings == []


def test_parse_keeps_globs() -> None:
    warnings: list[str] = []
    entries = parse_csv(["dev, /dev/dri/card*"], "d.csv", warnings.append)
    assert entries[0].is_glob
    assert entries[0].where == "d.csv:1"


def test_parse_invalid_utf8_line_is_skipped() -> None:
    warnings: list[str] = []
    entries = parse_csv([b"lib, /a\xff.so", b"lib, /b.so"], "f.csv", warnings.append)
    assert [e.path for e in entries] == ["/b.so"]
    assert warnings[0].startswith("f.csv:1: ")


@pytest.mark.parametrize("path", ["/", "//", "/./"])
def test_normalise_refuses_the_root(path: str) -> None:
    with pytest.raises(ValueError, match="root folder"):
        normalise_path(path)


def test_find_csv_files(tmp_path: Path) -> None:
    for name in ("drivers.csv", "DEVICES.CSV", ".csv", "other.csv", "notes.txt", "l4t.Csv"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub.csv").mkdir()
    every = [os.path.basename(p) for p in find_csv_files(str(tmp_path))]
    assert every == ["DEVICES.CSV", "drivers.csv", "l4t.Csv", "other.csv"]
    default = find_csv_files(str(tmp_path), ["l4t.csv", "drivers.csv", "devices.csv"])
    # The base files are matched exactly, as NVIDIA's runtime does.
    assert [os.path.basename(p) for p in default] == ["drivers.csv"]
    assert find_csv_files(str(tmp_path / "missing")) == []


# -- host discovery ----------------------------------------------------------


def test_resolve_in_root_keeps_absolute_links_inside(tmp_path: Path) -> None:
    make_file(tmp_path, "/usr/lib/real/libx.so.1")
    make_link(tmp_path, "/usr/lib/tegra", "/usr/lib/real")
    make_link(tmp_path, "/usr/lib/up", "../../../../../../usr/lib/real")
    root = str(tmp_path)
    assert resolve_in_root(root, "/usr/lib/tegra/libx.so.1") == "/usr/lib/real/libx.so.1"
    assert resolve_in_root(root, "/usr/lib/up/libx.so.1") == "/usr/lib/real/libx.so.1"
    assert resolve_in_root(root, "/usr/lib/tegra", follow_last=False) == "/usr/lib/tegra"
    assert resolve_in_root(root, "/missing/a/b") == "/missing/a/b"


def test_resolve_in_root_stops_link_loops(tmp_path: Path) -> None:
    make_link(tmp_path, "/a", "b")
    make_link(tmp_path, "/b", "a")
    with pytest.raises(OSError, match="links"):
        resolve_in_root(str(tmp_path), "/a/x")


def test_library_names() -> None:
    assert is_library("/usr/lib/libcuda.so")
    assert is_library("/usr/lib/libcuda.so.1.1")
    assert not is_library("/lib/firmware/fw.bin")
    assert not is_library("/usr/lib/libso.txt")


def _discover(root: Path, lines: list[str]) -> tuple[Any, list[str]]:
    warnings: list[str] = []
    entries = parse_csv(lines, "h.csv", warnings.append)
    return discover(entries, str(root), warnings.append), warnings


def test_discover_library_chain(tmp_path: Path) -> None:
    make_file(tmp_path, "/usr/lib/libfoo.so.1.2.3", b"ELF")
    make_link(tmp_path, "/usr/lib/libfoo.so.1", "libfoo.so.1.2.3")
    make_link(tmp_path, "/usr/lib/libfoo.so", "libfoo.so.1")
    found, warnings = _discover(tmp_path, ["lib, /usr/lib/libfoo.so"])
    assert warnings == []
    assert [(m.destination, m.source, m.type, m.options) for m in found.mounts] == [
        (
            "/usr/lib/libfoo.so.1.2.3",
            f"{tmp_path}/usr/lib/libfoo.so.1.2.3",
            "bind",
            ("ro", "nosuid", "nodev", "bind"),
        )
    ]
    assert found.links == (
        ("libfoo.so.1", "/usr/lib/libfoo.so"),
        ("libfoo.so.1.2.3", "/usr/lib/libfoo.so.1"),
    )
    assert found.ldcache_folders == ("/usr/lib",)


def test_discover_absolute_link_resolved_under_root(tmp_path: Path) -> None:
    make_file(tmp_path, "/opt/nv/libbar.so.5")
    make_link(tmp_path, "/usr/lib/libbar.so", "/opt/nv/libbar.so.5")
    found, _ = _discover(tmp_path, ["sym, /usr/lib/libbar.so"])
    assert [m.source for m in found.mounts] == [f"{tmp_path}/opt/nv/libbar.so.5"]
    assert found.links == (("/opt/nv/libbar.so.5", "/usr/lib/libbar.so"),)
    assert found.ldcache_folders == ("/opt/nv",)


def test_discover_link_through_a_linked_folder(tmp_path: Path) -> None:
    make_file(tmp_path, "/usr/lib/nvidia/libq.so.1")
    make_link(tmp_path, "/usr/lib/tegra", "nvidia")
    found, _ = _discover(tmp_path, ["lib, /usr/lib/tegra/libq.so.1"])
    # The folder link is resolved on the host: the file lands where it really is.
    assert [m.destination for m in found.mounts] == ["/usr/lib/nvidia/libq.so.1"]


def test_discover_folder_is_rbind_mounted(tmp_path: Path) -> None:
    make_file(tmp_path, "/usr/local/cuda/bin/nvcc")
    found, _ = _discover(tmp_path, ["dir, /usr/local/cuda"])
    assert [(m.destination, m.options) for m in found.mounts] == [
        ("/usr/local/cuda", ("ro", "nosuid", "nodev", "rbind"))
    ]
    assert found.ldcache_folders == ()


def test_discover_dir_entry_that_is_a_file_is_skipped(tmp_path: Path) -> None:
    make_file(tmp_path, "/etc/thing")
    found, warnings = _discover(tmp_path, ["dir, /etc/thing"])
    assert found.mounts == ()
    assert "h.csv:1" in warnings[0]
    assert "not a folder" in warnings[0]


def test_discover_missing_paths_warn_and_skip(tmp_path: Path) -> None:
    make_link(tmp_path, "/usr/lib/libdangling.so", "libgone.so.1")
    found, warnings = _discover(
        tmp_path, ["lib, /usr/lib/libnothere.so", "dev, /dev/nope", "sym, /usr/lib/libdangling.so"]
    )
    assert found == type(found)()
    assert [w.split(":")[1] for w in warnings] == ["1", "2", "3"]


def test_discover_regular_file_is_not_a_device(tmp_path: Path) -> None:
    make_file(tmp_path, "/dev/fake")
    found, warnings = _discover(tmp_path, ["dev, /dev/fake"])
    assert found.devices == ()
    assert "not a character or block device" in warnings[0]


def test_discover_glob_without_match_warns(tmp_path: Path) -> None:
    found, warnings = _discover(tmp_path, ["dev, /dev/dri/card*"])
    assert found.devices == ()
    assert "no match" in warnings[0]


@requires_mknod
def test_discover_devices_globs_and_links(tmp_path: Path) -> None:
    make_char_device(tmp_path, "/dev/dri/card1", 226, 1)
    make_char_device(tmp_path, "/dev/dri/card0", 226, 0)
    make_char_device(tmp_path, "/dev/nvmap", 10, 120)
    make_link(tmp_path, "/dev/nvhost-alias", "/dev/nvmap")
    found, warnings = _discover(
        tmp_path, ["dev, /dev/dri/card*", "dev, nvmap", "dev, /dev/nvhost-alias", "dev, /dev/nvmap"]
    )
    assert warnings == []
    assert [(d.path, d.type, d.major, d.minor) for d in found.devices] == [
        ("/dev/dri/card0", "c", 226, 0),
        ("/dev/dri/card1", "c", 226, 1),
        ("/dev/nvmap", "c", 10, 120),
        # A link to a device is followed: the node gets the device's numbers.
        ("/dev/nvhost-alias", "c", 10, 120),
    ]
    # No mode and no owner from the host: the modifier gives the container user's ids.
    assert {(d.file_mode, d.uid, d.gid) for d in found.devices} == {(None, None, None)}


def test_discover_duplicates_are_dropped_in_order(tmp_path: Path) -> None:
    make_file(tmp_path, "/a/liba.so")
    make_file(tmp_path, "/b/libb.so")
    found, _ = _discover(tmp_path, ["lib, /b/libb.so", "lib, /a/liba.so", "lib, //b//libb.so"])
    assert [m.destination for m in found.mounts] == ["/b/libb.so", "/a/liba.so"]
    assert found.ldcache_folders == ("/b", "/a")


# -- the modifier through the real chain ---------------------------------------


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "driver-root"
    csv_dir = tmp_path / "csv"
    make_file(root, "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1.1", b"cuda")
    make_link(root, "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1", "libcuda.so.1.1")
    make_link(root, "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so", "libcuda.so.1")
    make_file(root, "/usr/local/cuda/include/cuda.h")
    write_csv(
        csv_dir,
        "drivers.csv",
        [
            "lib, /usr/lib/aarch64-linux-gnu/tegra/libcuda.so",
            "dir, /usr/local/cuda",
        ],
    )
    return {"root": root, "csv": csv_dir}


def run_chain(spec: dict[str, Any], config: Any, logger: Logger | None = None) -> Any:
    return apply_modifiers(Spec.from_dict(spec), config=config, logger=logger)


def test_modifier_injects_mounts_and_hooks(host: dict[str, Path]) -> None:
    config = csv_config(host["csv"], host["root"])
    result = run_chain(minimal_spec(process={"env": GPU_ENV}), config)
    assert result.mode == "csv"
    assert "csv-discovery" in result.applied
    data = result.spec.to_dict()
    assert [m["destination"] for m in data["mounts"]] == [
        "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1.1",
        "/usr/local/cuda",
    ]
    hooks = data["hooks"]["createContainer"]
    ctl = find_nvshim_ctl()
    assert os.path.isabs(ctl)
    # create-symlinks first, so that ldconfig sees the links.
    assert hooks[1] == {
        "path": ctl,
        "args": [
            ctl,
            "hook",
            "update-ldcache",
            "--folder",
            "/usr/lib/aarch64-linux-gnu/tegra",
            "--ldconfig-path",
            "@/sbin/ldconfig",
        ],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    }
    assert hooks[0]["args"] == [
        ctl,
        "hook",
        "create-symlinks",
        "--link",
        "libcuda.so.1::/usr/lib/aarch64-linux-gnu/tegra/libcuda.so",
        "--link",
        "libcuda.so.1.1::/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1",
    ]
    assert all(c.modifier == "csv-discovery" for c in result.changes)


def test_hooks_never_get_the_container_env(host: dict[str, Path]) -> None:
    env = [*GPU_ENV, "LD_PRELOAD=/evil.so", "LD_LIBRARY_PATH=/x"]
    result = run_chain(minimal_spec(process={"env": env}), csv_config(host["csv"], host["root"]))
    for hook in result.spec.hooks("createContainer"):
        assert hook.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


def test_nvidia_ctk_path_is_used_when_set(host: dict[str, Path]) -> None:
    config = csv_config(
        host["csv"],
        host["root"],
        {
            "nvidia-ctk": {"path": "/usr/bin/nvidia-ctk"},
            "nvidia-container-cli": {"root": str(host["root"]), "ldconfig": "@/sbin/ldconfig.real"},
        },
    )
    result = run_chain(minimal_spec(process={"env": GPU_ENV}), config)
    hooks = result.spec.hooks("createContainer")
    assert [h.path for h in hooks] == ["/usr/bin/nvidia-ctk", "/usr/bin/nvidia-ctk"]
    assert hooks[0].args[:3] == ("/usr/bin/nvidia-ctk", "hook", "create-symlinks")
    assert hooks[1].args[:3] == ("/usr/bin/nvidia-ctk", "hook", "update-ldcache")
    # NVIDIA's own default ldconfig is left implicit (hooks before v1.15 lack the flag).
    assert "--ldconfig-path" not in hooks[1].args


@pytest.mark.parametrize("value", [None, "", "void"])
def test_not_a_gpu_container_is_left_alone(host: dict[str, Path], value: str | None) -> None:
    env = ["PATH=/bin"] + ([] if value is None else [f"NVIDIA_VISIBLE_DEVICES={value}"])
    spec = minimal_spec(process={"env": env})
    result = run_chain(spec, csv_config(host["csv"], host["root"]))
    assert result.changes == ()
    assert result.spec.to_dict() == spec


def test_none_still_gets_driver_files(host: dict[str, Path]) -> None:
    env = ["NVIDIA_VISIBLE_DEVICES=none"]
    result = run_chain(minimal_spec(process={"env": env}), csv_config(host["csv"], host["root"]))
    assert len(result.spec.mounts()) == 2


def test_bundle_of_non_gpu_container_is_not_rewritten(
    host: dict[str, Path], tmp_path: Path
) -> None:
    from conftest import make_bundle_dir

    bundle = make_bundle_dir(tmp_path / "bundle")
    before = (bundle / "config.json").read_bytes()
    result = apply_modifiers(bundle, config=csv_config(host["csv"], host["root"]))
    assert not result.written
    assert (bundle / "config.json").read_bytes() == before


def test_other_modes_are_left_alone(host: dict[str, Path]) -> None:
    spec = Spec.from_dict(minimal_spec(process={"env": GPU_ENV}))
    config = csv_config(host["csv"], host["root"], {"nvshim": {"disabled-modifiers": ["cdi"]}})
    for mode in ("cdi", "legacy"):
        if mode == "legacy":
            config = csv_config(
                host["csv"],
                host["root"],
                {"nvshim": {"disabled-modifiers": ["cdi", "legacy-hook"]}},
            )
        result = apply_modifiers(spec, config=config, mode=mode, write=False)
        assert "csv-discovery" in result.applied
        assert result.changes == ()


def test_requirements_not_met_refuse_the_container(
    host: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nvshim.requirements

    monkeypatch.setattr(
        nvshim.requirements, "host_properties", lambda *_a, **_k: HostProperties(cuda="11.4")
    )
    env = [*GPU_ENV, "NVIDIA_REQUIRE_CUDA=cuda>=12.4"]
    with pytest.raises(NvshimError) as info:
        run_chain(minimal_spec(process={"env": env}), csv_config(host["csv"], host["root"]))
    assert info.value.line.endswith(
        "requirements not met: unsatisfied condition: cuda>=12.4 (cuda=11.4)"
    )
    assert "modifier 'csv-discovery'" in info.value.line


def test_requirements_met_or_disabled(
    host: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nvshim.requirements

    monkeypatch.setattr(
        nvshim.requirements, "host_properties", lambda *_a, **_k: HostProperties(cuda="12.6")
    )
    config = csv_config(host["csv"], host["root"])
    ok = run_chain(
        minimal_spec(process={"env": [*GPU_ENV, "NVIDIA_REQUIRE_CUDA=cuda>=12.4"]}), config
    )
    assert ok.spec.mounts()
    env = [*GPU_ENV, "NVIDIA_REQUIRE_CUDA=cuda>=13.0", "NVIDIA_DISABLE_REQUIRE=true"]
    assert run_chain(minimal_spec(process={"env": env}), config).spec.mounts()


def test_malformed_requirement_is_refused(host: dict[str, Path]) -> None:
    env = [*GPU_ENV, "NVIDIA_REQUIRE_FOO=cuda"]
    with pytest.raises(NvshimError, match="no operator"):
        run_chain(minimal_spec(process={"env": env}), csv_config(host["csv"], host["root"]))


def test_only_default_files_unless_csv_mounts_all(host: dict[str, Path]) -> None:
    make_file(host["root"], "/opt/extra/libextra.so")
    write_csv(host["csv"], "extra.csv", ["lib, /opt/extra/libextra.so"])
    config = csv_config(host["csv"], host["root"])
    plain = run_chain(minimal_spec(process={"env": GPU_ENV}), config)
    assert "/opt/extra/libextra.so" not in [m.destination for m in plain.spec.mounts()]
    env = [*GPU_ENV, "NVIDIA_REQUIRE_JETPACK=csv-mounts=all"]
    every = run_chain(minimal_spec(process={"env": env}), config)
    assert "/opt/extra/libextra.so" in [m.destination for m in every.spec.mounts()]


def test_bad_csv_lines_are_logged_with_file_and_line(host: dict[str, Path]) -> None:
    write_csv(host["csv"], "devices.csv", ["# header", "dev", "lib, ../etc/shadow"])
    logger = RecordingLogger()
    run_chain(minimal_spec(process={"env": GPU_ENV}), csv_config(host["csv"], host["root"]), logger)
    devices_csv = str(host["csv"] / "devices.csv")
    assert any(f"{devices_csv}:2:" in w for w in logger.warnings)
    assert any(f"{devices_csv}:3:" in w and "relative" in w for w in logger.warnings)


def test_applying_twice_adds_hooks_once(host: dict[str, Path]) -> None:
    config = csv_config(host["csv"], host["root"])
    first = run_chain(minimal_spec(process={"env": GPU_ENV}), config)
    again = apply_modifiers(first.spec, config=config)
    assert len(again.spec.hooks("createContainer")) == 2
    assert again.changes == ()


def test_missing_csv_folder_means_nothing(tmp_path: Path) -> None:
    config = csv_config(tmp_path / "nowhere", tmp_path)
    result = run_chain(minimal_spec(process={"env": GPU_ENV}), config)
    assert result.changes == ()


# -- NVIDIA's Jetson files -----------------------------------------------------

JETSON = {
    # name: (files, devices, mounts, links)
    "orin": (("devices.csv", "drivers.csv"), 40, 1 + 225 + 38, 38),
    "thor-dgpu": (("devices.csv", "drivers.csv"), 41, 1 + 249 + 47, 47),
    "jetson-l4t": (("l4t.csv",), 13, 4 + 154, 0),
}


@requires_mknod
@pytest.mark.parametrize("name", sorted(JETSON))
def test_jetson_csv_files(tmp_path: Path, name: str) -> None:
    from schema_support import schema_errors

    files, devices, mounts, links = JETSON[name]
    source = shared_path("reference-data", "csv", name)
    reference = shared_path("reference-data", "specs", "runc-spec.json")
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for file in files:
        (csv_dir / file).write_bytes((source / file).read_bytes())
    root = tmp_path / "root"
    populate_from_csv(root, [csv_dir / f for f in files])

    import json

    spec = json.loads(reference.read_text())
    spec["process"]["env"].append("NVIDIA_VISIBLE_DEVICES=all")
    logger = RecordingLogger()
    result = run_chain(spec, csv_config(csv_dir, root), logger)
    assert logger.warnings == []
    data = result.spec.to_dict()
    added_mounts = [m for m in data["mounts"] if m.get("source", "").startswith(str(root))]
    assert len(result.spec.devices()) == devices
    assert len(added_mounts) == mounts
    hooks = data["hooks"]["createContainer"]
    symlink_hooks = [h for h in hooks if "create-symlinks" in h["args"]]
    assert sum(a == "--link" for h in symlink_hooks for a in h["args"]) == links
    assert len(symlink_hooks) == (1 if links else 0)
    assert "update-ldcache" in hooks[-1]["args"]
    rules = data["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules
    assert schema_errors(data) == []


# -- the README's main job -------------------------------------------------------


def test_demo_spec_only(nvshim_ctl: str) -> None:
    import subprocess

    proc = subprocess.run(
        [nvshim_ctl, "demo", "--spec-only"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '+      "destination": "/usr/lib/nvdemo/libnvdemo.so.1.0.0",' in out
    assert "libnvdemo.so.1::/usr/lib/nvdemo/libnvdemo.so" in out
    assert "No container run (--spec-only)" in out
    folder = out.split(" in ", 1)[1].split(":", 1)[0]
    assert not os.path.exists(folder), "the demo left its temporary folder behind"


def test_through_the_nvshim_cli(
    host: dict[str, Path],
    tmp_path: Path,
    nvshim_exe: str,
    fake_runtime: Any,
    shim_env: dict[str, str],
) -> None:

    from conftest import make_bundle_dir

    config = Path(shim_env["NVSHIM_CONFIG"])
    config.write_text(
        config.read_text().replace(
            "[nvidia-container-runtime]\n", '[nvidia-container-runtime]\nmode = "csv"\n'
        )
        + f'[nvidia-container-runtime.modes.csv]\nmount-spec-path = "{host["csv"]}"\n'
        + f'[nvidia-container-cli]\nroot = "{host["root"]}"\n'
    )
    bundle = make_bundle_dir(tmp_path / "bundle", minimal_spec(process={"env": GPU_ENV}))
    written = create_through_nvshim(nvshim_exe, bundle, shim_env)
    assert [m["destination"] for m in written["mounts"]] == [
        "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1.1",
        "/usr/local/cuda",
    ]
    assert [h["args"][2] for h in written["hooks"]["createContainer"]] == [
        "create-symlinks",
        "update-ldcache",
    ]
    assert len(fake_runtime.calls()) == 1


def test_nvidia_ctk_bare_name_is_looked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NVIDIA's default config.toml says `path = "nvidia-ctk"`: found in PATH, else nvshim-ctl."""
    from nvshim_csv_discovery.hooks import HookNotFound, find_hook_executable, find_nvshim_ctl

    from nvshim.config import Config, CtkConfig

    folder = tmp_path / "bin"
    folder.mkdir()
    ctk = folder / "nvidia-ctk"
    ctk.write_text("#!/bin/sh\n")
    ctk.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    assert find_hook_executable(Config(nvidia_ctk=CtkConfig(path="nvidia-ctk"))) == str(ctk)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    missing = Config(nvidia_ctk=CtkConfig(path="nvshim-test-no-such-ctk"))
    assert find_hook_executable(missing) == find_nvshim_ctl()
    with pytest.raises(HookNotFound, match="not an absolute path"):
        find_hook_executable(Config(nvidia_ctk=CtkConfig(path="bin/nvidia-ctk")))
