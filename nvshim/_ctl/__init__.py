"""``nvshim-ctl``: tooling around the nvshim runtime."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from nvshim.config import Config


def load_config_or_say_why(path: Optional[str]) -> Optional[Config]:
    """The configuration a command works with, or None after one line on stderr saying why.

    ``path`` is the command's ``--config`` (None: the file the runtime uses).
    """
    from nvshim.config import load_config
    from nvshim.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"nvshim-ctl: {exc}\n")
        return None
