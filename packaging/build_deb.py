"""Build ``nvshim-runtime_<version>_<arch>.deb`` (``nox -s deb`` runs this).

The package holds a venv at ``/usr/lib/nvshim-runtime`` made with the system
Python (``/usr/bin/python3``), with nvshim's wheel and its dependencies;
``/usr/bin/nvshim`` and ``/usr/bin/nvshim-ctl`` link into it. A venv records
its own path (script shebangs, ``nvshim-python``, ``pyvenv.cfg``, byte code), so
it is built inside a staging root and those paths are rewritten to the
installed ones before ``dpkg-deb`` packs the tree. Also in the package: the
docs, the default ``config.toml`` the postinst writes when there is none
(never a conffile), and the systemd units of ``packaging/systemd/``.

Needs ``dpkg-deb`` and the system Python with its ``venv`` module
(``python3-venv``). The only network use is pip fetching nvshim's
dependencies; extra pip arguments after ``--`` (``--no-index --find-links
DIR``) make it offline.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
PACKAGE = "nvshim-runtime"
PREFIX = Path("/usr/lib") / PACKAGE
COMMANDS = ("nvshim", "nvshim-ctl")
UNIT_SUFFIXES = (".service", ".path", ".timer", ".socket")
SYSTEMD_UNIT_DIR = Path("/lib/systemd/system")  # where Debian 12 packages put units

DESCRIPTION = """\
OCI runtime shim for GPU containers (nvidia-container-runtime replacement)
 nvshim is called by Docker, containerd, CRI-O and Podman with runc's command
 line. On create and run it rewrites the bundle's config.json through an
 ordered chain of spec modifiers (legacy hook, Jetson CSV, CDI, plugins),
 then execs runc or crun. It reads NVIDIA's config.toml and honours the same
 NVIDIA_* variables, so a host set up for nvidia-container-runtime keeps
 working. nvshim-ctl holds the admin tools and the OCI hooks.
"""

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nvshim-runtime

Files: *
Copyright: nvshim developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
"""


def debian_version(version: str) -> str:
    """A PEP 440 version as Debian orders it: pre-releases and dev releases sort first."""
    return re.sub(r"\.?(dev|a|b|rc)(\d+)", r"~\1\2", version)


def read_version() -> str:
    """nvshim's version, from nvshim/_version.py (without importing it)."""
    text = (REPO / "nvshim" / "_version.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit("build_deb: no __version__ in nvshim/_version.py")
    return match.group(1)


def relocate(venv: Path, final: Path) -> list[Path]:
    """Rewrite *venv*'s own path to *final* in its text files; returns the files changed."""
    old, new = str(venv).encode(), str(final).encode()
    changed = []
    candidates = [venv / "pyvenv.cfg", *(p for p in (venv / "bin").iterdir() if p.is_file())]
    candidates += list(venv.glob("lib/python*/site-packages/*.dist-info/direct_url.json"))
    for path in candidates:
        if path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096] or old not in data:
            continue
        path.write_bytes(data.replace(old, new))
        changed.append(path)
    return changed


def _run(*argv: str | Path) -> None:
    print("+", " ".join(str(a) for a in argv), flush=True)
    subprocess.run([str(a) for a in argv], check=True)


def _md5sums(root: Path) -> str:
    lines = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not path.is_symlink() and "DEBIAN" not in relative.parts:
            digest = hashlib.md5(path.read_bytes()).hexdigest()  # DEBIAN/md5sums is md5
            lines.append(f"{digest}  {relative}")
    return "\n".join(lines) + "\n"


def _installed_size_kib(root: Path) -> int:
    total = sum(p.lstat().st_size for p in root.rglob("*") if "DEBIAN" not in p.parts)
    return (total + 1023) // 1024


