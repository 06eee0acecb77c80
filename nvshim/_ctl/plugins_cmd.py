"""``nvshim-ctl plugins``: every modifier with its status."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``plugins`` command."""
    parser = subparsers.add_parser(
        "plugins", help="list the modifier plugins, their order and status"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--config", help="config.toml to use (default: as the runtime)")
    parser.set_defaults(func=run)


def _hooks_of(pm: object, plugin_name: str) -> list[str]:
    import pluggy

    assert isinstance(pm, pluggy.PluginManager)
    plugin = pm.get_plugin(plugin_name)
    if plugin is None:
        return []
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())


def run(namespace: argparse.Namespace) -> int:
    """List modifiers; works even when plugins are broken.

    Exits 1 when any plugin has a problem: every create fails closed then
    (a broken plugin might be a policy that must not be skipped), and this
    is the command an admin runs to find out why.
    """
    from nvshim._ctl import load_config_or_say_why
    from nvshim.runtime import load_modifiers

    config = load_config_or_say_why(namespace.config)
    if config is None:
        return 1
    pm, modifiers = load_modifiers(config)
    rows = []
    for info in modifiers.all():
        row = info.to_json()
        row["hooks"] = _hooks_of(pm, info.plugin.name)
        rows.append(row)
    listed = {info.plugin.name for info in modifiers.all()}
    for plugin in modifiers.plugins:
        if plugin.name in listed:
            continue
        if plugin.error:
            status = f"broken: {plugin.error}"
        else:
            status = "disabled" if plugin.disabled else "active"
        rows.append(
            {
                "name": plugin.name,
                "order": None,
                "description": "",
                "plugin": plugin.name,
                "distribution": plugin.dist,
                "version": plugin.version,
                "status": status,
                "overrides": [],
                "modes": [],
                "config_table": None,
                "hooks": _hooks_of(pm, plugin.name),
            }
        )
    exit_status = 1 if modifiers.problems else 0
    if namespace.json:
        json.dump(
            {
                "modifiers": rows,
                "errors": list(modifiers.errors),
                "problems": [problem.to_json() for problem in modifiers.problems],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return exit_status
    header = ("NAME", "ORDER", "DISTRIBUTION", "VERSION", "STATUS")
    table = [header] + [
        (
            r["name"],
            "" if r["order"] is None else str(r["order"]),
            r["distribution"] or "-",
            r["version"] or "-",
            r["status"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        sys.stdout.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    # A broken plugin shows in its row's status; the other problems below it.
    for problem in modifiers.problems:
        if not problem.broken:
            sys.stdout.write(f"error: {problem.line}\n")
    if exit_status:
        sys.stderr.write(
            "nvshim-ctl: creates fail while a plugin is broken; fix it, or name it in"
            " [nvshim] disabled-modifiers\n"
        )
    return exit_status
