"""``nvidia-container-runtime-hook``: a stand-in that only exists to be found.

dockerd accepts ``docker run --gpus`` only when an executable of this name is
on its PATH, and writes it into the container's spec as a prestart hook.
nvshim's docker-gpus-detector removes that hook before the container starts
and nvshim serves the request itself, so this program never runs on a host
set up as documented.  If it does run (nvshim is not the container's
runtime, or the detector is disabled), it refuses with one clear line rather
than start a GPU container without its GPUs.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

MESSAGE = (
    "nvidia-container-runtime-hook: this is nvshim's stand-in, which only lets"
    " `docker run --gpus` through; run the container with `--runtime nvshim` (nvshim's"
    " docker-gpus-detector removes this hook and injects the GPUs itself), or install"
    " NVIDIA's container toolkit to use NVIDIA's hook"
)


def main() -> int:
    """Refuse: print one line to stderr and exit 1."""
    sys.stderr.write(MESSAGE + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
