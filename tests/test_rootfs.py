"""nvshim._rootfs: path operations that never leave a container's rootfs.

Real file systems in temporary folders.  Each attack plants a symbolic link
in the rootfs pointing at a "host" folder outside it and checks that nothing
reaches the host folder.  Every test runs twice: with the kernel's openat2
(RESOLVE_IN_ROOT) and with the manual descriptor walk.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nvshim import _rootfs


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Select the resolution used by nvshim._rootfs for one test."""
    if request.param == "walk":
        monkeypatch.setattr(_rootfs, "use_openat2", False)
    else:
        fn = _rootfs._load_openat2()
        if fn is None:
            pytest.skip("no openat2 on this machine")
        monkeypatch.setattr(_rootfs, "use_openat2", True)
        monkeypatch.setattr(_rootfs, "_openat2_fn", fn)
        probe = os.open("/", os.O_PATH)
        try:
            os.close(fn(probe, b".", os.O_PATH))
        except OSError as exc:
            pytest.skip(f"openat2 unusable here: {exc}")
        finally:
            os.close(probe)
    return str(request.param)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs"
    path.mkdir()
    return path


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host folder outside the rootfs that an image tries to reach."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "precious").write_text("host data\n")
    return path


@pytest.fixture
def root_fd(rootfs: Path, resolver: str) -> Iterator[int]:
    fd = _rootfs.open_root(str(rootfs))
    yield fd
    os.close(fd)


def snapshot(folder: Path) -> dict[str, Any]:
    """Everything under a folder: names, kinds, contents and link targets."""
    result: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            result[key] = ("link", os.readlink(path))
        elif path.is_dir():
            result[key] = ("dir", stat.S_IMODE(path.stat().st_mode))
        else:
            result[key] = ("file", path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return result


def same_file(fd: int, path: Path) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# --- container paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/", []),
        ("/etc", ["etc"]),
        ("//usr///lib/./x/", ["usr", "lib", "x"]),
    ],
)
def test_container_path_parts(path: str, parts: list[str]) -> None:
    assert _rootfs.container_path_parts(path) == parts


@pytest.mark.parametrize("path", ["", "etc", "./etc", "/etc/../x", "/..", "/a\0b", "usr/lib"])
def test_container_path_parts_refuses(path: str) -> None:
    with pytest.raises(ValueError, match="container path"):
        _rootfs.container_path_parts(path)


def test_operations_refuse_unsafe_paths(root_fd: int, rootfs: Path) -> None:
    for call in (
        lambda: _rootfs.open_dir(root_fd, "etc", create=True),
        lambda: _rootfs.open_dir(root_fd, "/etc/../..", create=True),
        lambda: _rootfs.write_file(root_fd, "../x", b""),
        lambda: _rootfs.write_file(root_fd, "/", b""),
        lambda: _rootfs.ensure_symlink(root_fd, "/a/../../b", "t"),
        lambda: _rootfs.ensure_symlink(root_fd, "/a", ""),
        lambda: _rootfs.exists(root_fd, "a"),
    ):
        with pytest.raises(ValueError, match=r"container path|link target"):
            call()
    assert list(rootfs.iterdir()) == []


# --- open_dir -------------------------------------------------------------------------


def test_open_dir_existing_and_missing(root_fd: int, rootfs: Path) -> None:
    (rootfs / "usr" / "lib").mkdir(parents=True)
    fd = _rootfs.open_dir(root_fd, "/usr/lib")
    try:
        assert same_file(fd, rootfs / "usr" / "lib")
        assert os.listdir(fd) == []  # a readable folder descriptor
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        _rootfs.open_dir(root_fd, "/usr/lib64")
    assert not (rootfs / "usr" / "lib64").exists()


def test_open_dir_root(root_fd: int, rootfs: Path) -> None:
    fd = _rootfs.open_dir(root_fd, "/")
    try:
        assert same_file(fd, rootfs)
    finally:
        os.close(fd)


def test_open_dir_create_makes_parents_with_mode(root_fd: int, rootfs: Path) -> None:
    old = os.umask(0o077)
    try:
        fd = _rootfs.open_dir(root_fd, "/a/b/c", create=True, mode=0o751)
    finally:
        os.umask(old)
    os.close(fd)
    for sub in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE((rootfs / sub).stat().st_mode) == 0o751