def build(
    out: Path,
    python: str,
    pip_args: list[str],
    wheel: Path | None,
    units_dir: Path = PACKAGING / "systemd",
) -> Path:
    """Build the package into *out*; returns its path."""
    version = read_version()
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    py_version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    major, minor = (int(x) for x in py_version.split("."))
    with tempfile.TemporaryDirectory(prefix="nvshim-deb-") as scratch:
        work = Path(scratch)
        if wheel is None:
            _run(python, "-m", "pip", "--version")  # fails early without pip
            dist = work / "wheel"
            _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, REPO)
            wheel = sorted(dist.glob("nvshim_runtime-*.whl"))[-1]
        root = work / "root"
        venv = root / PREFIX.relative_to("/")
        venv.parent.mkdir(parents=True)
        _run(python, "-m", "venv", venv)
        vpy = venv / "bin" / "python"
        # With the `nvml` extra: jit-cdi (auto's mode on a GPU server) and
        # `cdi generate` read the GPUs through NVML's Python binding.
        _run(
            vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pip_args,
            f"{wheel}[nvml]",
        )
        for cache in venv.rglob("__pycache__"):
            shutil.rmtree(cache)
        relocate(venv, PREFIX)
        # Byte code now, under the installed path: the files are dpkg's, and
        # nothing is written below /usr at run time.
        _run(vpy, "-m", "compileall", "-q", "-f", "-s", root, "-p", "/", venv / "lib")

        usr_bin = root / "usr" / "bin"
        usr_bin.mkdir(parents=True)
        for command in COMMANDS:
            if not (venv / "bin" / command).is_file():
                raise SystemExit(f"build_deb: the venv has no bin/{command}")
            (usr_bin / command).symlink_to(PREFIX / "bin" / command)

        share = root / "usr" / "share" / PACKAGE
        share.mkdir(parents=True)
        shutil.copy2(PACKAGING / "config.toml", share / "config.toml")
        doc = root / "usr" / "share" / "doc" / PACKAGE
        doc.mkdir(parents=True)
        for name in ("README.md", "CHANGELOG.md"):
            shutil.copy2(REPO / name, doc / name)
        shutil.copytree(REPO / "docs", doc / "docs", ignore=shutil.ignore_patterns("*.py"))
        (doc / "copyright").write_text(COPYRIGHT)

        units = []
        unit_source = units_dir
        if unit_source.is_dir():
            unit_dir = root / SYSTEMD_UNIT_DIR.relative_to("/")
            for unit in sorted(unit_source.iterdir()):
                if unit.suffix in UNIT_SUFFIXES:
                    unit_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(unit, unit_dir / unit.name)
                    (unit_dir / unit.name).chmod(0o644)
                    units.append(unit.name)

        control = root / "DEBIAN"
        control.mkdir()
        for script in ("postinst", "prerm", "postrm"):
            text = (PACKAGING / "debian" / script).read_text()
            (control / script).write_text(text.replace("@UNITS@", " ".join(units)))
            (control / script).chmod(0o755)
        (control / "md5sums").write_text(_md5sums(root))
        fields = {
            "Package": PACKAGE,
            "Version": debian_version(version),
            "Architecture": arch,
            "Maintainer": "nvshim developers <nvshim@users.noreply.github.com>",
            "Installed-Size": str(_installed_size_kib(root)),
            # The venv runs on this very Python minor version.
            "Depends": f"python3 (>= {major}.{minor}), python3 (<< {major}.{minor + 1}), "
            "runc | crun",
            "Section": "admin",
            "Priority": "optional",
            "Homepage": "https://github.com/nvshim/nvshim",
            "Description": DESCRIPTION.rstrip("\n"),
        }
        (control / "control").write_text(
            "".join(f"{key}: {value}\n" for key, value in fields.items())
        )
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{PACKAGE}_{debian_version(version)}_{arch}.deb"
        # gzip: several times faster to build than xz, for a few MB more.
        _run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line: ``build_deb.py [--out DIR] [--python PY] [--wheel W] [-- PIP_ARGS]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pip_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, pip_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder")
    parser.add_argument(
        "--python", default="/usr/bin/python3", help="the Python of the venv (default: system's)"
    )
    parser.add_argument("--wheel", type=Path, help="nvshim's wheel (default: built here)")
    parser.add_argument(
        "--units",
        type=Path,
        default=PACKAGING / "systemd",
        help="folder of systemd units to ship (default: packaging/systemd)",
    )
    args = parser.parse_args(argv)
    if shutil.which("dpkg-deb") is None:
        print("build_deb: dpkg-deb is not installed", file=sys.stderr)
        return 1
    if not os.access(args.python, os.X_OK):
        print(f"build_deb: {args.python}: no such Python", file=sys.stderr)
        return 1
    print(build(args.out.resolve(), args.python, pip_args, args.wheel, args.units))
    return 0


if __name__ == "__main__":
    sys.exit(main())
