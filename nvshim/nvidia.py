"""Names of NVIDIA's Container Toolkit that nvshim and its plugins share.

Defined once here, so that the modifier that adds NVIDIA's hook and the one
that removes it (and anything else that recognises it) agree.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nvshim.records import DEFAULT_HOOK_ENV

if TYPE_CHECKING:
    from nvshim.records import Hook

__all__ = ["HOOK_ENV", "NVIDIA_HOOK_BASENAMES", "NVIDIA_HOOK_NAME", "is_nvidia_hook"]

#: NVIDIA's prestart hook (``nvidia-container-runtime-hook``).
NVIDIA_HOOK_NAME = "nvidia-container-runtime-hook"
#: A prestart hook with one of these basenames is NVIDIA's hook: Docker's
#: ``--gpus`` inserts ``nvidia-container-runtime-hook``; newer toolkits
#: install it as ``nvidia-container-toolkit`` too.
NVIDIA_HOOK_BASENAMES = frozenset({NVIDIA_HOOK_NAME, "nvidia-container-toolkit"})
#: The environment of every hook nvshim writes into a spec (the same object
#: as :data:`nvshim.records.DEFAULT_HOOK_ENV`, a ``Hook``'s default ``env``).
HOOK_ENV = DEFAULT_HOOK_ENV


def is_nvidia_hook(hook: Hook) -> bool:
    """Whether ``hook`` is NVIDIA's prestart hook (by its path's basename)."""
    return os.path.basename(hook.path) in NVIDIA_HOOK_BASENAMES
