"""Applying a jit-cdi request: inventory, selection, requirements, gated devices, edits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nvshim.modes import AUTOMATIC_KIND
from nvshim.modifier import ModifierError

if TYPE_CHECKING:
    from nvshim.inventory import GpuInfo, HostInventory
    from nvshim.modifier import ModifierContext
    from nvshim.spec import Spec
    from nvshim_jit_cdi._request import JitRequest

__all__ = ["KNOWN_FEATURE_FLAGS", "check_requirements", "inject_request"]

#: nvcdi feature flags that nvshim honours; others are logged and ignored.
KNOWN_FEATURE_FLAGS: frozenset[str] = frozenset()


def check_requirements(request: JitRequest, inventory: HostInventory, gpus: list[GpuInfo]) -> None:
    """``NVIDIA_REQUIRE_*``/``CUDA_VERSION`` against the host and every selected GPU.

    :raises ModifierError: naming the requirement the host fails.
    """
    if request.request.disable_require or not request.request.requirements:
        return  # most containers: no need to import the requirement parser
    from nvshim.requirements import HostProperties, RequirementError, RequirementsNotMet

    base: dict[str, Any] = {
        "cuda": inventory.cuda_version or None,
        "driver": inventory.driver_version or None,
    }
    hosts = [
        HostProperties(
            **base,
            arch=gpu.compute_capability or None,
            brand=gpu.brand or None,
        )
        for gpu in (gpus or inventory.gpus[:1])
    ] or [HostProperties(**base)]
    for host in hosts:
        try:
            request.request.check_requirements(host)
        except (RequirementError, RequirementsNotMet) as exc:
            raise ModifierError(str(exc)) from None


def _gated_spec(mode: str, driver_root: str, dev_root: str) -> dict[str, Any]:
    """The CDI spec of a gated ``mode`` (gds, mofed, gdrcopy, nvswitch, imex) for this host."""
    from nvshim.host import HostError
    from nvshim.host.cdi import GenerateOptions, generate

    try:
        return generate(GenerateOptions(mode=mode, driver_root=driver_root, dev_root=dev_root))
    except HostError as exc:
        raise ModifierError(f"cannot find the {mode} devices: {exc}") from None


def inject_request(spec: Spec, context: ModifierContext, request: JitRequest) -> None:
    """Inject what ``request`` asks for; :class:`ModifierError` when it cannot be served."""
    from nvshim_cdi import inject

    from nvshim.inventory import InventoryError, load_inventory
    from nvshim_jit_cdi._select import jit_spec, select_devices

    config = context.config
    options = config.nvidia_container_runtime.modes.jit_cdi
    for flag in options.nvcdi_feature_flags:
        if flag not in KNOWN_FEATURE_FLAGS:
            context.logger.debug("jit-cdi: nvcdi feature flag %s has no effect in nvshim", flag)
    driver_root = config.nvidia_container_cli.root or "/"
    try:
        result = load_inventory(driver_root)
    except InventoryError as exc:
        raise ModifierError(f"cannot read the host's GPUs: {exc}") from None
    inventory = result.inventory
    context.logger.debug(
        "jit-cdi: host inventory %s (%s)",
        result.path or "not cached",
        "cache hit" if result.cached else f"rebuilt: {result.reason}",
    )
    names, gpus = select_devices(inventory, request.ids, request.source)
    check_requirements(request, inventory, gpus)
    generated = jit_spec(
        inventory, request.request.capabilities, options.nvcdi_disable_hooks, names
    )
    inject(spec, generated, names, f"{AUTOMATIC_KIND} (generated just in time)")
    for mode in request.gated:
        gated = _gated_spec(mode, driver_root, inventory.dev_root)
        have = [d["name"] for d in gated.get("devices", [])]
        inject(spec, gated, ["all"] if "all" in have else have, mode)
    if request.imex:
        imex = _gated_spec("imex", driver_root, inventory.dev_root)
        have = [d["name"] for d in imex.get("devices", [])]
        wanted = [n for n in have if n != "all"] if request.imex == ("all",) else list(request.imex)
        unknown = [c for c in wanted if c not in have]
        if unknown:
            raise ModifierError(
                f"NVIDIA_IMEX_CHANNELS: unknown IMEX channel {', '.join(unknown)};"
                f" this host has: {', '.join(n for n in have if n != 'all') or 'none'}"
            )
        inject(spec, imex, wanted, "imex")
    spec.set_env("NVIDIA_VISIBLE_DEVICES", "void")
    context.logger.info(
        "jit-cdi: injected %s (asked for %s by %s)%s",
        ", ".join(names) or "driver files only",
        ", ".join(request.ids) or "none",
        request.source,
        "".join(f", {m}" for m in request.gated) + (", imex" if request.imex else ""),
    )
