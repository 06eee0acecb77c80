"""Which CDI devices a container asks for.

Annotations whose key starts with one of ``annotation-prefixes`` (default
``cdi.k8s.io/``) hold comma-separated fully qualified names; when any is
present they are the request.  Otherwise the request is the one
:func:`nvshim.requests.read_request` reads (``NVIDIA_VISIBLE_DEVICES``, the
swarm variable, volume mounts, a legacy CUDA image), where a name that is not
fully qualified (``0``, ``all``, a UUID) means ``<default-kind>=<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nvshim.modifier import ModifierError
from nvshim.requests import is_cdi_name

if TYPE_CHECKING:
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec

__all__ = ["annotation_devices", "requested_devices"]


def annotation_devices(
    annotations: Mapping[str, str], prefixes: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``(names, keys)``: the devices named by the annotations with one of ``prefixes``.

    Keys are read in sorted order so the result does not depend on how the
    engine ordered its annotations.

    :raises ModifierError: for a name that is not fully qualified.
    """
    names: list[str] = []
    keys: list[str] = []
    for key in sorted(annotations):
        if not any(key.startswith(prefix) for prefix in prefixes if prefix):
            continue
        keys.append(key)
        for item in annotations[key].split(","):
            name = item.strip()
            if not name:
                continue
            if not is_cdi_name(name):
                raise ModifierError(
                    f"annotation {key}: {name!r} is not a fully qualified CDI device name"
                    " (vendor/class=name)"
                )
            if name not in names:
                names.append(name)
    return names, keys


def requested_devices(spec: Spec, context: ModifierContext) -> tuple[list[str], str]:
    """``(names, source)``: the fully qualified devices ``spec`` asks for, and from where.

    ``([], "")`` when the container asks for no device (not a GPU container,
    or ``none``).

    :raises ModifierError: for a malformed request.
    """
    cdi = context.config.nvidia_container_runtime.modes.cdi
    names, keys = annotation_devices(spec.annotations, cdi.annotation_prefixes)
    if names:
        return names, "annotation " + ", ".join(keys)

    request = context.request(spec)
    if not request.gpu or not request.devices:
        return [], ""
    qualified = []
    for device in request.devices:
        name = device if is_cdi_name(device) else f"{cdi.default_kind}={device}"
        if name not in qualified:
            qualified.append(name)
    return qualified, request.source
