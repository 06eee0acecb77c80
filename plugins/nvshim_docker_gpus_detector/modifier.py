"""The docker-gpus-detector modifier and its configuration table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from nvshim.config import MODES as CONFIG_MODES
from nvshim.modifier import ModifierError
from nvshim.nvidia import NVIDIA_HOOK_BASENAMES, is_nvidia_hook

if TYPE_CHECKING:
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec

__all__ = ["HOOK_BASENAMES", "NAME", "ON_HOOK_CHOICES", "DetectorOptions", "remove_docker_hook"]

NAME = "docker-gpus-detector"
#: Basenames of NVIDIA's hook as Docker's ``--gpus`` inserts it.
HOOK_BASENAMES = NVIDIA_HOOK_BASENAMES
ON_HOOK_CHOICES = ("remove", "error")
#: Every mode but ``legacy``, where NVIDIA's hook is what serves the request.
MODES = tuple(mode for mode in CONFIG_MODES if mode not in ("auto", "legacy"))


@attrs.frozen
class DetectorOptions:
    """``[nvshim.plugins.docker-gpus-detector]``.

    :param on_hook: ``remove`` (default): drop NVIDIA's prestart hook and let
        the active mode serve the request; ``error``: refuse the container.
    """

    on_hook: str = attrs.field(default="remove", validator=attrs.validators.in_(ON_HOOK_CHOICES))


def remove_docker_hook(spec: Spec, context: ModifierContext) -> None:
    """Remove NVIDIA's prestart hooks, keeping the others in order (see :data:`MODES`).

    :raises ModifierError: with ``on-hook = "error"`` when such a hook is there.
    """
    options = context.options if isinstance(context.options, DetectorOptions) else DetectorOptions()
    found = [h.path for h in spec.hooks("prestart") if is_nvidia_hook(h)]
    if not found:
        return
    if options.on_hook == "error":
        raise ModifierError(
            f"the spec holds NVIDIA's prestart hook {found[0]}, which docker run --gpus"
            f" inserts; nvshim serves GPUs itself in {context.mode} mode: run the container"
            " with --runtime=nvshim (and NVIDIA_VISIBLE_DEVICES) instead of --gpus"
        )
    removed = spec.remove_hooks("prestart", is_nvidia_hook)
    context.logger.info(
        "%s: removed %d NVIDIA prestart hook(s) (%s); the request is served by %s mode",
        NAME,
        removed,
        ", ".join(found),
        context.mode,
    )
