"""nvshim's benchmark suite: whole processes, side by side, reported as ratios.

Usage (normally through ``nox -s bench [-- --quick]``)::

    python bench/run.py [--quick] [--nvshim PATH] [--runs N] [--warmup N]
                        [--runner auto|hyperfine|python] [--out FILE] [--check]

Each group of commands is measured in one go (hyperfine when installed, else
an interleaving Python runner), and every case is reported only as the ratio
of its median to the median of a reference measured in the same group: the
machine's speed cancels out, its noise less so (``--quick`` runs are for
keeping the suite alive in CI, not for judging targets).

References: ``/bin/true``; ``<py> -I -S -c pass``; ``R``, a three-line
``os.execv`` shim run by the same interpreter as nvshim (from the ``#!`` line
of the installed ``nvshim`` script). nvshim's runtime is ``/bin/true`` except
in the runc lifecycle case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import fixtures
from timing import BenchError, Command, Group, Measurement, max_rss_kib, measure

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    """A ratio the issue sets: ``case`` / ``reference`` (both in ``group``) <= ``limit``."""

    label: str
    group: str
    case: str
    reference: str
    limit: Optional[float]


TARGETS = [
    Target("pass-through / R", "startup", "nvshim state", "R", 1.10),
    Target("F / R", "startup", "F", "R", None),
    Target("R / python -I -S", "startup", "R", "python -I -S", None),
    Target("python -I -S / true", "startup", "python -I -S", "/bin/true", None),
    Target("create legacy / F", "create", "create legacy", "F", 1.30),
    Target("create large spec / create", "create", "create large", "create legacy", 1.5),
    Target("create csv (Orin) / F", "csv", "create csv", "F", 1.60),
    Target("create cdi (8-GPU YAML, 2 GPUs) / F", "cdi", "create cdi", "F", 1.35),
    Target("create jit-cdi (warm) / legacy", "jit-cdi", "create jit-cdi", "create legacy", 1.30),
    Target("podman run nvshim / runc", "podman", "podman via nvshim", "podman via runc", 1.55),
    Target("runc lifecycle nvshim / direct", "lifecycle", "via nvshim", "runc direct", None),
    Target("runc lifecycle R / direct", "lifecycle", "via R", "runc direct", None),
]
#: Every create case again in venvs with more installed: (group, case label).
ENVIRONMENT_CASES = (
    ("environment", "legacy"),
    ("environment-csv", "csv"),
    ("environment-cdi", "cdi"),
)
for _group, _case in ENVIRONMENT_CASES:
    TARGETS += [
        Target(
            f"create {_case} +20 plugins / same",
            _group,
            f"{_case} +20 plugins",
            f"{_case} (venv)",
            1.30,
        ),
        Target(
            f"create {_case} +500 dists / same",
            _group,
            f"{_case} +500 dists",
            f"{_case} (venv)",
            1.10,
        ),
    ]

RSS_LIMIT_MB = 40.0
#: More than nvshim._epcache.RACY_SECONDS: the cache is not written sooner.
RACY_WAIT_S = 2.5


@dataclass
class Plan:
    """The groups to measure, the command whose peak RSS counts, and skipped cases."""

    groups: list[Group]
    rss: list[tuple[str, Command, dict[str, str]]]
    skipped: dict[str, str]


def _runc_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("runc") is None:
        return "runc is not installed"
    if not any(os.path.isfile(p) for p in ("/bin/busybox", "/usr/bin/busybox")):
        return "busybox-static is not installed"
    return None


def _root_skip_reason(what: str) -> str | None:
    return None if os.geteuid() == 0 else f"{what} needs root (mknod)"


def build_plan(work: Path, nvshim: str, python: str, shared: Path) -> Plan:
    """Write every fixture under ``work`` and return what to measure."""
    skipped: dict[str, str] = {}
    groups: list[Group] = []
    rss: list[tuple[str, Command, dict[str, str]]] = []
    shim = str(fixtures.write_exec_shim(work / "R", python))
    floor = str(fixtures.write_floor_shim(work / "F", python))
    legacy_cfg = str(fixtures.write_config(work / "legacy.toml"))
    legacy_env = {"NVSHIM_CONFIG": legacy_cfg}

    def create(name: str, bundle: Path, argv0: tuple[str, ...] = (nvshim,)) -> Command:
        return Command(
            name,
            [*argv0, "create", "--bundle", str(bundle), "bench-ctr"],
            fixtures.restore_command(bundle),
        )

    def floor_of(bundle: Path) -> Command:
        return Command("F", [floor, "create", "--bundle", str(bundle), "bench-ctr"])

    groups.append(
        Group(
            "startup",
            [
                Command("/bin/true", ["/bin/true"]),
                Command("python -I -S", [python, "-I", "-S", "-c", "pass"]),
                Command("R", [shim, "state", "x"]),
                Command("F", [floor, "state", "x"]),
                Command("nvshim state", [nvshim, "state", "x"]),
            ],
            legacy_env,
        )
    )

    reference_spec = shared / "reference-data" / "specs" / "docker-clone3.json"
    if not reference_spec.is_file():
        why = f"{reference_spec} is missing"
        for case in ("create", "csv", "cdi", "jit-cdi", "podman"):
            skipped[case] = why
        for group_name, _case in ENVIRONMENT_CASES:
            skipped[group_name] = why
        return Plan(groups, rss, skipped)
    base = json.loads(reference_spec.read_text())
    legacy_bundle = fixtures.write_bundle(work / "legacy", fixtures.gpu_spec(base))
    large_bundle = fixtures.write_bundle(work / "large", fixtures.large_spec(base))
    legacy_create = create("create legacy", legacy_bundle)
    groups.append(
        Group(
            "create",
            [floor_of(legacy_bundle), legacy_create, create("create large", large_bundle)],
            legacy_env,
        )
    )
    rss.append(("create legacy", legacy_create, legacy_env))

    # Each create case: (label, its config's environment, the spec to create).
    cases: list[tuple[str, dict[str, str], dict[str, Any]]] = [
        ("legacy", legacy_env, fixtures.gpu_spec(base))
    ]
    orin = shared / "reference-data" / "csv" / "orin"
    why_not = _root_skip_reason("the fake Jetson root")
    if why_not is None and not orin.is_dir():
        why_not = f"{orin} is missing"
    if why_not is not None:
        skipped["csv"] = skipped["environment-csv"] = why_not
    else:
        fake_root = fixtures.make_fake_jetson_root(work / "jetson-root", orin)
        csv_env = {
            "NVSHIM_CONFIG": str(
                fixtures.write_config(
                    work / "csv.toml", mode="csv", csv_dir=orin, driver_root=fake_root
                )
            )
        }
        csv_bundle = fixtures.write_bundle(work / "csv", fixtures.gpu_spec(base))
        csv_create = create("create csv", csv_bundle)
        groups.append(Group("csv", [floor_of(csv_bundle), csv_create], csv_env))
        rss.append(("create csv", csv_create, csv_env))
        cases.append(("csv", csv_env, fixtures.gpu_spec(base)))

    why_not = _root_skip_reason("the CDI spec's device nodes")
    if why_not is not None:
        skipped["cdi"] = skipped["environment-cdi"] = why_not
    else:
        spec_dir = fixtures.make_cdi_host(work / "cdi-host")
        cdi_env = {
            "NVSHIM_CONFIG": str(
                fixtures.write_config(work / "cdi.toml", mode="cdi", cdi_dirs=[spec_dir])
            )
        }
        cdi_bundle = fixtures.write_bundle(work / "cdi", fixtures.cdi_gpu_spec(base))
        cdi_create = create("create cdi", cdi_bundle)
        groups.append(Group("cdi", [floor_of(cdi_bundle), cdi_create], cdi_env))
        rss.append(("create cdi", cdi_create, cdi_env))
        cases.append(("cdi", cdi_env, fixtures.cdi_gpu_spec(base)))

    jit = fixtures.make_jit_cdi_host(work / "jit-cdi-host", python)
    if isinstance(jit, str):
        skipped["jit-cdi"] = jit
    else:
        jit_bundle = fixtures.write_bundle(work / "jit-cdi", fixtures.cdi_gpu_spec(base, 1))
        # Both creates run under the jit-cdi host's environment, with their own config.
        pairs = [f"{k}={v}" for k, v in {**jit, **legacy_env}.items()]
        groups.append(
            Group(
                "jit-cdi",
                [
                    Command(
                        "create legacy",
                        ["env", *pairs, nvshim, "create", "--bundle", str(legacy_bundle), "x"],
                        fixtures.restore_command(legacy_bundle),
                    ),
                    create("create jit-cdi", jit_bundle),
                ],
                jit,
            )
        )

    _environment_groups(work, nvshim, python, cases, groups, rss)
    groups += _podman_group(work, nvshim, skipped)
    groups += _lifecycle_group(work, nvshim, python, skipped)
    return Plan(groups, rss, skipped)


def _environment_groups(
    work: Path,
    nvshim: str,
    python: str,
    cases: list[tuple[str, dict[str, str], dict[str, Any]]],
    groups: list[Group],
    rss: list[tuple[str, Command, dict[str, str]]],
) -> None:
    """Every create case in three venvs that differ only in what else is installed."""
    venvs: list[tuple[str, list[str]]] = []
    for extra in ("base", "plugins", "dists"):
        venv_python, site = fixtures.make_overlay_venv(work / f"venv-{extra}", python)
        argv0 = fixtures.nvshim_in_venv(nvshim, venv_python)
        # csv mode's hooks name nvshim-ctl beside the interpreter, as an install has it.
        ctl = Path(nvshim).with_name("nvshim-ctl")
        if ctl.is_file() and not (Path(venv_python).parent / "nvshim-ctl").exists():
            (Path(venv_python).parent / "nvshim-ctl").symlink_to(ctl)
        if extra == "plugins":
            fixtures.add_plugins(site, 20, venv_python)
        elif extra == "dists":
            fixtures.add_distributions(site, 500)
        venvs.append((extra, argv0))
    labels = {"base": "(venv)", "plugins": "+20 plugins", "dists": "+500 dists"}
    for case, env, spec in cases:
        commands = []
        for extra, argv0 in venvs:
            bundle = fixtures.write_bundle(work / f"bundle-{case}-{extra}", spec)
            commands.append(
                Command(
                    f"{case} {labels[extra]}",
                    [*argv0, "create", "--bundle", str(bundle), "bench-ctr"],
                    fixtures.restore_command(bundle),
                )
            )
        name = "environment" if case == "legacy" else f"environment-{case}"
        groups.append(Group(name, commands, env))
        rss.append((f"{case} +20 plugins", commands[1], env))


def _podman_group(work: Path, nvshim: str, skipped: dict[str, str]) -> list[Group]:
    """``podman run --rm`` of a busybox rootfs, GPU requested, through runc and through nvshim.

    Each runtime runs behind the same ``#!/bin/sh`` wrapper; nvshim is in
    legacy mode with runc as its runtime and a stand-in hook that only exits 0.
    Podman calls the runtime for create, start and delete.
    """
    podman = shutil.which("podman")
    runc = shutil.which("runc")
    if podman is None:
        skipped["podman"] = "podman is not installed"
        return []
    if os.geteuid() != 0:
        skipped["podman"] = "podman with private storage needs root here"
        return []
    if runc is None:
        skipped["podman"] = "runc is not installed"
        return []
    folder = work / "podman"
    if len(str(folder / "run")) > 50:
        skipped["podman"] = f"podman refuses a runroot over 50 characters ({folder}/run)"
        return []
    rootfs = fixtures.make_rootfs(folder / "rootfs")
    if rootfs is None:
        skipped["podman"] = "busybox-static is not installed"
        return []
    hook = folder / "stand-in-hook"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    cfg = fixtures.write_config(folder / "nvshim.toml", runtimes=[runc], hook=str(hook))
    env = {"NVSHIM_CONFIG": str(cfg), "NVSHIM_CACHE_DIR": str(work / "cache")}
    conf = fixtures.write_podman_conf(folder / "containers.conf", env)
    wrappers = {
        "runc": fixtures.write_sh_wrapper(folder / "via-runc", runc),
        "nvshim": fixtures.write_sh_wrapper(folder / "via-nvshim", nvshim),
    }
    storage = [
        *("--root", str(folder / "storage"), "--runroot", str(folder / "run")),
        *("--tmpdir", str(folder / "tmp")),
    ]
    run_args = [
        *("run", "--rm", "--network", "none"),
        *("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"),
        *("-e", "NVIDIA_VISIBLE_DEVICES=all", "-e", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"),
        *("--rootfs", str(rootfs), "/bin/true"),
    ]
    commands = [
        Command(f"podman via {name}", [podman, *storage, "--runtime", str(path), *run_args])
        for name, path in wrappers.items()
    ]
    return [Group("podman", commands, {"CONTAINERS_CONF": str(conf), **env})]


def _lifecycle_group(work: Path, nvshim: str, python: str, skipped: dict[str, str]) -> list[Group]:
    reason = _runc_skip_reason()
    runc = shutil.which("runc")
    if reason is not None or runc is None:
        skipped["lifecycle"] = reason or "runc is not installed"
        return []
    busybox_bundle = fixtures.make_busybox_bundle(work / "busybox", runc, ["true"])
    if busybox_bundle is None:
        skipped["lifecycle"] = "busybox-static is not installed"
        return []
    runc_cfg = fixtures.write_config(work / "runc.toml", runtimes=[runc])
    state = work / "runc-state"
    # The floor of any Python shim: three bare interpreter starts more.
    r_runc = str(fixtures.write_exec_shim(work / "R-runc", python, runc))
    return [
        Group(
            "lifecycle",
            [
                Command(name, ["sh", "-c", _lifecycle_script(rt, state, busybox_bundle)])
                for name, rt in (
                    ("runc direct", runc),
                    ("via R", r_runc),
                    ("via nvshim", nvshim),
                )
            ],
            {"NVSHIM_CONFIG": str(runc_cfg)},
        )
    ]


def _use_cache_dir(plan: Plan, cache_dir: str) -> None:
    """Give every nvshim run the same private entry-point cache (or none: ``""``).

    nvshim caches its entry points in a file that is only trusted when the
    folders on ``sys.path`` have not changed in the last seconds (see
    nvshim/_epcache.py); the fixtures were just written, so wait that long
    first.  The check run and the warm-ups then fill the cache, as the first
    create after an install does on a real host.
    """
    for group in plan.groups:
        group.env["NVSHIM_CACHE_DIR"] = cache_dir
    for _name, _cmd, env in plan.rss:
        env["NVSHIM_CACHE_DIR"] = cache_dir
    if cache_dir:
        time.sleep(RACY_WAIT_S)


def _lifecycle_script(runtime: str, state: Path, bundle: Path) -> str:
    rt = f"{runtime} --root {state}"
    return (
        f"{rt} create --bundle {bundle} bench-life >/dev/null 2>&1 && "
        f"{rt} start bench-life && {rt} delete -f bench-life"
    )


def _cleanup_lifecycle(work: Path) -> None:
    runc = shutil.which("runc")
    if runc and (work / "runc-state").exists():
        subprocess.run(
            [runc, "--root", str(work / "runc-state"), "delete", "-f", "bench-life"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def _ratio_rows(
    results: dict[str, dict[str, Measurement]], skipped: dict[str, str]
) -> list[dict[str, Any]]:
    rows = []
    for t in TARGETS:
        row: dict[str, Any] = {
            "label": t.label,
            "case": t.case,
            "reference": t.reference,
            "target": t.limit,
        }
        group = results.get(t.group)
        if group is None or t.case not in group or t.reference not in group:
            row["skipped"] = skipped.get(t.group, "not measured")
        else:
            case, ref = group[t.case], group[t.reference]
            row["median_ratio"] = case.median / ref.median
            row["min_ratio"] = case.minimum / ref.minimum
            case_cpu, ref_cpu = case.cpu_median, ref.cpu_median
            if case_cpu is not None and ref_cpu and t.group != "podman":
                row["cpu_ratio"] = case_cpu / ref_cpu
            row["ok"] = None if t.limit is None else row["median_ratio"] <= t.limit
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]], rss: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{'ratio':34} {'median':>8} {'min':>8} {'cpu':>8} {'target':>8}  result",
        "-" * 79,
    ]
    for row in rows:
        target = "" if row["target"] is None else f"<= {row['target']:.2f}"
        if "skipped" in row:
            lines.append(
                f"{row['label']:34} {'-':>8} {'-':>8} {'-':>8} {target:>8}"
                f"  skipped: {row['skipped']}"
            )
            continue
        verdict = "" if row["ok"] is None else ("ok" if row["ok"] else "MISSED")
        cpu = f"{row['cpu_ratio']:8.3f}" if "cpu_ratio" in row else f"{'-':>8}"
        lines.append(
            f"{row['label']:34} {row['median_ratio']:8.3f} {row['min_ratio']:8.3f} {cpu} "
            f"{target:>8}  {verdict}"
        )
    for name, figures in rss.items():
        verdict = "ok" if figures["max_mb"] <= RSS_LIMIT_MB else "MISSED"
        lines.append(
            f"{'max RSS ' + name + ' (MB)':34} {figures['median_mb']:8.1f} "
            f"{figures['max_mb']:8.1f} {'':8} {'<= ' + str(int(RSS_LIMIT_MB)):>8}  {verdict} "
            f"(floor {figures['floor_mb']:.1f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit 0 unless a command failed (or ``--check`` and a target missed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs: keeps the suite alive")
    parser.add_argument("--nvshim", default=shutil.which("nvshim"), help="the nvshim script")
    parser.add_argument("--python", help="reference interpreter (default: nvshim's)")
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO / "tests" / "data",
        help="the folder holding reference-data/ (default: tests/data)",
    )
    parser.add_argument("--runs", type=int, help="timed runs per command (default 30, quick 5)")
    parser.add_argument("--warmup", type=int, help="untimed runs first (default 3, quick 1)")
    parser.add_argument("--runner", choices=("auto", "hyperfine", "python"), default="auto")
    parser.add_argument(
        "--rounds",
        type=int,
        help="hyperfine calls per group, command order rotating (default 6, quick 1)",
    )
    parser.add_argument("--only", action="append", help="measure only this group (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="run nvshim without its entry-point cache (NVSHIM_CACHE_DIR=)",
    )
    args = parser.parse_args(argv)

    if not args.nvshim or not os.path.isfile(args.nvshim):
        parser.error("nvshim not found: install it or pass --nvshim PATH")
    nvshim = os.path.abspath(args.nvshim)
    python = args.python or fixtures.interpreter_of(nvshim)
    runs = args.runs or (5 if args.quick else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 6)

    started = time.monotonic()
    results: dict[str, dict[str, Measurement]] = {}
    runners: set[str] = set()
    rss: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="nvshim-bench-") as tmp:
        work = Path(tmp)
        plan = build_plan(work, nvshim, python, args.shared.resolve())
        _use_cache_dir(plan, "" if args.no_cache else str(work / "cache"))
        try:
            for group in plan.groups:
                if args.only and group.name not in args.only:
                    continue
                measured, runner = measure(group, runs, warmup, args.runner, rounds)
                runners.add(runner)
                results[group.name] = {m.name: m for m in measured}
            floor = max_rss_kib(python, Command("/bin/true", ["/bin/true"]), {}, 3)
            for name, cmd, env in plan.rss:
                peaks = max_rss_kib(python, cmd, env, 3 if args.quick else 10)
                rss[name] = {
                    "median_mb": statistics.median(peaks) / 1024,
                    "max_mb": max(peaks) / 1024,
                    "floor_mb": max(floor) / 1024,
                }
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        finally:
            _cleanup_lifecycle(work)

    rows = _ratio_rows(results, plan.skipped)
    report = {
        "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "runs": runs,
        "warmup": warmup,
        "rounds": rounds,
        "runner": sorted(runners),
        "nvshim": nvshim,
        "python": python,
        "python_version": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "ratios": rows,
        "max_rss": rss,
        "rss_limit_mb": RSS_LIMIT_MB,
        "skipped": plan.skipped,
        "entry_point_cache": not args.no_cache,
        # Raw times, for looking into a figure; the report itself is the ratios.
        "raw": {g: {n: m.to_json() for n, m in ms.items()} for g, ms in results.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(
        f"nvshim benchmarks ({'quick, ' if args.quick else ''}{runs} runs, "
        f"{'/'.join(sorted(runners)) or 'no'} runner, {os.cpu_count()} CPUs)"
    )
    print(_table(rows, rss))
    print(f"\nJSON: {args.out}")
    missed = [r["label"] for r in rows if r.get("ok") is False]
    missed += [f"max RSS {n}" for n, f in rss.items() if f["max_mb"] > RSS_LIMIT_MB]
    if missed:
        print("missed: " + ", ".join(missed))
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
