"""Shared fixtures: the installed nvshim, a recording fake runtime (helpers: tests/support)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# Re-exported: tests written before tests/support existed import them from here.
from support import (  # noqa: F401
    DATA,
    FAKE_RUNTIME,
    REPO,
    SHARED,
    FakeRuntime,
    create_through_nvshim,
    installed_script,
    make_bundle_dir,
    minimal_spec,
    shared_path,
    write_config,
    write_plugin_distribution,
)

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

@pytest.fixture
def nvshim_exe() -> str:
    """Absolute path of the installed ``nvshim`` script."""
    return installed_script("nvshim")


@pytest.fixture
def nvshim_ctl() -> str:
    """Absolute path of the installed ``nvshim-ctl`` script."""
    return installed_script("nvshim-ctl")


@pytest.fixture
def fake_runtime(tmp_path: Path) -> FakeRuntime:
    """A recording fake runtime in a temp folder."""
    folder = tmp_path / "fake"
    folder.mkdir()
    return FakeRuntime(folder)


@pytest.fixture
def shim_env(tmp_path: Path, fake_runtime: FakeRuntime) -> dict[str, str]:
    """An environment for running nvshim against the fake runtime."""
    config = write_config(tmp_path / "config.toml", [str(fake_runtime.path)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    env["NVSHIM_CONFIG"] = str(config)
    env["NVSHIM_CACHE_DIR"] = os.environ["NVSHIM_CACHE_DIR"]  # never the host's
    return env
