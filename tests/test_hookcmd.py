"""nvshim-ctl hook update-ldcache | create-symlinks (nvshim._hookcmd).

Real bundles and rootfs folders in temporary folders; the OCI state is fed on
stdin as runc does.  A fake ldconfig (a host shell script) records its
arguments and its exact environment outside the rootfs; the real
``/sbin/ldconfig`` is used where the test is about the cache it builds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from nvshim import _hookcmd, _ldconfig

REPO = Path(__file__).resolve().parent.parent
REAL_LDCONFIG = next((p for p in _hookcmd.DEFAULT_LDCONFIGS if os.access(p, os.X_OK)), None)
IS_ROOT = os.geteuid() == 0


class Bundle:
    """A bundle folder with config.json and a rootfs, as an engine makes them."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "bundle"
        self.rootfs = self.path / "rootfs"
        self.rootfs.mkdir(parents=True)
        self.config: dict[str, Any] = {
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {
                "args": ["sh"],
                "env": ["PATH=/evil/bin", "LD_PRELOAD=/evil/lib.so", "LD_LIBRARY_PATH=/evil"],
                "cwd": "/",
            },
        }
        self.save()

    def save(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config))

    def state(self) -> bytes:
        return json.dumps(
            {
                "ociVersion": "1.2.0",
                "id": "c1",
                "status": "creating",
                "pid": 4242,
                "bundle": str(self.path),
                "annotations": {},
            }
        ).encode()

    def run(self, *argv: str, stdin: Optional[bytes] = None) -> int:
        data = self.state() if stdin is None else stdin
        return _hookcmd.main(list(argv), stdin=io.BytesIO(data))


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    return Bundle(tmp_path)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host folder outside the rootfs that an image tries to reach."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "precious").write_text("host data\n")
    return path


