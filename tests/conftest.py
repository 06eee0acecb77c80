"""Shared fixtures: paths to ../shared, the installed nvshim, a recording fake runtime."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed seed, so a red run can be replayed and
# a green one is not luck; locally they explore new examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Keep the entry-point cache of test runs (as root: /var/cache/nvshim) out of
# the machine's; subprocesses inherit it.
os.environ.setdefault(
    "NVSHIM_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"nvshim-test-cache-{os.getpid()}")
)

# Prints, at the end of a run, what the reliability tests tried and that nothing was lost;
# fails a run that changed the host's /etc or /var/cache/nvshim.
pytest_plugins = ["reliability_report", "host_guard"]

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
#: The test data kept in the repository (see tests/data/README.md).
DATA = REPO / "tests" / "data"
#: Top folders of ../shared that the repository carries a copy of, under DATA.
_IN_REPO = frozenset({"reference-data"})


def shared_path(*parts: str) -> Path:
    """A test data path: ``reference-data/...`` from tests/data, the rest from ../shared.

    The reference data (config.json files, CSV files, NVIDIA's fake host
    roots) is part of the repository; only the OCI and CDI JSON schemas stay
    in a ``shared`` folder beside the checkout, and a test needing them skips
    when it is absent (tests/data/README.md says where to get them).
    """
    if parts and parts[0] in _IN_REPO:
        path = DATA.joinpath(*parts)
        if not path.exists():
            raise FileNotFoundError(f"{path}: test data missing from the repository")
        return path
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent: the JSON schemas live in a shared/ folder beside the "
            "checkout (tests/data/README.md says where to get them)"
        )
    return path


def installed_script(name: str) -> str:
    """``nvshim`` or ``nvshim-ctl`` as tests run them: the installed wrapper, in the test venv.

    The test venv honours ``PYTHONPATH`` (how tests install plugins); the
    installed commands do not (see ``script_support``).
    """
    import script_support

    return script_support.script(name)


@pytest.fixture
def nvshim_exe() -> str:
    """Absolute path of the installed ``nvshim`` script."""
    return installed_script("nvshim")


@pytest.fixture
def nvshim_ctl() -> str:
    """Absolute path of the installed ``nvshim-ctl`` script."""
    return installed_script("nvshim-ctl")


FAKE_RUNTIME = textwrap.dedent(
    """\
    #!{python}
    # A stand-in low-level runtime for argument-forwarding tests: records what it got.
    import json, os, sys
    record = {{
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "stdin": sys.stdin.read() if not sys.stdin.isatty() else None,
        "fds": {{}},
    }}
    for fd in (3, 4):
        try:
            record["fds"][str(fd)] = os.read(fd, 100).decode()
        except OSError as exc:
            record["fds"][str(fd)] = None
    with open({record!r}, "a") as out:
        out.write(json.dumps(record) + "\\n")
    sys.exit(int(os.environ.get("FAKE_RUNTIME_EXIT", "0")))
    """
)


class FakeRuntime:
    """A recording runtime: ``calls()`` returns one dict per invocation."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "fake-runc"
        self.record = folder / "fake-runc.jsonl"
        self.path.write_text(FAKE_RUNTIME.format(python=sys.executable, record=str(self.record)))
        self.path.chmod(0o755)

    def calls(self) -> list[dict[str, Any]]:
        """Every recorded invocation, in order."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture
def fake_runtime(tmp_path: Path) -> FakeRuntime:
    """A recording fake runtime in a temp folder."""
    folder = tmp_path / "fake"
    folder.mkdir()
    return FakeRuntime(folder)


def write_config(path: Path, runtimes: list[str], extra: str = "") -> Path:
    """Write a config.toml whose ``runtimes`` is ``runtimes``, plus ``extra`` TOML."""
    body = "[nvidia-container-runtime]\nruntimes = " + json.dumps(runtimes) + "\n"
    path.write_text(body + extra)
    return path


@pytest.fixture
def shim_env(tmp_path: Path, fake_runtime: FakeRuntime) -> dict[str, str]:
    """An environment for running nvshim against the fake runtime."""
    config = write_config(tmp_path / "config.toml", [str(fake_runtime.path)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    env["NVSHIM_CONFIG"] = str(config)
    env["NVSHIM_CACHE_DIR"] = os.environ["NVSHIM_CACHE_DIR"]  # never the host's
    return env


def minimal_spec(**extra: Any) -> dict[str, Any]:
    """A small valid config.json."""
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/usr/bin:/bin"]},
        "root": {"path": "rootfs"},
    }
    spec.update(extra)
    return spec


def make_bundle_dir(folder: Path, spec: Mapping[str, Any] | None = None) -> Path:
    """A bundle folder holding ``spec`` (default :func:`minimal_spec`) as config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(spec if spec is not None else minimal_spec()))
    return folder


def write_plugin_distribution(
    folder: Path,
    dist: str,
    modules: Mapping[str, str],
    entry_points: Mapping[str, str],
    version: str = "1.0",
) -> Path:
    """Install a plugin distribution by hand: modules plus a ``.dist-info`` folder.

    ``folder`` then goes on ``sys.path`` or ``PYTHONPATH``; importlib.metadata
    finds the distribution and its ``nvshim`` entry points there, exactly as
    it finds a pip-installed one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[nvshim]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder


def create_through_nvshim(nvshim_exe: str, bundle: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Run ``nvshim create`` on ``bundle`` (it must succeed) and return the written config.json."""
    import subprocess

    proc = subprocess.run(
        [nvshim_exe, "create", "--bundle", str(bundle), "ctr"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    written: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    return written
