"""Faults during a create: kills, full disks, read-only bundles, races, load, bad logs.

Each test runs the installed ``nvshim`` against a recording fake runtime, with
a test plugin that really changes the spec (see ``reliability_support``), and
checks config.json byte for byte afterwards: nothing lost, never a partial or
mixed file.  Tests needing mounts (tmpfs, bind) run as root only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import reliability_report
from reliability_support import (
    Shim,
    base_spec,
    check_one_line,
    kill,
    stamped,
    temp_files,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs or a bind mount needs root")

#: SIGKILLs injected by the kill test (each a create killed at a random moment).
KILLS = int(os.environ.get("NVSHIM_TEST_KILLS", "30"))
#: Parallel creates of the load test.
PARALLEL = 50


@contextlib.contextmanager
def mounted(args: list[str], target: Path) -> Iterator[Path]:
    """``mount <args> <target>``, unmounted (lazily, if busy) on exit."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


def fill(folder: Path) -> None:
    """Write to ``folder`` until its file system is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def load(path: Path) -> object:
    """Parse ``path``; a partial or empty file fails the test (and is counted lost)."""
    data = path.read_bytes()
    try:
        return json.loads(data)
    except ValueError:
        reliability_report.lost(f"{path}: not complete JSON ({len(data)} bytes)")
        raise


# -- SIGKILL at any moment ---------------------------------------------------


def test_sigkill_at_random_moments_never_leaves_a_partial_spec(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    bundle = shim.bundle()
    config = bundle / "config.json"
    pad = 1 << 20  # a 1 MiB spec: the write is a good part of the create
    # One full create to learn how long one takes here.
    start = time.monotonic()
    result = shim.create(bundle, "warmup", RELTEST_PAD=str(pad))
    full = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    current = load(config)
    assert current == stamped(base_spec(), "warmup", pad)

    seed = int(os.environ.get("NVSHIM_TEST_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    outcomes = {"old": 0, "new": 0}
    for i in range(KILLS):
        stamp = f"kill{i:03d}"
        expected = stamped(current, stamp, pad)  # type: ignore[arg-type]
        proc = shim.popen(bundle, stamp, RELTEST_PAD=str(pad))
        # Most kills aim at the end, where the spec is written; some anywhere.
        low = 0.0 if i % 4 == 0 else 0.8 * full
        time.sleep(rng.uniform(low, 1.3 * full))
        kill(proc)
        reliability_report.count("faults")
        reliability_report.count("kills")
        after = load(config)
        if after == current:
            outcomes["old"] += 1
        elif after == expected:
            outcomes["new"] += 1
        else:
            reliability_report.lost(f"kill {i} (seed {seed}): config.json is neither old nor new")
            pytest.fail(f"kill {i} (seed {seed}): config.json is neither the old nor the new spec")
        current = after
    # The next create cleans what the killed ones left, and writes a full spec.
    result = shim.create(bundle, "final", RELTEST_PAD=str(pad))
    assert result.returncode == 0, result.stderr
    assert load(config) == stamped(current, "final", pad)  # type: ignore[arg-type]
    assert temp_files(bundle) == []
    assert outcomes["old"] + outcomes["new"] == KILLS, outcomes
    print(f"seed {seed}: {outcomes['old']} kills kept the old spec, {outcomes['new']} the new")


# -- full disk, read-only bundle ---------------------------------------------


def check_refused(shim: Shim, bundle: Path, before: bytes, expected: str) -> None:
    result = shim.create(bundle, "refused")
    reliability_report.count("faults")
    assert result.returncode == 1
    line = check_one_line(result.stderr)
    assert line == expected
    assert (bundle / "config.json").read_bytes() == before
    assert shim.calls() == [], "the runtime was started"
    assert temp_files(bundle) == []


@needs_root
def test_full_disk_leaves_config_json_unchanged(tmp_path: Path) -> None:
    shim = Shim(tmp_path / "shim")
    with mounted(["-t", "tmpfs", "-o", "size=256k", "tmpfs"], tmp_path / "disk") as disk:
        bundle = disk / "bundle"
        bundle.mkdir()
        config = bundle / "config.json"
        config.write_text(json.dumps(base_spec(), indent=2))
        before = config.read_bytes()
        fill(disk)
        check_refused(
            shim,
            bundle,
            before,
            f"nvshim: cannot write the spec: cannot write {config}: No space left on device",
        )


@needs_root
def test_read_only_bundle_leaves_config_json_unchanged(tmp_path: Path) -> None:
    shim = Shim(tmp_path / "shim")
    source = shim.bundle("source")
    before = (source / "config.json").read_bytes()
    with mounted(["--bind", str(source)], tmp_path / "ro") as bundle:
        subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(bundle)], check=True, capture_output=True
        )
        check_refused(
            shim,
            bundle,
            before,
            f"nvshim: cannot write the spec: cannot write {bundle / 'config.json'}: "
            "Read-only file system",
        )


def test_unwritable_bundle_folder_leaves_config_json_unchanged(tmp_path: Path) -> None:
    if IS_ROOT:
        pytest.skip("root writes to a mode 0555 folder; the read-only mount test covers root")
    shim = Shim(tmp_path / "shim")
    bundle = shim.bundle()
    before = (bundle / "config.json").read_bytes()
    bundle.chmod(0o555)
    try:
        check_refused(
            shim,
            bundle,
            before,
            f"nvshim: cannot write the spec: cannot write {bundle / 'config.json'}: "
            "Permission denied",
        )
    finally:
        bundle.chmod(0o755)


# -- concurrent writers --------------------------------------------------------


def test_two_creates_in_one_bundle_give_one_complete_result(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    for attempt in range(4):
        bundle = shim.bundle(f"bundle{attempt}")
        original = load(bundle / "config.json")
        # Both load the spec, then both sleep in the modifier: the writes race.
        procs = [
            shim.popen(bundle, f"writer{attempt}{w}", f"c{attempt}{w}", RELTEST_SLEEP="0.3")
            for w in "AB"
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
        reliability_report.count("faults")
        reliability_report.count("parallel_creates", 2)
        after = load(bundle / "config.json")
        candidates = [stamped(original, f"writer{attempt}{w}") for w in "AB"]  # type: ignore[arg-type]
        if after not in candidates:
            reliability_report.lost(f"{bundle}: a mix of two writers")
        assert after in candidates
        assert temp_files(bundle) == []
    assert len(shim.calls()) == 8


def test_fifty_parallel_creates_all_succeed_and_are_correct(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    bundles = []
    for i in range(PARALLEL):
        spec = base_spec(hostname=f"host{i}")
        spec["process"]["env"].append(f"INDEX={i}")
        bundles.append((shim.bundle(f"b{i:02d}", spec), spec))
    procs = [shim.popen(bundle, f"p{i}", f"ctr{i}") for i, (bundle, _) in enumerate(bundles)]
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            errors.append(err)
    reliability_report.count("parallel_creates", PARALLEL)
    assert errors == []
    for i, (bundle, spec) in enumerate(bundles):
        after = load(bundle / "config.json")
        if after != stamped(spec, f"p{i}"):
            reliability_report.lost(f"{bundle}: wrong result")
        assert after == stamped(spec, f"p{i}")
    started = sorted(call[-1] for call in shim.calls())
    assert started == sorted(f"ctr{i}" for i in range(PARALLEL))


# -- log files that cannot be written ------------------------------------------


def _log_target(kind: str, tmp_path: Path, stack: contextlib.ExitStack) -> str:
    """A log path of ``kind`` that cannot be written."""
    if kind == "directory":
        folder = tmp_path / "log-is-a-folder"
        folder.mkdir()
        return str(folder)
    if kind == "fifo":
        fifo = tmp_path / "log.fifo"
        os.mkfifo(fifo)
        return str(fifo)
    if kind == "dev-full":
        return "/dev/full"
    if kind == "full-disk":
        if not IS_ROOT:
            pytest.skip("mounting a tmpfs needs root")
        disk = stack.enter_context(
            mounted(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], tmp_path / "disk")
        )
        fill(disk)
        return str(disk / "nvshim.log")
    if kind == "unwritable":
        if IS_ROOT:
            ro = stack.enter_context(
                mounted(["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"], tmp_path / "ro")
            )
            return str(ro / "sub" / "nvshim.log")
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return str(folder / "nvshim.log")
    if kind == "parent-is-a-file":
        (tmp_path / "plain").write_text("")
        return str(tmp_path / "plain" / "nvshim.log")
    raise AssertionError(kind)


LOG_KINDS = ["unwritable", "full-disk", "dev-full", "directory", "fifo", "parent-is-a-file"]


@pytest.mark.parametrize("where", ["--log", "config-debug"])
@pytest.mark.parametrize("kind", LOG_KINDS)
def test_bad_log_file_never_stops_a_container(tmp_path: Path, kind: str, where: str) -> None:
    shim = Shim(tmp_path / "shim")
    bundle = shim.bundle()
    with contextlib.ExitStack() as stack:
        log = _log_target(kind, tmp_path, stack)
        extra: list[str] = []
        if where == "--log":
            extra = ["--log", log, "--log-format", "json", "--debug"]
        else:
            shim.write_config(f'debug = "{log}"\nlog-level = "debug"')
        result = shim.run([*shim.argv(bundle, extra=extra)], "logged", timeout=20)
        reliability_report.count("faults")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert load(bundle / "config.json") == stamped(base_spec(), "logged")
        calls = shim.calls()
        assert len(calls) == 1, "the runtime was not started"
        assert calls[0][: len(extra)] == extra  # --log reaches the runtime untouched


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev-full"])
def test_bad_log_file_keeps_a_refusal_to_one_line(tmp_path: Path, kind: str) -> None:
    shim = Shim(tmp_path / "shim")
    bundle = shim.bundle()
    (bundle / "config.json").write_text("[]")
    with contextlib.ExitStack() as stack:
        log = _log_target(kind, tmp_path, stack)
        result = shim.run(shim.argv(bundle, extra=["--log", log]), "x", timeout=20)
    reliability_report.count("faults")
    assert result.returncode == 1
    line = check_one_line(result.stderr)
    assert line.endswith("must hold a JSON object, not an array")
    assert shim.calls() == []


def test_log_written_when_a_good_log_sits_beside_a_bad_one(tmp_path: Path) -> None:
    """The --log file gets one warning about the config's bad debug file, and the records."""
    shim = Shim(tmp_path / "shim")
    bundle = shim.bundle()
    folder = tmp_path / "folder-not-file"
    folder.mkdir()
    shim.write_config(f'debug = "{folder}"')
    log = tmp_path / "runc.log"
    result = shim.run(shim.argv(bundle, extra=["--log", str(log), "--debug"]), "both")
    assert result.returncode == 0, result.stderr
    text = log.read_text()
    assert f"cannot open log file {folder}" in text
    assert len(shim.calls()) == 1
