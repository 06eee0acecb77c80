"""``nvshim-ctl hook enable-cuda-compat`` (nvshim._cudacompat) on real rootfs folders.

The OCI state goes on stdin as runc gives it; the image's links are planted
in the rootfs to check that nothing is written outside it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nvshim import _hookcmd

CONF_DIR = Path("etc") / "ld.so.conf.d"


class Bundle:
    """A bundle with config.json and an empty rootfs."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "bundle"
        self.rootfs = self.path / "rootfs"
        self.rootfs.mkdir(parents=True)
        (self.path / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))

    def state(self) -> io.BytesIO:
        return io.BytesIO(json.dumps({"ociVersion": "1.2.0", "bundle": str(self.path)}).encode())

    def compat(self, folder: str, *names: str) -> Path:
        path = self.rootfs / folder.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        for name in names:
            (path / name).write_bytes(b"")
        return path

    def confs(self) -> dict[str, str]:
        folder = self.rootfs / CONF_DIR
        if not folder.is_dir():
            return {}
        return {p.name: p.read_text() for p in folder.iterdir()}


def run(bundle: Bundle, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = _hookcmd.main(["enable-cuda-compat", *args], bundle.state())
    return rc, capsys.readouterr().err


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    return Bundle(tmp_path)


def test_newer_compat_libraries_are_listed_first(
    bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle.compat(
        "/usr/local/cuda/compat", "libcuda.so.575.57.08", "libcuda.so.1", "libnvidia-nvvm.so.4"
    )
    rc, err = run(bundle, "--host-driver-version=550.54.15", capsys=capsys)
    assert (rc, err) == (0, "")
    header = "# Written by nvshim-ctl hook enable-cuda-compat.\n"
    assert bundle.confs() == {"00-compat-575.conf": header + "/usr/local/cuda/compat\n"}
    conf = bundle.rootfs / CONF_DIR / "00-compat-575.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o644"
    # Sorted before update-ldcache's 00-nvshim-<hash>.conf, so ldconfig puts it first.
    assert (
        sorted(["00-compat-575.conf", _hookcmd.conf_name(["/usr/lib"])])[0] == "00-compat-575.conf"
    )


@pytest.mark.parametrize("host", ["575.51.03", "590.44.01", "600"])
def test_same_or_older_major_does_nothing(
    bundle: Bundle, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    bundle.compat("/usr/local/cuda/compat", "libcuda.so.575.57.08")
    assert run(bundle, f"--host-driver-version={host}", capsys=capsys) == (0, "")
    assert bundle.confs() == {}


def test_no_compat_folder_or_no_version(bundle: Bundle, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(bundle, "--host-driver-version=550.54.15", capsys=capsys) == (0, "")
    bundle.compat("/usr/local/cuda/compat", "libcuda.so.1")  # no versioned file
    assert run(bundle, "--host-driver-version=550.54.15", capsys=capsys) == (0, "")
    bundle.compat("/usr/local/cuda/compat", "libcuda.so.999.1.1")
    assert run(bundle, capsys=capsys) == (0, "")  # no host version: nothing to compare
    assert bundle.confs() == {}


def test_highest_compat_version_wins(bundle: Bundle, capsys: pytest.CaptureFixture[str]) -> None:
    bundle.compat("/opt/compat", "libcuda.so.560.1.1", "libcuda.so.580.2.2")
    rc, _ = run(
        bundle,
        "--host-driver-version=550.1",
        "--cuda-compat-container-root",
        "/opt/compat",
        capsys=capsys,
    )
    assert rc == 0
    assert list(bundle.confs()) == ["00-compat-580.conf"]


def test_links_are_resolved_inside_the_rootfs(
    bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The image's compat folder is an absolute link: it means the rootfs's /opt/real.
    bundle.compat("/opt/real", "libcuda.so.999.1.1")
    (bundle.rootfs / "usr" / "local" / "cuda").mkdir(parents=True)
    (bundle.rootfs / "usr" / "local" / "cuda" / "compat").symlink_to("/opt/real")
    # And /etc is a link to a host folder: the conf must not land there.
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    (bundle.rootfs / "etc").symlink_to(str(host_etc))
    rc, err = run(bundle, "--host-driver-version=550.54.15", capsys=capsys)
    assert (rc, err) == (0, "")
    assert list(host_etc.iterdir()) == []
    written = bundle.rootfs / str(host_etc).lstrip("/") / "ld.so.conf.d" / "00-compat-999.conf"
    assert written.read_text().endswith("\n/opt/real\n")


def test_compat_link_that_climbs_out_stays_in(
    bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "libcuda.so.999.1.1").write_bytes(b"")
    (bundle.rootfs / "usr" / "local" / "cuda").mkdir(parents=True)
    # ../../../.. from the rootfs never reaches the host's folders.
    rel = os.path.relpath(outside, bundle.rootfs / "usr" / "local" / "cuda")
    (bundle.rootfs / "usr" / "local" / "cuda" / "compat").symlink_to(rel)
    assert run(bundle, "--host-driver-version=550.54.15", capsys=capsys) == (0, "")
    assert bundle.confs() == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--host-driver-version=abc"],
            "--host-driver-version 'abc': not a version like 550.54.15",
        ),
        (
            ["--host-driver-version=550.1", "--cuda-compat-container-root", "usr/compat"],
            "--cuda-compat-container-root 'usr/compat': ",
        ),
        (
            ["--host-driver-version=550.1", "--cuda-compat-container-root", "/usr/../../x"],
            "--cuda-compat-container-root '/usr/../../x': ",
        ),
        (["--bogus"], "arguments: unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_are_one_line(
    bundle: Bundle, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    rc, err = run(bundle, *args, capsys=capsys)
    assert rc == 1
    assert err.startswith(f"nvshim-ctl hook enable-cuda-compat: {message}")
    assert err.count("\n") == 1


def test_through_nvshim_ctl(bundle: Bundle, nvshim_ctl: str) -> None:
    bundle.compat("/usr/local/cuda/compat", "libcuda.so.999.1.1")
    result = subprocess.run(
        [nvshim_ctl, "hook", "enable-cuda-compat", "--host-driver-version=550.54.15"],
        input=bundle.state().getvalue(),
        capture_output=True,
        env={},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert list(bundle.confs()) == ["00-compat-999.conf"]


def test_hook_module_is_light() -> None:
    """The hook runs on every container start: it imports no third-party module."""
    code = (
        "import sys; from nvshim._hookcmd import main\n"
        "import nvshim._cudacompat\n"
        "heavy = ('attrs', 'cattrs', 'pluggy', 'yaml', 'nvshim.host')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
