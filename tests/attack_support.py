"""Helpers for the attack tests: count each attack, build hostile payloads.

Tests import this module as ``import attack_support``.  Every attack runs
inside :func:`attack`: it counts as tried when it starts and as held when its
block ends without an assertion failing, so the "nvshim reliability" summary
printed at the end of the run says how many attacks were tried and how many
held.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import reliability_report

__all__ = ["attack", "evil_library", "python_site_with_sitecustomize"]


@contextlib.contextmanager
def attack(name: str) -> Iterator[None]:
    """Count the attack ``name`` as tried, then as held unless the block fails."""
    reliability_report.count("attacks")
    yield
    reliability_report.count("attacks_held")


def evil_library(folder: Path, marker: Path, soname: str = "evil.so") -> Path:
    """Compile a shared library whose constructor creates ``marker`` (skip without gcc).

    Preloaded (``LD_PRELOAD``) into a host program it proves that code of the
    image's ran on the host: the marker is a host path.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "evil.c"
    source.write_text(
        "#include <fcntl.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void evil(void) {\n"
        f'  int fd = open("{marker}", O_WRONLY | O_CREAT, 0644);\n'
        '  if (fd >= 0) { write(fd, "pwned\\n", 6); close(fd); }\n'
        "}\n"
    )
    library = folder / soname
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return library


def python_site_with_sitecustomize(folder: Path, marker: Path) -> Path:
    """A folder for ``PYTHONPATH`` whose ``sitecustomize.py`` creates ``marker``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    return folder
