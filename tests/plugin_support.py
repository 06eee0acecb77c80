"""Helpers for tests that install third-party plugins by hand.

A plugin distribution is written as modules plus a ``*.dist-info`` folder
(see ``support.write_plugin_distribution``); put that folder on
``PYTHONPATH`` for a subprocess running ``nvshim``/``nvshim-ctl``, or on
``sys.path`` in-process (:func:`on_sys_path`): importlib.metadata finds its
entry points exactly as it finds a pip-installed plugin's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from support import write_plugin_distribution

from nvshim import Modifier, Spec, hookimpl

if TYPE_CHECKING:
    from nvshim.testing import PluginRegistrar

__all__ = [
    "Modify",
    "Plugin",
    "bundle_with",
    "chain",
    "on_sys_path",
    "plugin_dist",
    "run_tool",
    "tool_env",
]


#: A modify function as tests write them (the context is not looked at).
Modify = Callable[[Spec, Any], object]


class Plugin:
    """An in-process plugin providing the given modifiers."""

    def __init__(self, *modifiers: Modifier) -> None:
        self.modifiers = modifiers

    @hookimpl
    def nvshim_modifiers(self) -> list[Modifier]:
        return list(self.modifiers)


def chain(register_plugin: PluginRegistrar, *steps: tuple[str, Modify], **kw: Any) -> None:
    """Register one plugin per step, ordered as given (order 10, 20 ...).

    ``kw`` maps a step's name to more :class:`~nvshim.Modifier` arguments.
    """
    for i, (name, modify) in enumerate(steps):
        modifier = Modifier(name, cast(Any, modify), order=10 * (i + 1), **kw.get(name, {}))
        register_plugin(Plugin(modifier), name=f"plugin-{name}")


def plugin_dist(
    site: Path,
    dist: str,
    source: str,
    entry_point: Optional[str] = None,
    version: str = "1.0",
) -> Path:
    """Install the one-module plugin distribution ``dist`` into ``site``.

    The module is named after the distribution (``nvshim-t-x`` ->
    ``nvshim_t_x``); its entry point defaults to the name without the
    ``nvshim-`` prefix, per the naming rule.
    """
    module = dist.replace("-", "_")
    name = entry_point or dist.removeprefix("nvshim-")
    write_plugin_distribution(site, dist, {module: source}, {name: module}, version=version)
    return site


@contextmanager
def on_sys_path(folder: Path) -> Iterator[Path]:
    """Put ``folder`` first on ``sys.path``; at exit remove it and the modules loaded from it."""
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if str(getattr(module, "__file__", "") or "").startswith(str(folder)):
                del sys.modules[name]


def tool_env(site: Optional[Path], config: Optional[Path], **extra: str) -> dict[str, str]:
    """An environment for nvshim/nvshim-ctl with ``site`` on PYTHONPATH and ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    env.pop("PYTHONPATH", None)
    # Never the host's /var/cache/nvshim (the default for root): the session's.
    env["NVSHIM_CACHE_DIR"] = os.environ["NVSHIM_CACHE_DIR"]
    if site is not None:
        env["PYTHONPATH"] = str(site)
    if config is not None:
        env["NVSHIM_CONFIG"] = str(config)
    else:
        # No file where the runtime looks: the defaults (a missing file that
        # NVSHIM_CONFIG names is an error, so it is not set).
        env["XDG_CONFIG_HOME"] = "/nonexistent"
    env.update(extra)
    return env


def run_tool(
    exe: str, args: Sequence[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``exe args`` and capture its text output."""
    return subprocess.run(
        [exe, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def bundle_with(folder: Path, spec: Mapping[str, Any]) -> Path:
    """A bundle folder with ``spec`` as its config.json (pretty, so bytes are easy to compare)."""
    (folder / "rootfs").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(spec, indent=1))
    return folder


def dedent(source: str) -> str:
    """``textwrap.dedent`` for plugin sources written inline."""
    return textwrap.dedent(source)
