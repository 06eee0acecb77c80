"""The CDI registry: every device that the spec folders define.

Spec files (``*.json``, ``*.yaml``, ``*.yml``, directly in each folder,
sorted by name) are read from the configured spec folders.  A folder listed
later has priority over one listed earlier (``/var/run/cdi`` over
``/etc/cdi`` by default): its definition of a device replaces the earlier
one.  Two files of the *same* priority that define the same device make that
device unusable (it is dropped from both; asking for it is an error naming
both files), because nothing says which one the administrator meant.  A file
that cannot be parsed or checked is skipped with a warning naming it; the
other files stay usable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Optional

import attrs

from nvshim_cdi._spec import (
    SPEC_EXTENSIONS,
    CdiDevice,
    CdiSpec,
    CdiSpecError,
    read_spec_file,
    unsafe_owner,
)

if TYPE_CHECKING:
    from nvshim import Logger

__all__ = ["Registry", "ResolveError", "ResolvedDevice", "spec_files"]


class ResolveError(LookupError):
    """A requested device that the registry cannot give (unknown or in conflict)."""


@attrs.frozen
class ResolvedDevice:
    """A device of the registry, with the spec (and so the file) it comes from."""

    name: str  # vendor/class=name
    spec: CdiSpec
    device: CdiDevice
    priority: int

    @property
    def path(self) -> str:
        """The spec file that defines the device."""
        return self.spec.path


def spec_files(folder: str) -> list[str]:
    """The spec files directly in ``folder``, sorted; ``[]`` when it does not exist."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    files = []
    for name in names:
        if os.path.splitext(name)[1].lower() not in SPEC_EXTENSIONS or name.startswith("."):
            continue
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            files.append(path)
    return files


def _unsafe_folder(folder: str) -> str:
    """Why spec folder ``folder`` is not trusted (see :func:`unsafe_owner`), or ``""``."""
    try:
        st = os.stat(folder)
    except OSError:
        return ""  # missing: no spec files, nothing to trust
    return unsafe_owner(st)


@attrs.define
class Registry:
    """The devices defined by a set of spec folders.

    :ivar devices: qualified name to :class:`ResolvedDevice`, in file order.
    :ivar conflicts: qualified name to the files (same priority) that define it.
    :ivar errors: ``(file, message)`` for every file that was skipped.
    :ivar specs: every spec that loaded, in priority then file order.
    """

    devices: dict[str, ResolvedDevice] = attrs.field(factory=dict)
    conflicts: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    errors: list[tuple[str, str]] = attrs.field(factory=list)
    specs: list[CdiSpec] = attrs.field(factory=list)
    spec_dirs: tuple[str, ...] = ()

    @classmethod
    def load(
        cls, spec_dirs: Sequence[str], logger: Optional[Logger] = None, *, cache: bool = True
    ) -> Registry:
        """Read every spec file of ``spec_dirs`` (later folders have priority).

        With ``cache`` (the default), files unchanged since an earlier load
        come from nvshim's cache of parsed specs (:mod:`nvshim_cdi._cache`).
        """
        from nvshim_cdi._cache import SpecCache

        registry = cls(spec_dirs=tuple(spec_dirs))
        loaded: list[tuple[int, CdiSpec]] = []
        spec_cache = SpecCache.open(spec_dirs) if cache else None
        for priority, folder in enumerate(spec_dirs):
            unsafe = _unsafe_folder(folder)
            if unsafe:
                registry.errors.append((folder, unsafe))
                if logger is not None:
                    logger.warning("skipping CDI spec folder %s: %s; not trusted", folder, unsafe)
                continue
            for path in spec_files(folder):
                try:
                    spec = read_spec_file(path, spec_cache)
                except CdiSpecError as exc:
                    registry.errors.append((path, str(exc)))
                    if logger is not None:
                        logger.warning("skipping CDI spec %s: %s", path, exc)
                    continue
                loaded.append((priority, spec))
        if spec_cache is not None:
            spec_cache.save()
        registry._index(loaded)
        return registry

    def _index(self, loaded: list[tuple[int, CdiSpec]]) -> None:
        definitions: dict[str, list[ResolvedDevice]] = {}
        for priority, spec in loaded:
            self.specs.append(spec)
            for device in spec.devices:
                name = spec.qualified_name(device)
                definitions.setdefault(name, []).append(
                    ResolvedDevice(name, spec, device, priority)
                )
        for name, found in definitions.items():
            best = max(d.priority for d in found)
            winners = [d for d in found if d.priority == best]
            if len(winners) > 1:
                self.conflicts[name] = tuple(d.path for d in winners)
            else:
                self.devices[name] = winners[0]

    # ------------------------------------------------------------------ queries

    def kinds(self) -> list[str]:
        """Every kind that a loaded spec declares, sorted."""
        return sorted({spec.kind for spec in self.specs})

    def names_of_kind(self, kind: str) -> list[str]:
        """The usable device names (without the kind) of ``kind``, in file order."""
        prefix = kind + "="
        return [n[len(prefix) :] for n in self.devices if n.startswith(prefix)]

    def resolve(self, names: Iterable[str]) -> list[ResolvedDevice]:
        """The devices for fully qualified ``names``, in request order, each once.

        ``<kind>=all`` gives the device named ``all`` when a spec defines one
        (as NVIDIA's generated specs do), else every device of the kind.

        :raises ResolveError: for a device in conflict, an unknown device
            (naming the known ones of its kind) or ``all`` of an empty kind.
        """
        result: dict[str, ResolvedDevice] = {}
        for name in names:
            kind, _, device = name.partition("=")
            if name in self.conflicts:
                files = " and ".join(self.conflicts[name])
                raise ResolveError(
                    f"CDI device {name} is defined by {files} (same priority); remove one of them"
                )
            if name in self.devices:
                result.setdefault(name, self.devices[name])
                continue
            known = self.names_of_kind(kind)
            if device == "all" and known:
                for other in known:
                    full = f"{kind}={other}"
                    result.setdefault(full, self.devices[full])
                continue
            raise ResolveError(self._unknown(name, kind, known))
        return list(result.values())

    def _unknown(self, name: str, kind: str, known: list[str]) -> str:
        if known:
            return f"unknown CDI device {name}: known devices of kind {kind}: {', '.join(known)}"
        if self.specs:
            return (
                f"unknown CDI device {name}: no CDI spec defines kind {kind}"
                f" (known kinds: {', '.join(self.kinds())})"
            )
        where = f" in {', '.join(self.spec_dirs)}" if self.spec_dirs else ""
        return f"unknown CDI device {name}: no CDI spec was found{where}"
