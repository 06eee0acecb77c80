"""csv mode as NVIDIA's runtime does it (issue #11), through the real ``nvshim``.

Each test builds a fake Jetson host (a driver root and CSV files), runs
``nvshim create`` against a recording runtime, or a whole container under
real runc, and looks at what the container got.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import create_support
import pytest
import runc_support
from csv_host_support import make_char_device, make_file, make_link, requires_mknod, write_csv

GPU_ENV = ["PATH=/usr/bin:/bin", "NVIDIA_VISIBLE_DEVICES=all"]


def _config(tmp_path: Path, runtime: str, csv_dir: Path, root: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        "[nvidia-container-runtime]\n"
        f'runtimes = ["{runtime}"]\n'
        'mode = "csv"\n'
        f'debug = "{tmp_path / "nvshim.log"}"\n'
        "[nvidia-container-runtime.modes.csv]\n"
        f'mount-spec-path = "{csv_dir}"\n'
        "[nvidia-container-cli]\n"
        f'root = "{root}"\n' + extra
    )
    return path


def _create(
    nvshim_exe: str, tmp_path: Path, config: Path, env: list[str] | None = None
) -> dict[str, Any]:
    """``nvshim create`` on a small GPU bundle; the config.json it wrote."""
    return create_support.create(nvshim_exe, tmp_path, config, env or GPU_ENV)


def _log(tmp_path: Path) -> str:
    path = tmp_path / "nvshim.log"
    return path.read_text() if path.exists() else ""


def test_sym_entry_to_a_folder_is_a_link_not_a_mount(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    """A ``sym`` entry leading to a folder (``tegra -> nvidia`` on Orin) mounts nothing."""
    root = tmp_path / "host"
    make_file(root, "/usr/lib/aarch64-linux-gnu/nvidia/libnvfoo.so.1", b"foo")
    make_file(root, "/usr/lib/aarch64-linux-gnu/nvidia/libnot-listed.so", b"secret")
    make_link(root, "/usr/lib/aarch64-linux-gnu/tegra", "nvidia")
    csv_dir = tmp_path / "csv"
    write_csv(
        csv_dir,
        "drivers.csv",
        [
            "lib, /usr/lib/aarch64-linux-gnu/nvidia/libnvfoo.so.1",
            "sym, /usr/lib/aarch64-linux-gnu/tegra",
        ],
    )
    config = _config(tmp_path, str(fake_runtime.path), csv_dir, root)
    written = _create(nvshim_exe, tmp_path, config)
    assert [m["destination"] for m in written["mounts"]] == [
        "/usr/lib/aarch64-linux-gnu/nvidia/libnvfoo.so.1"
    ]
    links = [h for h in written["hooks"]["createContainer"] if "create-symlinks" in h["args"]]
    assert len(links) == 1
    assert "nvidia::/usr/lib/aarch64-linux-gnu/tegra" in links[0]["args"]


def test_base_files_are_matched_exactly(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    """``DEVICES.CSV`` is not ``devices.csv``: read only with ``csv-mounts=all``."""
    root = tmp_path / "host"
    make_file(root, "/usr/lib/libnvfoo.so.1", b"foo")
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "DRIVERS.CSV", ["lib, /usr/lib/libnvfoo.so.1"])
    config = _config(tmp_path, str(fake_runtime.path), csv_dir, root)
    written = _create(nvshim_exe, tmp_path, config)
    assert "mounts" not in written or written["mounts"] == []
    # Not silent: the admin sees why the GPU container got nothing.
    assert f"no CSV file (devices.csv, drivers.csv, l4t.csv) found in {csv_dir}" in _log(tmp_path)
    every = _create_again(nvshim_exe, tmp_path, config, "csv-mounts=all")
    assert [m["destination"] for m in every["mounts"]] == ["/usr/lib/libnvfoo.so.1"]


def _create_again(nvshim_exe: str, tmp_path: Path, config: Path, jetpack: str) -> dict[str, Any]:
    other = tmp_path / "again"
    other.mkdir()
    return _create(nvshim_exe, other, config, [*GPU_ENV, f"NVIDIA_REQUIRE_JETPACK={jetpack}"])


def test_trailing_comment_is_warned_once_per_file(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    root = tmp_path / "host"
    make_file(root, "/usr/lib/libnvfoo.so.1", b"foo")
    csv_dir = tmp_path / "csv"
    write_csv(
        csv_dir,
        "drivers.csv",
        ["lib, /usr/lib/libnvfoo.so.1 # the driver", "lib, /usr/lib/libnvbar.so # another"],
    )
    config = _config(tmp_path, str(fake_runtime.path), csv_dir, root)
    _create(nvshim_exe, tmp_path, config)
    log = _log(tmp_path)
    assert log.count("holds ' #'") == 1, log
    assert f"{csv_dir / 'drivers.csv'}:1: the path '/usr/lib/libnvfoo.so.1 # the driver'" in log


def test_hooks_links_before_ldcache(tmp_path: Path, nvshim_exe: str, fake_runtime: Any) -> None:
    root = tmp_path / "host"
    make_file(root, "/usr/lib/libnvfoo.so.1.0", b"foo")
    make_link(root, "/usr/lib/libnvfoo.so.1", "libnvfoo.so.1.0")
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "drivers.csv", ["lib, /usr/lib/libnvfoo.so.1"])
    config = _config(tmp_path, str(fake_runtime.path), csv_dir, root)
    written = _create(nvshim_exe, tmp_path, config)
    names = [h["args"][2] for h in written["hooks"]["createContainer"]]
    assert names == ["create-symlinks", "update-ldcache"]


@requires_mknod
def test_none_gets_every_csv_device(tmp_path: Path, nvshim_exe: str, fake_runtime: Any) -> None:
    """``NVIDIA_VISIBLE_DEVICES=none`` gets what ``all`` gets, as with NVIDIA's runtime."""
    root = tmp_path / "host"
    make_char_device(root, "/dev/nvhost-gpu", 1, 3)
    make_file(root, "/usr/lib/libnvfoo.so", b"foo")
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "devices.csv", ["dev, /dev/nvhost-gpu"])
    write_csv(csv_dir, "drivers.csv", ["lib, /usr/lib/libnvfoo.so"])
    config = _config(tmp_path, str(fake_runtime.path), csv_dir, root)
    written = {}
    for value in ("none", "all"):
        folder = tmp_path / value
        folder.mkdir()
        env = ["PATH=/bin", f"NVIDIA_VISIBLE_DEVICES={value}"]
        written[value] = create_support.create(nvshim_exe, folder, config, env)
    assert [d["path"] for d in written["none"]["linux"]["devices"]] == ["/dev/nvhost-gpu"]
    assert written["none"]["linux"] == written["all"]["linux"]
    assert written["none"]["mounts"] == written["all"]["mounts"]


