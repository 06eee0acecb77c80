"""noxfile.py: the Python versions come from pyproject.toml, and importing it changes nothing."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parent.parent


def _stub_nox() -> types.ModuleType:
    """Just enough of nox to import noxfile.py (nox itself is not a test dependency)."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 and older
        import tomli as tomllib

    nox = types.ModuleType("nox")

    def load_toml(name: str) -> dict[str, Any]:
        with open(REPO / name, "rb") as handle:
            return tomllib.load(handle)

    def python_versions(pyproject: dict[str, Any], **_: Any) -> list[str]:
        pattern = re.compile(r"Programming Language :: Python :: (\d+\.\d+)$")
        found = (pattern.match(c) for c in pyproject["project"]["classifiers"])
        return [m.group(1) for m in found if m]

    def session(*_args: Any, **_kwargs: Any) -> Callable[[Any], Any]:
        return lambda function: function

    nox.project = types.SimpleNamespace(  # type: ignore[attr-defined]
        load_toml=load_toml, python_versions=python_versions, dependency_groups=lambda *a: []
    )
    nox.session = session  # type: ignore[attr-defined]
    nox.options = types.SimpleNamespace()  # type: ignore[attr-defined]
    nox.Session = object  # type: ignore[attr-defined]
    return nox


def test_importing_the_noxfile_changes_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nox", _stub_nox())
    monkeypatch.chdir(REPO)
    before = dict(os.environ)
    namespace: dict[str, Any] = {"__file__": str(REPO / "noxfile.py"), "__name__": "noxfile"}
    exec(compile((REPO / "noxfile.py").read_text(), "noxfile.py", "exec"), namespace)
    assert dict(os.environ) == before
    # The versions are pyproject.toml's classifiers, starting at requires-python's.
    pyproject = namespace["PYPROJECT"]["project"]
    assert namespace["PYTHONS"][0] == pyproject["requires-python"].removeprefix(">=")
    assert len(namespace["PYTHONS"]) > 1
