"""The csv-discovery modifier: devices, mounts and hooks from CSV files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from nvshim.modifier import ModifierError
from nvshim.spec import readonly_data
from nvshim_csv_discovery.csvfiles import DEFAULT_FILES, find_csv_files, parse_csv_file
from nvshim_csv_discovery.discovery import Discovery, discover
from nvshim_csv_discovery.hooks import (
    HookNotFound,
    create_symlinks_hook,
    find_hook_executable,
    update_ldcache_hook,
)

if TYPE_CHECKING:
    from nvshim.config import Config
    from nvshim.modifier import ModifierContext
    from nvshim.records import Hook
    from nvshim.spec import Spec

__all__ = ["ALL_FILES_REQUEST", "NAME", "add_csv_devices", "discover_for"]

from nvshim_csv_discovery import NAME

#: ``NVIDIA_REQUIRE_JETPACK`` value that makes every CSV file count.
ALL_FILES_REQUEST = "csv-mounts=all"
_STAGE = "createContainer"


def discover_for(
    config: Config, all_files: bool, context: ModifierContext | None = None
) -> Discovery:
    """Read the CSV files that ``config`` points at and look them up on the host.

    :param all_files: read every ``*.csv`` file, not only
        :data:`~nvshim_csv_discovery.csvfiles.DEFAULT_FILES`.
    :param context: the modifier context whose logger gets the warnings
        (None: they are dropped).
    """

    def emit(message: str) -> None:
        if context is not None:
            context.logger.warning("%s: %s", NAME, message)

    folder = config.nvidia_container_runtime.modes.csv.mount_spec_path
    files = find_csv_files(folder, None if all_files else sorted(DEFAULT_FILES))
    if not files:
        # A GPU container without its GPU must never go unnoticed: the usual
        # cause is a wrong mount-spec-path or a host without the CSV files.
        wanted = "*.csv" if all_files else ", ".join(sorted(DEFAULT_FILES))
        emit(f"no CSV file ({wanted}) found in {folder}: the container gets no GPU files")
    entries = [entry for path in files for entry in parse_csv_file(path, emit)]
    return discover(entries, config.nvidia_container_cli.root, emit)


def _process_user(spec: Spec) -> tuple[int, int]:
    """``process.user``'s uid and gid (0 when unset or not a number)."""
    process = readonly_data(spec).get("process")  # only read: see Spec.raw
    user = process.get("user") if isinstance(process, dict) else None
    if not isinstance(user, dict):
        return 0, 0
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    return (
        uid if isinstance(uid, int) and not isinstance(uid, bool) else 0,
        gid if isinstance(gid, int) and not isinstance(gid, bool) else 0,
    )


def _add_hook_once(spec: Spec, hook: Hook) -> None:
    # An engine that retries a create hands back a spec we already edited.
    if hook not in spec.hooks(_STAGE):
        spec.add_hook(_STAGE, hook)


def add_csv_devices(spec: Spec, context: ModifierContext) -> None:
    """Inject what the host's CSV files list into a GPU container (mode ``csv`` only).

    A container that asks for no GPU is left alone.  Requirements
    (``NVIDIA_REQUIRE_*``) are checked first.

    :raises ModifierError: a request that cannot be read, unmet or malformed
        requirements, or no hook executable.
    """
    request = context.request(spec)
    if not request.gpu:
        context.logger.debug("%s: not a GPU container; nothing to do", NAME)
        return
    # RequirementsNotMet is an NvshimError: the core reports it as this
    # modifier's refusal.  A malformed expression is a ValueError.
    try:
        request.check_requirements()
    except Exception as exc:
        # Imported here: nvshim.requirements (attrs classes, patterns) loads
        # only when a container states requirements, not on every create.
        from nvshim.requirements import RequirementError

        if isinstance(exc, RequirementError):
            raise ModifierError(str(exc)) from None
        raise

    all_files = spec.get_env("NVIDIA_REQUIRE_JETPACK") == ALL_FILES_REQUEST
    found = discover_for(context.config, all_files, context)
    context.logger.debug(
        "%s: %d device(s), %d mount(s), %d link(s)",
        NAME,
        len(found.devices),
        len(found.mounts),
        len(found.links),
    )
    if not (found.devices or found.mounts or found.links):
        return
    hooks: list[Hook] = []
    if found.ldcache_folders or found.links:
        try:
            executable = find_hook_executable(context.config)
        except HookNotFound as exc:
            raise ModifierError(str(exc)) from None
        # Links first (as NVIDIA's runtime since v1.17): ldconfig then builds
        # the cache with every library's links in place.
        if found.links:
            hooks.append(create_symlinks_hook(executable, found.links))
        if found.ldcache_folders:
            ldconfig = context.config.nvidia_container_cli.ldconfig or None
            hooks.append(update_ldcache_hook(executable, found.ldcache_folders, ldconfig))
    uid, gid = _process_user(spec)
    for device in found.devices:
        # As NVIDIA does: no mode (the runtime's default, 0666) and the
        # container user as owner, so a non-root process can open the node.
        if uid > 0 or gid > 0:
            device = attrs.evolve(device, uid=uid or None, gid=gid or None)
        spec.add_device(device)
    for mount in found.mounts:
        spec.add_mount(mount)
    for hook in hooks:
        _add_hook_once(spec, hook)