def test_open_dir_not_a_folder(root_fd: int, rootfs: Path) -> None:
    (rootfs / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        _rootfs.open_dir(root_fd, "/file/sub", create=True)
    with pytest.raises(NotADirectoryError):
        _rootfs.open_dir(root_fd, "/file")


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_etc_link_to_host_stays_inside(root_fd: int, rootfs: Path, host: Path, kind: str) -> None:
    before = snapshot(host)
    if kind == "absolute":
        target = str(host)
    else:
        # From the host's point of view this climbs out of the rootfs.
        target = "../" * (len(rootfs.parts) + 3) + str(host).lstrip("/")
    os.symlink(target, rootfs / "etc")
    assert (rootfs / "etc").resolve() == host  # the host kernel would escape

    fd = _rootfs.open_dir(root_fd, "/etc/ld.so.conf.d", create=True)
    os.close(fd)
    _rootfs.write_file(root_fd, "/etc/ld.so.conf.d/x.conf", b"/usr/lib\n")

    assert snapshot(host) == before
    inside = rootfs / str(host).lstrip("/") / "ld.so.conf.d" / "x.conf"
    assert inside.read_bytes() == b"/usr/lib\n"


def test_dotdot_in_link_stops_at_root(root_fd: int, rootfs: Path) -> None:
    (rootfs / "a").mkdir()
    os.symlink("../../../../../../..", rootfs / "a" / "up")
    os.symlink("/../../..", rootfs / "a" / "abs_up")
    for path in ("/a/up", "/a/abs_up", "/a/up/a/up"):
        fd = _rootfs.open_dir(root_fd, path)
        try:
            assert same_file(fd, rootfs)
        finally:
            os.close(fd)


def test_link_chain_and_loops(root_fd: int, rootfs: Path) -> None:
    (rootfs / "real").mkdir()
    previous = "/real"
    for i in range(30):
        os.symlink(previous, rootfs / f"l{i}")
        previous = f"l{i}"
    fd = _rootfs.open_dir(root_fd, "/l29")
    try:
        assert same_file(fd, rootfs / "real")
    finally:
        os.close(fd)

    os.symlink("loop_b", rootfs / "loop_a")
    os.symlink("/loop_a", rootfs / "loop_b")
    with pytest.raises(OSError, match=r"(?i)too many levels") as info:
        _rootfs.open_dir(root_fd, "/loop_a/x", create=True)
    assert info.value.errno == errno.ELOOP
    assert not _rootfs.exists(root_fd, "/loop_a")


def test_too_many_links(root_fd: int, rootfs: Path) -> None:
    (rootfs / "real").mkdir()
    previous = "real"
    for i in range(_rootfs.MAX_SYMLINKS + 1):
        os.symlink(previous, rootfs / f"l{i}")
        previous = f"l{i}"
    fd = _rootfs.open_dir(root_fd, f"/l{_rootfs.MAX_SYMLINKS - 1}")
    os.close(fd)
    with pytest.raises(OSError, match=r"(?i)too many levels") as info:
        _rootfs.open_dir(root_fd, f"/l{_rootfs.MAX_SYMLINKS}")
    assert info.value.errno == errno.ELOOP


def test_dangling_link_is_created_inside(root_fd: int, rootfs: Path, tmp_path: Path) -> None:
    missing_on_host = tmp_path / "not-there"
    os.symlink(str(missing_on_host), rootfs / "lib")
    fd = _rootfs.open_dir(root_fd, "/lib/sub", create=True)
    os.close(fd)
    assert not missing_on_host.exists()
    assert (rootfs / str(missing_on_host).lstrip("/") / "sub").is_dir()


# --- write_file -------------------------------------------------------------------------


def test_write_file_mode_and_atomic_replace(root_fd: int, rootfs: Path) -> None:
    old = os.umask(0o077)
    try:
        _rootfs.write_file(root_fd, "/etc/ld.so.conf.d/a.conf", b"one\n")
        _rootfs.write_file(root_fd, "/etc/ld.so.conf.d/b.conf", b"two\n", mode=0o600)
        _rootfs.write_file(root_fd, "/etc/ld.so.conf.d/a.conf", b"three\n")
    finally:
        os.umask(old)
    folder = rootfs / "etc" / "ld.so.conf.d"
    assert sorted(os.listdir(folder)) == ["a.conf", "b.conf"]  # no temporary left
    assert (folder / "a.conf").read_bytes() == b"three\n"
    assert stat.S_IMODE((folder / "a.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((folder / "b.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((rootfs / "etc").stat().st_mode) == 0o755


def test_write_file_replaces_link_at_its_own_path(root_fd: int, rootfs: Path, host: Path) -> None:
    before = snapshot(host)
    (rootfs / "etc").mkdir()
    os.symlink(str(host / "precious"), rootfs / "etc" / "x.conf")
    _rootfs.write_file(root_fd, "/etc/x.conf", b"mine\n")
    assert snapshot(host) == before
    assert not (rootfs / "etc" / "x.conf").is_symlink()
    assert (rootfs / "etc" / "x.conf").read_bytes() == b"mine\n"


def test_write_file_into_linked_conf_dir(root_fd: int, rootfs: Path, host: Path) -> None:
    before = snapshot(host)
    (rootfs / "etc").mkdir()
    os.symlink(str(host), rootfs / "etc" / "ld.so.conf.d")
    _rootfs.write_file(root_fd, "/etc/ld.so.conf.d/x.conf", b"mine\n")
    assert snapshot(host) == before
    assert (rootfs / str(host).lstrip("/") / "x.conf").read_bytes() == b"mine\n"


def test_write_file_folder_in_the_way(root_fd: int, rootfs: Path) -> None:
    (rootfs / "etc" / "x.conf").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        _rootfs.write_file(root_fd, "/etc/x.conf", b"data")
    assert os.listdir(rootfs / "etc") == ["x.conf"]  # temporary removed
    assert (rootfs / "etc" / "x.conf").is_dir()


# --- ensure_symlink ---------------------------------------------------------------------


def test_ensure_symlink_lifecycle(root_fd: int, rootfs: Path) -> None:
    link = rootfs / "usr" / "lib" / "libfoo.so"
    assert _rootfs.ensure_symlink(root_fd, "/usr/lib/libfoo.so", "libfoo.so.1") == "created"
    assert os.readlink(link) == "libfoo.so.1"
    assert _rootfs.ensure_symlink(root_fd, "/usr/lib/libfoo.so", "libfoo.so.1") == "exists"
    assert _rootfs.ensure_symlink(root_fd, "/usr/lib/libfoo.so", "libfoo.so.2") == "replaced"
    assert os.readlink(link) == "libfoo.so.2"
    assert os.listdir(link.parent) == ["libfoo.so"]


def test_ensure_symlink_non_link_in_the_way(root_fd: int, rootfs: Path) -> None:
    (rootfs / "lib").mkdir()
    (rootfs / "lib" / "libfoo.so").write_text("real file")
    (rootfs / "lib" / "sub").mkdir()
    with pytest.raises(FileExistsError):
        _rootfs.ensure_symlink(root_fd, "/lib/libfoo.so", "libfoo.so.1")
    with pytest.raises(FileExistsError):
        _rootfs.ensure_symlink(root_fd, "/lib/sub", "elsewhere")
    assert (rootfs / "lib" / "libfoo.so").read_text() == "real file"
    assert (rootfs / "lib" / "sub").is_dir()
    assert sorted(os.listdir(rootfs / "lib")) == ["libfoo.so", "sub"]
    # replace_file: the regular file goes, the folder stays.
    assert (
        _rootfs.ensure_symlink(root_fd, "/lib/libfoo.so", "libfoo.so.1", replace_file=True)
        == "replaced"
    )
    assert os.readlink(rootfs / "lib" / "libfoo.so") == "libfoo.so.1"
    with pytest.raises(FileExistsError, match="folder"):
        _rootfs.ensure_symlink(root_fd, "/lib/sub", "elsewhere", replace_file=True)
    assert (rootfs / "lib" / "sub").is_dir()
    assert sorted(os.listdir(rootfs / "lib")) == ["libfoo.so", "sub"]


def test_ensure_symlink_never_follows_link_or_parent(
    root_fd: int, rootfs: Path, host: Path
) -> None:
    before = snapshot(host)
    # A library folder that is a link to the host, and the link's own path
    # already a link to a host file.
    (rootfs / "usr").mkdir()
    os.symlink(str(host), rootfs / "usr" / "lib")
    os.symlink(str(host / "precious"), rootfs / "libbar.so")

    assert _rootfs.ensure_symlink(root_fd, "/usr/lib/libfoo.so", "libfoo.so.1") == "created"
    assert _rootfs.ensure_symlink(root_fd, "/libbar.so", "libbar.so.1") == "replaced"

    assert snapshot(host) == before
    inside = rootfs / str(host).lstrip("/") / "libfoo.so"
    assert os.readlink(inside) == "libfoo.so.1"
    assert os.readlink(rootfs / "libbar.so") == "libbar.so.1"


# --- exists / realpath_in_root ------------------------------------------------------------


def test_exists(root_fd: int, rootfs: Path, host: Path) -> None:
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "f").write_text("x")
    os.symlink(str(host), rootfs / "hostlink")  # exists on the host, not inside
    os.symlink("/etc/f", rootfs / "good")
    assert _rootfs.exists(root_fd, "/")
    assert _rootfs.exists(root_fd, "/etc/f")
    assert _rootfs.exists(root_fd, "/good")
    assert not _rootfs.exists(root_fd, "/etc/g")
    assert not _rootfs.exists(root_fd, "/etc/f/g")
    assert not _rootfs.exists(root_fd, "/hostlink")
    assert not _rootfs.exists(root_fd, "/hostlink/precious")
    assert _rootfs.exists(root_fd, "/hostlink", follow=False)


def test_realpath_in_root(root_fd: int, rootfs: Path, host: Path) -> None:
    (rootfs / "opt" / "real" / "lib").mkdir(parents=True)
    (rootfs / "usr").mkdir()
    os.symlink("../opt/real", rootfs / "usr" / "lib64")
    os.symlink("/usr/lib64/lib", rootfs / "libs")
    assert _rootfs.realpath_in_root(root_fd, "/libs") == "/opt/real/lib"
    assert _rootfs.realpath_in_root(root_fd, "/usr/lib64/lib") == "/opt/real/lib"
    assert _rootfs.realpath_in_root(root_fd, "/") == "/"
    os.symlink(str(host), rootfs / "hostlink")
    with pytest.raises(FileNotFoundError):
        _rootfs.realpath_in_root(root_fd, "/hostlink")


# --- resolution strategy ----------------------------------------------------------------


def test_openat2_is_used_when_available(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _rootfs._load_openat2()
    if real is None:
        pytest.skip("no openat2 on this machine")
    calls: list[bytes] = []

    def spy(dir_fd: int, path: bytes, flags: int) -> int:
        calls.append(path)
        return real(dir_fd, path, flags)

    monkeypatch.setattr(_rootfs, "use_openat2", None)
    monkeypatch.setattr(_rootfs, "_load_openat2", lambda: spy)
    (rootfs / "etc").mkdir()
    fd = _rootfs.open_root(str(rootfs))
    try:
        os.close(_rootfs.open_dir(fd, "/etc"))
    except OSError as exc:
        pytest.skip(f"openat2 unusable here: {exc}")
    finally:
        os.close(fd)
    if _rootfs.use_openat2 is False:
        pytest.skip("openat2 refused by this kernel")
    assert calls == [b"etc"]


def test_openat2_enosys_falls_back_to_walk(
    rootfs: Path, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_openat2(dir_fd: int, path: bytes, flags: int) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(_rootfs, "use_openat2", True)
    monkeypatch.setattr(_rootfs, "_openat2_fn", no_openat2)
    os.symlink(str(host), rootfs / "etc")
    fd = _rootfs.open_root(str(rootfs))
    try:
        _rootfs.write_file(fd, "/etc/x.conf", b"x")
    finally:
        os.close(fd)
    assert _rootfs.use_openat2 is False
    assert (rootfs / str(host).lstrip("/") / "x.conf").read_bytes() == b"x"
    assert sorted(os.listdir(host)) == ["precious"]


def test_held_descriptor_survives_swap(root_fd: int, rootfs: Path, host: Path) -> None:
    """A folder swapped for a link after it was opened is not where we write."""
    (rootfs / "etc").mkdir()
    fd = _rootfs.open_dir(root_fd, "/etc")
    try:
        os.rename(rootfs / "etc", rootfs / "etc.old")
        os.symlink(str(host), rootfs / "etc")
        with os.fdopen(os.open("new", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)
    assert (rootfs / "etc.old" / "new").exists()
    assert sorted(os.listdir(host)) == ["precious"]
    # The next call resolves the link as it is now: inside the rootfs.
    _rootfs.write_file(root_fd, "/etc/again", b"y")
    assert sorted(os.listdir(host)) == ["precious"]
    assert (rootfs / str(host).lstrip("/") / "again").read_bytes() == b"y"


def test_race_dir_swapped_for_link_never_escapes(root_fd: int, rootfs: Path, host: Path) -> None:
    """A thread keeps swapping a folder for a link to the host while we write."""
    before = snapshot(host)
    a = rootfs / "a"
    a.mkdir()
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            try:
                os.rename(a, rootfs / "a.dir")
                os.symlink(str(host), a)
                os.unlink(a)
                os.rename(rootfs / "a.dir", a)
                swaps += 1
            except OSError:
                pass  # we raced the writer's mkdir; try again

    thread = threading.Thread(target=swapper)
    thread.start()
    writes = 0
    try:
        # At least a second of racing, and on until both sides did something
        # (a loaded machine can starve either thread for a while): 10 s at most.
        start = time.monotonic()
        while time.monotonic() - start < 1.0 or (
            (writes == 0 or swaps == 0) and time.monotonic() - start < 10.0
        ):
            try:
                _rootfs.write_file(root_fd, "/a/sub/f", b"x")
                writes += 1
            except OSError:
                pass  # a component vanished mid-walk: a failure, not an escape
    finally:
        stop.set()
        thread.join()
    assert snapshot(host) == before
    assert writes > 0
    assert swaps > 0
