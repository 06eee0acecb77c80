"""The plugin host: finding plugins, loading them, collecting their modifiers.

Every plugin, the built-in ones included, is a module registered under the
``nvshim`` entry-point group.  :func:`get_plugin_manager` builds a fresh pluggy
manager (there is no import-time global); :func:`load_entry_points` loads the
entry points one at a time so that one broken plugin is reported, in one
line naming its distribution, rather than hiding the others; and
:func:`collect_modifiers` asks every plugin for its modifiers, checks them and
orders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from nvshim import hookspecs
from nvshim.modifier import Modifier

if TYPE_CHECKING:
    from nvshim._epcache import CachedEntryPoint, ScanRow

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModifierInfo",
    "ModifierSet",
    "PluginInfo",
    "collect_modifiers",
    "get_plugin_manager",
    "load_entry_points",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME


@attrs.frozen
class PluginInfo:
    """A plugin the host knows about.

    :param name: the entry-point name (or the name given to ``register``).
    :param dist: the distribution that ships it (None for in-process plugins).
    :param version: that distribution's version.
    :param value: the entry point's ``module:attr`` target.
    :param error: why it is broken, or None.
    :param disabled: whether it was skipped because ``disabled-modifiers`` names it.
    """

    name: str
    dist: str | None = None
    version: str | None = None
    value: str | None = None
    error: str | None = None
    disabled: bool = False

    @property
    def label(self) -> str:
        """``<dist> <version>`` or ``<name>`` for messages."""
        if self.dist:
            return f"{self.dist} {self.version}" if self.version else self.dist
        return self.name


@attrs.frozen
class ModifierInfo:
    """A modifier and where it comes from.

    :param status: ``active``, ``disabled`` or ``broken: <why>``.
    """

    modifier: Modifier
    plugin: PluginInfo
    status: str = "active"

    @property
    def name(self) -> str:
        """The modifier's name."""
        return self.modifier.name

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``nvshim-ctl plugins --json``."""
        config_class = self.modifier.config_class
        return {
            "name": self.modifier.name,
            "order": self.modifier.order,
            "description": self.modifier.description,
            "plugin": self.plugin.name,
            "distribution": self.plugin.dist,
            "version": self.plugin.version,
            "status": self.status,
            "overrides": list(self.modifier.overrides),
            "config_table": (
                f"nvshim.plugins.{self.modifier.name}" if config_class is not None else None
            ),
        }


@attrs.frozen
class ModifierSet:
    """The outcome of :func:`collect_modifiers`.

    :param active: the modifiers to apply, ordered by ``(order, name)``.
    :param disabled: modifiers named in ``disabled-modifiers``.
    :param plugins: every plugin seen, broken ones included.
    :param errors: one line per problem (broken plugin, duplicate name ...);
        a create refuses to run while there is any.
    """

    active: tuple[ModifierInfo, ...]
    disabled: tuple[ModifierInfo, ...]
    plugins: tuple[PluginInfo, ...]
    errors: tuple[str, ...]

    def all(self) -> list[ModifierInfo]:
        """Active and disabled modifiers, ordered like the chain."""
        return sorted(self.active + self.disabled, key=lambda m: (m.modifier.order, m.name))


def get_plugin_manager() -> pluggy.PluginManager:
    """A new plugin manager with nvshim's hook specs and no plugin registered."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs.SpecModifier)
    return pm


def _entry_points() -> list[tuple[CachedEntryPoint, str | None, str | None]]:
    """Every ``nvshim`` entry point with its distribution's name and version.

    From a cache that is refreshed whenever the environment changes
    (:mod:`nvshim._epcache`): the scan below reads every installed
    distribution's metadata, which would make every create cost more the
    larger the environment is.
    """
    from nvshim._epcache import entry_points

    return [(ep, ep.dist, ep.version) for ep in entry_points(ENTRY_POINT_GROUP, _scan)]


def _scan() -> list[ScanRow]:
    """Scan the installed distributions for ``nvshim`` entry points.

    Walks the distributions rather than ``entry_points(group=...)`` because
    Python 3.9 has no ``EntryPoint.dist``, and a plugin's distribution must
    be named in every message about it.  A distribution found twice on
    ``sys.path`` counts once, the first one, as import does.
    """
    from importlib.metadata import distributions

    seen: set[str] = set()
    found: list[ScanRow] = []
    for dist in distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:  # a distribution with broken metadata is not ours to judge
            continue
        key = (name or "").lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                # Where its metadata lives (a private attribute, absent for
                # distributions of other finders): the cache watches it.
                where = getattr(dist, "_path", None)
                found.append(
                    (ep.name, ep.value, ep.group, name, dist.version, where and str(where))
                )
    found.sort(key=lambda item: item[0])
    return found


