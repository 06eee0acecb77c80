"""Finding and reading config.toml, with nothing heavier than a TOML parser.

The pass-through path (every runtime call but create) uses only this module to
learn the ``runtimes`` key; the typed view lives in :mod:`nvshim.config`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

DEFAULT_CONFIG_PATH = "/etc/nvidia-container-runtime/config.toml"
DEFAULT_RUNTIMES = ("runc", "crun")


class ConfigError(Exception):
    """A configuration file that cannot be read or does not hold valid settings."""


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
    table = (raw or {}).get("nvidia-container-runtime")
    if isinstance(table, Mapping):
        value = table.get("runtimes")
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
    return DEFAULT_RUNTIMES
