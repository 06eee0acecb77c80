"""Helpers for the fault, bad-input and security tests: nvshim run as a subprocess.

Tests import this module as ``import reliability_support``.  Every run uses:

- a recording fake runtime (a shell script, so it starts in a millisecond)
  that appends its argv to a file: "the runtime was started" is a fact read
  from that file, never assumed from an exit status;
- a config file (``NVSHIM_CONFIG``) whose ``runtimes`` names the fake, with
  every other installed ``nvshim`` plugin disabled, so these tests judge the
  core and do not depend on the built-ins' state;
- a test plugin, installed for the subprocess through a ``.dist-info`` folder
  on ``PYTHONPATH`` (a real entry point), whose modifier makes a real change
  (an env entry, optionally a padding annotation) so config.json is rewritten.

The fake runtime is also put on ``PATH`` as ``runc`` and ``crun``: a config that
nvshim wrongly ignored would still lead to the fake, and be seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import script_support

#: The entry-point name of the test plugin (also its modifier's name).
PLUGIN_NAME = "reltest-stamp"

_PLUGIN_MODULE = textwrap.dedent(
    '''\
    """nvshim test plugin: stamps process.env so that config.json is rewritten."""
    from __future__ import annotations

    import os
    import time

    from nvshim import Modifier, hookimpl


    def _stamp(spec, context):
        value = os.environ.get("RELTEST_STAMP")
        if value is None:
            return
        spec.set_env("RELTEST_STAMP", value)
        pad = int(os.environ.get("RELTEST_PAD", "0"))
        if pad:
            # A bigger file: a longer write, a wider window for a kill.
            spec.set_annotation("reltest.pad", (value * (pad // len(value) + 1))[:pad])
        time.sleep(float(os.environ.get("RELTEST_SLEEP", "0")))


    @hookimpl
    def nvshim_modifiers():
        return [Modifier("reltest-stamp", _stamp, description="test: stamp process.env")]
    '''
)

_FAKE_RUNTIME = """\
#!/bin/sh
# Recording fake runtime: one line per call, the arguments separated by tabs.
IFS='\t'
printf '%s\\n' "$*" >> '{calls}'
"""


def nvshim_command() -> list[str]:
    """``nvshim`` from the test venv (it honours PYTHONPATH: see ``script_support``)."""
    return [script_support.script("nvshim")]


def nvshim_ctl_command() -> list[str]:
    """``nvshim-ctl`` from the test venv, skipping the test when it is missing."""
    return [script_support.script("nvshim-ctl")]


def other_plugin_names() -> list[str]:
    """Entry-point names of every installed nvshim plugin (the test plugin excepted)."""
    from importlib.metadata import distributions

    names = set()
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == "nvshim" and ep.name != PLUGIN_NAME:
                names.add(ep.name)
    return sorted(names)


def make_plugin_site(folder: Path) -> Path:
    """A folder for PYTHONPATH holding the test plugin and its dist-info."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nvshim_reltest_plugin.py").write_text(_PLUGIN_MODULE)
    info = folder / "nvshim_reltest-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nvshim-reltest\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[nvshim]\n{PLUGIN_NAME} = nvshim_reltest_plugin\n")
    return folder


def base_spec(**extra: Any) -> dict[str, Any]:
    """A small valid config.json, with fields nvshim does not model (they must survive)."""
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "reltest",
        "x-unknown": {"nested": [1, None, {"deep": "value"}], "empty": {}},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
    }
    spec.update(extra)
    return spec


