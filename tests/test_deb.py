"""The Debian package builder (packaging/build_deb.py, `nox -s deb`).

The full flow (apt-get install, demo, podman, purge) runs in CI through
.ci/deb-check; here the package is built offline from the wheel alone (its
dependencies left out) and its contents are checked with dpkg-deb.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nvshim.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))

import build_deb  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"


def test_default_config_is_valid_and_says_the_defaults() -> None:
    config = load_config(str(REPO / "packaging" / "config.toml"))
    assert config == Config()
    assert config.ignored_keys == ()


@pytest.mark.parametrize(
    ("pep440", "debian"),
    [("0.1.0", "0.1.0"), ("0.2.0.dev3", "0.2.0~dev3"), ("1.0rc1", "1.0~rc1"), ("1.0b2", "1.0~b2")],
)
def test_debian_version(pep440: str, debian: str) -> None:
    assert build_deb.debian_version(pep440) == debian


def test_maintainer_scripts_keep_the_admins_config() -> None:
    postinst = (REPO / "packaging" / "debian" / "postinst").read_text()
    assert '[ ! -e "$CONFIG" ] && [ ! -L "$CONFIG" ]' in postinst
    postrm = (REPO / "packaging" / "debian" / "postrm").read_text()
    assert "/etc/nvidia-container-runtime" not in postrm.split("rm -rf", 1)[1].split("\n")[0]
    for script in ("postinst", "prerm", "postrm"):
        check = subprocess.run(["sh", "-n", str(REPO / "packaging" / "debian" / script)],
                               capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="no system Python")
def test_package_layout(tmp_path: Path) -> None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import ensurepip, venv, sys; print(sys.version_info[:2])"],
        check=False, capture_output=True, text=True,
    )
    if probe.returncode != 0:
        pytest.skip("the system Python has no venv module (apt-get install python3-venv)")
    if probe.stdout.strip() != str(sys.version_info[:2]):
        # The package is built with the system Python whatever runs the
        # tests: once, under that Python's own version, is enough.
        pytest.skip(f"built once, by the tests on the system Python's version {probe.stdout}")
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(wheels), str(REPO)], check=True, timeout=300)
    units = tmp_path / "units"
    units.mkdir()
    (units / "nvshim-test.service").write_text("[Service]\nExecStart=/bin/true\n")
    (units / "README").write_text("not a unit\n")
    deb = build_deb.build(tmp_path / "out", SYSTEM_PYTHON, ["--no-deps", "--no-index"],
                          next(wheels.glob("*.whl")), units)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert deb.name == f"nvshim-runtime_0.1.0_{arch}.deb"

    field = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Depends"],
                           capture_output=True, text=True, check=True).stdout
    assert "Package: nvshim-runtime" in field
    assert "runc | crun" in field
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    venv = tree / "usr/lib/nvshim-runtime"
    for command in ("nvshim", "nvshim-ctl"):
        assert os.readlink(tree / "usr/bin" / command) == f"/usr/lib/nvshim-runtime/bin/{command}"
    # The wrappers start the interpreter named by nvshim-python's first line.
    assert (venv / "bin" / "nvshim-python").read_text().startswith(
        "#!/usr/lib/nvshim-runtime/bin/python\n")
    # No trace of the staging root anywhere in the venv's text or byte code.
    staging = b"nvshim-deb-"
    for path in venv.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert staging not in path.read_bytes(), path
    assert (tree / "usr/share/nvshim-runtime/config.toml").read_text() == (
        REPO / "packaging" / "config.toml").read_text()
    assert (tree / "usr/share/doc/nvshim-runtime/docs/installing.md").is_file()
    assert sorted(p.name for p in (tree / "lib/systemd/system").iterdir()) == [
        "nvshim-test.service"]
    assert 'UNITS="nvshim-test.service"' in (tree / "DEBIAN/postinst").read_text()
    conffiles = tree / "DEBIAN" / "conffiles"
    assert not conffiles.exists(), "config.toml is never a conffile"
    assert not any(p.is_relative_to(tree / "etc") for p in tree.rglob("*"))