# --- under real runc ---------------------------------------------------------------------


@requires_mknod
@pytest.mark.runc
@pytest.mark.root
@runc_support.requires_runc
def test_non_root_user_opens_a_csv_device_node(tmp_path: Path, nvshim_exe: str) -> None:
    """A host node ``crw-rw---- root:root`` is opened by a container running as 1000:1000."""
    root = tmp_path / "host"
    node = root / "dev" / "nvfake0"
    node.parent.mkdir(parents=True)
    os.mknod(node, 0o660 | stat.S_IFCHR, os.makedev(1, 3))
    node.chmod(0o660)
    csv_dir = tmp_path / "csv"
    write_csv(csv_dir, "devices.csv", ["dev, nvfake0"])
    config = _config(tmp_path, str(runc_support.find_runc()), csv_dir, root)
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ["sh", "-c", "echo data > /dev/nvfake0 && echo opened; stat -c '%u:%g %a' /dev/nvfake0"],
        env=[*runc_support.DEFAULT_ENV, "NVIDIA_VISIBLE_DEVICES=all"],
        extra={"process": {"user": {"uid": 1000, "gid": 1000}}},
    )
    result = runc_support.run_container(
        [nvshim_exe],
        bundle,
        env={"NVSHIM_CONFIG": str(config), "NVSHIM_CACHE_DIR": str(tmp_path / "cache")},
    ).check()
    assert "opened" in result.stdout.splitlines(), result.describe()
    (device,) = bundle.load_config()["linux"]["devices"]
    assert (device["uid"], device["gid"]) == (1000, 1000)
    assert "fileMode" not in device


# NVIDIA's hook programs parse their flags with urfave/cli: an unknown flag is
# "flag provided but not defined" and exit 1.  This stand-in does the same
# (flags as in NVIDIA's v1.17 hooks, ``--ldconfig-path`` a host path that must
# exist, as v1.17.9 stats it), then hands the hook to nvshim-ctl.
NVIDIA_HOOK_STANDIN = """#!{python}
import os, sys
FLAGS = {{
    "update-ldcache": {{"folder", "ldconfig-path", "container-spec"}},
    "create-symlinks": {{"link", "container-spec"}},
}}
args = sys.argv[1:]
if os.path.basename(sys.argv[0]) == "nvidia-ctk":
    if args[:1] != ["hook"]:
        sys.exit("nvidia-ctk: expected 'hook', got %r" % args[:1])
    args = args[1:]
if not args or args[0] not in FLAGS:
    sys.exit("No help topic for %r" % (args[:1],))
name, rest = args[0], args[1:]
i = 0
while i < len(rest):
    flag = rest[i].lstrip("-")
    flag, eq, value = flag.partition("=")
    if flag not in FLAGS[name]:
        sys.exit("Incorrect Usage: flag provided but not defined: -" + flag)
    if not eq:
        i += 1
        value = rest[i]
    if flag == "ldconfig-path" and not os.path.exists(value):
        sys.exit("stat %s: no such file or directory" % value)
    i += 1
with open({record!r}, "a") as out:
    out.write(" ".join(sys.argv) + "\\n")
os.execv({ctl!r}, [{ctl!r}, "hook", *args])
"""


