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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nvshim.hookspecs import hookimpl
from nvshim.modifier import Modifier, ModifierError

if TYPE_CHECKING:
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec
    from nvshim_cdi._registry import Registry, ResolveError, spec_files
    from nvshim_cdi._spec import CdiSpec, CdiSpecError, read_spec_file

__all__ = [
    "AUTOMATIC_PREFIX",
    "NAME",
    "CdiSpec",
    "CdiSpecError",
    "Registry",
    "ResolveError",
    "inject",
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
#: Devices of this kind are generated just in time by the ``jit-cdi`` modifier,
#: in every mode, as NVIDIA's runtime does; this modifier leaves them alone.
AUTOMATIC_PREFIX = "runtime.nvidia.com/gpu="


def inject(spec: Spec, data: Mapping[str, Any], names: Sequence[str], source: str) -> None:
    """Apply a CDI spec given as its JSON object: its own edits, then each named device's.

    The same edit code as for spec files (CDI's rules, attribution, conflict
    checks), for modifiers that build a CDI spec in memory (``jit-cdi``).

    :param data: the spec, as a CDI spec file's JSON object.
    :param names: the device names (not qualified) to apply, in order.
    :param source: what the spec is called in error messages.
    :raises ModifierError: when the spec is not valid CDI, names a device it
        does not define, or an edit cannot be applied.
    """
    from nvshim_cdi._edits import apply_edits
    from nvshim_cdi._spec import CdiSpecError, parse_spec

    try:
        parsed = parse_spec(data, source)
    except CdiSpecError as exc:
        raise ModifierError(str(exc)) from None
    devices = {d.name: d for d in parsed.devices}
    missing = [n for n in names if n not in devices]
    if missing:
        raise ModifierError(f"{source}: no device {', '.join(missing)}")
    apply_edits(spec, parsed.edits, source)
    for name in names:
        apply_edits(spec, devices[name].edits, source)


def modify(spec: Spec, context: ModifierContext) -> None:
    """Inject the CDI devices that the container asks for (modes ``cdi`` and ``jit-cdi``).

    In mode ``jit-cdi`` it serves a request made only of fully qualified
    names of other kinds than ``runtime.nvidia.com/gpu``, as NVIDIA's runtime
    does; that kind is left to the ``jit-cdi`` modifier in both modes.
    """
    if context.mode == "jit-cdi" and not _only_named(spec, context):
        return
    from nvshim_cdi._edits import apply_edits
    from nvshim_cdi._names import requested_devices
    from nvshim_cdi._registry import Registry, ResolveError

    names, source = requested_devices(spec, context)
    names = [n for n in names if not n.startswith(AUTOMATIC_PREFIX)]
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


def _only_named(spec: Spec, context: ModifierContext) -> bool:
    """Whether the container named every device it asks for by a CDI name (jit-cdi mode)."""
    from nvshim.requests import is_cdi_name
    from nvshim_cdi._names import annotation_devices

    cdi = context.config.nvidia_container_runtime.modes.cdi
    names, _keys = annotation_devices(spec.annotations, cdi.annotation_prefixes)
    if not names:
        request = context.request(spec)
        names = list(request.devices if request.gpu else ())
    return bool(names) and all(is_cdi_name(n) and not n.startswith(AUTOMATIC_PREFIX) for n in names)


@hookimpl
def nvshim_modifiers() -> list[Modifier]:
    """The ``cdi`` modifier."""
    return [
        Modifier(
            NAME,
            modify,
            description="inject the devices of CDI specs (mode cdi; CDI names in jit-cdi)",
            modes=("cdi", "jit-cdi"),
        )
    ]
