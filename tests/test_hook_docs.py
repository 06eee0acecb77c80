"""Meta-tests: every hook is documented, tested, and in the generated reference."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import pytest

from nvshim.hookspecs import SpecModifier

REPO = Path(__file__).resolve().parent.parent
HOOKS = sorted(
    name
    for name, function in inspect.getmembers(SpecModifier, inspect.isfunction)
    if name.startswith("nvshim_")
)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_hooks", REPO / "docs" / "gen_hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_hooks() -> None:
    assert HOOKS == ["nvshim_modifiers", "nvshim_validate"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_describing_its_arguments(hook: str) -> None:
    function = getattr(SpecModifier, hook)
    doc = inspect.getdoc(function) or ""
    assert len(doc.split()) >= 20, f"{hook} needs a real docstring"
    for name in inspect.signature(function).parameters:
        if name != "self":
            assert f":param {name}:" in doc, f"{hook}'s docstring does not describe {name!r}"
    assert ":return" in doc or ":raises" in doc, f"{hook}'s docstring gives no contract"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_a_test(hook: str) -> None:
    """A test file (other than this one) must implement or call the hook."""
    mentions = [
        path.name
        for path in (REPO / "tests").glob("test_*.py")
        if path.name != Path(__file__).name and f"def {hook}(" in path.read_text()
    ]
    assert mentions, f"no test implements {hook}"


def test_hook_reference_is_up_to_date() -> None:
    page = REPO / "docs" / "plugins" / "hooks.md"
    assert page.read_text(encoding="utf-8") == _generator().render(), (
        "docs/plugins/hooks.md is out of date: run python docs/gen_hooks.py"
    )


def test_hook_reference_names_every_hook() -> None:
    text = _generator().render()
    for hook in HOOKS:
        assert f"## `{hook}(" in text
        assert hook in text.split("```mermaid")[1].split("```")[0], f"{hook} not in the picture"
