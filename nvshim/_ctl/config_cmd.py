"""``nvshim-ctl config show|validate|get|set``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` command and its ``show`` and ``validate`` subcommands."""
    parser = subparsers.add_parser("config", help="show or check nvshim's configuration")
    commands = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    commands.required = True
    show = commands.add_parser(
        "show", help="print the effective configuration and the file it came from"
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--config", help="config.toml to read (default: as the runtime)")
    show.set_defaults(func=run_show)
    validate = commands.add_parser(
        "validate", help="check a config file (default: the one the runtime reads)"
    )
    validate.add_argument("file", nargs="?", help="the config.toml to check")
    validate.add_argument(
        "--lenient",
        action="store_true",
        help="report unknown keys as warnings (exit 0) instead of errors",
    )
    validate.set_defaults(func=run_validate)
    get = commands.add_parser(
        "get", help="print one key's value (the file's, else the default)"
    )
    get.add_argument("key", help="dotted key, e.g. nvidia-container-runtime.mode")
    _config_option(get, "config.toml to read")
    get.set_defaults(func=run_get)
    setter = commands.add_parser(
        "set",
        help="set keys, keeping the file's comments (stdout unless --in-place)",
        description=(
            "Set KEY=VALUE in config.toml, as nvidia-ctk config --set does: KEY alone "
            "sets a switch to true; list items are separated by ':' or ','. The result "
            "is checked as the runtime reads it before anything is written; without "
            "--in-place or --output it goes to stdout."
        ),
    )
    setter.add_argument(
        "assignments", nargs="+", metavar="KEY=VALUE", help="e.g. nvidia-container-runtime.mode=cdi"
    )
    _config_option(setter, "config.toml to edit")
    where = setter.add_mutually_exclusive_group()
    where.add_argument("--in-place", "-i", action="store_true", help="rewrite the file itself")
    where.add_argument("--output", "-o", metavar="FILE", help="write the result to FILE")
    setter.set_defaults(func=run_set)


def _config_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--config",
        "--config-file",
        "-c",
        metavar="FILE",
        help=f"{what} (default: the one the runtime reads)",
    )


def effective(config: Any) -> dict[str, Any]:
    """The configuration as a JSON object with the file's key names, defaults included."""
    import attrs

    from nvshim.config import toml_name

    def convert(value: Any) -> Any:
        if attrs.has(type(value)):
            return {
                toml_name(field.name): convert(getattr(value, field.name))
                for field in attrs.fields(type(value))
                if field.name not in ("source", "ignored_keys")
            }
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    data: dict[str, Any] = convert(config)
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_bare(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return json.dumps(value)


def _bare(key: str) -> str:
    from nvshim._configfile import is_bare_key

    return key if is_bare_key(key) else json.dumps(key)


def _write_toml(data: dict[str, Any], prefix: str = "") -> list[str]:
    lines: list[str] = []
    # Scalars first: in TOML, keys after a [table] header belong to that table.
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) or not v}
    tables = {k: v for k, v in data.items() if k not in scalars}
    for key, value in scalars.items():
        if value is None:
            lines.append(f"# {_bare(key)} is not set")
        else:
            lines.append(f"{_bare(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        name = f"{prefix}.{_bare(key)}" if prefix else _bare(key)
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(_write_toml(value, name))
    return lines


def run_show(namespace: argparse.Namespace) -> int:
    """Print the effective configuration (defaults filled in) with its source file."""
    from nvshim._configfile import config_path
    from nvshim._ctl import load_config_or_say_why

    path = namespace.config or config_path()
    config = load_config_or_say_why(namespace.config)
    if config is None:
        return 1
    data = effective(config)
    if namespace.json:
        out = {
            "source": config.source,
            "searched": path,
            "ignored_keys": list(config.ignored_keys),
            "effective_mode": config.mode,
            "config": data,
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if config.source:
        sys.stdout.write(f"# source: {config.source}\n")
    else:
        sys.stdout.write(f"# source: none ({path} does not exist): defaults\n")
    for key in config.ignored_keys:
        sys.stdout.write(f"# ignored unknown key: {key}\n")
    sys.stdout.write("\n".join(_write_toml(data)).lstrip("\n") + "\n")
    return 0


def run_validate(namespace: argparse.Namespace) -> int:
    """Check a config file the way a create reads it, plugin tables included.

    Exit 1 on an error, and on an unknown key (a typo leaves its setting at
    the default) unless ``--lenient``; keys of NVIDIA's that nvshim does not
    use are noted, exit 0.  Without a file, the one the runtime would read
    is checked; when there is none, the defaults apply (exit 0), unless
    ``$NVSHIM_CONFIG`` names it.
    """
    import os

    from nvshim._configfile import config_path
    from nvshim._configkeys import classify
    from nvshim.config import ConfigError, load_config, plugin_options

    path = namespace.file or config_path()
    if not os.path.exists(path):
        if namespace.file is not None or os.environ.get("NVSHIM_CONFIG") == path:
            how = "" if namespace.file is not None else " (named by NVSHIM_CONFIG)"
            sys.stderr.write(f"nvshim-ctl: config {path}: no such file{how}\n")
            return 1
        sys.stdout.write(f"{path}: no file: defaults apply\n")
        return 0
    try:
        config = load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"nvshim-ctl: {exc}\n")
        return 1
    problems = _check_plugin_tables(config, plugin_options)
    report = classify(config)
    unknown = report.unknown_lines(path)
    if not namespace.lenient:
        problems.extend(
            line + " (refused: --lenient to accept)" for line in unknown
        )
        unknown = []
    for problem in problems:
        sys.stderr.write(f"nvshim-ctl: {problem}\n")
    if problems:
        return 1
    for line in unknown:
        sys.stderr.write(f"nvshim-ctl: warning: {line}\n")
    for line in report.nvidia_lines(path):
        sys.stdout.write(f"{line}\n")
    sys.stdout.write(f"{path}: valid\n")
    return 0


def _check_plugin_tables(config: Any, plugin_options: Any) -> list[str]:
    """Structure each ``[nvshim.plugins.<name>]`` table with its modifier's config class.

    A table that names no installed modifier is reported too: it is most
    likely a typo, and the plugin it was meant for runs with its defaults.
    """
    from nvshim.config import ConfigError
    from nvshim.runtime import load_modifiers

    tables = dict(config.nvshim.plugins)
    if not tables:
        return []
    problems: list[str] = []
    try:
        _pm, modifiers = load_modifiers(config)
    except Exception as exc:  # the plugin host failing must still give one line
        return [f"cannot load plugins to check their tables: {type(exc).__name__}: {exc}"]
    known = {info.name: info for info in modifiers.all()}
    for name in tables:
        info = known.get(name)
        if info is None:
            problems.append(
                f"config {config.source}: table [nvshim.plugins.{name}]: "
                f"no installed modifier is named {name!r}"
            )
            continue
        try:
            plugin_options(config, name, info.modifier.config_class)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def run_get(namespace: argparse.Namespace) -> int:
    """Print one key: strings bare, other values as TOML."""
    from nvshim._configedit import ConfigEditError, get_value
    from nvshim._configfile import config_path, read_toml
    from nvshim.config import ConfigError, structure_config

    path = namespace.config or config_path()
    try:
        raw = read_toml(path) or {}
        config = structure_config(raw, path)
        value = get_value(config, raw, namespace.key)
    except (ConfigError, ConfigEditError) as exc:
        sys.stderr.write(f"nvshim-ctl: {exc}\n")
        return 1
    if isinstance(value, dict):
        sys.stdout.write("\n".join(_write_toml(value)).lstrip("\n") + "\n")
    elif isinstance(value, str):
        sys.stdout.write(value + "\n")
    elif value is None:
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_toml_value(value) + "\n")
    return 0


