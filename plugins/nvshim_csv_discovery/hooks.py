"""The createContainer hooks csv-discovery adds: create-symlinks, update-ldcache.

The executable is ``[nvidia-ctk] path`` when the config sets it, else the
absolute path of the ``nvshim-ctl`` installed with nvshim.  When it is one of
NVIDIA's programs (``nvidia-ctk``, which takes ``hook <name>``, or
``nvidia-cdi-hook``, which takes ``<name>``), only the arguments NVIDIA's
hooks accept are written: ``--link``, ``--folder`` and, for an ldconfig other
than NVIDIA's default ``/sbin/ldconfig``, ``--ldconfig-path`` with a plain
host path (NVIDIA's hook adds the ``@`` itself; v1.15 and later know the
flag).  The hooks' environment is set explicitly: nothing of the
container's reaches them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from nvshim.lookup import find_executable, is_executable
from nvshim.nvidia import HOOK_ENV
from nvshim.records import Hook

if TYPE_CHECKING:
    from nvshim.config import Config

__all__ = [
    "HOOK_ENV",
    "NVIDIA_HOOK_PROGRAMS",
    "HookNotFound",
    "create_symlinks_hook",
    "find_hook_executable",
    "find_nvshim_ctl",
    "update_ldcache_hook",
]

CTL_NAME = "nvshim-ctl"
#: NVIDIA's hook programs, by file name, and the words before a hook's name.
NVIDIA_HOOK_PROGRAMS = {"nvidia-ctk": ("hook",), "nvidia-cdi-hook": ()}
#: The ldconfig NVIDIA's update-ldcache runs when given no ``--ldconfig-path``
#: (it prefers ``/sbin/ldconfig.real`` when that exists, as nvshim-ctl does).
_NVIDIA_DEFAULT_LDCONFIG = "/sbin/ldconfig"


class HookNotFound(Exception):
    """No hook executable could be found; the message says where nvshim looked."""


def _candidates() -> Iterator[str]:
    import sys

    # Next to the interpreter first: a venv's bin folder holds both, and its
    # python may be a link, so the unresolved path is the one to use.
    yield os.path.join(os.path.dirname(os.path.abspath(sys.executable)), CTL_NAME)
    # Only when that one is missing: importing sysconfig costs about 1 ms of a
    # csv create, and nvshim-ctl is nearly always beside the interpreter.
    import sysconfig

    yield os.path.join(sysconfig.get_path("scripts"), CTL_NAME)
    from nvshim.lookup import search_path

    yield from search_path(CTL_NAME)


def find_nvshim_ctl() -> str:
    """The absolute path of ``nvshim-ctl``.

    Looked for next to ``sys.executable``, in the interpreter's scripts
    folder, then in PATH and the default folders.

    :raises HookNotFound: naming every place looked at.
    """
    looked: list[str] = []
    for path in _candidates():
        if path in looked:
            continue
        if is_executable(path):
            return path
        looked.append(path)
    raise HookNotFound(f"{CTL_NAME} not found (looked at: {', '.join(looked)})")


def find_hook_executable(config: Config) -> str:
    """The program the hooks run: ``[nvidia-ctk] path`` if set, else :func:`find_nvshim_ctl`.

    NVIDIA's own config.toml sets ``path = "nvidia-ctk"``, a bare name: it is
    looked up in PATH and the default folders, as NVIDIA's runtime does.  A
    host that replaced NVIDIA's toolkit with nvshim may no longer have
    ``nvidia-ctk``; then nvshim's own ``nvshim-ctl``, which takes the same
    ``hook`` arguments, is used.  A relative path with a folder is refused.
    """
    configured = config.nvidia_ctk.path
    if not configured:
        return find_nvshim_ctl()
    if os.path.isabs(configured):
        return configured
    if "/" in configured:
        raise HookNotFound(f"[nvidia-ctk] path {configured!r} is not an absolute path")
    return find_executable(configured) or find_nvshim_ctl()


def _is_nvidia(executable: str) -> bool:
    return os.path.basename(executable) in NVIDIA_HOOK_PROGRAMS


def _command(executable: str, name: str) -> list[str]:
    """``[executable, "hook", name]``, or ``[executable, name]`` for ``nvidia-cdi-hook``."""
    words = NVIDIA_HOOK_PROGRAMS.get(os.path.basename(executable), ("hook",))
    return [executable, *words, name]


def _nvidia_ldconfig(ldconfig: str) -> str | None:
    """The ``--ldconfig-path`` value for NVIDIA's hook; None to leave its default.

    NVIDIA's hook takes a host path without ``@`` (it prepends one; an ``@``
    given makes it look for ``@/sbin/ldconfig``).  Its default is left
    implicit, so that hooks older than v1.15, which lack the flag, work too.
    """
    path = ldconfig[1:] if ldconfig.startswith("@") else ldconfig
    if path in (_NVIDIA_DEFAULT_LDCONFIG, _NVIDIA_DEFAULT_LDCONFIG + ".real"):
        return None
    return path


def update_ldcache_hook(executable: str, folders: Sequence[str], ldconfig: str | None) -> Hook:
    """``<exe> hook update-ldcache --folder D ... [--ldconfig-path P]``.

    For NVIDIA's programs the ldconfig is written as they take it (see
    :func:`_nvidia_ldconfig`).
    """
    args = _command(executable, "update-ldcache")
    for folder in folders:
        args += ["--folder", folder]
    if ldconfig and _is_nvidia(executable):
        ldconfig = _nvidia_ldconfig(ldconfig)
    if ldconfig:
        args += ["--ldconfig-path", ldconfig]
    return Hook(path=executable, args=args, env=HOOK_ENV)


def create_symlinks_hook(executable: str, links: Sequence[tuple[str, str]]) -> Hook:
    """``<exe> hook create-symlinks --link TARGET::LINK ...``."""
    args = _command(executable, "create-symlinks")
    for target, link in links:
        args += ["--link", f"{target}::{link}"]
    return Hook(path=executable, args=args, env=HOOK_ENV)
