"""Applying CDI ``containerEdits`` to an OCI spec, through nvshim's Spec API.

Every edit goes through :class:`nvshim.Spec`'s methods so that the core
records it, attributes it to the ``cdi`` modifier, detects conflicts with
other modifiers and validates the result.  The rules are CDI's
(``pkg/cdi/container-edits.go``): env entries replace a variable of the same
name; a device node without type or major number takes them from the host
node; a ``c``/``b`` node gets a cgroup allow rule with its ``permissions``
(default ``rwm``); a node without an owner gets the container user's;
additional GIDs skip 0; ``intelRdt`` replaces ``linux.intelRdt``.  One rule
is nvshim's own: a hook without ``env`` is written with a host ``PATH`` only
(:data:`nvshim.records.DEFAULT_HOOK_ENV`), never without ``env``.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

from nvshim.modifier import ModifierError
from nvshim.records import DEFAULT_HOOK_ENV, Device, Hook, Mount
from nvshim.spec import readonly_data  # this plugin only reads the spec's data directly

if TYPE_CHECKING:
    from nvshim.spec import Spec
    from nvshim_cdi._spec import ContainerEdits, DeviceNode

__all__ = ["apply_edits", "host_device_info", "oci_device"]


def host_device_info(path: str) -> tuple[str, int, int]:
    """``(type, major, minor)`` of the device node at host ``path`` (links followed).

    :raises OSError: when ``path`` cannot be stat'ed.
    :raises ValueError: when it is not a character, block or FIFO node.
    """
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(st.st_mode):
        return "p", 0, 0
    else:
        raise ValueError(f"{path} is not a device node")
    return kind, os.major(st.st_rdev), os.minor(st.st_rdev)


def _process_user(spec: Spec) -> tuple[int, int]:
    user = (readonly_data(spec).get("process") or {}).get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    return (uid if isinstance(uid, int) else 0, gid if isinstance(gid, int) else 0)


def oci_device(node: DeviceNode, source: str, owner: tuple[int, int] = (0, 0)) -> Device:
    """The :class:`nvshim.records.Device` for CDI device node ``node`` of spec file ``source``.

    Type and major/minor missing from the spec are read from the host node
    (``hostPath``, else ``path``), as CDI does; a type that differs from the
    host node's is an error.

    :raises ModifierError: naming ``source`` when the host node cannot be used.
    """
    dev_type, major, minor = node.type, node.major or 0, node.minor or 0
    # CDI's rule: 0 means "not given" for the major number (no real device is 0:x).
    if not (dev_type and (major != 0 or dev_type == "p")):
        host = node.host_path or node.path
        try:
            host_type, host_major, host_minor = host_device_info(host)
        except OSError as exc:
            raise ModifierError(
                f"CDI spec {source}: cannot stat host device {host}: {exc.strerror or exc}"
            ) from None
        except ValueError as exc:
            raise ModifierError(f"CDI spec {source}: {exc}") from None
        if dev_type and dev_type != host_type:
            raise ModifierError(
                f"CDI spec {source}: device {node.path} has type {dev_type!r}"
                f" but host node {host} has type {host_type!r}"
            )
        dev_type = host_type
        if major == 0 and dev_type != "p":
            major, minor = host_major, host_minor
    uid, gid = node.uid, node.gid
    # CDI gives a node without an owner to the container's (non-root) user.
    if uid is None and owner[0] > 0:
        uid = owner[0]
    if gid is None and owner[1] > 0:
        gid = owner[1]
    return Device(
        node.path,
        dev_type,
        major,
        minor,
        file_mode=node.file_mode,
        uid=uid,
        gid=gid,
        access=node.permissions or "rwm",
    )


def apply_edits(spec: Spec, edits: ContainerEdits, source: str) -> None:
    """Apply ``edits`` (from spec file ``source``) to ``spec``.

    :raises ModifierError: naming ``source`` when an edit cannot be applied.
    """
    for entry in edits.env:
        name, _, value = entry.partition("=")
        spec.set_env(name, value)
    owner = _process_user(spec)
    for node in edits.device_nodes:
        spec.add_device(oci_device(node, source, owner))
    for mount in edits.mounts:
        spec.add_mount(
            Mount(
                mount.container_path,
                source=mount.host_path,
                type=mount.type,
                options=mount.options,
            )
        )
    for hook in edits.hooks:
        # A hook without env would get the container's from runc (its
        # LD_PRELOAD, PATH ...): it gets a host PATH and nothing else.
        env = DEFAULT_HOOK_ENV if hook.env is None else hook.env
        spec.add_hook(
            hook.hook_name, Hook(hook.path, args=hook.args, env=env, timeout=hook.timeout)
        )
    gids = [gid for gid in edits.additional_gids if gid != 0]
    if gids:
        spec.add_additional_gids(gids)
    if edits.intel_rdt is not None:
        _set_linux_field(spec, "intelRdt", dict(edits.intel_rdt))
    if edits.net_devices:
        current = (readonly_data(spec).get("linux") or {}).get("netDevices") or {}
        merged = dict(current)
        for host, name in edits.net_devices:
            merged[host] = {"name": name}
        _set_linux_field(spec, "netDevices", merged)


def _set_linux_field(spec: Spec, key: str, value: Any) -> None:
    """Set ``linux.<key>`` through the Spec API (attributed and conflict-checked)."""
    spec.set_linux(key, value)
