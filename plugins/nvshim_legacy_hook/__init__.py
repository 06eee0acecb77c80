"""legacy-hook: NVIDIA's ``nvidia-container-runtime-hook`` as a prestart hook.

In mode ``legacy`` every created container gets the prestart hook
``{path: H, args: [H, "prestart"]}`` after its existing prestart hooks, as
NVIDIA's ``nvidia-container-runtime`` adds it; the hook (through
``nvidia-container-cli``) then injects the driver and the devices the
container asks for.  See ``docs/modifiers/legacy-hook.md``.
"""

from __future__ import annotations

from nvshim import Modifier, hookimpl
from nvshim_legacy_hook.modifier import NAME, add_legacy_hook

__all__ = ["NAME", "add_legacy_hook", "nvshim_modifiers"]


@hookimpl
def nvshim_modifiers() -> list[Modifier]:
    """The ``legacy-hook`` modifier (order 50, mode ``legacy`` only)."""
    return [
        Modifier(
            NAME,
            add_legacy_hook,
            description="legacy mode: add NVIDIA's nvidia-container-runtime-hook"
            " as a prestart hook",
            modes=("legacy",),
        )
    ]
