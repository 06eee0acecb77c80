"""nvshim: an OCI runtime shim for GPU containers.

The public API is re-exported here.  Names are imported on first use (PEP 562)
so that ``import nvshim`` stays cheap: the runtime's pass-through path runs on
every container operation and must not pay for pluggy, attrs or cattrs.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: `import nvshim` runs on every runtime call, and
# typing costs more than the rest of it.  mypy knows this name.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from nvshim._log import Logger
    from nvshim._version import __version__
    from nvshim.changes import Change
    from nvshim.config import Config, ConfigError, load_config
    from nvshim.errors import NvshimError
    from nvshim.hookspecs import hookimpl, hookspec
    from nvshim.modifier import Modifier, ModifierContext, ModifierError
    from nvshim.plugins import get_plugin_manager
    from nvshim.records import Device, Hook, Mount
    from nvshim.requests import ContainerRequest
    from nvshim.runtime import ApplyResult, Runtime, apply_modifiers, build_runtime
    from nvshim.spec import Spec, SpecError

__all__ = [
    "ApplyResult",
    "Change",
    "Config",
    "ConfigError",
    "ContainerRequest",
    "Device",
    "Hook",
    "Logger",
    "Modifier",
    "ModifierContext",
    "ModifierError",
    "Mount",
    "NvshimError",
    "Runtime",
    "Spec",
    "SpecError",
    "__version__",
    "apply_modifiers",
    "build_runtime",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "load_config",
]

_WHERE = {
    "ApplyResult": "nvshim.runtime",
    "Change": "nvshim.changes",
    "Config": "nvshim.config",
    "ConfigError": "nvshim.config",
    "ContainerRequest": "nvshim.requests",
    "Device": "nvshim.records",
    "Hook": "nvshim.records",
    "Logger": "nvshim._log",
    "Modifier": "nvshim.modifier",
    "ModifierContext": "nvshim.modifier",
    "ModifierError": "nvshim.modifier",
    "Mount": "nvshim.records",
    "NvshimError": "nvshim.errors",
    "Runtime": "nvshim.runtime",
    "Spec": "nvshim.spec",
    "SpecError": "nvshim.spec",
    "__version__": "nvshim._version",
    "apply_modifiers": "nvshim.runtime",
    "build_runtime": "nvshim.runtime",
    "get_plugin_manager": "nvshim.plugins",
    "hookimpl": "nvshim.hookspecs",
    "hookspec": "nvshim.hookspecs",
    "load_config": "nvshim.config",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nvshim' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