def run_set(namespace: argparse.Namespace) -> int:
    """Apply KEY=VALUE assignments; check the result; print it or write it atomically."""
    import os
    import tempfile

    from nvshim._atomic import atomic_write
    from nvshim._configedit import ConfigEditError, set_values
    from nvshim._configfile import config_path
    from nvshim.config import ConfigError, load_config, plugin_options

    path = namespace.config or config_path()
    try:
        with open(path, "rb") as f:
            old: str | None = f.read().decode("utf-8")
    except FileNotFoundError:
        old = None
    except (OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"nvshim-ctl: config {path}: cannot read: {exc}\n")
        return 1
    try:
        new = set_values(old or "", namespace.assignments)
    except ConfigEditError as exc:
        sys.stderr.write(f"nvshim-ctl: config {path}: {exc}; nothing written\n")
        return 1
    # Check the result exactly as a create would read it, from a scratch
    # copy: the file itself is only replaced once it passes.
    with tempfile.TemporaryDirectory(prefix="nvshim-config-") as scratch:
        candidate = os.path.join(scratch, "config.toml")
        with open(candidate, "w", encoding="utf-8") as f:
            f.write(new)
        try:
            config = load_config(candidate)
        except ConfigError as exc:
            message = str(exc).replace(candidate, path)
            sys.stderr.write(f"nvshim-ctl: {message}; nothing written\n")
            return 1
        problems = _check_plugin_tables(config, plugin_options)
    if problems:
        for problem in problems:
            sys.stderr.write(f"nvshim-ctl: {problem.replace(candidate, path)}\n")
        sys.stderr.write("nvshim-ctl: nothing written\n")
        return 1
    target = path if namespace.in_place else namespace.output
    if target is None:
        sys.stdout.write(new)
        return 0
    if target == path and new == old:
        sys.stdout.write(f"{path}: unchanged\n")
        return 0
    try:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        atomic_write(os.path.realpath(target), new.encode("utf-8"), 0o644)
    except OSError as exc:
        sys.stderr.write(f"nvshim-ctl: {target}: {exc.strerror or exc}\n")
        return 1
    sys.stdout.write(f"{target}: written\n")
    return 0
