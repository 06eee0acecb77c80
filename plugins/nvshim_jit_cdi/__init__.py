"""The ``jit-cdi`` modifier: CDI devices generated just in time for each container.

Active in mode ``jit-cdi`` (what ``auto`` resolves to on a GPU server), and
in mode ``cdi`` for devices of kind ``runtime.nvidia.com/gpu``.  It reads the
container's request (``NVIDIA_VISIBLE_DEVICES`` and its other sources, or
``cdi.k8s.io/*`` annotations), looks the GPUs up in the host inventory
(:mod:`nvshim.inventory`, cached, so that a create does not call NVML),
builds the CDI spec of exactly those devices with the driver files of the
requested capabilities, adds the gated devices (GDS, MOFED, GDRCopy,
NVSwitch, IMEX channels) asked for, checks ``NVIDIA_REQUIRE_*`` against the
host and applies the result with the ``cdi`` modifier's edit code.
Afterwards ``NVIDIA_VISIBLE_DEVICES`` is ``void``.  Only nvshim's public API
is used, like any third-party plugin.  See ``docs/modifiers/jit-cdi.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvshim.hookspecs import hookimpl
from nvshim.modifier import Modifier

if TYPE_CHECKING:
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec

__all__ = ["NAME", "modify", "nvshim_modifiers"]

#: The modifier's name (``[nvshim] disabled-modifiers``, ``nvshim-ctl plugins``).
NAME = "jit-cdi"


def modify(spec: Spec, context: ModifierContext) -> None:
    """Inject the GPUs the container asks for, generated from the host inventory.

    The core runs it in modes ``jit-cdi`` and ``cdi`` (where only devices
    named explicitly are generated).
    """
    from nvshim_jit_cdi._inject import inject_request
    from nvshim_jit_cdi._request import read_jit_request

    request = read_jit_request(spec, context, explicit_only=context.mode == "cdi")
    if request is None:
        context.logger.debug("jit-cdi: the container asks for no GPU generated just in time")
        return
    inject_request(spec, context, request)


@hookimpl
def nvshim_modifiers() -> list[Modifier]:
    """The ``jit-cdi`` modifier."""
    return [
        Modifier(
            NAME,
            modify,
            description="inject GPUs through CDI specs generated just in time (mode jit-cdi)",
            modes=("jit-cdi", "cdi"),
        )
    ]