def load_entry_points(
    pm: pluggy.PluginManager, disabled: Iterable[str] = ()
) -> list[PluginInfo]:
    """Load and register every ``nvshim`` entry point, one at a time.

    An entry point that fails to import, or that pluggy refuses, is not
    registered; it is returned with ``error`` set (one line, no traceback).
    Entry points whose name is in ``disabled`` are not imported at all, so a
    broken plugin can be switched off in the config.
    """
    disabled = set(disabled)
    infos = []
    for ep, dist, version in _entry_points():
        info = PluginInfo(name=ep.name, dist=dist, version=version, value=ep.value)
        if ep.name in disabled:
            infos.append(attrs.evolve(info, disabled=True))
            continue
        if pm.has_plugin(ep.name):
            infos.append(
                attrs.evolve(
                    info,
                    error=f"entry point name {ep.name!r} is already registered by another plugin",
                )
            )
            continue
        try:
            plugin = ep.load()
        except BaseException as exc:  # a plugin's import may raise anything, even SystemExit
            if isinstance(exc, KeyboardInterrupt):
                raise
            infos.append(attrs.evolve(info, error=f"cannot import {ep.value}: {_describe(exc)}"))
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            infos.append(attrs.evolve(info, error=f"invalid plugin: {_describe(exc)}"))
            continue
        infos.append(info)
    return infos


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _check_pending(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    """Turn a hook implementation that matches no hook spec into a broken plugin."""
    for name, plugin in list(pm.list_name_plugin()):
        for attr in dir(plugin):
            if not attr.startswith("nvshim_"):
                continue
            if pm.parse_hookimpl_opts(plugin, attr) is None:
                continue
            caller = getattr(pm.hook, attr, None)
            if caller is None or not caller.has_spec():
                info = infos.get(name) or PluginInfo(name=name)
                infos[name] = attrs.evolve(info, error=f"unknown hook {attr!r}")
                pm.unregister(plugin)
                break


def collect_modifiers(
    pm: pluggy.PluginManager,
    plugins: Sequence[PluginInfo] = (),
    disabled: Iterable[str] = (),
) -> ModifierSet:
    """Ask every registered plugin for its modifiers and order them.

    ``plugins`` describes the plugins loaded from entry points (for the
    distribution names); plugins registered in-process are described by
    their registration name.  Each plugin's ``nvshim_modifiers`` is called on
    its own, so one that raises or returns something that is not a
    :class:`Modifier` is marked broken without hiding the others.  Two
    modifiers with the same name are an error naming both distributions.
    """
    disabled = set(disabled)
    infos = {p.name: p for p in plugins}
    _check_pending(pm, infos)
    errors: list[str] = []
    by_name: dict[str, ModifierInfo] = {}
    for impl in reversed(pm.hook.nvshim_modifiers.get_hookimpls()):
        plugin = infos.get(impl.plugin_name) or PluginInfo(name=impl.plugin_name)
        try:
            returned: Any = impl.function()
            if returned is None:
                returned = ()
            elif isinstance(returned, (Modifier, str, bytes)) or not isinstance(
                returned, Iterable
            ):
                # Iterating these would give a confusing error, or characters.
                infos[plugin.name] = attrs.evolve(
                    plugin,
                    error=f"nvshim_modifiers() returned {type(returned).__name__} "
                    f"{returned!r:.60}, not an iterable of nvshim.Modifier",
                )
                continue
            items: list[Any] = list(returned)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            infos[plugin.name] = attrs.evolve(
                plugin, error=f"nvshim_modifiers() raised {_describe(exc)}"
            )
            continue
        bad = [item for item in items if not isinstance(item, Modifier)]
        if bad:
            infos[plugin.name] = attrs.evolve(
                plugin,
                error=f"nvshim_modifiers() returned {type(bad[0]).__name__} "
                f"{bad[0]!r:.60}, not a nvshim.Modifier",
            )
            continue
        for modifier in items:
            status = "disabled" if modifier.name in disabled else "active"
            entry = ModifierInfo(modifier=modifier, plugin=plugin, status=status)
            other = by_name.get(modifier.name)
            if other is not None:
                errors.append(
                    f"modifier name {modifier.name!r} is provided twice: by plugin "
                    f"'{other.plugin.name}' ({other.plugin.label}) and by plugin "
                    f"'{plugin.name}' ({plugin.label})"
                )
                continue
            by_name[modifier.name] = entry
    for info in infos.values():
        if info.error:
            errors.insert(
                0, f"plugin '{info.name}' ({info.label}) is broken: {info.error}"
            )
    ordered = sorted(by_name.values(), key=lambda m: (m.modifier.order, m.name))
    return ModifierSet(
        active=tuple(m for m in ordered if m.status == "active"),
        disabled=tuple(m for m in ordered if m.status != "active"),
        plugins=tuple(sorted(infos.values(), key=lambda p: p.name)),
        errors=tuple(errors),
    )
