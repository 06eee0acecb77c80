"""What a container asks the jit-cdi mode for: GPUs, gated devices, IMEX channels.

Sources and precedence are the other modes': ``cdi.k8s.io/*`` annotations
(fully qualified names) first, else :meth:`nvshim.ModifierContext.request`
(``NVIDIA_VISIBLE_DEVICES``, the swarm variables, volume mounts, a legacy
CUDA image).  A name that is not qualified (``0``, ``GPU-…``, ``0:1``,
``MIG-…``, ``all``) means ``runtime.nvidia.com/gpu=<name>``, the kind that
is generated just in time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import attrs

from nvshim.modes import AUTOMATIC_KIND
from nvshim.modifier import ModifierError
from nvshim.requests import is_cdi_name, lookup_env

if TYPE_CHECKING:
    from nvshim.modifier import ModifierContext
    from nvshim.requests import ContainerRequest
    from nvshim.spec import Spec

__all__ = ["GATED_MODES", "JitRequest", "read_jit_request"]

#: ``NVIDIA_<NAME>=enabled`` variables and the generate mode each one adds.
GATED_MODES: tuple[tuple[str, str], ...] = (
    ("NVIDIA_GDS", "gds"),
    ("NVIDIA_MOFED", "mofed"),
    ("NVIDIA_GDRCOPY", "gdrcopy"),
    ("NVIDIA_NVSWITCH", "nvswitch"),
)
ENV_IMEX_CHANNELS = "NVIDIA_IMEX_CHANNELS"
_PREFIX = AUTOMATIC_KIND + "="


@attrs.frozen
class JitRequest:
    """A container's request, as the jit-cdi modifier serves it.

    :param ids: the GPU ids asked for (``all``, indices, UUIDs, MIG ids), in
        order; ``()`` for ``none`` (driver files and control nodes only).
    :param source: where the request came from (for messages).
    :param gated: the gated generate modes asked for (``gds``, ``mofed``, …).
    :param imex: the IMEX channel ids asked for (``("all",)`` for every one).
    :param request: the core's view of the request (capabilities, requirements).
    """

    ids: tuple[str, ...]
    source: str
    gated: tuple[str, ...]
    imex: tuple[str, ...]
    request: ContainerRequest


def _annotation_names(spec: Spec, prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    names: list[str] = []
    keys: list[str] = []
    for key in sorted(spec.annotations):
        if not any(key.startswith(p) for p in prefixes if p):
            continue
        keys.append(key)
        for item in spec.annotations[key].split(","):
            name = item.strip()
            if name and name not in names:
                names.append(name)
    return names, keys


def _imex(env: list[str]) -> tuple[str, ...]:
    value = lookup_env(env, ENV_IMEX_CHANNELS)
    if not value:
        return ()
    items = [v.strip() for v in value.split(",") if v.strip()]
    if "all" in items:
        return ("all",)
    if items in (["none"], ["void"]):
        return ()
    for item in items:
        if not item.isdigit():
            raise ModifierError(
                f"{ENV_IMEX_CHANNELS}: {item!r} is not a channel id (a number, or all)"
            )
    return tuple(dict.fromkeys(items))


def read_jit_request(
    spec: Spec, context: ModifierContext, *, explicit_only: bool = False
) -> Optional[JitRequest]:
    """The request the jit-cdi modifier serves, or None when it is not for it.

    None for a container that asks for no GPU at all, and for one whose every
    device is a CDI name of another kind (the ``cdi`` modifier serves those).
    With ``explicit_only`` (mode ``cdi``), only names written as
    ``runtime.nvidia.com/gpu=<id>`` are this modifier's; a bare id is the
    ``cdi`` modifier's (its ``default-kind``).

    :raises ModifierError: for a malformed request, or one mixing
        ``runtime.nvidia.com/gpu`` names with names of other kinds.
    """
    request = context.request(spec)
    prefixes = context.config.nvidia_container_runtime.modes.cdi.annotation_prefixes
    names, keys = _annotation_names(spec, prefixes)
    if names:
        source = "annotation " + ", ".join(keys)
        for name in names:
            if not is_cdi_name(name):
                raise ModifierError(
                    f"{source}: {name!r} is not a fully qualified CDI device name"
                    " (vendor/class=name)"
                )
    else:
        if not request.gpu:
            return None
        names = list(request.devices)
        source = request.source
    automatic = [
        n for n in names if n.startswith(_PREFIX) or (not explicit_only and not is_cdi_name(n))
    ]
    if names and not automatic:
        return None  # every device is of another CDI kind: the cdi modifier's
    if len(automatic) != len(names):
        others = ", ".join(n for n in names if n not in automatic)
        raise ModifierError(
            f"{source}: devices of kind {AUTOMATIC_KIND} cannot be asked for together"
            f" with other CDI devices ({others})"
        )
    ids = tuple(dict.fromkeys(n[len(_PREFIX) :] if n.startswith(_PREFIX) else n for n in names))
    if "all" in ids:
        ids = ("all",)
    ids = tuple(i for i in ids if i != "none")
    gated: tuple[str, ...] = ()
    imex: tuple[str, ...] = ()
    if ids:  # gated devices only come with GPUs
        env = spec.env
        gated = tuple(mode for var, mode in GATED_MODES if lookup_env(env, var) == "enabled")
        imex = _imex(env)
    return JitRequest(ids, source, gated, imex, request)
