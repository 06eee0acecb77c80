"""The ``cdi`` modifier: inject devices described by Container Device Interface specs.

Active in mode ``cdi``.  It reads the CDI spec files of
``[nvidia-container-runtime.modes.cdi] spec-dirs``, works out which devices
the container asks for (annotations, else ``NVIDIA_VISIBLE_DEVICES``), and
applies the specs' and the devices' ``containerEdits`` through the Spec API.
Afterwards ``NVIDIA_VISIBLE_DEVICES`` is ``void`` so that no later layer
injects the devices again.  See ``docs/modifiers/cdi.md``.

Its public API, which ``nvshim-ctl cdi`` uses too: :class:`Registry` (the
devices of the spec folders), :func:`spec_files`, :func:`read_spec_file`,
:class:`CdiSpec`, :class:`CdiSpecError` and :class:`ResolveError`.  They are
imported on first use: this module is loaded on every create, whatever the
mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nvshim.hookspecs import hookimpl
from nvshim.modifier import Modifier, ModifierError

if TYPE_CHECKING:
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec
    from nvshim_cdi._registry import Registry, ResolveError, spec_files
    from nvshim_cdi._spec import CdiSpec, CdiSpecError, read_spec_file

__all__ = [
    "NAME",
    "CdiSpec",
    "CdiSpecError",
    "Registry",
    "ResolveError",
    "modify",
    "nvshim_modifiers",
    "read_spec_file",
    "spec_files",
]

_WHERE = {
    "CdiSpec": "nvshim_cdi._spec",
    "CdiSpecError": "nvshim_cdi._spec",
    "Registry": "nvshim_cdi._registry",
    "ResolveError": "nvshim_cdi._registry",
    "read_spec_file": "nvshim_cdi._spec",
    "spec_files": "nvshim_cdi._registry",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nvshim_cdi' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

#: The modifier's name (``[nvshim] disabled-modifiers``, ``nvshim-ctl plugins``).
NAME = "cdi"


def modify(spec: Spec, context: ModifierContext) -> None:
    """Inject the CDI devices that the container asks for (the core runs it in mode ``cdi``)."""
    from nvshim_cdi._edits import apply_edits
    from nvshim_cdi._names import requested_devices
    from nvshim_cdi._registry import Registry, ResolveError

    names, source = requested_devices(spec, context)
    if not names:
        context.logger.debug("cdi: the container asks for no device")
        return
    cdi = context.config.nvidia_container_runtime.modes.cdi
    registry = Registry.load(cdi.spec_dirs, context.logger)
    try:
        devices = registry.resolve(names)
    except ResolveError as exc:
        raise ModifierError(str(exc)) from None
    context.logger.info(
        "cdi: injecting %s (asked for %s by %s)",
        ", ".join(d.name for d in devices),
        ", ".join(names),
        source,
    )
    # CDI order: a spec's own edits once, before the first of its devices' edits.
    applied_specs: set[str] = set()
    for resolved in devices:
        if resolved.path not in applied_specs:
            applied_specs.add(resolved.path)
            apply_edits(spec, resolved.spec.edits, resolved.path)
        apply_edits(spec, resolved.device.edits, resolved.path)
    # As NVIDIA's runtime does: the devices are in, nothing else must inject them again.
    spec.set_env("NVIDIA_VISIBLE_DEVICES", "void")


@hookimpl
def nvshim_modifiers() -> list[Modifier]:
    """The ``cdi`` modifier."""
    return [
        Modifier(
            NAME,
            modify,
            order=50,
            description="inject the devices of CDI specs (mode cdi)",
            modes=("cdi",),
        )
    ]
