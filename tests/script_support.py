"""The nvshim commands the tests run, and why most tests do not run the installed ones.

The installed ``nvshim`` and ``nvshim-ctl`` start Python isolated (``-I``): no
``PYTHONPATH`` reaches them (docs/security.md).  Most tests install a plugin
for a subprocess by putting a folder on ``PYTHONPATH``, so they run the same
wrapper scripts from a *test venv* instead: a venv in a temporary folder,
built once per test session, whose ``site-packages`` holds one ``.pth`` file
that adds the test interpreter's ``site-packages`` (where nvshim is
installed, editable or not) and puts the folders of ``PYTHONPATH`` first on
``sys.path`` (read from ``os.environ``, which ``-I`` leaves readable).  Its
``bin`` holds copies of the installed wrappers and an ``nvshim-python`` naming
the venv's interpreter, exactly as an installer writes it.

:func:`script` gives that test-venv command; :func:`installed_script` the
real one, for the tests that check isolation (test_security_runc.py,
test_install_isolation.py).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sysconfig
import tempfile
import venv
from pathlib import Path

import pytest

__all__ = ["installed_script", "script", "test_venv"]

#: The .pth line that makes PYTHONPATH count again, for tests only.
_PTH = (
    "import site; site.addsitedir({purelib!r})\n"
    "import os, sys; sys.path[:0] = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)"
    " if p and p not in sys.path]\n"
)


def installed_script(name: str) -> str:
    """The installed ``name`` (next to this interpreter, else on PATH), or skip the test."""
    candidate = os.path.join(sysconfig.get_path("scripts"), name)
    if os.path.exists(candidate):
        return candidate
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@functools.cache
def test_venv() -> Path:
    """The session's test venv (see the module docstring); removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="nvshim-test-venv-"))
    atexit.register(shutil.rmtree, folder, True)
    venv.EnvBuilder(symlinks=True, with_pip=False).create(folder)
    purelib = sysconfig.get_path("purelib")
    site_packages = Path(
        sysconfig.get_path("purelib", vars={"base": str(folder), "platbase": str(folder)})
    )
    (site_packages / "nvshim_test_harness.pth").write_text(_PTH.format(purelib=purelib))
    bin_dir = folder / "bin"
    for name in ("nvshim", "nvshim-ctl"):
        source = Path(sysconfig.get_path("scripts")) / name
        if source.exists():
            shutil.copy2(source, bin_dir / name)
    (bin_dir / "nvshim-python").write_text(f"#!{bin_dir / 'python'}\n")
    return folder


def script(name: str) -> str:
    """``name`` (``nvshim`` or ``nvshim-ctl``) from the test venv, which honours PYTHONPATH."""
    installed_script(name)  # skips when nvshim is not installed
    path = test_venv() / "bin" / name
    if not path.exists():
        pytest.skip(f"{name} is not installed")
    return str(path)
