"""The hooks that nvshim plugins implement.

A plugin is a module (or object) registered under the ``nvshim`` entry-point
group.  It implements hooks by decorating functions with
:data:`nvshim.hookimpl`::

    from nvshim import Modifier, hookimpl

    def add_marker(spec, context):
        spec.set_env("HELLO", "world")

    @hookimpl
    def nvshim_modifiers():
        return [Modifier("hello", add_marker)]

When a container is created nvshim calls :meth:`SpecModifier.nvshim_modifiers`
on every plugin, orders the modifiers it gets, applies them to the spec, and
then calls :meth:`SpecModifier.nvshim_validate` on the finished spec before
writing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable

    from nvshim.modifier import Modifier, ModifierContext
    from nvshim.spec import Spec

__all__ = ["PROJECT_NAME", "SpecModifier", "hookimpl", "hookspec"]

#: The pluggy project name, also the entry-point group plugins register under.
PROJECT_NAME = "nvshim"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class SpecModifier:
    """The hook specification of nvshim's plugins."""

    @hookspec
    def nvshim_modifiers(self) -> Iterable[Modifier]:  # type: ignore[empty-body]
        """Return the spec modifiers this plugin provides.

        Called once per ``create``/``run`` (and by ``nvshim-ctl plugins``),
        before any spec is loaded.  It must be cheap and must not touch the
        spec or the host: do the work in the modifiers' ``modify`` callables.

        :return: an iterable of :class:`nvshim.Modifier` records.  Names must
            be unique across all installed plugins; two modifiers with the
            same name make every create fail, naming both distributions.
            Anything that is not a ``Modifier`` marks the plugin broken.

        Each ``Modifier.modify(spec, context)`` is called with the
        :class:`nvshim.Spec` being built and a :class:`nvshim.ModifierContext`
        (typed config, resolved mode, bundle, argv, logger, the modifier's own
        config table).  It should change the spec through the Spec API
        (changes made through ``spec.raw`` are detected, attributed and
        validated too), and raises :class:`nvshim.ModifierError` to refuse
        the container; any other exception refuses it too, reported as a bug
        of the plugin.  Each call is limited to ``[nvshim] modifier-timeout``
        seconds.  Changing, to another value, or removing what an earlier
        modifier set is refused as a conflict unless ``Modifier.overrides``
        names that modifier.
        """

    @hookspec
    def nvshim_validate(self, spec: Spec, context: ModifierContext) -> None:
        """Check the finished spec before it is written; raise to refuse it.

        Called after every modifier ran and nvshim's own checks passed, once
        per plugin that implements it.  The spec must not be changed here:
        this hook is for policy ("no host paths outside /usr", "no privileged
        GPU containers").

        It runs under the same time limit as modifiers; a validator that
        changes the spec refuses the container.

        :param spec: the finished :class:`nvshim.Spec` (read only).
        :param context: the create's context; ``context.modifier`` is empty
            and ``context.options`` is None.
        :raises nvshim.ModifierError: to refuse the container with a message
            that names the plugin.
        """
