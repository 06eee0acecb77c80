"""nvshim under real engines: Podman, containerd (ctr), Docker, and crun below it.

Each engine reads a configuration file written by ``nvshim-ctl runtime
configure``, so the engine itself proves what configure wrote. nvshim is
configured through ``NVSHIM_CONFIG`` and gets a small test plugin
(``engines_support.NvshimSetup``) that, on request of the container's env,
adds a library file, a device node and an env var, or refuses the container.
Daemons run on private sockets and folders under one temporary area, are
stopped by pid, and everything is removed afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import engines_support as es
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.root, pytest.mark.slow]

#: What a marked container prints: the library, the device node, the env var.
PROBE = (
    f"cat {es.MARKER_PATH}; "
    f"stat -c 'dev %F %t:%T' {es.DEVICE_PATH}; "
    f"echo -n x > {es.DEVICE_PATH} && echo dev-writable; "
    f'echo "seen=${es.SEEN_ENV}"'
)


def assert_marked(output: str, env: bool = True) -> None:
    """The test plugin's changes are all visible in the container.

    ``env=False`` for ``exec``: engines build an exec'd process's environment
    from their own record of the container, not from config.json, so an env
    var a modifier added is seen by the container's main process only (as
    with NVIDIA's runtime). Mounts and devices are the container's own.
    """
    assert es.MARKER_TEXT in output, output
    assert "dev character special file 1:3" in output, output
    assert "dev-writable" in output, output
    if env:
        assert "seen=yes" in output, output


#: What a csv-mode GPU container prints: the CSV file's library and device.
CSV_PROBE = f"cat {es.CSV_LIBRARY}; stat -c 'dev %F %t:%T' {es.CSV_DEVICE}"


def assert_csv_served(output: str) -> None:
    """csv-discovery mounted the library and created the device from the CSV file."""
    assert es.CSV_LIBRARY_TEXT in output, output
    assert "dev character special file 1:3" in output, output


def new_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def area() -> Iterator[es.Area]:
    es.skip_unless_root()
    with es.area() as made:
        yield made


@pytest.fixture(scope="module")
def nvshim() -> str:
    return es.find_nvshim()


@pytest.fixture(scope="module")
def rootfs(area: es.Area) -> Path:
    return es.make_rootfs(area.path / "rootfs")


@pytest.fixture(scope="module")
def setup_runc(area: es.Area) -> es.NvshimSetup:
    return es.NvshimSetup(area.path / "nvshim-runc", runtimes=["runc"], csv=True)


@pytest.fixture(scope="module")
def containerd(area: es.Area, nvshim: str, setup_runc: es.NvshimSetup) -> es.Containerd:
    return es.Containerd(area, "containerd", nvshim, setup_runc.env)


@pytest.fixture(scope="module")
def dockerd(area: es.Area, containerd: es.Containerd, nvshim: str, rootfs: Path) -> es.Dockerd:
    hooks = es.fake_nvidia_hook(area.path / "nvidia-hook-bin")
    daemon = es.Dockerd(area, containerd, nvshim, extra_path=hooks)
    daemon.import_rootfs(rootfs, "nvshim-busybox:test")
    return daemon


@pytest.fixture(scope="module")
def podman(area: es.Area, nvshim: str, setup_runc: es.NvshimSetup) -> Iterator[es.Podman]:
    engine = es.Podman(area, nvshim, setup_runc.env)
    try:
        yield engine
    finally:
        engine.close()


# --------------------------------------------------------------------------- Podman


def podman_run(podman: es.Podman, rootfs: Path, *args: str, detach: bool = False) -> list[str]:
    """`podman run` options for the busybox rootfs; ``args`` are env options then the command."""
    mode = ["-d"] if detach else ["--rm"]
    return [
        "run",
        *mode,
        "--network",
        "none",
        *es.PODMAN_ULIMITS,
        *args[:-1],
        "--rootfs",
        str(rootfs),
        "sh",
        "-c",
        args[-1],
    ]


def test_podman_config_written_by_configure(podman: es.Podman) -> None:
    text = podman.config.read_text()
    assert text.startswith("# podman for an nvshim engine test\n")  # comments kept
    assert 'nvshim = ["' in text
    assert "nothing to restart" in podman.configure_output


def test_podman_modifier_effect(podman: es.Podman, rootfs: Path) -> None:
    out = es.check(podman.client(*podman_run(podman, rootfs, "-e", f"{es.MARK_ENV}=1", PROBE)))
    assert_marked(out)


def test_podman_csv_mode(podman: es.Podman, rootfs: Path) -> None:
    args = podman_run(podman, rootfs, "-e", "NVIDIA_VISIBLE_DEVICES=all", CSV_PROBE)
    assert_csv_served(es.check(podman.client(*args)))


def test_podman_unmarked_container_is_left_alone(podman: es.Podman, rootfs: Path) -> None:
    probe = f"test -e {es.DEVICE_PATH} && echo has-dev; echo seen=${es.SEEN_ENV}"
    out = es.check(podman.client(*podman_run(podman, rootfs, probe)))
    assert "has-dev" not in out
    assert "seen=\n" in out


def test_podman_lifecycle(podman: es.Podman, rootfs: Path) -> None:
    name = new_name("podman")
    args = podman_run(
        podman, rootfs, "--name", name, "-e", f"{es.MARK_ENV}=1", "sleep 300", detach=True
    )
    es.check(podman.client(*args))
    try:
        inspect = json.loads(es.check(podman.client("inspect", name)))[0]
        assert inspect["OCIRuntime"] == "nvshim"
        assert inspect["State"]["Running"] is True
        assert_marked(es.check(podman.client("exec", name, "sh", "-c", PROBE)), env=False)
        es.check(podman.client("kill", name))
        state = es.check(podman.client("inspect", "--format", "{{.State.Status}}", name)).strip()
        assert state in ("exited", "stopped")
    finally:
        es.check(podman.client("rm", "--force", "--time", "0", name))
    assert podman.client("inspect", name).returncode != 0


def test_podman_refusal_reaches_the_user(podman: es.Podman, rootfs: Path) -> None:
    proc = podman.client(*podman_run(podman, rootfs, "-e", f"{es.REFUSE_ENV}=1", "echo ran"))
    assert proc.returncode != 0
    assert "ran" not in proc.stdout
    assert "nvshim: modifier 'engine-test'" in proc.stderr
    assert es.REFUSAL in proc.stderr


# --------------------------------------------------------------------------- containerd


def ctr_run(containerd: es.Containerd, nvshim: str, rootfs: Path, *args: str) -> list[str]:
    """`ctr run` options through nvshim; ``args`` end with the container id and command."""
    return [
        "run",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        nvshim,
        "--runc-root",
        str(containerd.runc_root),
        "--env",
        f"PATH={es.SYSTEM_PATH}",
        "--rootfs",
        *args[:-2],
        str(rootfs),
        *args[-2:],
    ]


def test_containerd_reads_the_configured_runtime(containerd: es.Containerd, nvshim: str) -> None:
    text = containerd.config.read_text()
    assert text.startswith("# containerd for an nvshim engine test\n")
    plugins = es.check(containerd.client("plugins", "ls"))
    # The CRI plugin is what reads `runtimes`; it must load with nvshim's table.
    cri = [line for line in plugins.splitlines() if " cri " in f" {line} "]
    assert cri, plugins
    assert cri[0].split()[-1] == "ok", plugins
    dump = es.run(
        [es.require_binary("containerd"), "--config", str(containerd.config), "config", "dump"]
    )
    dumped = es.check(dump)
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvshim]' in dumped
    assert f'BinaryName = "{nvshim}"' in dumped


def test_ctr_modifier_effect(containerd: es.Containerd, nvshim: str, rootfs: Path) -> None:
    cid = new_name("ctr")
    args = ctr_run(containerd, nvshim, rootfs, "--rm", "--env", f"{es.MARK_ENV}=1", cid, "sh")
    out = es.check(containerd.client(*args, "-c", PROBE))
    assert_marked(out)


def test_ctr_csv_mode(containerd: es.Containerd, nvshim: str, rootfs: Path) -> None:
    cid = new_name("ctr")
    args = ctr_run(
        containerd, nvshim, rootfs, "--rm", "--env", "NVIDIA_VISIBLE_DEVICES=all", cid, "sh"
    )
    assert_csv_served(es.check(containerd.client(*args, "-c", CSV_PROBE)))


def test_ctr_lifecycle(containerd: es.Containerd, nvshim: str, rootfs: Path) -> None:
    cid = new_name("ctr")
    args = ctr_run(containerd, nvshim, rootfs, "-d", "--env", f"{es.MARK_ENV}=1", cid, "sleep")
    es.check(containerd.client(*args, "300"))
    try:
        tasks = es.check(containerd.client("task", "ls"))
        assert cid in tasks
        assert "RUNNING" in tasks
        out = es.check(
            containerd.client("task", "exec", "--exec-id", "probe", cid, "sh", "-c", PROBE)
        )
        assert_marked(out, env=False)
        es.check(containerd.client("task", "kill", "--signal", "SIGKILL", cid))
        for _ in range(50):
            if "STOPPED" in es.check(containerd.client("task", "ls")):
                break
            time.sleep(0.1)
        es.check(containerd.client("task", "delete", cid))
    finally:
        containerd.client("task", "delete", "--force", cid)
        es.check(containerd.client("container", "delete", cid))
    assert cid not in es.check(containerd.client("container", "ls"))


def test_ctr_refusal_reaches_the_user(containerd: es.Containerd, nvshim: str, rootfs: Path) -> None:
    cid = new_name("ctr")
    args = ctr_run(containerd, nvshim, rootfs, "--rm", "--env", f"{es.REFUSE_ENV}=1", cid, "echo")
    proc = containerd.client(*args, "ran")
    containerd.client("container", "delete", cid)
    assert proc.returncode != 0
    assert "OCI runtime create failed" in proc.stderr, proc.stderr
    assert "nvshim: modifier 'engine-test'" in proc.stderr
    assert es.REFUSAL in proc.stderr


# --------------------------------------------------------------------------- Docker


def test_docker_knows_the_configured_runtime(dockerd: es.Dockerd, nvshim: str) -> None:
    runtimes = json.loads(es.check(dockerd.client("info", "--format", "{{json .Runtimes}}")))
    assert runtimes["nvshim"]["path"] == nvshim
    written = json.loads(dockerd.config.read_text())
    # other keys kept, in order
    assert list(written) == ["log-level", "ip-forward", "deprecated-key-path", "runtimes"]
    assert "restart Docker" in dockerd.configure_output


def test_docker_modifier_effect(dockerd: es.Dockerd) -> None:
    proc = dockerd.client(
        "run", "--rm", "--runtime", "nvshim", "--network", "none",
        "-e", f"{es.MARK_ENV}=1", "nvshim-busybox:test", "sh", "-c", PROBE,
    )  # fmt: skip
    assert_marked(es.check(proc))


def test_docker_csv_mode(dockerd: es.Dockerd) -> None:
    proc = dockerd.client(
        "run", "--rm", "--runtime", "nvshim", "--network", "none",
        "-e", "NVIDIA_VISIBLE_DEVICES=all", "nvshim-busybox:test", "sh", "-c", CSV_PROBE,
    )  # fmt: skip
    assert_csv_served(es.check(proc))


def test_docker_gpus_all_is_served_by_csv_mode(
    dockerd: es.Dockerd, setup_runc: es.NvshimSetup
) -> None:
    """`--gpus all` inserts NVIDIA's prestart hook (a fake that fails if run);
    docker-gpus-detector removes it and csv mode serves the request."""
    proc = dockerd.client(
        "run", "--rm", "--runtime", "nvshim", "--network", "none", "--gpus", "all",
        "nvshim-busybox:test", "sh", "-c", CSV_PROBE,
    )  # fmt: skip
    assert "the fake NVIDIA hook ran" not in proc.stderr
    assert_csv_served(es.check(proc))
    log = setup_runc.debug_log.read_text()
    assert "docker-gpus-detector: removed 1 NVIDIA prestart hook(s) (" in log, log[-2000:]


def test_docker_lifecycle_and_update(dockerd: es.Dockerd) -> None:
    name = new_name("docker")
    es.check(dockerd.client(
        "run", "-d", "--name", name, "--runtime", "nvshim", "--network", "none",
        "-e", f"{es.MARK_ENV}=1", "nvshim-busybox:test", "sleep", "300",
    ))  # fmt: skip
    try:
        inspect = json.loads(es.check(dockerd.client("inspect", name)))[0]
        assert inspect["HostConfig"]["Runtime"] == "nvshim"
        assert inspect["State"]["Running"] is True
        assert_marked(es.check(dockerd.client("exec", name, "sh", "-c", PROBE)), env=False)
        # `docker update` sends the new resources as JSON on runc's stdin
        # (`runc update -r -`): it only works if nvshim passes stdin through.
        es.check(dockerd.client("update", "--cpu-shares", "512", "--pids-limit", "77", name))
        inside = es.check(dockerd.client(
            "exec", name, "sh", "-c",
            "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max 2>/dev/null"
            " || cat /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/pids.max",
        ))  # fmt: skip
        assert "77" in inside.split(), inside
        es.check(dockerd.client("kill", name))
        state = es.check(dockerd.client("inspect", "--format", "{{.State.Status}}", name)).strip()
        assert state == "exited"
    finally:
        es.check(dockerd.client("rm", "--force", name))


def test_docker_refusal_reaches_the_user(dockerd: es.Dockerd) -> None:
    proc = dockerd.client(
        "run", "--rm", "--runtime", "nvshim", "--network", "none",
        "-e", f"{es.REFUSE_ENV}=1", "nvshim-busybox:test", "echo", "ran",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "ran" not in proc.stdout
    assert "OCI runtime create failed" in proc.stderr, proc.stderr
    assert "nvshim: modifier 'engine-test'" in proc.stderr
    assert es.REFUSAL in proc.stderr


def test_docker_unknown_runtime_name(dockerd: es.Dockerd) -> None:
    """The error docs/engines/docker.md explains, as this Docker words it."""
    proc = dockerd.client(
        "run", "--rm", "--runtime", "nvshim-missing", "nvshim-busybox:test", "true"
    )
    assert proc.returncode != 0
    # Docker 23+ says "unknown or invalid runtime name: X", 20.10 "Unknown runtime specified X".
    err = proc.stderr.lower()
    assert (
        "unknown or invalid runtime name: nvshim-missing" in err
        or "unknown runtime specified nvshim-missing" in err
    ), proc.stderr


# --------------------------------------------------------------------------- crun


@pytest.fixture(scope="module")
def containerd_crun(area: es.Area, nvshim: str) -> es.Containerd:
    es.require_binary("crun")
    setup = es.NvshimSetup(area.path / "nvshim-crun", runtimes=["crun"])
    return es.Containerd(area, "containerd-crun", nvshim, setup.env, for_crun=True)


def test_crun_below_nvshim_under_containerd(
    containerd_crun: es.Containerd, nvshim: str, rootfs: Path
) -> None:
    cid = new_name("crun")
    args = ctr_run(containerd_crun, nvshim, rootfs, "-d", "--env", f"{es.MARK_ENV}=1", cid, "sleep")
    es.check(containerd_crun.client(*args, "300"))
    try:
        # crun keeps a `status` file in its state folder, runc a `state.json`:
        # this tells which runtime nvshim started.
        state = containerd_crun.runc_root / containerd_crun.namespace / cid
        assert (state / "status").exists(), sorted(p.name for p in state.iterdir())
        assert not (state / "state.json").exists()
        out = es.check(
            containerd_crun.client("task", "exec", "--exec-id", "probe", cid, "sh", "-c", PROBE)
        )
        assert_marked(out, env=False)
        es.check(containerd_crun.client("task", "kill", "--signal", "SIGKILL", cid))
        for _ in range(50):
            if "STOPPED" in es.check(containerd_crun.client("task", "ls")):
                break
            time.sleep(0.1)
        es.check(containerd_crun.client("task", "delete", cid))
    finally:
        containerd_crun.client("task", "delete", "--force", cid)
        containerd_crun.client("container", "delete", cid)
    assert not state.exists()


def test_crun_refusal_reaches_the_user(
    containerd_crun: es.Containerd, nvshim: str, rootfs: Path
) -> None:
    cid = new_name("crun")
    args = ctr_run(
        containerd_crun, nvshim, rootfs, "--rm", "--env", f"{es.REFUSE_ENV}=1", cid, "echo"
    )
    proc = containerd_crun.client(*args, "ran")
    containerd_crun.client("container", "delete", cid)
    assert proc.returncode != 0
    assert "nvshim: modifier 'engine-test'" in proc.stderr
