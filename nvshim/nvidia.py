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

__all__ = [
    "HOOK_ENV",
    "NVIDIA_HOOK_BASENAMES",
    "NVIDIA_HOOK_NAME",
    "STANDIN_MARKER",
    "is_nvidia_hook",
    "is_standin_hook",
]

#: NVIDIA's prestart hook (``nvidia-container-runtime-hook``).
NVIDIA_HOOK_NAME = "nvidia-container-runtime-hook"
#: A prestart hook with one of these basenames is NVIDIA's hook: Docker's
#: ``--gpus`` inserts ``nvidia-container-runtime-hook``; newer toolkits
#: install it as ``nvidia-container-toolkit`` too.
NVIDIA_HOOK_BASENAMES = frozenset({NVIDIA_HOOK_NAME, "nvidia-container-toolkit"})
#: The environment of every hook nvshim writes into a spec (the same object
#: as :data:`nvshim.records.DEFAULT_HOOK_ENV`, a ``Hook``'s default ``env``).
HOOK_ENV = DEFAULT_HOOK_ENV


#: The line that marks nvshim's own ``nvidia-container-runtime-hook``
#: stand-in (installed so that dockerd accepts ``--gpus``; it refuses to run).
STANDIN_MARKER = b"# nvshim-stand-in-hook"


def is_standin_hook(path: str) -> bool:
    """Whether ``path`` is nvshim's stand-in for NVIDIA's hook (not NVIDIA's hook).

    The stand-in is a small ``/bin/sh`` script whose second line is
    :data:`STANDIN_MARKER`; only the first 256 bytes are read.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    return head.startswith(b"#!") and STANDIN_MARKER in head.split(b"\n", 2)[1:2]


def is_nvidia_hook(hook: Hook) -> bool:
    """Whether ``hook`` is NVIDIA's prestart hook (by its path's basename)."""
    return os.path.basename(hook.path) in NVIDIA_HOOK_BASENAMES
