"""The jit-cdi bench case (issue #14): one GPU of the simulated 8-GPU host, warm inventory.

``create jit-cdi`` asks for GPU 1 of the simulated host of the tests
(tests/host_support.py: fake ``libnvidia-ml.so.1``, driver root, nodes made
with mknod) in mode jit-cdi; ``create legacy`` is the legacy create of the
``create`` group, in the same group so the ratio is measured side by side.
Both run through ``env NVSHIM_CONFIG=…`` since their configs differ.  The
check run and warm-ups build the host inventory once (through the fake NVML);
the timed runs read it from the cache, as every create after the first does
on a real host.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fixtures
from timing import Command, Group

REPO = Path(__file__).resolve().parent.parent
GROUP = "jit-cdi"


def _build_host(work: Path) -> tuple[Path | None, str]:
    """The simulated GPU host's root, or None and why it cannot be built here."""
    if os.geteuid() != 0:
        return None, "the simulated GPU host needs root (mknod, ldconfig -r)"
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import host_support  # needs pytest: its helpers skip tests
    except ImportError as exc:
        return None, f"tests/host_support.py cannot be imported ({exc})"
    try:
        host = host_support.build_simulated_host(work / "gpu-host")
    except Exception as exc:  # a compiler or ldconfig failing
        return None, f"cannot build the simulated GPU host: {exc}"
    except BaseException as exc:  # pytest.skip's exception: a missing tool
        if type(exc).__name__ != "Skipped":
            raise
        return None, str(exc)
    return host.root, ""


def add_jit_cdi_group(
    work: Path,
    nvshim: str,
    python: str,
    base: dict[str, Any],
    groups: list[Group],
    skipped: dict[str, str],
) -> None:
    """Add the ``jit-cdi`` group (or a reason to ``skipped``)."""
    probe = subprocess.run([python, "-c", "import pynvml"], capture_output=True, check=False)
    if probe.returncode != 0:
        skipped[GROUP] = "nvidia-ml-py is not installed (pip install 'nvshim[nvml]')"
        return
    root, why = _build_host(work)
    if root is None:
        skipped[GROUP] = why
        return
    legacy_cfg = fixtures.write_config(work / "jit-legacy.toml")
    jit_cfg = fixtures.write_config(work / "jit-cdi.toml", mode="jit-cdi", driver_root=root)
    spec = copy.deepcopy(base)
    spec.setdefault("process", {}).setdefault("env", []).extend(
        ["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"]
    )
    commands = []
    for name, config, bundle_spec in (
        ("create legacy", legacy_cfg, fixtures.gpu_spec(base)),
        ("create jit-cdi", jit_cfg, spec),
    ):
        bundle = fixtures.write_bundle(work / name.replace(" ", "-"), bundle_spec)
        commands.append(
            Command(
                name,
                ["env", f"NVSHIM_CONFIG={config}", nvshim, "create", "--bundle", str(bundle), "c"],
                fixtures.restore_command(bundle),
            )
        )
    groups.append(Group(GROUP, commands, {}))
