"""Finding and reading config.toml, with nothing heavier than a TOML parser.

The pass-through path (every runtime call but create) uses only this module to
learn the ``runtimes`` key; the typed view lives in :mod:`nvshim.config`.
"""

from __future__ import annotations

import os
import sys

from nvshim.errors import ConfigError

# Not `typing.TYPE_CHECKING`: importing typing (and collections.abc) costs more
# than the rest of the pass-through path together.  mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_CONFIG_PATH = "/etc/nvidia-container-runtime/config.toml"
#: The low-level runtimes tried, in order, when ``runtimes`` is not set.
DEFAULT_RUNTIMES = ("runc", "crun")


def config_path(environ: Mapping[str, str] | None = None) -> str:
    """The config file to use: $NVSHIM_CONFIG, $NVIDIA_CTK_CONFIG_FILE_PATH,
    $XDG_CONFIG_HOME/nvidia-container-runtime/config.toml, else the system file."""
    env = os.environ if environ is None else environ
    for var in ("NVSHIM_CONFIG", "NVIDIA_CTK_CONFIG_FILE_PATH"):
        value = env.get(var)
        if value:
            return value
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg:
        return os.path.join(xdg, "nvidia-container-runtime", "config.toml")
    return DEFAULT_CONFIG_PATH


def read_toml(path: str) -> dict[str, Any] | None:
    """Parse ``path``; None when it does not exist; :class:`ConfigError` when bad."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"config {path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror or exc}") from None
    simple = parse_simple_toml(data)
    if simple is not None:
        return simple
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.9/3.10
        import tomli as tomllib
    try:
        text = data.decode("utf-8")
        return tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not valid UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML: {exc}") from None


def runtimes_from(raw: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The ``[nvidia-container-runtime] runtimes`` list, or the default.

    Used on the pass-through path, where a wrong value must not stop
    ``delete`` or ``state``: anything but a list of strings gives the default.
    """
    table: Any = (raw or {}).get("nvidia-container-runtime")
    if not isinstance(table, dict) and _is_mapping(table):
        table = dict(table)
    if isinstance(table, dict):
        value = table.get("runtimes")
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
    return DEFAULT_RUNTIMES


def _is_mapping(value: object) -> bool:
    from collections.abc import Mapping

    return isinstance(value, Mapping)


# --- A parser for the plain subset of TOML that config files are written in.
#
# tomllib imports `re` and compiles its patterns: about as much as the rest of
# the pass-through path.  Config files are nearly always plain: `[table]`
# headers, `key = value` with strings, booleans, numbers and one-line arrays
# of strings, comments.  This parser reads exactly that subset and returns
# None for anything else (escapes, quoted or dotted keys, inline tables,
# multi-line values, dates, non-ASCII text, duplicate keys ...), so that
# tomllib decides every case it does not: for what it accepts, it returns
# what tomllib returns.

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_DIGITS = frozenset("0123456789")
# Printable ASCII, tab and newline: anything else goes to tomllib.
_PLAIN = frozenset(bytes(range(0x20, 0x7F)) + b"\t\n")


def _is_bare_key(key: str) -> bool:
    return bool(key) and all(c in _BARE_KEY for c in key)


def _after_value(rest: str) -> bool:
    """Whether what follows a value is only blanks and an optional comment."""
    rest = rest.lstrip(" \t")
    return not rest or rest[0] == "#"


def _simple_string(text: str) -> tuple[str, str] | None:
    """A one-line basic (no escapes) or literal string at the start of ``text``."""
    quote = text[:1]
    if quote not in ('"', "'") or text.startswith(quote * 3):
        return None
    end = text.find(quote, 1)
    if end < 0:
        return None
    value = text[1:end]
    if quote == '"' and "\\" in value:
        return None
    return value, text[end + 1 :]


def _simple_number(token: str) -> int | float | None:
    sign = token[:1] if token[:1] in ("+", "-") else ""
    whole, dot, fraction = token[len(sign) :].partition(".")
    if not whole or not set(whole) <= _DIGITS or (len(whole) > 1 and whole[0] == "0"):
        return None
    if not dot:
        return int(token)
    if not fraction or not set(fraction) <= _DIGITS:
        return None
    return float(token)


def _simple_value(text: str) -> tuple[object, str] | None:
    """The value at the start of ``text`` and what follows it, or None."""
    if text[:1] in ('"', "'"):
        return _simple_string(text)
    if text[:1] == "[":
        items: list[object] = []
        rest = text[1:].lstrip(" \t")
        while not rest.startswith("]"):
            found = _simple_string(rest)
            if found is None:
                return None
            items.append(found[0])
            rest = found[1].lstrip(" \t")
            if rest.startswith(","):
                rest = rest[1:].lstrip(" \t")
            elif not rest.startswith("]"):
                return None
        return items, rest[1:]
    token, hash_, comment = text.partition("#")
    token = token.rstrip(" \t")
    rest = hash_ + comment
    if token in ("true", "false"):
        return token == "true", rest
    number = _simple_number(token)
    return None if number is None else (number, rest)


def parse_simple_toml(data: bytes) -> dict[str, Any] | None:
    """Parse ``data`` if it is plain TOML (see above); None to leave it to tomllib."""
    if not set(data) <= _PLAIN:
        return None
    root: dict[str, Any] = {}
    table = root
    defined: set[tuple[str, ...]] = set()
    for raw_line in data.decode("ascii").split("\n"):
        line = raw_line.strip(" \t")
        if not line or line[0] == "#":
            continue
        if line[0] == "[":
            end = line.find("]")
            if line.startswith("[[") or end < 0 or not _after_value(line[end + 1 :]):
                return None
            path = tuple(part.strip(" \t") for part in line[1:end].split("."))
            if not all(_is_bare_key(part) for part in path) or path in defined:
                return None
            defined.add(path)
            table = root
            for part in path:
                child = table.setdefault(part, {})
                if not isinstance(child, dict):
                    return None
                table = child
            continue
        key, eq, rest = line.partition("=")
        key = key.rstrip(" \t")
        if not eq or not _is_bare_key(key) or key in table:
            return None
        found = _simple_value(rest.lstrip(" \t"))
        if found is None or not _after_value(found[1]):
            return None
        table[key] = found[0]
    return root
