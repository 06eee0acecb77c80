"""Fuzzing entry points for the config.json and CSV parsers, run for a bounded time.

``python tests/fuzz_targets.py --seconds 60`` feeds each target generated
bytes until the time is up: with atheris (coverage-guided) when it is
installed and ``--engine atheris`` is given, else with hypothesis at scale
(many examples, no deadline, a fresh seed each round).  A target may only
fail the way the product fails: :class:`nvshim.spec.SpecError` for
config.json, warnings for CSV lines; anything else is a bug and stops the run
with the input that caused it.  The nox session ``fuzz`` runs this.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from nvshim.spec import Spec, SpecError, parse_json


def fuzz_config_json(data: bytes) -> None:
    """config.json bytes: parsed and checked, or refused with a SpecError, never a crash.

    An accepted spec must survive a round trip: written and read back, it is
    the same JSON object.
    """
    try:
        spec = Spec(parse_json(data, "fuzz.json"))
    except SpecError as exc:
        message = str(exc)
        spec = None
    if spec is None:
        assert message, "an empty error message"
        assert "\n" not in message, message  # nvshim reports it as one line
        return
    text = spec.to_json()
    again = parse_json(text.encode(), "again.json")
    assert again == spec.raw, "round trip changed the spec"
    spec.get_env("PATH")
    spec.mounts()
    spec.devices()
    for stage in ("prestart", "createContainer", "poststop"):
        spec.hooks(stage)


def fuzz_csv(data: bytes) -> None:
    """CSV file bytes: entries with clean absolute paths, or warnings naming file:line."""
    from nvshim_csv_discovery.csvfiles import ENTRY_TYPES, parse_csv

    warnings: list[str] = []
    lines = data.splitlines()
    for entry in parse_csv(lines, "fuzz.csv", warnings.append):
        assert entry.type in ENTRY_TYPES
        assert entry.path.startswith("/"), entry
        assert ".." not in entry.path.split("/"), entry
        assert "\0" not in entry.path, entry
    for warning in warnings:
        assert warning.startswith("fuzz.csv:"), warning


TARGETS: dict[str, Callable[[bytes], None]] = {
    "config-json": fuzz_config_json,
    "csv": fuzz_csv,
}


def _json_like_bytes() -> object:
    """Hypothesis strategy: mostly spec-shaped JSON, sometimes mangled, sometimes raw bytes."""
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    values = st.recursive(
        scalars,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=25,
    )
    keys = st.sampled_from(
        [
            "process",
            "env",
            "mounts",
            "hooks",
            "linux",
            "devices",
            "root",
            "path",
            "annotations",
            "destination",
            "prestart",
            "createContainer",
            "resources",
            "capabilities",
            "bounding",
        ]
    )
    shaped = st.recursive(
        scalars,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=5),
        max_leaves=30,
    )
    documents = st.one_of(shaped, values).map(lambda v: json.dumps(v).encode())

    def mangle(doc: bytes, cut: int, junk: bytes) -> bytes:
        cut = cut % (len(doc) + 1)
        return doc[:cut] + junk + doc[cut:]

    mangled = st.builds(mangle, documents, st.integers(0, 1 << 16), st.binary(max_size=4))
    return st.one_of(documents, mangled, st.binary(max_size=300))


def _csv_bytes() -> object:
    from hypothesis import strategies as st

    kinds = st.sampled_from(["dev", "lib", "sym", "dir", "", "xx", "#"])
    parts = st.text(alphabet="ab./-_ *?[],\t", max_size=10)
    lines = st.builds(lambda k, s, p: f"{k}{s}{p}", kinds, st.sampled_from([",", ", ", ""]), parts)
    text = st.lists(lines, max_size=10).map(lambda ls: "\n".join(ls).encode())
    return st.one_of(text, st.binary(max_size=300))


def run_hypothesis(name: str, seconds: float, examples_per_round: int = 500) -> int:
    """Run target ``name`` under hypothesis until ``seconds`` have passed; return examples run."""
    from hypothesis import HealthCheck, given, settings

    target = TARGETS[name]
    strategy = _json_like_bytes() if name == "config-json" else _csv_bytes()
    count = 0

    @settings(
        max_examples=examples_per_round,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)  # type: ignore[arg-type]
    def run_one(data: bytes) -> None:
        nonlocal count
        count += 1
        target(data)

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run_one()
    return count


def run_atheris(name: str, seconds: float) -> None:  # pragma: no cover - optional engine
    """Run target ``name`` under atheris for ``seconds`` (libFuzzer's -max_total_time)."""
    import atheris

    target = TARGETS[name]
    with atheris.instrument_imports():
        pass
    atheris.Setup([sys.argv[0], f"-max_total_time={max(1, int(seconds))}"], target)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--seconds`` per target, ``--target`` (repeatable), ``--engine``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="time per target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    args = parser.parse_args(argv)
    for name in args.target or sorted(TARGETS):
        if args.engine == "atheris":
            run_atheris(name, args.seconds)
            continue
        start = time.monotonic()
        count = run_hypothesis(name, args.seconds)
        print(f"fuzz {name}: {count} inputs in {time.monotonic() - start:.0f} s, no failure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
