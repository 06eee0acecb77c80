"""Pytest fixtures for testing nvshim plugins.

An opt-in pytest plugin: nothing loads it automatically (it is not a
``pytest11`` entry point, so installing nvshim changes no one's test run).
Enable it in a plugin's ``conftest.py``::

    pytest_plugins = ["nvshim.testing"]

and write tests like::

    from nvshim import Modifier, hookimpl

    class MyPlugin:
        @hookimpl
        def nvshim_modifiers(self):
            return [Modifier("hello", lambda spec, ctx: spec.set_env("HELLO", "1"))]

    def test_hello(register_plugin, oci_spec, run_modifiers):
        register_plugin(MyPlugin(), name="my-plugin")
        result = run_modifiers(oci_spec())
        assert result.spec.get_env("HELLO") == "1"
        assert [c.modifier for c in result.changes] == ["hello"]

Fixtures:

- :func:`oci_spec`: build a :class:`nvshim.Spec` (a minimal valid spec plus
  what you pass).
- :func:`oci_bundle`: build a bundle folder (``config.json`` and ``rootfs/``)
  in ``tmp_path``.
- :func:`nvshim_config`: build a :class:`nvshim.Config` from TOML text or a dict.
- :func:`plugin_manager`: a fresh plugin manager with nvshim's hooks and no
  plugin registered.
- :func:`register_plugin`: register a plugin object or module in it; it is
  unregistered at teardown.
- :func:`run_modifiers`: run the modifier chain of that plugin manager on a
  spec or a bundle, as a create would, and get the
  :class:`nvshim.ApplyResult` with every change attributed to its modifier.

Plugins installed through entry points are *not* used by these fixtures
unless you pass ``entry_points=True`` to :func:`run_modifiers`: a test sees
exactly the plugins it registered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional, Protocol, Union

import pluggy
import pytest

from nvshim._minimal import minimal_spec_dict
from nvshim.config import Config, structure_config
from nvshim.plugins import get_plugin_manager
from nvshim.runtime import ApplyResult, apply_modifiers
from nvshim.spec import Spec

__all__ = [
    "BundleFactory",
    "ConfigFactory",
    "PluginRegistrar",
    "RunModifiers",
    "SpecFactory",
    "minimal_spec_dict",
    "nvshim_config",
    "oci_bundle",
    "oci_spec",
    "plugin_manager",
    "register_plugin",
    "run_modifiers",
]


def _build_dict(
    base: Optional[Mapping[str, Any]],
    env: Optional[Mapping[str, str]],
    annotations: Optional[Mapping[str, str]],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    data = json.loads(json.dumps(base)) if base is not None else minimal_spec_dict()
    data.update(extra)
    if env:
        process = data.setdefault("process", {"cwd": "/"})
        process["env"] = [*process.get("env", []), *(f"{k}={v}" for k, v in env.items())]
    if annotations:
        data.setdefault("annotations", {}).update(annotations)
    return data


class SpecFactory(Protocol):
    """The type of the :func:`oci_spec` fixture."""

    def __call__(
        self,
        base: Optional[Mapping[str, Any]] = None,
        *,
        env: Optional[Mapping[str, str]] = None,
        annotations: Optional[Mapping[str, str]] = None,
        **fields: Any,
    ) -> Spec:
        """Build a spec; see :func:`oci_spec`."""


class BundleFactory(Protocol):
    """The type of the :func:`oci_bundle` fixture."""

    def __call__(
        self,
        spec: Union[Spec, Mapping[str, Any], None] = None,
        *,
        name: str = "bundle",
        env: Optional[Mapping[str, str]] = None,
        annotations: Optional[Mapping[str, str]] = None,
    ) -> Path:
        """Build a bundle folder; see :func:`oci_bundle`."""


class ConfigFactory(Protocol):
    """The type of the :func:`nvshim_config` fixture."""

    def __call__(self, settings: Union[str, Mapping[str, Any]] = "") -> Config:
        """Build a configuration; see :func:`nvshim_config`."""


class PluginRegistrar(Protocol):
    """The type of the :func:`register_plugin` fixture."""

    def __call__(self, plugin: object, name: Optional[str] = None) -> str:
        """Register ``plugin``; see :func:`register_plugin`."""


class RunModifiers(Protocol):
    """The type of the :func:`run_modifiers` fixture."""

    def __call__(
        self,
        target: Union[Spec, str, os.PathLike[str], None] = None,
        *,
        config: Union[Config, str, Mapping[str, Any], None] = None,
        mode: Optional[str] = None,
        argv: tuple[str, ...] = (),
        write: bool = True,
        entry_points: bool = False,
    ) -> ApplyResult:
        """Run the chain; see :func:`run_modifiers`."""


@pytest.fixture
def oci_spec() -> SpecFactory:
    """A factory of :class:`nvshim.Spec` objects.

    ``oci_spec()`` is a minimal valid spec; ``oci_spec(base)`` copies the
    JSON object ``base`` instead.  ``env`` appends ``NAME=value`` entries,
    ``annotations`` adds annotations, and any other keyword sets that
    top-level field (``oci_spec(mounts=[...])``).
    """

    def make(
        base: Optional[Mapping[str, Any]] = None,
        *,
        env: Optional[Mapping[str, str]] = None,
        annotations: Optional[Mapping[str, str]] = None,
        **fields: Any,
    ) -> Spec:
        return Spec.from_dict(_build_dict(base, env, annotations, fields))

    return make


@pytest.fixture
def oci_bundle(tmp_path: Path) -> BundleFactory:
    """A factory of bundle folders in ``tmp_path``.

    ``oci_bundle(spec=None, *, name="bundle", env=None, annotations=None)``
    writes ``<tmp_path>/<name>/config.json`` (the given :class:`nvshim.Spec`
    or JSON object, else a minimal valid spec) and an empty ``rootfs/``, and
    returns the folder.
    """

    def make(
        spec: Union[Spec, Mapping[str, Any], None] = None,
        *,
        name: str = "bundle",
        env: Optional[Mapping[str, str]] = None,
        annotations: Optional[Mapping[str, str]] = None,
    ) -> Path:
        base = spec.to_dict() if isinstance(spec, Spec) else spec
        data = _build_dict(base, env, annotations, {})
        folder = tmp_path / name
        (folder / "rootfs").mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(data), encoding="utf-8")
        return folder

    return make


def _config(settings: Union[str, Mapping[str, Any]] = "") -> Config:
    if isinstance(settings, str):
        if not settings.strip():
            return Config()
        import sys

        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on 3.9/3.10
            import tomli as tomllib
        return structure_config(tomllib.loads(settings), "<test config>")
    return structure_config(settings, "<test config>")


@pytest.fixture
def nvshim_config() -> ConfigFactory:
    """A factory of :class:`nvshim.Config` objects.

    ``nvshim_config('[nvshim.plugins.my-plugin]\\nallow = ["/data"]')`` parses
    TOML text; a dict is taken as already parsed TOML.  Errors are raised as
    :class:`nvshim.ConfigError`, exactly as for a config file.
    """
    return _config


@pytest.fixture
def plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with nvshim's hook specs and no plugin registered."""
    return get_plugin_manager()


