"""nvshim-host-mounts: bind-mount a host folder named by an annotation.

A container asks for host folders with the annotation
``nvshim.io/host-mounts`` (the name is configurable)::

    nvshim.io/host-mounts = "/srv/datasets/imagenet:/data,/srv/models"

Each comma-separated entry is ``HOST[:CONTAINER]``; the container path
defaults to the host path.  Each folder must lie inside one of the folders
listed in the plugin's configuration, else the container is refused::

    [nvshim.plugins.host-mounts]
    allow = ["/srv/datasets", "/srv/models"]
    read-only = true

This module is also the template the plugin tutorial
(``docs/plugins/tutorial.md``) starts from.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from nvshim import Modifier, ModifierContext, ModifierError, Mount, Spec, hookimpl
from nvshim.records import check_container_path

__all__ = ["DEFAULT_ANNOTATION", "HostMountsConfig", "host_mounts", "nvshim_modifiers"]

__version__ = "0.1.0"

#: The annotation read when the config does not name another.
DEFAULT_ANNOTATION = "nvshim.io/host-mounts"


def _absolute_folders(_inst: Any, attribute: Any, value: tuple[str, ...]) -> None:
    for folder in value:
        if not isinstance(folder, str) or not os.path.isabs(folder):
            raise ValueError(f"{attribute.name}: {folder!r} is not an absolute path")


@attrs.frozen
class HostMountsConfig:
    """The ``[nvshim.plugins.host-mounts]`` table.

    :param allow: host folders that may be mounted, with everything below
        them.  Empty (the default) refuses every request.
    :param annotation: the annotation that lists the folders to mount.
    :param read_only: mount read-only (``read-only`` in the file).
    """

    allow: tuple[str, ...] = attrs.field(default=(), validator=_absolute_folders)
    annotation: str = DEFAULT_ANNOTATION
    read_only: bool = True


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _parse(entry: str) -> tuple[str, str]:
    host, sep, container = entry.partition(":")
    return host.strip(), (container.strip() if sep else host.strip())


def host_mounts(spec: Spec, context: ModifierContext) -> None:
    """Add a bind mount for each folder the annotation names, refusing any outside ``allow``.

    The host path is resolved (symlinks included) before it is compared with
    the allow list, so a link inside an allowed folder cannot lead out of it.
    """
    options: HostMountsConfig = context.options
    requested = spec.annotations.get(options.annotation, "").strip()
    if not requested:
        return
    allowed = [os.path.realpath(folder) for folder in options.allow]
    for entry in filter(None, (part.strip() for part in requested.split(","))):
        host, container = _parse(entry)
        if not os.path.isabs(host) or ".." in host.split("/"):
            raise ModifierError(
                f"{options.annotation}: host path {host!r} is not a clean absolute path"
            )
        try:
            check_container_path(container, "container path")
        except ValueError as exc:
            raise ModifierError(f"{options.annotation}: {exc}") from None
        real = os.path.realpath(host)
        if not any(_inside(real, folder) for folder in allowed):
            where = ", ".join(options.allow) or "nothing (allow is empty)"
            shown = host if real == host else f"{host} (resolves to {real})"
            raise ModifierError(
                f"{options.annotation}: {shown} is outside the allowed folders: {where}"
            )
        if not os.path.isdir(real):
            raise ModifierError(f"{options.annotation}: {host} is not a folder on this host")
        flags = ["rbind", "nosuid", "nodev", "ro" if options.read_only else "rw"]
        spec.add_mount(Mount(container, source=real, type="bind", options=flags))
        context.logger.debug("host-mounts: %s -> %s", real, container)


@hookimpl
def nvshim_modifiers() -> list[Modifier]:
    """The plugin's one modifier, ``host-mounts``."""
    return [
        Modifier(
            "host-mounts",
            host_mounts,
            order=60,
            description="bind-mount host folders named by an annotation, within an allow list",
            config_class=HostMountsConfig,
        )
    ]