class FakeLdconfig:
    """A host script standing in for ldconfig; records argv and environ."""

    def __init__(self, folder: Path, status: int = 0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "ldconfig"
        self.args_file = folder / "args"
        self.env_file = folder / "environ"
        self.conf_file = folder / "conf"
        # /proc/$$/environ is the environment execve gave the script, byte
        # for byte, before the shell adds anything of its own.  A script is
        # run as `ldconfig -r ROOTFS -f CONF` (CONF inside ROOTFS).
        self.path.write_text(
            "#!/bin/sh\n"
            f"/bin/cat /proc/$$/environ > '{self.env_file}'\n"
            f"printf '%s\\n' \"$0\" \"$@\" > '{self.args_file}'\n"
            f"/bin/cat \"$2$4\" > '{self.conf_file}'\n"
            f"echo 'ldconfig: first line' >&2\necho 'ldconfig: last words' >&2\nexit {status}\n"
        )
        self.path.chmod(0o755)

    @property
    def ran(self) -> bool:
        return self.args_file.exists()

    def args(self) -> list[str]:
        return self.args_file.read_text().splitlines()

    def environ(self) -> bytes:
        return self.env_file.read_bytes()

    def conf(self) -> list[str]:
        """The folders of the configuration ldconfig was given."""
        return self.conf_file.read_text().splitlines()


@pytest.fixture
def fake(tmp_path: Path) -> FakeLdconfig:
    if not IS_ROOT:
        pytest.skip("update-ldcache runs ldconfig in its own mount namespace: needs root")
    return FakeLdconfig(tmp_path / "hostbin")


def snapshot(folder: Path) -> dict[str, Any]:
    """Everything under a folder: names, kinds, contents and link targets."""
    result: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            result[key] = ("link", os.readlink(path))
        elif path.is_dir():
            result[key] = ("dir",)
        else:
            result[key] = ("file", path.read_bytes())
    return result


def conf_path(rootfs: Path, folders: list[str], etc: str = "etc") -> Path:
    return rootfs / etc / "ld.so.conf.d" / _hookcmd.conf_name(folders)


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


# --- create-symlinks --------------------------------------------------------------------


def test_create_symlinks(bundle: Bundle, capsys: pytest.CaptureFixture[str]) -> None:
    rc = bundle.run(
        "create-symlinks",
        "--link",
        "libcuda.so.1::/usr/lib/aarch64-linux-gnu/libcuda.so",
        "--link",
        "/usr/lib/aarch64-linux-gnu/tegra::/usr/lib/tegra",
    )
    assert rc == 0
    assert stderr_lines(capsys) == []
    lib = bundle.rootfs / "usr" / "lib"
    assert os.readlink(lib / "aarch64-linux-gnu" / "libcuda.so") == "libcuda.so.1"
    assert os.readlink(lib / "tegra") == "/usr/lib/aarch64-linux-gnu/tegra"


def test_create_symlinks_existing_replaced_and_blocked(
    bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = bundle.rootfs / "lib"
    lib.mkdir()
    os.symlink("same", lib / "a")
    os.symlink("old", lib / "b")
    (lib / "c").write_text("a real file")
    (lib / "folder").mkdir()
    (lib / "folder" / "kept").write_text("x")
    rc = bundle.run(
        "create-symlinks",
        "--link",
        "same::/lib/a",
        "--link",
        "new::/lib/b",
        "--link",
        "x::/lib/c",
        "--link",
        "y::/lib/folder",
        "--link",
        "no-separator",
        "--link",
        "t::relative/link",
        "--link",
        "t::/lib/../escape",
        "--link",
        "d::/lib/d",
    )
    assert rc == 1  # the invalid entries
    lines = stderr_lines(capsys)
    assert len(lines) == 4, lines
    assert all(line.startswith("nvshim-ctl hook create-symlinks: ") for line in lines)
    assert lines[0].startswith("nvshim-ctl hook create-symlinks: warning: link /lib/folder -> y")
    assert "a folder is in the way" in lines[0]
    assert "not TARGET::LINK" in lines[1]
    assert "absolute" in lines[2]
    assert "'..'" in lines[3]
    assert os.readlink(lib / "a") == "same"
    assert os.readlink(lib / "b") == "new"
    assert os.readlink(lib / "c") == "x"  # the image's own file is replaced
    assert (lib / "folder" / "kept").read_text() == "x"  # a folder is left alone
    assert os.readlink(lib / "d") == "d"  # the entry after the failures was done
    assert not (bundle.path / "escape").exists()


def test_create_symlinks_attacks(
    bundle: Bundle, host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(host)
    rootfs = bundle.rootfs
    (rootfs / "usr").mkdir()
    os.symlink(str(host), rootfs / "usr" / "lib")  # a library folder
    os.symlink("../" * 12 + str(host).lstrip("/"), rootfs / "lib64")  # relative escape
    os.symlink(str(host / "precious"), rootfs / "libown.so")  # the link's own path
    rc = bundle.run(
        "create-symlinks",
        "--link",
        "libfoo.so.1::/usr/lib/libfoo.so",
        "--link",
        "libbar.so.1::/lib64/sub/libbar.so",
        "--link",
        "libown.so.1::/libown.so",
    )
    assert rc == 0, stderr_lines(capsys)
    assert snapshot(host) == before
    inside = rootfs / str(host).lstrip("/")
    assert os.readlink(inside / "libfoo.so") == "libfoo.so.1"
    assert os.readlink(inside / "sub" / "libbar.so") == "libbar.so.1"
    assert os.readlink(rootfs / "libown.so") == "libown.so.1"


# --- update-ldcache with a fake ldconfig ----------------------------------------------------


def test_update_ldcache_conf_and_command(
    bundle: Bundle, fake: FakeLdconfig, capsys: pytest.CaptureFixture[str]
) -> None:
    rootfs = bundle.rootfs
    (rootfs / "usr" / "lib" / "nvidia").mkdir(parents=True)
    (rootfs / "opt" / "real").mkdir(parents=True)
    os.symlink("/opt/real", rootfs / "usr" / "lib" / "tegra")
    folders = ["/usr/lib/nvidia", "/usr/lib/tegra", "/usr/lib/missing"]
    old = os.umask(0o077)
    try:
        rc = bundle.run(
            "update-ldcache",
            "--ldconfig-path",
            str(fake.path),
            *[arg for folder in [*folders, "//usr/lib/nvidia/"] for arg in ("--folder", folder)],
        )
    finally:
        os.umask(old)
    assert rc == 0, stderr_lines(capsys)
    conf = conf_path(rootfs, folders)
    assert conf.name.startswith("00-nvshim-")
    assert conf.read_text().splitlines()[1:] == folders  # repeats dropped
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    # No folder on the command line: ldconfig resolves the configuration's
    # folders inside the rootfs (it chroots), so links stay inside.
    assert fake.args() == [str(fake.path), "-r", str(rootfs), "-f", _ldconfig.CONF_IN_CHILD]
    assert fake.conf() == folders


def test_update_ldcache_without_folders(bundle: Bundle, fake: FakeLdconfig) -> None:
    assert bundle.run("update-ldcache", "--ldconfig-path", str(fake.path)) == 0
    assert fake.args() == [str(fake.path), "-r", str(bundle.rootfs), "-f", _ldconfig.CONF_IN_CHILD]
    assert fake.conf() == []
    assert (bundle.rootfs / "etc").is_dir()  # where ldconfig writes ld.so.cache
    assert not (bundle.rootfs / "etc" / "ld.so.conf.d").exists()


def test_update_ldcache_hash_depends_on_folders() -> None:
    a = _hookcmd.conf_name(["/a", "/b"])
    assert a == _hookcmd.conf_name(["/a", "/b"])
    assert a != _hookcmd.conf_name(["/b", "/a"])
    assert a != _hookcmd.conf_name(["/a"])


def test_update_ldcache_environment_is_empty(
    bundle: Bundle,
    fake: FakeLdconfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Both the container's env (config.json, set in Bundle) and the hook's own
    # carry LD_PRELOAD and PATH; neither may reach the host binary.
    monkeypatch.setenv("LD_PRELOAD", "/evil/lib.so")
    monkeypatch.setenv("PATH", "/evil/bin")
    rc = bundle.run("update-ldcache", "--folder", "/usr/lib", "--ldconfig-path", f"@{fake.path}")
    assert rc == 0, stderr_lines(capsys)
    assert fake.environ() == b""


def test_update_ldcache_stdin_is_not_the_hooks(bundle: Bundle, tmp_path: Path) -> None:
    probe = tmp_path / "hostbin2"
    probe.mkdir()
    script = probe / "ldconfig"
    out = probe / "stdin"
    script.write_text(f"#!/bin/sh\n/bin/cat > '{out}'\n")
    script.chmod(0o755)
    rc = bundle.run("update-ldcache", "--folder", "/usr/lib", "--ldconfig-path", str(script))
    assert rc == 0
    assert out.read_bytes() == b""  # the OCI state was not handed on


def test_update_ldcache_ldconfig_failure_is_one_line(
    bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = FakeLdconfig(tmp_path / "failbin", status=3)
    rc = bundle.run("update-ldcache", "--folder", "/usr/lib", "--ldconfig-path", str(failing.path))
    assert rc == 1
    assert stderr_lines(capsys) == [
        f"nvshim-ctl hook update-ldcache: running {failing.path}: "
        "exit status 3: ldconfig: last words"
    ]


@pytest.mark.parametrize(
    "kind", ["etc-absolute", "etc-relative", "conf.d", "conf-file", "lib-folder"]
)
def test_update_ldcache_planted_links_stay_inside(
    bundle: Bundle,
    fake: FakeLdconfig,
    host: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(host)
    rootfs = bundle.rootfs
    folders = ["/usr/lib/nvidia"]
    inside_host = rootfs / str(host).lstrip("/")
    if kind == "etc-absolute":
        os.symlink(str(host), rootfs / "etc")
        expected = inside_host / "ld.so.conf.d" / _hookcmd.conf_name(folders)
    elif kind == "etc-relative":
        os.symlink("../" * 12 + str(host).lstrip("/"), rootfs / "etc")
        expected = inside_host / "ld.so.conf.d" / _hookcmd.conf_name(folders)
    elif kind == "conf.d":
        (rootfs / "etc").mkdir()
        os.symlink(str(host), rootfs / "etc" / "ld.so.conf.d")
        expected = inside_host / _hookcmd.conf_name(folders)
    elif kind == "conf-file":
        (rootfs / "etc" / "ld.so.conf.d").mkdir(parents=True)
        conf = conf_path(rootfs, folders)
        os.symlink(str(host / "precious"), conf)
        expected = conf
    else:
        (rootfs / "usr" / "lib").mkdir(parents=True)
        os.symlink(str(host), rootfs / "usr" / "lib" / "nvidia")
        expected = conf_path(rootfs, folders)
    assert os.path.realpath(rootfs / "etc" / "ld.so.conf.d" / "x").startswith(str(host)) == (
        kind in ("etc-absolute", "etc-relative", "conf.d")
    )

    rc = bundle.run("update-ldcache", "--folder", folders[0], "--ldconfig-path", str(fake.path))
    assert rc == 0, stderr_lines(capsys)
    assert snapshot(host) == before
    assert not expected.is_symlink()
    assert expected.read_text().splitlines()[1:] == folders
    if kind == "lib-folder":
        # The host folder behind the link must not reach ldconfig.
        assert fake.args()[3:] == ["-f", _ldconfig.CONF_IN_CHILD]
        assert fake.conf() == folders


# --- which ldconfig ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["ldconfig", "sbin/ldconfig", "@ldconfig", "@./ldconfig"])
def test_ldconfig_relative_refused(
    bundle: Bundle, spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = bundle.run("update-ldcache", "--folder", "/usr/lib", "--ldconfig-path", spec)
    assert rc == 1
    (line,) = stderr_lines(capsys)
    assert line.startswith(f"nvshim-ctl hook update-ldcache: ldconfig {spec!r}: not an absolute")
    assert not (bundle.rootfs / "etc").exists()  # refused before writing anything


def test_ldconfig_inside_rootfs_refused(
    bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image_bin = FakeLdconfig(bundle.rootfs / "sbin")
    host_alias = tmp_path / "alias-ldconfig"
    os.symlink(image_bin.path, host_alias)  # a host link into the rootfs
    for spec in (str(image_bin.path), f"@{image_bin.path}", str(host_alias)):
        rc = bundle.run("update-ldcache", "--folder", "/usr/lib", "--ldconfig-path", spec)
        assert rc == 1
        (line,) = stderr_lines(capsys)
        assert "refusing a binary inside the container rootfs" in line
    assert not image_bin.ran
    assert not (bundle.rootfs / "etc").exists()


@pytest.mark.skipif(not IS_ROOT, reason="bind mounts need root")
def test_ldconfig_through_bind_mount_of_rootfs_refused(
    bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image_bin = FakeLdconfig(bundle.rootfs / "sbin")
    alias = tmp_path / "alias"
    alias.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", str(bundle.rootfs), str(alias)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind mount here: {mounted.stderr.decode().strip()}")
    try:
        rc = bundle.run(
            "update-ldcache",
            "--folder",
            "/usr/lib",
            "--ldconfig-path",
            str(alias / "sbin/ldconfig"),
        )
    finally:
        subprocess.run(["umount", str(alias)], check=True)
    assert rc == 1
    assert "refusing a binary inside the container rootfs" in stderr_lines(capsys)[0]
    assert not image_bin.ran


def test_ldconfig_missing_or_not_executable(
    bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = bundle.run(
        "update-ldcache", "--folder", "/usr/lib", "--ldconfig-path", str(tmp_path / "nope")
    )
    assert rc == 1
    (line,) = stderr_lines(capsys)
    assert line.startswith(f"nvshim-ctl hook update-ldcache: ldconfig {tmp_path / 'nope'}: ")
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    rc = bundle.run("update-ldcache", "--folder", "/usr/lib", "--ldconfig-path", str(plain))
    assert rc == 1
    assert "not an executable file" in stderr_lines(capsys)[0]


def test_ldconfig_default_candidates(
    bundle: Bundle,
    fake: FakeLdconfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = str(tmp_path / "missing-ldconfig")
    monkeypatch.setattr(_hookcmd, "DEFAULT_LDCONFIGS", (missing, str(fake.path)))
    assert bundle.run("update-ldcache", "--folder", "/usr/lib") == 0
    assert fake.ran
    monkeypatch.setattr(_hookcmd, "DEFAULT_LDCONFIGS", (missing,))
    assert bundle.run("update-ldcache", "--folder", "/usr/lib") == 1
    assert "ldconfig: none found (tried " in stderr_lines(capsys)[-1]


# --- update-ldcache with the real ldconfig ---------------------------------------------------


def build_fake_library(folder: Path, name: str = "libnvshimtest.so.1.0") -> Path:
    """Compile a tiny shared library with soname libnvshimtest.so.1."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build a shared library")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder.parent / "nvshimtest.c"
    source.write_text("int nvshim_test(void) { return 42; }\n")
    out = folder / name
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-Wl,-soname,libnvshimtest.so.1", "-o", str(out), str(source)],
        check=True,
    )
    source.unlink()
    return out


needs_real_ldconfig = pytest.mark.skipif(
    not IS_ROOT or REAL_LDCONFIG is None,
    reason="ldconfig -r needs root and a host ldconfig",
)


def cache_listing(rootfs: Path) -> str:
    assert REAL_LDCONFIG is not None
    return subprocess.run(
        [REAL_LDCONFIG, "-r", str(rootfs), "-p"], capture_output=True, text=True, check=True
    ).stdout


@needs_real_ldconfig
def test_real_ldconfig_builds_cache_in_rootfs(
    bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    rootfs = bundle.rootfs
    build_fake_library(rootfs / "opt" / "nvshimtest" / "lib")
    assert not (rootfs / "etc").exists()  # an image without /etc at all
    rc = bundle.run(
        "update-ldcache", "--folder", "/opt/nvshimtest/lib", "--ldconfig-path", f"@{REAL_LDCONFIG}"
    )
    assert rc == 0, stderr_lines(capsys)
    cache = rootfs / "etc" / "ld.so.cache"
    assert cache.is_file()
    assert b"/opt/nvshimtest/lib/libnvshimtest.so.1" in cache.read_bytes()
    assert "libnvshimtest.so.1 (" in cache_listing(rootfs)
    assert "=> /opt/nvshimtest/lib/libnvshimtest.so.1" in cache_listing(rootfs)
    # ldconfig made the soname link inside the rootfs.
    link = rootfs / "opt" / "nvshimtest" / "lib" / "libnvshimtest.so.1"
    assert os.readlink(link) == "libnvshimtest.so.1.0"


@needs_real_ldconfig
def test_real_ldconfig_without_include_line(
    bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    rootfs = bundle.rootfs
    build_fake_library(rootfs / "opt" / "nvshimtest" / "lib")
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "ld.so.conf").write_text("# no include line here\n")
    rc = bundle.run("update-ldcache", "--folder", "/opt/nvshimtest/lib")
    assert rc == 0, stderr_lines(capsys)
    assert "=> /opt/nvshimtest/lib/libnvshimtest.so.1" in cache_listing(rootfs)


@needs_real_ldconfig
@pytest.mark.parametrize("planted", ["etc", "lib-folder"])
def test_real_ldconfig_planted_links(
    bundle: Bundle, host: Path, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rootfs = bundle.rootfs
    # The host folder holds a library ldconfig would link and cache if it
    # ever worked there: a soname link or ld.so.cache would appear in it.
    build_fake_library(host)
    before = snapshot(host)
    if planted == "etc":
        build_fake_library(rootfs / "opt" / "nvshimtest" / "lib")
        os.symlink(str(host), rootfs / "etc")
        cache = rootfs / str(host).lstrip("/") / "ld.so.cache"
    else:
        (rootfs / "opt" / "nvshimtest").mkdir(parents=True)
        os.symlink(str(host), rootfs / "opt" / "nvshimtest" / "lib")
        cache = rootfs / "etc" / "ld.so.cache"
    rc = bundle.run(
        "update-ldcache", "--folder", "/opt/nvshimtest/lib", "--ldconfig-path", f"@{REAL_LDCONFIG}"
    )
    assert rc == 0, stderr_lines(capsys)
    assert snapshot(host) == before
    assert cache.is_file()
    listing = cache_listing(rootfs)
    if planted == "etc":
        assert "=> /opt/nvshimtest/lib/libnvshimtest.so.1" in listing
    else:
        assert "libnvshimtest" not in listing  # the host's library is not the image's


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "why"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"id": "c1"}', "'bundle' is not an absolute path"),
        (b'{"bundle": "relative/bundle"}', "'bundle' is not an absolute path"),
        (b'{"bundle": 3}', "'bundle' is not an absolute path"),
    ],
)
def test_bad_state(
    bundle: Bundle, stdin: bytes, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bundle.run("create-symlinks", "--link", "a::/b", stdin=stdin) == 1
    (line,) = stderr_lines(capsys)
    assert line.startswith("nvshim-ctl hook create-symlinks: container state on stdin: ")
    assert why in line


@pytest.mark.parametrize(
    ("config", "why"),
    [
        (None, "No such file or directory"),
        ("{", "Expecting property name"),
        ("[]", "'root.path' is not a path"),
        ("{}", "'root.path' is not a path"),
        ('{"root": {"path": ""}}', "'root.path' is not a path"),
        ('{"root": {"path": 5}}', "'root.path' is not a path"),
        ('{"root": {"path": "absent"}}', "rootfs "),
    ],
)
def test_bad_config(
    bundle: Bundle, config: Optional[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config_json = bundle.path / "config.json"
    if config is None:
        config_json.unlink()
    else:
        config_json.write_text(config)
    assert bundle.run("update-ldcache", "--folder", "/usr/lib") == 1
    (line,) = stderr_lines(capsys)
    assert line.startswith("nvshim-ctl hook update-ldcache: ")
    assert why in line


def test_absolute_root_path(bundle: Bundle, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-rootfs"
    elsewhere.mkdir()
    bundle.config["root"] = {"path": str(elsewhere), "readonly": True}
    bundle.save()
    assert bundle.run("create-symlinks", "--link", "t::/l") == 0
    assert os.readlink(elsewhere / "l") == "t"
    assert not (bundle.rootfs / "l").exists()


@pytest.mark.parametrize(
    ("argv", "prefix"),
    [
        ([], "nvshim-ctl hook: arguments: "),
        (["no-such-hook"], "nvshim-ctl hook no-such-hook: arguments: "),
        (["update-ldcache", "--folder"], "nvshim-ctl hook update-ldcache: arguments: "),
        (["create-symlinks", "--bogus"], "nvshim-ctl hook create-symlinks: arguments: "),
        (["update-ldcache", "--folder", "lib"], "nvshim-ctl hook update-ldcache: folder 'lib': "),
    ],
)
def test_bad_arguments(
    bundle: Bundle, argv: list[str], prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bundle.run(*argv) == 1
    (line,) = stderr_lines(capsys)
    assert line.startswith(prefix), line


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert _hookcmd.main(["update-ldcache", "--help"], stdin=io.BytesIO(b"")) == 0
    assert "--ldconfig-path" in capsys.readouterr().out


def test_as_a_process(bundle: Bundle) -> None:
    """Run as runc runs a hook: a process, the state on stdin; a folder in the way is a warning."""
    (bundle.rootfs / "lib" / "blocker").mkdir(parents=True)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nvshim._hookcmd",
            "create-symlinks",
            "--link",
            "t::/lib/blocker",
            "--link",
            "t::/lib/ok",
        ],
        input=bundle.state(),
        capture_output=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "nvshim-ctl hook create-symlinks: warning: link /lib/blocker -> t: "
        "a folder is in the way: blocker; left as it is"
    ]
    assert os.readlink(bundle.rootfs / "lib" / "ok") == "t"
    assert (bundle.rootfs / "lib" / "blocker").is_dir()


# --- under real runc -------------------------------------------------------------------------


RUNC = shutil.which("runc")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)


@pytest.mark.root
@pytest.mark.runc
@pytest.mark.skipif(not IS_ROOT, reason="runc needs root")
@pytest.mark.skipif(RUNC is None or BUSYBOX is None, reason="needs runc and busybox-static")
@needs_real_ldconfig
def test_hooks_under_runc(tmp_path: Path) -> None:
    """Both hooks as runc runs them (createContainer), seen from inside the container."""
    assert RUNC is not None
    assert BUSYBOX is not None
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "cat", "readlink"):
        os.symlink("busybox", rootfs / "bin" / applet)
    build_fake_library(rootfs / "opt" / "nvshimtest" / "lib")
    subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = [
        "sh",
        "-c",
        "cat /etc/ld.so.conf.d/00-nvshim-*.conf; readlink /usr/lib/libx.so; cat /etc/ld.so.cache",
    ]
    config["process"]["env"] = ["PATH=/bin", "LD_PRELOAD=/evil.so"]
    hook = [sys.executable, "-m", "nvshim._hookcmd"]
    env = [f"PYTHONPATH={REPO}"]
    config["hooks"] = {
        "createContainer": [
            {
                "path": sys.executable,
                "env": env,
                "args": [*hook, "update-ldcache", "--folder", "/opt/nvshimtest/lib"],
            },
            {
                "path": sys.executable,
                "env": env,
                "args": [*hook, "create-symlinks", "--link", "libx.so.1::/usr/lib/libx.so"],
            },
        ]
    }
    (bundle / "config.json").write_text(json.dumps(config))
    result = subprocess.run(
        [RUNC, "--root", str(tmp_path / "state"), "run", f"nvshim-hook-{os.getpid()}"],
        cwd=bundle,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout
    assert b"/opt/nvshimtest/lib\n" in out
    assert b"libx.so.1\n" in out
    assert b"/opt/nvshimtest/lib/libnvshimtest.so.1" in out  # from the cache
