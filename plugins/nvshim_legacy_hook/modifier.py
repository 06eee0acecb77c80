"""The legacy-hook modifier: find NVIDIA's hook and add it as a prestart hook."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nvshim.lookup import is_executable
from nvshim.modifier import ModifierError
from nvshim.nvidia import (
    HOOK_ENV,
    NVIDIA_HOOK_BASENAMES,
    NVIDIA_HOOK_NAME,
    is_nvidia_hook,
    is_standin_hook,
)
from nvshim.records import Hook

if TYPE_CHECKING:
    from nvshim.config import Config
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec

__all__ = [
    "DEFAULT_HOOK_PATH",
    "HOOK_BASENAMES",
    "HOOK_ENV",
    "HOOK_NAME",
    "NAME",
    "add_legacy_hook",
    "find_hook",
]

NAME = "legacy-hook"
HOOK_NAME = NVIDIA_HOOK_NAME
#: Used when the hook is found nowhere (NVIDIA's runtime falls back to it too).
DEFAULT_HOOK_PATH = "/usr/bin/nvidia-container-runtime-hook"
#: A prestart hook with one of these basenames is NVIDIA's hook already.
HOOK_BASENAMES = NVIDIA_HOOK_BASENAMES


def find_hook(config: Config) -> tuple[str, list[str]]:
    """The hook's path, and every place looked at to find it.

    ``[nvidia-container-runtime-hook] path`` when set to a path; else the
    first executable of that name (default ``nvidia-container-runtime-hook``)
    in PATH or the default folders; else
    :data:`DEFAULT_HOOK_PATH`.  The path returned may not exist (the caller
    decides what that means).
    """
    from nvshim.lookup import search_path

    configured = config.nvidia_container_runtime_hook.path
    if configured and "/" in configured:
        return configured, [configured]
    # NVIDIA's own config.toml names the hook by its bare name: look it up.
    # nvshim's own stand-in (there for dockerd's `--gpus`) is not NVIDIA's hook.
    candidates = search_path(configured or HOOK_NAME)
    for path in candidates:
        if is_executable(path) and not is_standin_hook(path):
            return os.path.abspath(path), candidates
    if DEFAULT_HOOK_PATH not in candidates:
        candidates.append(DEFAULT_HOOK_PATH)
    return DEFAULT_HOOK_PATH, candidates


def _asks_for_gpus(spec: Spec, context: ModifierContext) -> bool:
    try:
        return context.request(spec).gpu
    except ModifierError:
        # Only a GPU container can have a malformed legacy CUDA request.
        return True


def add_legacy_hook(spec: Spec, context: ModifierContext) -> None:
    """Add NVIDIA's hook as the last prestart hook (the core runs it in mode ``legacy``).

    Nothing changes when a prestart hook named ``nvidia-container-runtime-hook``
    or ``nvidia-container-toolkit`` is already there.  When the hook does not
    exist on the host, a container that asks for GPUs is refused with the
    places looked at; any other container runs without the hook (a warning is
    logged), so that nvshim as the default runtime does not break plain
    containers on a host without NVIDIA's toolkit.
    """
    present = [h.path for h in spec.hooks("prestart") if is_nvidia_hook(h)]
    if present:
        context.logger.debug("%s: prestart hook %s already present", NAME, present[0])
        return
    path, looked = find_hook(context.config)
    if not is_executable(path) or is_standin_hook(path):
        where = ", ".join(looked)
        if _asks_for_gpus(spec, context):
            raise ModifierError(
                f"the container asks for GPUs but {HOOK_NAME} was not found"
                f" (looked at: {where}); install the NVIDIA Container Toolkit,"
                " set [nvidia-container-runtime-hook] path, or use another mode"
            )
        context.logger.warning(
            "%s: %s not found (looked at: %s); the container asks for no GPU,"
            " so it runs without the hook",
            NAME,
            HOOK_NAME,
            where,
        )
        return
    spec.add_hook("prestart", Hook(path=path, args=(path, "prestart"), env=HOOK_ENV))
