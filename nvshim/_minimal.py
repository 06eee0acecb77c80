"""The smallest config.json the OCI schema accepts: one definition, importable without pytest.

:func:`nvshim.testing.minimal_spec_dict` is its public name; ``nvshim-ctl
demo`` builds on it when runc is not there to write a spec.
"""

from __future__ import annotations

from typing import Any

from nvshim.nvidia import HOOK_ENV


def minimal_spec_dict() -> dict[str, Any]:
    """A small config.json that the OCI schema accepts, as a new dict."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": list(HOOK_ENV),
            "cwd": "/",
        },
        "root": {"path": "rootfs"},
        "hostname": "test",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
    }
