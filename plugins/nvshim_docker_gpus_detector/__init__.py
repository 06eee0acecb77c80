"""docker-gpus-detector: serve ``docker run --gpus`` in csv and cdi modes.

Docker's ``--gpus`` inserts NVIDIA's ``nvidia-container-runtime-hook`` as a
prestart hook.  In every mode but ``legacy`` nvshim serves the request itself,
so this modifier removes that hook (or, with ``on-hook = "error"``, refuses
the container).  It runs before every other modifier.  See
``docs/modifiers/docker-gpus-detector.md``.
"""

from __future__ import annotations

from nvshim import Modifier, hookimpl
from nvshim_docker_gpus_detector.modifier import (
    MODES,
    NAME,
    DetectorOptions,
    remove_docker_hook,
)

__all__ = ["NAME", "DetectorOptions", "nvshim_modifiers", "remove_docker_hook"]


@hookimpl
def nvshim_modifiers() -> list[Modifier]:
    """The ``docker-gpus-detector`` modifier (order 10, every mode but ``legacy``)."""
    return [
        Modifier(
            NAME,
            remove_docker_hook,
            order=10,
            description="remove the NVIDIA prestart hook that docker --gpus inserts"
            " (every mode but legacy)",
            config_class=DetectorOptions,
            modes=MODES,
        )
    ]
