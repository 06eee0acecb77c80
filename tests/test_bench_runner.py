"""The benchmark suite's own machinery: timing, peak RSS and fixtures (bench/)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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


def test_floor_shim_imports_attrs_and_pluggy_then_execs(tmp_path: Path) -> None:
    shim = fixtures.write_floor_shim(tmp_path / "F", sys.executable, "/bin/echo")
    lines = shim.read_text().splitlines()
    # R's three lines after the #! line's interpreter, with the imports first.
    assert lines[1] == "import attrs, pluggy"
    r_shim = fixtures.write_exec_shim(tmp_path / "R", sys.executable, "/bin/echo")
    assert lines[2:] == r_shim.read_text().splitlines()[1:]
    assert lines[0] == f"#!{sys.executable}"
    out = subprocess.run([str(shim), "x"], capture_output=True, text=True, check=True)
    assert out.stdout == "x\n"


def test_cdi_fixture_is_an_8_gpu_spec_of_about_14_kb() -> None:
    text = fixtures.CDI_SPEC.read_text()
    assert 13_000 <= len(text.encode()) <= 16_000
    import yaml

    data = yaml.safe_load(text)
    assert data["kind"] == "nvidia.com/gpu"
    names = [d["name"] for d in data["devices"]]
    assert names == [str(i) for i in range(8)] + ["all"]
    assert all(
        m["hostPath"].startswith(fixtures.CDI_DRIVER_ROOT) for m in data["containerEdits"]["mounts"]
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_cdi_host_moves_the_driver_root_and_makes_the_nodes(tmp_path: Path) -> None:
    spec_dir = fixtures.make_cdi_host(tmp_path / "host")
    text = (spec_dir / fixtures.CDI_SPEC.name).read_text()
    assert fixtures.CDI_DRIVER_ROOT not in text
    for i in range(8):
        assert stat.S_ISCHR((tmp_path / f"host/driver/dev/nvidia{i}").lstat().st_mode)
    assert (tmp_path / "host/driver/usr/bin/nvidia-smi").is_file()


def test_sh_wrapper_passes_arguments(tmp_path: Path) -> None:
    wrapper = fixtures.write_sh_wrapper(tmp_path / "w", "/bin/echo")
    assert wrapper.read_text().startswith("#!/bin/sh\n")
    out = subprocess.run([str(wrapper), "a b", "c"], capture_output=True, text=True, check=True)
    assert out.stdout == "a b c\n"


def test_every_create_case_has_environment_targets() -> None:
    labels = {t.label: t for t in run.TARGETS}
    for case in ("legacy", "csv", "cdi"):
        assert labels[f"create {case} +20 plugins / same"].limit == 1.30
        assert labels[f"create {case} +500 dists / same"].limit == 1.10
    assert labels["create legacy / F"].limit == 1.30
    assert labels["create csv (Orin) / F"].limit == 1.60
    assert labels["create cdi (8-GPU YAML, 2 GPUs) / F"].limit == 1.35
    assert labels["podman run nvshim / runc"].limit == 1.55
    assert labels["create jit-cdi (warm) / legacy"].limit == 1.30
    assert labels["pass-through / R"].limit == 1.10


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
            "F": m("F", [0.06, 0.06]),
            "nvshim state": m("nvshim state", [0.022, 0.021]),
        },
        "create": {
            "F": m("F", [0.06, 0.05]),
            "create legacy": m("create legacy", [0.08, 0.07]),
        },
    }
    rows = {r["label"]: r for r in run._ratio_rows(results, {"csv": "why"})}
    assert rows["pass-through / R"]["median_ratio"] == pytest.approx(1.075)
    assert rows["pass-through / R"]["ok"] is True
    assert rows["F / R"]["median_ratio"] == pytest.approx(3.0)
    assert rows["R / python -I -S"]["ok"] is None
    assert rows["create legacy / F"]["median_ratio"] == pytest.approx(0.075 / 0.055)
    assert rows["create legacy / F"]["ok"] is False  # 1.36 > 1.30
    assert rows["create csv (Orin) / F"]["skipped"] == "why"


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


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short name: podman refuses a runroot over 50 characters."""
    # Not TemporaryDirectory(ignore_cleanup_errors=...): Python 3.9 lacks it.
    folder = tempfile.mkdtemp(prefix="nvb-")
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_podman_case_puts_each_runtime_behind_the_same_wrapper(short_tmp: Path) -> None:
    tmp_path = short_tmp
    skipped: dict[str, str] = {}
    groups = run._podman_group(tmp_path, "/opt/nvshim/bin/nvshim", skipped)
    if not groups:
        pytest.skip(skipped["podman"])
    (group,) = groups
    assert [c.name for c in group.commands] == ["podman via runc", "podman via nvshim"]
    wrappers = [Path(c.argv[c.argv.index("--runtime") + 1]) for c in group.commands]
    bodies = [w.read_text().splitlines() for w in wrappers]
    assert bodies[0][0] == bodies[1][0] == "#!/bin/sh"
    assert bodies[1][1] == 'exec /opt/nvshim/bin/nvshim "$@"'
    assert bodies[0][1].replace(str(shutil.which("runc")), "X") == 'exec X "$@"'
    # Everything else is the same command: GPU requested, the busybox rootfs.
    rest = [c.argv[c.argv.index("--runtime") + 2 :] for c in group.commands]
    assert rest[0] == rest[1]
    assert "NVIDIA_VISIBLE_DEVICES=all" in rest[0]
    assert rest[0][-3:-1] == ["--rootfs", str(tmp_path / "podman" / "rootfs")]
    # conmon hands the runtime's create nvshim's config (legacy, stand-in hook).
    conf = Path(group.env["CONTAINERS_CONF"]).read_text()
    assert f"NVSHIM_CONFIG={group.env['NVSHIM_CONFIG']}" in conf
    config = Path(group.env["NVSHIM_CONFIG"]).read_text()
    assert 'mode = "legacy"' in config
    assert str(tmp_path / "podman" / "stand-in-hook") in config


