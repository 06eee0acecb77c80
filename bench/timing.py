"""Timing whole processes side by side: hyperfine when installed, else a Python runner.

A :class:`Group` is a set of commands measured in one go under one
environment (the case and the reference it is compared with); figures are
only ever compared within a group. The Python runner interleaves the
commands run by run, so that a slow patch of a noisy machine hits every
command alike, and spawns with ``posix_spawnp`` (no shell, no Python
``fork``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Command:
    """One command to time; ``prepare`` runs before each timed run, untimed."""

    name: str
    argv: list[str]
    prepare: Optional[list[str]] = None


@dataclass
class Group:
    """Commands measured together, with the environment they all run in."""

    name: str
    commands: list[Command]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Measurement:
    """Wall times (seconds) of one command's timed runs, and the CPU time they used.

    ``cpu``: user + system seconds of the process (and the children it
    waited for), one figure per run with the Python runner, one mean per
    hyperfine call.  On a machine shared with other jobs, wall time includes
    waiting for a CPU, CPU time does not: CPU ratios are the steadier figure
    for the cases that run in one process tree (not podman, whose runtime
    runs under conmon).
    """

    name: str
    times: list[float]
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median wall time."""
        return statistics.median(self.times)

    @property
    def minimum(self) -> float:
        """Fastest run."""
        return min(self.times)

    @property
    def cpu_median(self) -> Optional[float]:
        """Median CPU time, None when not measured."""
        return statistics.median(self.cpu) if self.cpu else None

    def to_json(self) -> dict[str, Any]:
        """The raw figures, for the JSON report."""
        return {
            "runs": len(self.times),
            "median_s": self.median,
            "min_s": self.minimum,
            "mean_s": statistics.fmean(self.times),
            "stdev_s": statistics.stdev(self.times) if len(self.times) > 1 else 0.0,
            "cpu_median_s": self.cpu_median,
        }


class BenchError(RuntimeError):
    """A command failed while being measured."""