def stamped(spec: Mapping[str, Any], stamp: str, pad: int = 0) -> dict[str, Any]:
    """``spec`` as the test plugin leaves it for ``stamp`` (computed independently)."""
    result = json.loads(json.dumps(spec))
    env = result.setdefault("process", {}).setdefault("env", [])
    for i, entry in enumerate(env):
        if entry.partition("=")[0] == "RELTEST_STAMP":
            env[i] = f"RELTEST_STAMP={stamp}"
            break
    else:
        env.append(f"RELTEST_STAMP={stamp}")
    if pad:
        result.setdefault("annotations", {})["reltest.pad"] = (stamp * (pad // len(stamp) + 1))[
            :pad
        ]
    return result


def temp_files(bundle: Path) -> list[str]:
    """Temporary files an atomic write left in ``bundle``."""
    return sorted(n for n in os.listdir(bundle) if n.startswith(".config.json.") and ".tmp" in n)


class Shim:
    """nvshim set up against a recording fake runtime, in ``folder``."""

    def __init__(self, folder: Path, config_extra: str = "", plugin: bool = True) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.calls_file = folder / "runtime-calls"
        self.runtime = folder / "fake-runtime"
        self.runtime.write_text(_FAKE_RUNTIME.format(calls=self.calls_file))
        self.runtime.chmod(0o755)
        bin_dir = folder / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name in ("runc", "crun"):
            link = bin_dir / name
            if not link.exists():
                link.symlink_to(self.runtime)
        self.config = folder / "config.toml"
        self.write_config(config_extra)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
        env.pop("RELTEST_STAMP", None)
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        env["NVSHIM_CONFIG"] = str(self.config)
        # Its own entry-point cache: as root the default is the host's /var/cache/nvshim.
        env["NVSHIM_CACHE_DIR"] = str(folder / "cache")
        if plugin:
            site = make_plugin_site(folder / "site")
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(site), env.get("PYTHONPATH", "")) if p
            )
        self.env = env

    def config_text(self, extra: str = "") -> str:
        """A config.toml naming the fake runtime and disabling the other plugins."""
        disabled = json.dumps(other_plugin_names())
        return (
            f'[nvidia-container-runtime]\nruntimes = ["{self.runtime}"]\n{extra}\n'
            f"[nvshim]\ndisabled-modifiers = {disabled}\n"
        )

    def write_config(self, extra: str = "") -> None:
        """Rewrite the config file (``extra`` goes in ``[nvidia-container-runtime]``)."""
        self.config.write_text(self.config_text(extra))

    def bundle(self, name: str = "bundle", spec: Optional[Mapping[str, Any]] = None) -> Path:
        """A bundle folder holding ``spec`` (default :func:`base_spec`), pretty-printed."""
        bundle = self.folder / name
        bundle.mkdir(parents=True, exist_ok=True)
        text = json.dumps(base_spec() if spec is None else spec, indent=2)
        (bundle / "config.json").write_text(text)
        return bundle

    def argv(self, bundle: Path, container_id: str = "ctr", extra: Sequence[str] = ()) -> list[str]:
        """``nvshim [extra] create --bundle <bundle> <id>``."""
        return [*nvshim_command(), *extra, "create", "--bundle", str(bundle), container_id]

    def environ(self, stamp: Optional[str] = None, **more: str) -> dict[str, str]:
        """The environment for a run; ``stamp`` makes the test plugin change the spec."""
        env = dict(self.env)
        if stamp is not None:
            env["RELTEST_STAMP"] = stamp
        env.update(more)
        return env

    def run(
        self,
        args: Sequence[str],
        stamp: Optional[str] = None,
        timeout: float = 30,
        **more: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` (a full command line) and wait for it."""
        return subprocess.run(
            list(args),
            env=self.environ(stamp, **more),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def create(
        self, bundle: Path, stamp: Optional[str] = None, extra: Sequence[str] = (), **more: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a create in ``bundle``."""
        return self.run(self.argv(bundle, extra=extra), stamp, **more)

    def popen(self, bundle: Path, stamp: str, container_id: str = "ctr", **more: str) -> Any:
        """Start a create without waiting (stdout and stderr discarded)."""
        return subprocess.Popen(
            self.argv(bundle, container_id),
            env=self.environ(stamp, **more),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def calls(self) -> list[list[str]]:
        """The fake runtime's calls, each its argv after argv[0]."""
        if not self.calls_file.exists():
            return []
        return [line.split("\t") for line in self.calls_file.read_text().splitlines()]


def kill(proc: Any) -> None:
    """SIGKILL ``proc`` if it still runs, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()  # reaps it and closes the pipes


def check_one_line(stderr: str) -> str:
    """Assert ``stderr`` is exactly one line starting ``nvshim: ``; return it."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("nvshim: "), lines[0]
    return lines[0]
