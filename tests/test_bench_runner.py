"""The benchmark suite's own machinery: timing, peak RSS and fixtures (bench/)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(BENCH))

import fixtures  # noqa: E402
import run  # noqa: E402
import timing  # noqa: E402


def test_python_runner_times_every_command(tmp_path: Path) -> None:
    marker = tmp_path / "count"
    group = timing.Group(
        "g",
        [
            timing.Command("true", ["/bin/true"]),
            timing.Command(
                "sleepy",
                [sys.executable, "-c", "import time; time.sleep(0.02)"],
                prepare=["sh", "-c", f"echo x >> {marker}"],
            ),
        ],
    )
    measured = timing.measure_python(group, runs=4, warmup=1)
    assert [m.name for m in measured] == ["true", "sleepy"]
    assert all(len(m.times) == 4 for m in measured)
    assert measured[1].minimum >= 0.02 > measured[0].median
    # prepare ran before every run: the check run, the warm-up and the 4 timed ones.
    assert len(marker.read_text().splitlines()) == 6


def test_failing_command_is_an_error_with_its_stderr() -> None:
    group = timing.Group("g", [timing.Command("bad", ["sh", "-c", "echo boom >&2; exit 3"])])
    with pytest.raises(timing.BenchError, match=r"(?s)exited 3.*\nboom"):
        timing.measure_python(group, runs=2, warmup=0)


@pytest.mark.skipif(timing.find_hyperfine() is None, reason="hyperfine is not installed")
def test_hyperfine_runner_gives_the_same_shape() -> None:
    group = timing.Group(
        "g", [timing.Command("a", ["/bin/true"]), timing.Command("b", ["/bin/echo", "x"])]
    )
    measured = timing.measure_hyperfine(str(timing.find_hyperfine()), group, runs=3, warmup=0)
    assert [(m.name, len(m.times)) for m in measured] == [("a", 3), ("b", 3)]


def test_max_rss_sees_a_big_allocation() -> None:
    small = timing.max_rss_kib(sys.executable, timing.Command("t", ["/bin/true"]), {}, 2)
    big = timing.max_rss_kib(
        sys.executable,
        timing.Command(
            "big",
            [sys.executable, "-c", "b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096])"],
        ),
        {},
        2,
    )
    assert max(small) < 20 * 1024  # the small forker keeps the floor low
    assert min(big) > max(small) + 60 * 1024


def test_exec_shim_and_interpreter_of(tmp_path: Path) -> None:
    shim = fixtures.write_exec_shim(tmp_path / "R", sys.executable, "/bin/echo")
    assert fixtures.interpreter_of(str(shim)) == sys.executable
    out = subprocess.run([str(shim), "a", "b"], capture_output=True, text=True, check=True)
    assert out.stdout == "a b\n"
    assert len(shim.read_text().splitlines()) == 3


def test_large_spec_has_the_sizes_the_issue_names() -> None:
    spec = fixtures.large_spec({"process": {"env": ["PATH=/bin"]}, "mounts": []})
    assert len(spec["mounts"]) == 2000
    assert len(spec["linux"]["devices"]) == 500
    assert sum(e.startswith("BENCH_VAR_") for e in spec["process"]["env"]) == 200
    assert "NVIDIA_VISIBLE_DEVICES=all" in spec["process"]["env"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_fake_jetson_root_holds_every_csv_path(tmp_path: Path) -> None:
    orin = DATA / "reference-data/csv/orin"
    root = fixtures.make_fake_jetson_root(tmp_path / "root", orin)
    for kind, path in fixtures._csv_entries(orin):
        found = sorted(root.glob(path.lstrip("/")))
        assert found, path
        mode = found[0].lstat().st_mode
        expected = {
            "dev": stat.S_ISCHR,
            "dir": stat.S_ISDIR,
            "lib": stat.S_ISREG,
            "sym": stat.S_ISLNK,
        }[kind]
        assert expected(mode), (kind, path)


def test_overlay_venv_sees_base_and_extra_distributions(tmp_path: Path) -> None:
    python, site = fixtures.make_overlay_venv(tmp_path / "v", sys.executable)
    fixtures.add_distributions(site, 3)
    fixtures.add_plugins(site, 2)
    code = (
        "import json, importlib.metadata as md, pytest;"
        "eps = md.entry_points();"
        "sel = eps.select(group='nvshim') if hasattr(eps, 'select') else eps.get('nvshim', []);"
        "print(json.dumps(sorted({e.name for e in sel})));"
        "print(md.version('benchdist_0002'))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    names, version = out.stdout.splitlines()
    assert {"bench-plugin-00", "bench-plugin-01"} <= set(json.loads(names))
    assert version == "1.0"


def test_ratio_rows_and_verdicts() -> None:
    m = timing.Measurement
    results = {
        "startup": {
            "/bin/true": m("/bin/true", [0.001, 0.001]),
            "python -I -S": m("python -I -S", [0.01, 0.01]),
            "R": m("R", [0.02, 0.02]),
            "nvshim state": m("nvshim state", [0.022, 0.021]),
        }
    }
    rows = {r["label"]: r for r in run._ratio_rows(results, {"create": "why"})}
    assert rows["pass-through / R"]["median_ratio"] == pytest.approx(1.075)
    assert rows["pass-through / R"]["ok"] is True
    assert rows["R / python -I -S"]["ok"] is None
    assert rows["create legacy / R"]["skipped"] == "why"


def test_bench_plugins_are_byte_compiled(tmp_path: Path) -> None:
    # As pip does: otherwise the +20 plugins case would time the compiler.
    site = tmp_path / "site"
    site.mkdir()
    fixtures.add_plugins(site, 2, sys.executable)
    cached = sorted(p.name.split(".")[0] for p in (site / "__pycache__").glob("*.pyc"))
    assert cached == ["nvshim_bench_plugin_00", "nvshim_bench_plugin_01"]


def test_every_nvshim_run_gets_the_bench_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "RACY_WAIT_S", 0)
    shared_env: dict[str, str] = {"NVSHIM_CONFIG": "x"}
    plan = run.Plan(
        groups=[timing.Group("g", [timing.Command("a", ["/bin/true"])], shared_env)],
        rss=[("a", timing.Command("a", ["/bin/true"]), {"NVSHIM_CONFIG": "y"})],
        skipped={},
    )
    run._use_cache_dir(plan, "/tmp/c")
    assert plan.groups[0].env["NVSHIM_CACHE_DIR"] == "/tmp/c"
    assert plan.rss[0][2]["NVSHIM_CACHE_DIR"] == "/tmp/c"
    run._use_cache_dir(plan, "")  # --no-cache: nvshim's way to turn it off
    assert plan.groups[0].env["NVSHIM_CACHE_DIR"] == ""


@pytest.mark.skipif(timing.find_hyperfine() is None, reason="hyperfine is not installed")
def test_hyperfine_rounds_split_the_runs(tmp_path: Path) -> None:
    marker = tmp_path / "order"
    group = timing.Group(
        "g",
        [
            timing.Command("a", ["sh", "-c", f"echo a >> {marker}"]),
            timing.Command("b", ["sh", "-c", f"echo b >> {marker}"]),
        ],
    )
    measured = timing.measure_hyperfine(str(timing.find_hyperfine()), group, 7, 0, rounds=3)
    assert [(m.name, len(m.times)) for m in measured] == [("a", 7), ("b", 7)]
    lines = marker.read_text().split()
    # A check run each (2 lines), round 0: 3 + 3 runs, round 1: (1 warm-up + 2) x 2,
    # round 2: the same; the order rotates: a first, then b first, then a again.
    first_of_each_round = [lines[2], lines[2 + 6], lines[2 + 6 + 6]]
    assert first_of_each_round == ["a", "b", "a"]
