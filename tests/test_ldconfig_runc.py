"""Attacks by an image on the ldconfig that ``update-ldcache`` runs, through real runc.

``nvshim-ctl hook update-ldcache`` runs at createContainer, after runc has
mounted the container's procfs at ``<rootfs>/proc``; there ``/proc/1/root`` is
the host's ``/``.  Each test plants one of the paths an attack run found in a
busybox image, runs the container with real runc and the hook as nvshim
writes it (explicit env, the installed ``nvshim-ctl``, the host's
``/sbin/ldconfig``), and checks the host.  Where the attack reaches the host,
a control first runs the host's ldconfig the way nvshim used to
(``ldconfig -r <rootfs> <folder>`` as a hook) to show that it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import attack_support
import pytest
import runc_support
from script_support import installed_script

from nvshim._hookcmd import DEFAULT_LDCONFIGS
from nvshim.records import DEFAULT_HOOK_ENV

LDCONFIG = next((p for p in DEFAULT_LDCONFIGS if os.access(p, os.X_OK)), None)

pytestmark = [
    *runc_support.RUNC_MARKS,
    pytest.mark.skipif(LDCONFIG is None, reason="the host has no ldconfig"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
]

FOLDER = "/usr/lib/evil"
UP = "../" * 12


def _library(path: Path, soname: str) -> None:
    """Compile a tiny shared library with ``soname`` at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.parent / ".src.c"
    source.write_text("int nvshim_test_symbol(void) { return 1; }\n")
    subprocess.run(
        ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(path), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    source.unlink()


def _bundle(tmp_path: Path, name: str) -> runc_support.Bundle:
    return runc_support.make_bundle(tmp_path / name, ["true"])


def _nvshim_hook(bundle: runc_support.Bundle) -> None:
    ctl = installed_script("nvshim-ctl")
    hook = {
        "path": ctl,
        "args": [ctl, "hook", "update-ldcache", "--folder", FOLDER],
        "env": list(DEFAULT_HOOK_ENV),
    }
    bundle.edit_config(lambda c: c.update(hooks={"createContainer": [hook]}))


def _naive_hook(bundle: runc_support.Bundle) -> None:
    """The control: the host's ldconfig as nvshim ran it before (``-r`` and the folder)."""
    assert LDCONFIG is not None
    hook = {"path": LDCONFIG, "args": [LDCONFIG, "-r", str(bundle.rootfs), FOLDER], "env": []}
    bundle.edit_config(lambda c: c.update(hooks={"createContainer": [hook]}))


def _run(bundle: runc_support.Bundle, timeout: float = 60) -> runc_support.ContainerResult:
    runc = runc_support.find_runc()
    assert runc is not None
    return runc_support.run_container([runc], bundle, timeout=timeout)


def _conf(bundle: runc_support.Bundle, *lines: str) -> None:
    bundle.write_file(
        "/etc/ld.so.conf",
        "include /etc/ld.so.conf.d/*.conf\n" + "".join(f"{line}\n" for line in lines),
    )


def test_soname_through_proc_makes_no_link_on_the_host(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    target = host / "pwned-link"
    soname = f"{UP}proc/1/root{target}"
    with attack_support.attack("SONAME ../../proc/1/root/<host path>"):
        control = _bundle(tmp_path, "control")
        _library(control.rootfs / FOLDER.lstrip("/") / "libevil.so.1.0", soname)
        _naive_hook(control)
        _run(control)
        assert os.path.lexists(target), "control: the naive ldconfig made no link on the host"
        os.unlink(target)

        bundle = _bundle(tmp_path, "bundle")
        _library(bundle.rootfs / FOLDER.lstrip("/") / "libevil.so.1.0", soname)
        _nvshim_hook(bundle)
        result = _run(bundle)
        assert not os.path.lexists(target), result.describe()
        assert sorted(os.listdir(host)) == []


def test_conf_entry_through_proc_makes_no_link_in_a_host_folder(tmp_path: Path) -> None:
    host = tmp_path / "host-libs"
    _library(host / "libhost.so.1.2", "libhost.so.1")
    before = sorted(os.listdir(host))
    with attack_support.attack("ld.so.conf.d entry /proc/1/root/<host folder>"):
        control = _bundle(tmp_path, "control")
        control.write_file("/etc/ld.so.conf.d/evil.conf", f"/proc/1/root{host}\n")
        _conf(control)
        _library(control.rootfs / FOLDER.lstrip("/") / "libok.so.1.0", "libok.so.1")
        assert LDCONFIG is not None
        hook = {"path": LDCONFIG, "args": [LDCONFIG, "-r", str(control.rootfs)], "env": []}
        control.edit_config(lambda c: c.update(hooks={"createContainer": [hook]}))
        _run(control)
        assert "libhost.so.1" in os.listdir(host), "control: no link made in the host folder"
        os.unlink(host / "libhost.so.1")

        bundle = _bundle(tmp_path, "bundle")
        bundle.write_file("/etc/ld.so.conf.d/evil.conf", f"/proc/1/root{host}\n")
        _conf(bundle)
        _library(bundle.rootfs / FOLDER.lstrip("/") / "libok.so.1.0", "libok.so.1")
        _nvshim_hook(bundle)
        result = _run(bundle).check()
        assert sorted(os.listdir(host)) == before, result.describe()
        # The image's own folder is still cached.
        assert b"libok.so.1" in (bundle.rootfs / "etc" / "ld.so.cache").read_bytes()


def test_glibc_hwcaps_link_leaks_no_host_folder_names(tmp_path: Path) -> None:
    host = tmp_path / "host-hwcaps"
    secret = "x86-64-v2-secret-host-name-" + os.urandom(4).hex()
    _library(host / secret / "libsecret.so.1.0", "libsecret.so.1")
    with attack_support.attack("glibc-hwcaps link to /proc/1/root/<host folder>"):
        bundle = _bundle(tmp_path, "bundle")
        _library(bundle.rootfs / FOLDER.lstrip("/") / "libok.so.1.0", "libok.so.1")
        os.symlink(f"/proc/1/root{host}", bundle.rootfs / FOLDER.lstrip("/") / "glibc-hwcaps")
        _nvshim_hook(bundle)
        result = _run(bundle).check()
        cache = (bundle.rootfs / "etc" / "ld.so.cache").read_bytes()
        assert b"libok.so.1" in cache, result.describe()
        assert secret.encode() not in cache
        assert b"libsecret" not in cache


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder"])
def test_include_of_a_non_regular_file_is_skipped(tmp_path: Path, kind: str) -> None:
    with attack_support.attack(f"ld.so.conf include of a {kind}"):
        bundle = _bundle(tmp_path, "bundle")
        _library(bundle.rootfs / FOLDER.lstrip("/") / "libok.so.1.0", "libok.so.1")
        target = {"dev-zero": "/dev/zero", "fifo": "/etc/evil.fifo", "folder": "/etc"}[kind]
        if kind == "fifo":
            os.mkfifo(bundle.rootfs / "etc" / "evil.fifo")
        _conf(bundle, f"include {target}")
        _nvshim_hook(bundle)
        started = time.monotonic()
        result = _run(bundle, timeout=60).check()
        # ldconfig itself takes well under a second; a FIFO blocked it 120 s.
        assert time.monotonic() - started < 20, result.describe()
        assert b"libok.so.1" in (bundle.rootfs / "etc" / "ld.so.cache").read_bytes()
