"""The Low items of the attack run: each one driven through the command or API it came through.

- a PATH entry that is not absolute (``.``) is never searched;
- CDI spec files and folders that root does not control are refused;
- a container path ``/`` or a mount replacing the engine's proc, sysfs,
  devpts or mqueue mount is refused (a CSV line ``dir, /*`` did it);
- control characters from the image are escaped on stderr and in text logs,
  and refused in ``--folder``/``--link``;
- ``--bundle a/link/../b`` is the folder runc reads;
- a wrapper named like the runtime that starts nvshim again is caught;
- ``runtime configure`` never lets a pod's ``cdi.k8s.io/`` annotations through.

Keys differing only in case are in the bad-input corpus (tests/badinputs).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import attack_support
import pytest
import tomlkit
from reliability_support import Shim, check_one_line
from script_support import installed_script, script

from nvshim import _hookcmd
from nvshim.lookup import find_executable, search_path
from nvshim.records import Mount, check_container_path
from nvshim.spec import ENGINE_MOUNT_TYPES, Spec

IS_ROOT = os.geteuid() == 0


# -- PATH entries that are not absolute ---------------------------------------------------


def test_relative_path_entries_are_never_searched(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    for folder in (tmp_path, tmp_path / "bin"):
        exe = folder / "evil-runtime"
        exe.write_text(f"#!/bin/sh\ntouch '{tmp_path}/PWNED'\n")
        exe.chmod(0o755)
    env = {"PATH": ".:bin::/usr/bin:/bin"}
    assert all(os.path.isabs(p) for p in search_path("evil-runtime", env))
    config = tmp_path / "config.toml"
    config.write_text('[nvidia-container-runtime]\nruntimes = ["evil-runtime"]\n')
    with attack_support.attack("runtime looked up in PATH entry '.'"):
        old = os.getcwd()
        os.chdir(tmp_path)
        try:
            assert find_executable("evil-runtime", env) is None
        finally:
            os.chdir(old)
        result = subprocess.run(
            [installed_script("nvshim"), "state", "x"],
            env={**env, "NVSHIM_CONFIG": str(config)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert check_one_line(result.stderr).startswith(
            "nvshim: cannot find the low-level runtime: "
        )
        assert not (tmp_path / "PWNED").exists()


# -- CDI spec files and folders root does not control --------------------------------------


def _cdi_file(folder: Path, name: str, kind: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": kind,
                "devices": [{"name": "0", "containerEdits": {"env": ["X=1"]}}],
            }
        )
    )
    path.chmod(0o644)
    return path


@pytest.mark.skipif(not IS_ROOT, reason="the ownership rule applies when nvshim runs as root")
@pytest.mark.parametrize("how", ["file-other-owner", "file-group-writable", "folder-writable"])
def test_cdi_specs_root_does_not_control_are_refused_with_a_warning(
    tmp_path: Path, how: str
) -> None:
    registry_mod = pytest.importorskip("nvshim_cdi._registry")
    from nvshim._log import Logger

    good = _cdi_file(tmp_path / "good", "good.json", "example.com/good")
    bad_folder = tmp_path / "bad"
    bad = _cdi_file(bad_folder, "bad.json", "example.com/bad")
    if how == "file-other-owner":
        os.chown(bad, 1234, 1234)
    elif how == "file-group-writable":
        bad.chmod(0o664)
    else:
        bad_folder.chmod(0o777)
    log = tmp_path / "log"
    logger = Logger("warning")
    logger.add_file(str(log), "text")
    with attack_support.attack(f"CDI spec {how}"):
        registry = registry_mod.Registry.load([str(good.parent), str(bad_folder)], logger)
        logger.close()
        assert registry.kinds() == ["example.com/good"]
        named = bad_folder if how == "folder-writable" else bad
        assert [path for path, _why in registry.errors] == [str(named)]
        text = log.read_text()
        assert str(named) in text
        assert "not trusted" in text
        assert "level=warning" in text


# -- container path / and the engine's own mounts -------------------------------------------


@pytest.mark.parametrize("path", ["/", "//", "///"])
def test_container_path_root_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="container's root itself"):
        check_container_path(path)
    with pytest.raises(ValueError, match="root itself"):
        Mount(path, "/host", "bind", ("bind",))


@pytest.mark.parametrize("kind", sorted(ENGINE_MOUNT_TYPES))
def test_a_mount_never_replaces_the_engines_kernel_mounts(kind: str) -> None:
    destination = {"proc": "/proc", "sysfs": "/sys", "devpts": "/dev/pts", "mqueue": "/dev/mqueue"}
    spec = Spec.from_dict(
        {"mounts": [{"destination": destination[kind], "type": kind, "source": kind}]}
    )
    same = spec.mounts()[0]
    spec.add_mount(same)  # the very same mount again: no change, allowed
    for dest in (destination[kind], destination[kind] + "/"):
        with pytest.raises(ValueError, match=f"would replace the engine's {kind} mount"):
            spec.add_mount(Mount(dest, f"/host{destination[kind]}", "bind", ("rbind",)))
    assert spec.to_dict()["mounts"] == [
        {"destination": destination[kind], "type": kind, "source": kind}
    ]


def test_csv_dir_glob_over_the_whole_root_does_not_replace_proc(tmp_path: Path) -> None:
    csv_host_support = pytest.importorskip("csv_host_support")
    nvshim_csv_discovery = pytest.importorskip("nvshim_csv_discovery")
    from nvshim.errors import ModifierError
    from nvshim.plugins import get_plugin_manager
    from nvshim.runtime import apply_modifiers

    root = tmp_path / "driver"
    (root / "proc" / "1").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    csv_dir = tmp_path / "csv"
    csv_host_support.write_csv(csv_dir, "l4t.csv", ["dir, /*"])
    config = csv_host_support.csv_config(csv_dir, root)
    pm = get_plugin_manager()
    pm.register(nvshim_csv_discovery, name="csv-discovery")
    spec = Spec.from_dict(
        {
            "process": {"env": ["NVIDIA_VISIBLE_DEVICES=all"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        }
    )
    with attack_support.attack("CSV 'dir, /*' replacing the engine's /proc"):
        with pytest.raises(ModifierError, match="would replace the engine's proc mount"):
            apply_modifiers(spec, config=config, mode="csv", plugin_manager=pm)
        assert spec.raw["mounts"][0] == {"destination": "/proc", "type": "proc", "source": "proc"}


# -- control characters --------------------------------------------------------------------


def test_control_characters_are_escaped_on_stderr_and_in_the_text_log(tmp_path: Path) -> None:
    shim = Shim(tmp_path, plugin=False)
    bundle = tmp_path / "bundle\x1b[2J\x07\x08"
    log = tmp_path / "runc.log"
    with attack_support.attack("ESC/BEL/BS in a bundle path on stderr and in the log"):
        result = shim.run(
            [
                installed_script("nvshim"),
                "--log",
                str(log),
                "create",
                "--bundle",
                str(bundle),
                "c",
            ]
        )
        assert result.returncode == 1
        line = check_one_line(result.stderr)
        assert not any(ord(c) < 0x20 for c in line)
        assert "bundle\\x1b[2J\\x07\\x08" in line
        text = log.read_text()
        assert not any(ord(c) < 0x20 and c != "\n" for c in text)
        assert "\\x1b[2J" in text
        assert shim.calls() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["update-ldcache", "--folder", "/usr/lib\x1b[2J", "--ldconfig-path", "/bin/true"],
        ["create-symlinks", "--link", "libx.so.1::/usr/lib/libx\x07.so"],
    ],
    ids=["folder", "link"],
)
def test_hook_values_with_control_characters_are_refused(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    state = io.BytesIO(json.dumps({"bundle": str(bundle)}).encode())
    with attack_support.attack(f"control characters in --{argv[1].lstrip('-')}"):
        assert _hookcmd.main(argv, stdin=state) == 1
        err = capsys.readouterr().err
        assert "contains control characters" in err
        assert not any(ord(c) < 0x20 and c != "\n" for c in err)
        assert not (bundle / "rootfs" / "etc").exists()
        assert not (bundle / "rootfs" / "usr").exists()


# -- --bundle a/link/../b ------------------------------------------------------------------


def test_bundle_with_a_link_and_dotdot_is_the_one_runc_reads(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    real = tmp_path / "real"
    (real / "x").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "link").symlink_to(real / "x")
    runc_reads = shim.bundle("real/b")  # what chdir("a/link/../b") reaches
    lexical = shim.bundle("a/b")  # what a string normalisation gives
    lexical_before = (lexical / "config.json").read_bytes()
    with attack_support.attack("--bundle a/link/../b"):
        # The test venv's nvshim: the stamping test plugin is on PYTHONPATH.
        result = subprocess.run(
            [script("nvshim"), "create", "--bundle", "a/link/../b", "c"],
            env=shim.environ("bundle"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        written = json.loads((runc_reads / "config.json").read_text())
        assert "RELTEST_STAMP=bundle" in written["process"]["env"]
        assert (lexical / "config.json").read_bytes() == lexical_before
        assert shim.calls()[0][-3:] == ["--bundle", "a/link/../b", "c"]


# -- a runtime wrapper that starts nvshim again ---------------------------------------------


def test_a_runtime_that_starts_nvshim_again_is_caught(tmp_path: Path) -> None:
    nvshim = installed_script("nvshim")
    wrapper = tmp_path / "runc"
    wrapper.write_text(f'#!/bin/sh\nexec "{nvshim}" "$@"\n')
    wrapper.chmod(0o755)
    config = tmp_path / "config.toml"
    config.write_text(f'[nvidia-container-runtime]\nruntimes = ["{wrapper}"]\n')
    env = {"PATH": "/usr/bin:/bin", "NVSHIM_CONFIG": str(config)}
    with attack_support.attack("runtime wrapper that execs nvshim"):
        result = subprocess.run(
            [nvshim, "state", "x"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 1
        line = check_one_line(result.stderr)
        assert f"{wrapper}, which nvshim started, started nvshim again" in line


# -- pod annotations -------------------------------------------------------------------------


def test_runtime_configure_never_passes_cdi_pod_annotations(tmp_path: Path) -> None:
    from nvshim import _engines

    text = (
        "version = 2\n"
        '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
        '  default_runtime_name = "runc"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
        '  pod_annotations = ["cdi.k8s.io/*", "*", "io.example/keep"]\n'
    )
    out = _engines.configure("containerd", text, "nvshim", "/usr/bin/nvshim")
    data: Any = tomlkit.parse(out)
    runtimes = data["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert list(runtimes["nvshim"]["pod_annotations"]) == ["io.example/keep"]
    assert list(runtimes["runc"]["pod_annotations"]) == ["cdi.k8s.io/*", "*", "io.example/keep"]
