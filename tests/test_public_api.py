"""The built-ins are held to the third-party rules: public API only, both ways."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN_PACKAGES = sorted(
    p.parent.name for p in (REPO / "plugins").glob("*/__init__.py")
) + sorted(p.parent.name for p in (REPO / "plugins").glob("*/src/*/__init__.py"))


def _sources(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if "tests" not in path.relative_to(folder).parts:
            yield path


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _private(module: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in module.split("."))


def _private_imports(folder: Path, roots: set[str], own: str | None = None) -> list[str]:
    found = []
    for path in _sources(folder):
        for line, module in _imports(path):
            root = module.split(".")[0]
            if root in roots and root != own and _private(module):
                found.append(f"{path.relative_to(folder)}:{line}: {module}")
    return found


def test_the_plugin_packages_are_found() -> None:
    assert {"nvshim_cdi", "nvshim_csv_discovery", "nvshim_legacy_hook"} <= set(PLUGIN_PACKAGES)


@pytest.mark.parametrize("package", PLUGIN_PACKAGES)
def test_a_built_in_imports_no_private_nvshim_module(package: str) -> None:
    folder = next((REPO / "plugins").glob(f"**/{package}"))
    assert _private_imports(folder, {"nvshim", *PLUGIN_PACKAGES}, own=package) == []


def test_the_core_imports_no_private_module_of_a_plugin() -> None:
    assert _private_imports(REPO / "nvshim", set(PLUGIN_PACKAGES)) == []


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from nvshim._log import Logger\nimport nvshim.lookup\nfrom nvshim import _version\n"
    )
    assert _private_imports(tmp_path, {"nvshim"}) == [
        "bad.py:1: nvshim._log",
        "bad.py:1: nvshim._log.Logger",
        "bad.py:3: nvshim._version",
    ]


def test_tests_import_helpers_from_support_not_conftest() -> None:
    tests = REPO / "tests"
    found = [
        f"{path.name}:{line}"
        for path in sorted(tests.glob("*.py"))
        if path.name != "conftest.py"
        for line, module in _imports(path)
        if module == "conftest"
    ]
    assert found == []
