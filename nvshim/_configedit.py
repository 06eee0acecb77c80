"""Edit config.toml key by key, as ``nvidia-ctk config --set`` does.

Pure functions: :func:`set_values` takes the file's text and ``KEY=VALUE``
assignments and returns the new text (tomlkit keeps comments, key order and
the formatting of what is not touched); :func:`get_value` reads a key from a
loaded :class:`~nvshim.config.Config`, defaults included. Values are typed by
the configuration's own classes: ``true``/``false`` for switches, a list for
list keys (items separated by ``:`` or ``,``, as nvidia-ctk splits them), a
number for numbers. A key nvshim does not know (another NVIDIA tool's key, a
plugin's table) takes a TOML value when the text is one, else a string.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import attrs

from nvshim.config import Config, toml_name

# tomlkit is imported where a value or file is parsed: ``config show`` and
# ``config get`` use this module too, and need none of it.

__all__ = [
    "ConfigEditError",
    "KeyInfo",
    "get_value",
    "key_info",
    "parse_assignment",
    "plain",
    "set_values",
]

_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigEditError(ValueError):
    """An assignment or key that cannot be applied; the message names it."""


@attrs.frozen
class KeyInfo:
    """What the configuration knows of a dotted key.

    :param kind: ``"bool"``, ``"str"``, ``"float"``, ``"list"``, ``"table"``
        or None for a key nvshim does not read.
    :param default: the default value (plain Python), or None.
    """

    kind: str | None
    default: Any = None


def _kind(field_type: Any) -> str | None:
    if field_type is bool:
        return "bool"
    if field_type is float:
        return "float"
    if field_type is str or field_type == typing.Optional[str]:
        return "str"
    if typing.get_origin(field_type) is tuple:
        return "list"
    if typing.get_origin(field_type) is dict or (
        isinstance(field_type, type) and attrs.has(field_type)
    ):
        return "table"
    return None


def plain(value: Any) -> Any:
    """*value* (a :class:`~nvshim.config.Config` or a part of one) as plain JSON data.

    attrs classes become objects keyed by the file's names (``log-level``),
    tuples become lists; the loader's bookkeeping (``source``,
    ``ignored_keys``) is left out.
    """
    if attrs.has(type(value)):
        return {
            toml_name(field.name): plain(getattr(value, field.name))
            for field in attrs.fields(type(value))
            if field.name not in ("source", "ignored_keys")
        }
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def key_info(key: str) -> KeyInfo:
    """The kind and default of dotted *key* (``nvidia-container-runtime.mode``)."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigEditError(f"invalid key {key!r}: empty part")
    cls: Any = Config
    default: Any = Config()
    for i, part in enumerate(parts):
        fields = {toml_name(f.name): f for f in attrs.fields(cls) if f.name not in (
            "source", "ignored_keys")}
        field = fields.get(part)
        if field is None:
            return KeyInfo(None)
        default = getattr(default, field.name)
        kind = _kind(field.type)
        last = i == len(parts) - 1
        if last:
            return KeyInfo(kind, plain(default))
        if kind != "table":
            raise ConfigEditError(f"invalid key {key!r}: {'.'.join(parts[: i + 1])} is a {kind}")
        if not (isinstance(field.type, type) and attrs.has(field.type)):
            return KeyInfo(None)  # inside [nvshim.plugins]: the plugin's own keys
        cls = field.type
    return KeyInfo(None)  # pragma: no cover - the loop always returns


def _parse_toml_value(text: str) -> Any:
    import tomlkit
    import tomlkit.exceptions

    try:
        return tomlkit.parse(f"v = {text}")["v"]
    except tomlkit.exceptions.ParseError:
        return None


def parse_assignment(assignment: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` (or ``KEY`` alone for a switch) as (key parts, typed value)."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not key:
        raise ConfigEditError(f"{assignment!r}: expected KEY=VALUE")
    info = key_info(key)
    if not sep:
        if info.kind == "bool":
            return key.split("."), True
        raise ConfigEditError(f"{assignment!r}: expected KEY=VALUE")
    if info.kind == "bool":
        word = text.strip().lower()
        if word not in _BOOL_WORDS:
            raise ConfigEditError(f"{key}: expected true or false, got {text!r}")
        return key.split("."), _BOOL_WORDS[word]
    if info.kind == "str":
        return key.split("."), text
    if info.kind == "float":
        try:
            return key.split("."), float(text)
        except ValueError:
            raise ConfigEditError(f"{key}: expected a number, got {text!r}") from None
    if info.kind == "list":
        return key.split("."), _split_list(text)
    if info.kind == "table":
        raise ConfigEditError(f"{key} is a table: set its keys one by one")
    parsed = _parse_toml_value(text)
    return key.split("."), text if parsed is None else parsed


def _split_list(text: str) -> list[str]:
    """A list value: a TOML array, or items separated by ':' or ',' (nvidia-ctk's rule)."""
    stripped = text.strip()
    if stripped.startswith("["):
        parsed = _parse_toml_value(stripped)
        if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
            return [str(v) for v in parsed]
        raise ConfigEditError(f"expected a list of strings, got {text!r}")
    if not stripped:
        return []
    for separator in (":", ","):
        if separator in text:
            return [item.strip() for item in text.split(separator) if item.strip()]
    return [stripped]


def set_values(text: str, assignments: Sequence[str]) -> str:
    """Apply ``KEY=VALUE`` *assignments* to config.toml *text*; returns the new text.

    Tables are created as needed (one ``[a.b]`` header, not one per level).
    Comments, key order and the formatting of other keys are kept; a key that
    already holds the value is not rewritten. Raises :class:`ConfigEditError`
    for a bad key or value and for text that is not TOML.
    """
    import tomlkit
    import tomlkit.exceptions

    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigEditError(f"invalid TOML: {exc}") from None
    for assignment in assignments:
        keys, value = parse_assignment(assignment)
        node: Any = doc
        for i, key in enumerate(keys[:-1]):
            if key not in node:
                node[key] = tomlkit.table(is_super_table=True)
            node = node[key]
            if not hasattr(node, "keys"):
                raise ConfigEditError(
                    f"{'.'.join(keys)}: {'.'.join(keys[: i + 1])} is a value, not a table"
                )
        current = node.get(keys[-1])
        unwrap = getattr(current, "unwrap", None)
        if current is None or (unwrap() if callable(unwrap) else current) != value:
            node[keys[-1]] = value
    new = tomlkit.dumps(doc)
    return text if new == text else new


def get_value(config: Config, raw: Any, key: str) -> Any:
    """The value of dotted *key*: from the file's *raw* tables, else nvshim's default.

    Raises :class:`ConfigEditError` when the key is neither set nor known.
    """
    node = raw
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            break
    else:
        return node
    info = key_info(key)
    if info.kind is None:
        raise ConfigEditError(f"{key} is not set in {config.source or 'the file'} "
                              "and nvshim has no default for it")
    return info.default