@pytest.mark.engine
def test_podman_case_runs(short_tmp: Path) -> None:
    tmp_path = short_tmp
    skipped: dict[str, str] = {}
    nvshim = shutil.which("nvshim", path=os.path.dirname(sys.executable))
    if nvshim is None:
        pytest.skip("the nvshim script is not installed beside this interpreter")
    groups = run._podman_group(tmp_path, nvshim, skipped)
    if not groups:
        pytest.skip(skipped["podman"])
    hook_log = tmp_path / "hook-ran"
    hook = tmp_path / "podman" / "stand-in-hook"
    hook.write_text(f"#!/bin/sh\necho ran >> {hook_log}\n")
    measured = timing.measure_python(groups[0], runs=1, warmup=0)
    assert [len(m.times) for m in measured] == [1, 1]
    # Through nvshim only (the check run and the timed one): the GPU request was served.
    assert hook_log.read_text().split() == ["ran", "ran"]


def test_interpreter_of_the_sh_wrapper_reads_nvshim_python(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvshim").write_text("#!/bin/sh\nexec whatever\n")
    (bin_dir / "nvshim-python").write_text("#!/opt/venv/bin/python3.11\nimport sys\n")
    assert fixtures.interpreter_of(str(bin_dir / "nvshim")) == "/opt/venv/bin/python3.11"
    # Through a link, and with pip's form for long interpreter paths.
    (tmp_path / "link").symlink_to(bin_dir / "nvshim")
    long_python = "/opt/" + "x" * 200 + "/bin/python"
    (bin_dir / "nvshim-python").write_text(f"#!/bin/sh\n'''exec' '{long_python}' \"$0\" \"$@\"\n")
    assert fixtures.interpreter_of(str(tmp_path / "link")) == long_python


def test_nvshim_in_venv_copies_the_wrapper_with_the_venvs_interpreter(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "nvshim").write_text("#!/bin/sh\necho nvshim\n")
    (base / "nvshim-ctl").write_text("#!/bin/sh\necho ctl\n")
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    argv = fixtures.nvshim_in_venv(str(base / "nvshim"), str(venv_bin / "python"))
    assert argv == [str(venv_bin / "nvshim")]
    assert (venv_bin / "nvshim-python").read_text() == f"#!{venv_bin / 'python'}\n"
    assert (venv_bin / "nvshim-ctl").read_text() == "#!/bin/sh\necho ctl\n"
    # An older "#!python" script is run by the venv's interpreter instead.
    (base / "old").write_text("#!/usr/bin/python3\nimport sys\n")
    old = fixtures.nvshim_in_venv(str(base / "old"), "/v/bin/python")
    assert old == ["/v/bin/python", str(base / "old")]


def test_cpu_time_is_measured_and_reported_as_a_ratio() -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.05: pass"
    group = timing.Group(
        "create",
        [
            timing.Command("F", [sys.executable, "-c", "import time; time.sleep(0.05)"]),
            timing.Command("create legacy", [sys.executable, "-c", busy]),
        ],
    )
    measured = {m.name: m for m in timing.measure_python(group, runs=3, warmup=0)}
    sleepy, spinning = measured["F"], measured["create legacy"]
    assert len(sleepy.cpu) == len(spinning.cpu) == 3
    # Both take about 50 ms of wall time; only one of them uses the CPU for it.
    assert spinning.cpu_median is not None
    assert spinning.cpu_median >= 0.05
    assert sleepy.cpu_median is not None
    assert sleepy.cpu_median < spinning.cpu_median
    rows = {r["label"]: r for r in run._ratio_rows({"create": measured}, {})}
    assert rows["create legacy / F"]["cpu_ratio"] == pytest.approx(
        spinning.cpu_median / sleepy.cpu_median
    )
    assert "cpu" in run._table(list(rows.values()), {}).splitlines()[0]
