"""The host inventory cache: every key invalidates it, unsafe files are ignored.

The builder here is :func:`load_inventory`'s public ``builder`` parameter
counting its calls; tests/test_jit_cdi_host.py checks the same through
creates on the simulated GPU host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable

import pytest
from jit_cdi_support import make_inventory

from nvshim.inventory import HostInventory, inventory_path, load_inventory


class Host:
    """A fake host tree (driver root = dev root) and a counting builder."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.cache = cache
        self.builds = 0
        self.libcuda = root / "usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"
        for folder in (
            "dev/nvidia-caps",
            "etc",
            "proc/driver/nvidia/capabilities/gpu0/mig",
            "proc/driver/nvidia-caps",
            "proc/sys/kernel/random",
            "usr/lib/x86_64-linux-gnu",
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "proc/driver/nvidia/version").write_text("NVRM version: 550.54.15\n")
        (root / "proc/sys/kernel/random/boot_id").write_text("boot-1\n")
        (root / "proc/driver/nvidia-caps/mig-minors").write_text("config 1\n")
        (root / "etc/ld.so.cache").write_bytes(b"glibc-ld.so.cache1.1")
        self.libcuda.write_bytes(b"")
        (root / "hook").write_bytes(b"")
        for name in ("nvidiactl", "nvidia0"):
            (root / "dev" / name).write_bytes(b"")

    def builder(self, root: str, _dev: str) -> tuple[HostInventory, str | None]:
        self.builds += 1
        inventory = make_inventory(root, 1)
        for hook in inventory.spec["containerEdits"]["hooks"]:
            hook["path"] = str(self.root / "hook")  # the hook executable this spec names
        return inventory, str(self.libcuda)

    def load(self, **kwargs: Any) -> Any:
        return load_inventory(
            str(self.root),
            environ={"NVSHIM_CACHE_DIR": str(self.cache)},
            builder=self.builder,
            **kwargs,
        )


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "root", tmp_path / "cache")


def test_second_load_is_a_hit(host: Host) -> None:
    first = host.load()
    assert not first.cached
    second = host.load()
    assert second.cached
    assert second.inventory == first.inventory
    assert host.builds == 1
    assert stat.S_IMODE(os.stat(second.path).st_mode) == 0o600


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


CHANGES: dict[str, Callable[[Host], None]] = {
    "proc_version": lambda h: (h.root / "proc/driver/nvidia/version").write_text(
        "NVRM version: 560.28.03\n"
    ),
    "boot_id": lambda h: (h.root / "proc/sys/kernel/random/boot_id").write_text("boot-2\n"),
    "ld_so_cache": lambda h: (h.root / "etc/ld.so.cache").write_bytes(b"glibc-ld.so.cache1.1xx"),
    "dev (new GPU node)": lambda h: (h.root / "dev/nvidia1").write_bytes(b""),
    "dev (node removed)": lambda h: (h.root / "dev/nvidia0").unlink(),
    "dev (node changed)": lambda h: os.chmod(h.root / "dev/nvidia0", 0o600),
    "dev (caps node)": lambda h: (h.root / "dev/nvidia-caps/nvidia-cap1").write_bytes(b""),
    "mig_capabilities": lambda h: (h.root / "proc/driver/nvidia/capabilities/gpu0/mig/gi1").mkdir(),
    "mig_minors": lambda h: (h.root / "proc/driver/nvidia-caps/mig-minors").write_text(
        "config 1\ngpu0/gi1/access 2\n"
    ),
    "libcuda (driver upgrade)": lambda h: h.libcuda.unlink(),
    "files (hook executable gone)": lambda h: (h.root / "hook").unlink(),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_key_invalidates(host: Host, change: str) -> None:
    host.load()
    # Change times have a clock tick's resolution: wait for the next one.
    import time

    time.sleep(0.01)
    CHANGES[change](host)
    again = host.load()
    assert not again.cached, change
    assert "the host changed" in again.reason
    assert host.builds == 2
    assert host.load().cached  # rebuilt and cached again


def test_refresh_rebuilds(host: Host) -> None:
    host.load()
    assert not host.load(refresh=True).cached
    assert host.builds == 2


def test_group_writable_file_is_ignored(host: Host) -> None:
    path = host.load().path
    os.chmod(path, 0o660)
    assert not host.load().cached
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # rewritten safely


def test_unsafe_folder_is_not_used(host: Host) -> None:
    host.load()
    os.chmod(host.cache, 0o777)
    again = host.load()
    assert not again.cached
    assert "writable by others" in again.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_file_of_another_user_is_ignored(host: Host) -> None:
    path = host.load().path
    os.chown(path, 12345, -1)
    assert not host.load().cached


def test_corrupt_file_is_rebuilt(host: Host) -> None:
    path = host.load().path
    Path(path).write_text("{not json")
    assert not host.load().cached
    assert host.load().cached


def test_no_cache_when_the_folder_is_off(host: Host) -> None:
    env = {"NVSHIM_CACHE_DIR": ""}
    assert inventory_path(str(host.root), environ=env) is None
    result = load_inventory(str(host.root), environ=env, builder=host.builder)
    assert result.path is None
    assert not result.cached


def test_roots_have_their_own_file(tmp_path: Path) -> None:
    env = {"NVSHIM_CACHE_DIR": str(tmp_path)}
    assert inventory_path("/a", environ=env) != inventory_path("/b", environ=env)
