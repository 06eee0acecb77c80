"""Reading an image's ld.so.conf for the isolated ldconfig (nvshim._ldconfig), without root.

The configuration ldconfig gets is flattened here: includes expanded through
the rootfs descriptor, regular files only, each once, bounded.  The isolated
run itself is covered through real runc by test_ldconfig_runc.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import attack_support
import pytest

from nvshim import _ldconfig, _rootfs


@pytest.fixture
def rootfs(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "rootfs"
    (root / "etc" / "ld.so.conf.d").mkdir(parents=True)
    fd = _rootfs.open_root(str(root))
    yield root, fd
    os.close(fd)


def _folders(fd: int) -> tuple[list[str], list[str]]:
    warnings: list[str] = []
    return _ldconfig.conf_folders(fd, warnings.append), warnings


def test_includes_are_expanded_in_order(rootfs: tuple[Path, int]) -> None:
    root, fd = rootfs
    (root / "etc" / "ld.so.conf").write_text(
        "# comment\n/first\ninclude ld.so.conf.d/*.conf\nhwcap 1 x\n/last  # trailing\n"
    )
    (root / "etc" / "ld.so.conf.d" / "b.conf").write_text("/b\n")
    (root / "etc" / "ld.so.conf.d" / "a.conf").write_text("/a\ninclude /etc/more/*.conf\n")
    (root / "etc" / "ld.so.conf.d" / ".hidden.conf").write_text("/hidden\n")
    (root / "etc" / "more").mkdir()
    (root / "etc" / "more" / "x.conf").write_text("/x\n/first\n")
    assert _folders(fd) == (["/first", "/a", "/x", "/b", "/last"], [])


def test_no_ld_so_conf_gives_nothing_and_no_warning(rootfs: tuple[Path, int]) -> None:
    assert _folders(rootfs[1]) == ([], [])


def test_an_include_loop_is_read_once(rootfs: tuple[Path, int]) -> None:
    root, fd = rootfs
    (root / "etc" / "ld.so.conf").write_text("include /etc/ld.so.conf\n/a\n")
    assert _folders(fd) == (["/a"], [])


def test_links_resolve_inside_the_rootfs(rootfs: tuple[Path, int], tmp_path: Path) -> None:
    root, fd = rootfs
    host = tmp_path / "host.conf"
    host.write_text("/from-the-host\n")
    (root / str(tmp_path).lstrip("/")).mkdir(parents=True)
    (root / str(host).lstrip("/")).write_text("/inside\n")
    os.symlink(str(host), root / "etc" / "ld.so.conf")
    with attack_support.attack("ld.so.conf linked to a host file"):
        assert _folders(fd) == (["/inside"], [])


@pytest.mark.parametrize("kind", ["fifo", "folder", "device", "huge"])
def test_non_regular_or_huge_includes_are_skipped_with_a_warning(
    rootfs: tuple[Path, int], kind: str
) -> None:
    root, fd = rootfs
    target = root / "etc" / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("mknod needs root")
        os.mknod(target, 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero
    else:
        target.write_bytes(b"/x\n" * (_ldconfig.MAX_CONF_BYTES // 3 + 1))
    (root / "etc" / "ld.so.conf").write_text("/a\ninclude /etc/target\n/b\n")
    with attack_support.attack(f"ld.so.conf include of a {kind}"):
        folders, warnings = _folders(fd)
    assert folders == ["/a", "/b"]
    assert len(warnings) == 1
    assert warnings[0].startswith("skipping include /etc/target: ")


def test_nesting_is_bounded(rootfs: tuple[Path, int]) -> None:
    root, fd = rootfs
    depth = _ldconfig.MAX_INCLUDE_DEPTH + 3
    (root / "etc" / "ld.so.conf").write_text("include /etc/c0\n")
    for i in range(depth):
        (root / "etc" / f"c{i}").write_text(f"/d{i}\ninclude /etc/c{i + 1}\n")
    folders, warnings = _folders(fd)
    assert folders == [f"/d{i}" for i in range(_ldconfig.MAX_INCLUDE_DEPTH)]
    assert len(warnings) == 1
    assert "nested more than" in warnings[0]


def test_static_elf_detection() -> None:
    fd = os.open("/bin/sh", os.O_RDONLY)
    try:
        assert _ldconfig.is_static_elf(fd) is False  # a dynamic binary
    finally:
        os.close(fd)
    for path in ("/sbin/ldconfig",):  # glibc builds it static
        if os.path.exists(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                assert _ldconfig.is_static_elf(fd) is True, path
            finally:
                os.close(fd)