def _nvidia_standin(folder: Path, name: str, ctl: str) -> tuple[Path, Path]:
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    exe, record = folder / name, folder / "calls"
    exe.write_text(NVIDIA_HOOK_STANDIN.format(python=sys.executable, record=str(record), ctl=ctl))
    exe.chmod(0o755)
    return exe, record


def _lib_host(tmp_path: Path) -> tuple[Path, Path]:
    """A host root with a library behind two links and a ``sym`` entry to a folder."""
    root = tmp_path / "host"
    make_file(root, "/usr/lib/nvfake/libfoo.so.1.0", b"FAKE-LIBFOO")
    make_link(root, "/usr/lib/nvfake/libfoo.so.1", "libfoo.so.1.0")
    make_link(root, "/usr/lib/nvfake/libfoo.so", "libfoo.so.1")
    make_file(root, "/usr/lib/nvfake/real/libbar.so", b"bar")
    make_link(root, "/usr/lib/nvfake/tegra", "real")
    csv_dir = tmp_path / "csv"
    write_csv(
        csv_dir,
        "drivers.csv",
        ["lib, /usr/lib/nvfake/libfoo.so", "sym, /usr/lib/nvfake/tegra"],
    )
    return root, csv_dir


@pytest.mark.parametrize("name", ["nvidia-ctk", "nvidia-cdi-hook"])
@pytest.mark.runc
@pytest.mark.root
@runc_support.requires_runc
def test_nvidia_hook_program_gets_only_flags_it_knows(
    tmp_path: Path, nvshim_exe: str, nvshim_ctl: str, name: str
) -> None:
    """``[nvidia-ctk] path`` naming NVIDIA's program: the container starts under runc."""
    root, csv_dir = _lib_host(tmp_path)
    exe, record = _nvidia_standin(tmp_path / "nvbin", name, nvshim_ctl)
    config = _config(
        tmp_path,
        str(runc_support.find_runc()),
        csv_dir,
        root,
        f'ldconfig = "@/sbin/ldconfig"\n[nvidia-ctk]\npath = "{exe}"\n',
    )
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        ["sh", "-c", "cat /usr/lib/nvfake/libfoo.so; echo; readlink /usr/lib/nvfake/tegra"],
        env=[*runc_support.DEFAULT_ENV, "NVIDIA_VISIBLE_DEVICES=all"],
    )
    result = runc_support.run_container(
        [nvshim_exe],
        bundle,
        env={"NVSHIM_CONFIG": str(config), "NVSHIM_CACHE_DIR": str(tmp_path / "cache")},
    ).check()
    assert result.stdout.splitlines() == ["FAKE-LIBFOO", "real"], result.describe()
    calls = record.read_text().splitlines()
    assert [c.split()[1 if name == "nvidia-cdi-hook" else 2] for c in calls] == [
        "create-symlinks",
        "update-ldcache",
    ]


def test_nvidia_hook_program_gets_a_plain_ldconfig_path(
    tmp_path: Path, nvshim_exe: str, fake_runtime: Any
) -> None:
    """A non-default ldconfig reaches NVIDIA's hook as the plain host path it stats."""
    root, csv_dir = _lib_host(tmp_path)
    config = _config(
        tmp_path,
        str(fake_runtime.path),
        csv_dir,
        root,
        'ldconfig = "@/usr/sbin/ldconfig"\n[nvidia-ctk]\npath = "/usr/bin/nvidia-ctk"\n',
    )
    written = _create(nvshim_exe, tmp_path, config)
    ldcache = written["hooks"]["createContainer"][1]["args"]
    assert ldcache[:3] == ["/usr/bin/nvidia-ctk", "hook", "update-ldcache"]
    assert ldcache[-2:] == ["--ldconfig-path", "/usr/sbin/ldconfig"]


@pytest.mark.runc
@pytest.mark.root
@runc_support.requires_runc
def test_image_files_in_the_way_of_links_do_not_stop_the_container(
    tmp_path: Path, nvshim_exe: str
) -> None:
    """An image's own ``libfoo.so`` is replaced by the link; its real folder is kept."""
    root, csv_dir = _lib_host(tmp_path)
    config = _config(tmp_path, str(runc_support.find_runc()), csv_dir, root)
    bundle = runc_support.make_bundle(
        tmp_path / "bundle",
        [
            "sh",
            "-c",
            "readlink /usr/lib/nvfake/libfoo.so; cat /usr/lib/nvfake/tegra/own; echo",
        ],
        env=[*runc_support.DEFAULT_ENV, "NVIDIA_VISIBLE_DEVICES=all"],
    )
    bundle.write_file("/usr/lib/nvfake/libfoo.so", "the image's own copy")
    bundle.write_file("/usr/lib/nvfake/tegra/own", "image-folder")
    result = runc_support.run_container(
        [nvshim_exe],
        bundle,
        env={"NVSHIM_CONFIG": str(config), "NVSHIM_CACHE_DIR": str(tmp_path / "cache")},
    ).check()
    assert result.stdout.splitlines() == ["libfoo.so.1", "image-folder"], result.describe()