@pytest.fixture
def register_plugin(plugin_manager: pluggy.PluginManager) -> Iterator[PluginRegistrar]:
    """Register plugins in :func:`plugin_manager` for one test.

    ``register_plugin(plugin, name=None)`` registers a module, class or
    object implementing nvshim's hooks and returns the name it got (give the
    entry-point name your plugin ships under, so messages read as they will
    in production).  Every plugin registered this way is unregistered at
    teardown.
    """
    registered: list[object] = []

    def register(plugin: object, name: Optional[str] = None) -> str:
        got = plugin_manager.register(plugin, name=name)
        if got is None:
            raise ValueError(f"plugin {name or plugin!r} is blocked in this plugin manager")
        registered.append(plugin)
        return got

    yield register
    for plugin in reversed(registered):
        if plugin_manager.is_registered(plugin):
            plugin_manager.unregister(plugin)


@pytest.fixture
def run_modifiers(plugin_manager: pluggy.PluginManager, oci_spec: SpecFactory) -> RunModifiers:
    """Run the modifier chain as a create would, and return the :class:`nvshim.ApplyResult`.

    ``run_modifiers(target=None, *, config=None, mode=None, argv=(),
    write=True, entry_points=False)``:

    - ``target``: a :class:`nvshim.Spec` (changed in place), a bundle folder
      (its config.json is rewritten unless ``write=False``), or None for a
      new minimal spec.
    - ``config``: a :class:`nvshim.Config`, TOML text or a parsed dict
      (default: the defaults, never the host's config file).
    - ``mode``: force ``legacy``, ``csv`` or ``cdi`` (default: resolved from
      the config and the spec as a create does).
    - ``entry_points``: use the installed plugins (entry points) instead of
      the ones registered with :func:`register_plugin`.

    A refused container raises :class:`nvshim.NvshimError`, whose ``line`` is
    the exact message nvshim would print.  ``result.changes`` lists every
    change with the modifier that made it.
    """

    def run(
        target: Union[Spec, str, os.PathLike[str], None] = None,
        *,
        config: Union[Config, str, Mapping[str, Any], None] = None,
        mode: Optional[str] = None,
        argv: tuple[str, ...] = (),
        write: bool = True,
        entry_points: bool = False,
    ) -> ApplyResult:
        settings = config if isinstance(config, Config) else _config(config or "")
        return apply_modifiers(
            oci_spec() if target is None else target,
            config=settings,
            mode=mode,
            argv=argv,
            plugin_manager=None if entry_points else plugin_manager,
            write=write,
        )

    return run