def _environ(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # A host saves byte code (pip compiles on install); without it, an editable
    # nvshim given with --nvshim would time the compiler on every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def _check_runs(group: Group, env: Mapping[str, str]) -> None:
    """Run every command once with its output captured, so a failure says why."""
    for cmd in group.commands:
        if cmd.prepare:
            subprocess.run(cmd.prepare, env=env, check=True, timeout=120)
        proc = subprocess.run(
            cmd.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(
                f"{group.name}: {cmd.name} exited {proc.returncode}: {shlex.join(cmd.argv)}\n"
                + proc.stderr.decode(errors="replace")[-2000:]
            )


def _spawn_wait(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, int, float]:
    devnull_in = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
    devnull_out = (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)
    devnull_err = (os.POSIX_SPAWN_DUP2, 1, 2)
    start = time.perf_counter()
    pid = os.posix_spawnp(
        argv[0], list(argv), env, file_actions=[devnull_in, devnull_out, devnull_err]
    )
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def measure_python(group: Group, runs: int, warmup: int) -> list[Measurement]:
    """Time the group's commands with the built-in runner (interleaved runs)."""
    env = _environ(group.env)
    _check_runs(group, env)
    times: dict[str, list[float]] = {cmd.name: [] for cmd in group.commands}
    cpu: dict[str, list[float]] = {cmd.name: [] for cmd in group.commands}
    count = len(group.commands)
    for i in range(warmup + runs):
        # Rotate the order each round so no command always runs first.
        for j in range(count):
            cmd = group.commands[(i + j) % count]
            if cmd.prepare:
                _spawn_wait(cmd.prepare, env)
            elapsed, code, used = _spawn_wait(cmd.argv, env)
            if code != 0:
                raise BenchError(f"{group.name}: {cmd.name} exited {code} during the runs")
            if i >= warmup:
                times[cmd.name].append(elapsed)
                cpu[cmd.name].append(used)
    return [Measurement(cmd.name, times[cmd.name], cpu[cmd.name]) for cmd in group.commands]


def measure_hyperfine(
    hyperfine: str, group: Group, runs: int, warmup: int, rounds: int = 1
) -> list[Measurement]:
    """Time the group's commands with hyperfine (no shell).

    hyperfine runs each command's runs back to back; on a noisy machine a
    slow patch then lands on one command only and skews the ratios.  With
    ``rounds`` > 1 the runs are split over that many hyperfine calls, the
    command order rotating each time, so that drift hits every command alike
    (the Python runner interleaves run by run for the same reason).
    """
    env = _environ(group.env)
    _check_runs(group, env)
    rounds = max(1, min(rounds, runs // 2))  # at least two runs per call
    times: dict[str, list[float]] = {cmd.name: [] for cmd in group.commands}
    cpu: dict[str, list[float]] = {cmd.name: [] for cmd in group.commands}
    for i in range(rounds):
        share = runs // rounds + (1 if i < runs % rounds else 0)
        order = (
            group.commands[i % len(group.commands) :] + group.commands[: i % len(group.commands)]
        )
        rotated = Group(group.name, order, group.env)
        for m in _hyperfine_once(hyperfine, rotated, env, share, warmup if i == 0 else 1):
            times[m.name].extend(m.times)
            cpu[m.name].extend(m.cpu)
    return [Measurement(cmd.name, times[cmd.name], cpu[cmd.name]) for cmd in group.commands]


def _hyperfine_once(
    hyperfine: str, group: Group, env: Mapping[str, str], runs: int, warmup: int
) -> list[Measurement]:
    with tempfile.TemporaryDirectory(prefix="nvshim-bench-") as tmp:
        export = os.path.join(tmp, "hyperfine.json")
        argv = [
            hyperfine,
            "-N",
            "--style",
            "none",
            "--warmup",
            str(warmup),
            "--runs",
            str(runs),
            "--export-json",
            export,
        ]
        if any(cmd.prepare for cmd in group.commands):
            for cmd in group.commands:
                argv += ["--prepare", shlex.join(cmd.prepare or ["true"])]
        for cmd in group.commands:
            argv += ["-n", cmd.name, shlex.join(cmd.argv)]
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=3600, check=False)
        if proc.returncode != 0:
            raise BenchError(
                f"{group.name}: hyperfine failed ({proc.returncode}):\n"
                + proc.stderr.decode(errors="replace")[-2000:]
            )
        with open(export, encoding="utf-8") as f:
            results = json.load(f)["results"]
    # hyperfine gives the mean user and system time of a command's runs.
    return [
        Measurement(cmd.name, list(r["times"]), [r["user"] + r["system"]])
        for cmd, r in zip(group.commands, results)
    ]


def find_hyperfine() -> str | None:
    """hyperfine's path, or None."""
    return shutil.which("hyperfine")


#: Runs ``argv`` (after ``prepare``) from a small interpreter and prints the
#: child's peak RSS in KiB. The forking process must be small: Linux carries
#: the forking process's resident size into the child's ``ru_maxrss``.
_RSS_PROBE = """
import json, os, sys
req = json.loads(sys.argv[1])
peaks = []
for _ in range(req["runs"]):
    if req["prepare"]:
        pid = os.fork()
        if pid == 0:
            os.execvp(req["prepare"][0], req["prepare"])
        os.waitpid(pid, 0)
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(fd, n)
        os.execvp(req["argv"][0], req["argv"])
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        sys.exit("exit status %d" % status)
    peaks.append(usage.ru_maxrss)
print(json.dumps(peaks))
"""


def max_rss_kib(python: str, cmd: Command, env: Mapping[str, str], runs: int = 5) -> list[int]:
    """Peak resident set size (KiB) of each of ``runs`` runs of ``cmd``."""
    request = json.dumps({"argv": cmd.argv, "prepare": cmd.prepare, "runs": runs})
    proc = subprocess.run(
        [python, "-I", "-S", "-c", _RSS_PROBE, request],
        env=_environ(env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"max RSS of {cmd.name}: {proc.stderr.strip()[-2000:]}")
    peaks: list[int] = json.loads(proc.stdout)
    return peaks


def measure(
    group: Group, runs: int, warmup: int, runner: str = "auto", rounds: int = 1
) -> tuple[list[Measurement], str]:
    """Measure a group with ``runner`` (``auto``, ``hyperfine`` or ``python``)."""
    hyperfine = find_hyperfine() if runner in ("auto", "hyperfine") else None
    if runner == "hyperfine" and hyperfine is None:
        raise BenchError("hyperfine is not installed")
    print(
        f"  measuring {group.name}: {', '.join(c.name for c in group.commands)}",
        file=sys.stderr,
        flush=True,
    )
    if hyperfine is not None:
        return measure_hyperfine(hyperfine, group, runs, warmup, rounds), "hyperfine"
    return measure_python(group, runs, warmup), "python"
