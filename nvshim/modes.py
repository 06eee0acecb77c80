"""Resolving ``mode = "auto"`` for one container.

The rules are those of NVIDIA's v1.18+ runtime (``internal/info/auto.go``),
with one difference it documents itself as a TODO: only the devices the
container asks for are considered.

1. A mode other than ``auto`` in the config is used as is (``legacy`` stays
   ``legacy``: nothing picks it automatically).
2. ``cdi`` when every requested device is a fully qualified CDI name of a
   kind other than ``runtime.nvidia.com/gpu`` (that kind is always served
   just in time).
3. ``csv`` on a Tegra host: Tegra files under the driver root
   (``/etc/nv_tegra_release`` or ``/sys/devices/soc0/family`` = ``tegra``)
   and NVML unavailable or seeing only an integrated GPU, as
   ``nvshim-ctl cdi generate --mode auto`` decides.
4. else ``jit-cdi``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# Not typing.TYPE_CHECKING: this module is imported on every create.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AUTOMATIC_KIND",
    "ModeDecision",
    "decide_mode",
    "is_tegra",
    "resolve_mode",
]

TEGRA_RELEASE = "/etc/nv_tegra_release"
SOC_FAMILY = "/sys/devices/soc0/family"

#: The CDI kind that the jit-cdi mode serves, whatever the configured mode.
AUTOMATIC_KIND = "runtime.nvidia.com/gpu"


class ModeDecision:
    """The mode a container gets, and why (shown by ``nvshim-ctl modify``)."""

    __slots__ = ("mode", "reason")

    def __init__(self, mode: str, reason: str) -> None:
        #: ``legacy``, ``csv``, ``cdi`` or ``jit-cdi``.
        self.mode = mode
        #: One line: what the decision rests on.
        self.reason = reason

    def __repr__(self) -> str:
        return f"ModeDecision({self.mode!r}, {self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModeDecision) and (self.mode, self.reason) == (
            other.mode,
            other.reason,
        )

    def __hash__(self) -> int:
        return hash((self.mode, self.reason))


def is_tegra(root: str = "/") -> bool:
    """Whether the host (files under ``root``, the driver root) is a Tegra (Jetson) system."""
    if os.path.exists(os.path.join(root, TEGRA_RELEASE.lstrip("/"))):
        return True
    try:
        with open(os.path.join(root, SOC_FAMILY.lstrip("/")), encoding="utf-8") as handle:
            return handle.read().strip().lower().startswith("tegra")
    except OSError:
        return False


def _is_automatic(name: str) -> bool:
    return name.startswith(AUTOMATIC_KIND + "=")


def decide_mode(
    configured: str,
    devices: Sequence[str],
    *,
    driver_root: str = "/",
    tegra: bool | None = None,
    nvml: bool | None = None,
    nvml_probe: Callable[[str], bool] | None = None,
) -> ModeDecision:
    """The mode for a container that requested ``devices``, with the reason.

    :param configured: the configured mode; anything but ``auto`` is kept.
    :param devices: the requested devices as the container names them
        (annotation names first, else ``NVIDIA_VISIBLE_DEVICES`` and its
        other sources); ``()`` for a container that asks for none.
    :param driver_root: where the driver's files are (``[nvidia-container-cli] root``).
    :param tegra: override the Tegra probe (tests).
    :param nvml: override the NVML probe (tests).
    :param nvml_probe: ``probe(driver_root)``: whether NVML is usable and sees
        a discrete GPU; the default loads ``libnvidia-ml.so.1`` only.
    """
    if configured != "auto":
        return ModeDecision(configured, "configured")
    from nvshim.requests import is_cdi_name

    if devices and all(is_cdi_name(d) and not _is_automatic(d) for d in devices):
        return ModeDecision("cdi", "auto: every requested device is a fully qualified CDI name")
    if tegra is None:
        tegra = is_tegra(driver_root or "/")
    if tegra:
        if nvml is None:
            if nvml_probe is None:
                from nvshim._cuda import nvml_loadable

                nvml = nvml_loadable()
            else:
                nvml = nvml_probe(driver_root or "/")
        if not nvml:
            return ModeDecision(
                "csv", "auto: Tegra host without NVML (or with only an integrated GPU)"
            )
    return ModeDecision("jit-cdi", "auto: default (devices generated just in time)")


def resolve_mode(
    configured: str,
    devices: Sequence[str],
    *,
    tegra: bool | None = None,
    nvml: bool | None = None,
) -> str:
    """The mode for a container that requested ``devices`` (see :func:`decide_mode`)."""
    return decide_mode(configured, devices, tegra=tegra, nvml=nvml).mode
