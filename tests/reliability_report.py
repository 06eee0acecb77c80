"""pytest plugin: the reliability figures, printed at the end of the run.

The fault, bad-input and property tests count what they did through
:func:`count` (bad inputs tried, faults injected, parallel creates) and what
went wrong through :func:`lost` (a spec found partial, empty or mixed, a
runtime started after a refusal).  At the end of the session the totals are
printed in a "nvshim reliability" section and stored in the pytest cache under
``nvshim/reliability`` (``pytest --cache-show nvshim/reliability``).

Registered in ``tests/conftest.py`` with ``pytest_plugins = ["reliability_report"]``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: Counted events, by kind: ``bad_inputs``, ``faults``, ``parallel_creates``,
#: ``attacks`` and ``attacks_held`` (see ``attack_support.attack``).
COUNTS: Counter[str] = Counter()
#: One line per thing lost (should stay empty).
LOST: list[str] = []

_LABELS = (
    ("bad_inputs", "bad inputs tried"),
    ("faults", "faults injected"),
    ("kills", "  of which SIGKILLs during a create"),
    ("parallel_creates", "parallel creates"),
    ("fuzz_examples", "generated inputs (property tests)"),
    ("attacks", "attacks tried (tests/attack_support.py)"),
    ("attacks_held", "  of which held"),
)


def count(kind: str, n: int = 1) -> None:
    """Add ``n`` to the counter ``kind``."""
    COUNTS[kind] += n


def lost(what: str) -> None:
    """Record something lost (a test that calls this also fails)."""
    LOST.append(what)


def summary_lines() -> list[str]:
    """The summary, one line per figure."""
    lines = [f"{label}: {COUNTS[kind]}" for kind, label in _LABELS if COUNTS[kind]]
    lines.append(f"specs lost, partial or mixed: {len(LOST)}")
    lines.extend(f"  lost: {what}" for what in LOST[:20])
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Print the figures when a reliability test ran."""
    if not COUNTS and not LOST:
        return
    terminalreporter.section("nvshim reliability")
    for line in summary_lines():
        terminalreporter.write_line(line)
    cache = getattr(config, "cache", None)
    if cache is not None:
        cache.set("nvshim/reliability", {**dict(COUNTS), "lost": len(LOST)})
