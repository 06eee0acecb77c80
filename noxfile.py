"""nox sessions for nvshim: `nox -l` lists them, `nox -s tests` runs the test suite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
# The versions pyproject.toml's classifiers name (one place to add a Python).
# nox finds each as `pythonX.Y` on PATH: with pyenv, put its versions' bin
# folders there first (as .ci/run does); this file changes nothing at import.
PYTHONS = nox.project.python_versions(PYPROJECT)
EXAMPLE_PLUGIN = ROOT / "plugins" / "nvshim-host-mounts"

nox.options.sessions = ["tests", "lint", "typecheck", "docs", "build"]
nox.options.reuse_existing_virtualenvs = True
# Run on the interpreters this machine has; a missing one is skipped, not an error.
nox.options.error_on_missing_interpreters = False
nox.needs_version = ">=2024.3.2"


def _install_wheel(session: nox.Session, *extra: str) -> None:
    """Build nvshim's wheel and install it (not editable), so packaging mistakes surface."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"))
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT))
    wheels = sorted(dist.glob("nvshim_runtime-*.whl"))
    session.install("--force-reinstall", "--no-deps", str(wheels[-1]))
    session.install(str(wheels[-1]), *extra)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite against the installed wheel (real runc tests need root)."""
    _install_wheel(session)
    session.run("pytest", *session.posargs)


@nox.session(python="3.11", default=False)
def tests_with_example(session: nox.Session) -> None:
    """Run the core suite with the example plugin installed: it must change nothing else.

    The plugin is installed from its own folder exactly as a third party's
    (its own pyproject.toml, found only through its entry point); then the
    plugin's own tests run against the installed nvshim.
    """
    _install_wheel(session, str(EXAMPLE_PLUGIN))
    session.run("nvshim-ctl", "plugins")  # shows host-mounts as active in the log
    session.run("pytest", *session.posargs)
    session.run(
        "pytest",
        "--rootdir",
        str(EXAMPLE_PLUGIN),
        "-c",
        str(EXAMPLE_PLUGIN / "pyproject.toml"),
        str(EXAMPLE_PLUGIN / "tests"),
    )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Type-check the package and the built-in plugins with mypy --strict."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.install("-e", ".")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors (mkdocs --strict)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "docs"))
    session.install(".")
    session.run("python", "docs/gen_hooks.py", "--check")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site")
    )


@nox.session(python="3.11")
def build(session: nox.Session) -> None:
    """Build the sdist and wheel, and check the wheel's contents."""
    session.install("build")
    out = Path(session.create_tmp()) / "dist"
    shutil.rmtree(out, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(out), str(ROOT))
    session.run(
        "python",
        "-c",
        "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); "
        "need = ['nvshim/__init__.py', 'nvshim/py.typed', 'nvshim_legacy_hook/__init__.py', "
        "'nvshim_csv_discovery/__init__.py', 'nvshim_docker_gpus_detector/__init__.py', "
        "'nvshim_cdi/__init__.py', 'nvshim_jit_cdi/__init__.py']; "
        "missing = [n for n in need if n not in names] + "
        "([] if any(n.endswith('.data/scripts/nvshim') for n in names) else ['scripts/nvshim']); "
        "sys.exit(f'missing from the wheel: {missing}' if missing else 0)",
        str(sorted(out.glob("*.whl"))[-1]),
    )


@nox.session(python="3.11", default=False)
def fuzz(session: nox.Session) -> None:
    """Fuzz the config.json and CSV parsers for a bounded time (hypothesis at scale).

    ``NVSHIM_FUZZ_SECONDS`` sets the time per target (default 60).  With
    ``-- --engine atheris`` it uses atheris (coverage-guided) where atheris
    installs.  A failure prints the smallest input that breaks a parser and
    fails the session.
    """
    _install_wheel(session)
    if "atheris" in session.posargs:
        session.install("atheris")
    seconds = os.environ.get("NVSHIM_FUZZ_SECONDS", "60")
    session.run("python", "tests/fuzz_targets.py", "--seconds", seconds, *session.posargs)


@nox.session(python="3.11", default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmark suite (`nox -s bench -- --quick` for a short run)."""
    # nvml and pytest: the jit-cdi row builds the tests' simulated GPU host.
    session.install(".[nvml]", "pytest")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python="3.11", default=False)
def deb(session: nox.Session) -> None:
    """Build dist/nvshim-runtime_<version>_<arch>.deb (packaging/build_deb.py; needs dpkg-deb).

    The package's venv is made with the system Python (/usr/bin/python3);
    arguments after ``--`` go to its ``pip install`` (e.g. ``--no-index
    --find-links DIR`` to build offline).
    """
    if shutil.which("dpkg-deb") is None:
        session.error("dpkg-deb is not installed (Debian's dpkg package)")
    args = ["--out", str(ROOT / "dist")]
    if session.posargs:
        args += ["--", *session.posargs]
    session.run("python", str(ROOT / "packaging" / "build_deb.py"), *args)
