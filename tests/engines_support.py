"""Real container engines for the tests: private daemons, nvshim set up for them.

Tests import this module as ``import engines_support``. Everything lives under
one temporary folder (:class:`Area`): engine configuration written by
``nvshim-ctl runtime configure``, daemon sockets, roots and state, a busybox
rootfs, nvshim's own configuration and a small test plugin. Daemons are started
with :class:`Daemon` and stopped by their process id; :meth:`Area.close` then
kills what is left that names the folder (shims, containers), unmounts what
is mounted below it and removes it, also when a test failed.

Host notes (Debian 12, hybrid cgroups): crun refuses to run while the cgroup2
hierarchy is mounted at /sys/fs/cgroup/unified, so a containerd meant for crun
is started in a private mount namespace without it (``private_cgroup_v1``).
Podman calls the runtime's ``create`` with the environment of conmon, which is
``[engine] conmon_env_vars`` from containers.conf, not podman's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Callable, Optional

import pytest
import runc_support
import script_support

#: Container env var that makes the test plugin change the container.
MARK_ENV = "NVSHIM_TEST_MARK"
#: Container env var that makes the test plugin refuse the container.
REFUSE_ENV = "NVSHIM_TEST_REFUSE"
#: The refusal text the user must see through the engine.
REFUSAL = "refused by the engine test plugin"
#: Where the test plugin puts its file, device and env in the container.
MARKER_PATH = "/usr/lib/libnvshim-engine-test.so.1"
MARKER_TEXT = "nvshim-engine-test-library"
DEVICE_PATH = "/dev/nvshim-test0"
SEEN_ENV = "NVSHIM_TEST_SEEN"

#: What the csv-mode CSV file lists (a Jetson-style device and library).
CSV_DEVICE = "/dev/nvhost-nvshim-test"
CSV_LIBRARY = "/usr/lib/nvshim-test/libnvshim-csv.so.1"
CSV_LIBRARY_TEXT = "nvshim-csv-library"
#: Docker's --gpus looks this up on dockerd's PATH; nvshim must remove its hook.
NVIDIA_HOOK = "nvidia-container-runtime-hook"

#: A PATH for daemons and hooks (the test's own PATH may hold pyenv shims).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Podman's limits on this host are above what the VM allows for root.
PODMAN_ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")

_PLUGIN_SOURCE = '''\
"""Test plugin for the engine tests: marks or refuses a container on request."""

from nvshim import Device, Modifier, ModifierError, Mount, hookimpl

MARKER_SOURCE = {marker_source!r}


def _modify(spec, context):
    if spec.get_env({refuse!r}) is not None:
        raise ModifierError({refusal!r})
    if spec.get_env({mark!r}) is None:
        return
    spec.add_mount(
        Mount({marker_path!r}, source=MARKER_SOURCE, type="bind", options=("rbind", "ro"))
    )
    spec.add_device(Device({device_path!r}, "c", 1, 3, file_mode=0o666))
    spec.set_env({seen!r}, "yes")


@hookimpl
def nvshim_modifiers():
    return [Modifier("engine-test", _modify, order=60, description="engine tests")]
'''


def skip_unless_root() -> None:
    """Skip the calling test unless it runs as root (every engine here needs it)."""
    if not runc_support.is_root():
        pytest.skip("real engines need root")


def require_binary(name: str) -> str:
    """The absolute path of ``name``, or skip the calling test."""
    found = runc_support.find_executable(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def find_nvshim() -> str:
    """``nvshim`` from the test venv (it honours PYTHONPATH: see ``script_support``), or skip."""
    return script_support.script("nvshim")


def nvshim_ctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``nvshim-ctl ARGS`` (the installed wrapper, from the test venv)."""
    argv = [script_support.script("nvshim-ctl"), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )


def configure(engine: str, config: Path, nvshim: str, *extra: str) -> str:
    """Register nvshim in ``config`` with ``nvshim-ctl runtime configure``; return its stdout."""
    proc = nvshim_ctl(
        "runtime",
        "configure",
        "--engine",
        engine,
        "--config",
        str(config),
        "--path",
        nvshim,
        *extra,
    )
    if proc.returncode != 0:
        raise AssertionError(f"nvshim-ctl runtime configure failed: {proc.stderr}{proc.stdout}")
    return proc.stdout


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client command (docker, ctr, podman), capturing its output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        return subprocess.run(
            list(argv),
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return subprocess.CompletedProcess(list(argv), -9, out, err + "\n[timed out]")


def check(proc: subprocess.CompletedProcess[str], expected: int = 0) -> str:
    """Return stdout, or fail with the whole command and its output."""
    if proc.returncode != expected:
        raise AssertionError(
            f"$ {' '.join(map(str, proc.args))}\nexit {proc.returncode} (expected {expected})\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc.stdout


# --------------------------------------------------------------------------- area


class Area:
    """A temporary folder for one group of engine tests, cleaned up completely."""

    def __init__(self, prefix: str = "nvshim-eng-") -> None:
        # Short and under /tmp: unix socket paths must stay under 108 bytes.
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.daemons: list[Daemon] = []
        #: cgroup folder names (below each hierarchy's top) to remove if empty at the end.
        self.cgroup_parents: set[str] = set()

    def sub(self, name: str) -> Path:
        """A folder below the area, created if missing."""
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self) -> None:
        """Stop the daemons (last started first), then leftovers, mounts, files."""
        for daemon in reversed(self.daemons):
            daemon.stop()
        kill_processes_under(self.path)
        remove_empty_cgroups(self.cgroup_parents)
        unmount_under(self.path)
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def area(prefix: str = "nvshim-eng-") -> Iterator[Area]:
    """An :class:`Area`, closed at the end whatever happens."""
    made = Area(prefix)
    try:
        yield made
    finally:
        made.close()


def kill_processes_under(folder: Path) -> None:
    """SIGKILL, by pid, every process started for ``folder``; remove their cgroups.

    That is every process whose argv names the folder (shims, conmon) or whose
    root folder lies in it (containers left running by a failed test). Only
    processes started for the area can name its unique random path.
    """
    marker = str(folder)
    me = os.getpid()
    victims: list[int] = []
    cgroups: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if marker.encode() in cmdline or root == marker or root.startswith(marker + "/"):
            victims.append(int(entry))
            cgroups.update(_cgroup_dirs(int(entry)))
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while victims and time.monotonic() < deadline:
        victims = [pid for pid in victims if os.path.exists(f"/proc/{pid}/cmdline")]
        time.sleep(0.05)
    # A container's cgroups outlive it when nothing deletes the container.
    for path in sorted(cgroups, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(path)


def remove_empty_cgroups(names: set[str]) -> None:
    """rmdir ``/sys/fs/cgroup/<hierarchy>/<name>`` where empty (engines' parent cgroups)."""
    hierarchies = [Path("/sys/fs/cgroup")]
    with contextlib.suppress(OSError):
        hierarchies += [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()]
    for name in names:
        for top in hierarchies:
            with contextlib.suppress(OSError):
                (top / name).rmdir()  # fails, as it should, while in use


def _cgroup_dirs(pid: int) -> list[str]:
    """The cgroup folders of ``pid`` below the top of each hierarchy (never the top)."""
    dirs = []
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if path in ("", "/"):
            continue
        if controllers == "":
            base = "/sys/fs/cgroup/unified" if cgroup_v2_unified_mounted() else "/sys/fs/cgroup"
        else:
            base = "/sys/fs/cgroup/" + controllers.replace("name=", "")
        dirs.append(base + path)
    return dirs


def unmount_under(folder: Path) -> None:
    """Lazily unmount every mount point at or below ``folder``, deepest first."""
    prefix = str(folder)
    points: list[str] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    points.append(point)
    except OSError:
        return
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)


# --------------------------------------------------------------------------- daemons


class Daemon:
    """A daemon process started by a test and stopped by its pid."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        ready: Callable[[], bool],
        timeout: float = 30,
    ) -> None:
        self.name = name
        self.log = log
        full_env = {"PATH": SYSTEM_PATH, "HOME": "/root"}
        if env:
            full_env.update(env)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,  # a ^C in pytest must not reach it first
            )
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.1)
        why = "exited" if self.proc.poll() is not None else f"not ready after {timeout:.0f} s"
        tail = self.log_tail()
        self.stop()
        pytest.skip(f"{name} cannot start here ({why}): {tail}")

    def log_tail(self, size: int = 600) -> str:
        """The end of the daemon's log, for messages."""
        try:
            return self.log.read_text(errors="replace")[-size:].strip()
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the pid, then SIGKILL after ``timeout`` seconds; reap it."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)


def cgroup_v2_unified_mounted() -> bool:
    """Tell whether a cgroup2 hierarchy sits at /sys/fs/cgroup/unified (hybrid host)."""
    return os.path.ismount("/sys/fs/cgroup/unified")


def private_cgroup_v1(argv: Sequence[str]) -> list[str]:
    """``argv`` run in a private mount namespace without the cgroup2 hierarchy.

    ``unshare`` and ``sh`` exec in place, so the daemon keeps the pid the test
    started and is stopped by it.
    """
    if not cgroup_v2_unified_mounted():
        return list(argv)
    unshare = require_binary("unshare")
    script = 'umount /sys/fs/cgroup/unified || exit 97; exec "$@"'
    return [unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]


# --------------------------------------------------------------------------- nvshim set-up


class NvshimSetup:
    """nvshim's configuration file and a test plugin, under ``folder``.

    ``env`` is what nvshim must see (``NVSHIM_CONFIG``, ``PYTHONPATH`` for
    the plugin, ``NVSHIM_CACHE_DIR``); engines pass it on in their own ways.
    """

    def __init__(
        self, folder: Path, runtimes: Sequence[str] = ("runc",), *, csv: bool = False
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        extra_toml = self._csv_host(folder) if csv else ""
        self.folder = folder
        self.debug_log = folder / "nvshim-debug.log"
        self.marker = folder / "marker-library.so"
        self.marker.write_text(MARKER_TEXT + "\n")
        self.marker.chmod(0o644)
        plugins = folder / "plugins"
        plugins.mkdir()
        (plugins / "nvshim_engine_test.py").write_text(
            _PLUGIN_SOURCE.format(
                marker_source=str(self.marker),
                refuse=REFUSE_ENV,
                refusal=REFUSAL,
                mark=MARK_ENV,
                marker_path=MARKER_PATH,
                device_path=DEVICE_PATH,
                seen=SEEN_ENV,
            )
        )
        dist = plugins / "nvshim_engine_test-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: nvshim-engine-test\nVersion: 0.1\n"
        )
        (dist / "entry_points.txt").write_text("[nvshim]\nengine-test = nvshim_engine_test\n")
        (dist / "top_level.txt").write_text("nvshim_engine_test\n")
        self.plugin_path = plugins
        self.config = folder / "config.toml"
        self.config.write_text(
            "[nvidia-container-runtime]\n"
            f"runtimes = {json.dumps(list(runtimes))}\n"
            f'debug = "{self.debug_log}"\n'
            'log-level = "debug"\n' + extra_toml
        )
        # The cache under the test's folder: as root the default is the host's
        # /var/cache/nvshim.
        self.env = {
            "NVSHIM_CONFIG": str(self.config),
            "PYTHONPATH": str(plugins),
            "NVSHIM_CACHE_DIR": str(folder / "cache"),
        }

    @staticmethod
    def _csv_host(folder: Path) -> str:
        """A fake Jetson driver root and its CSV file; returns the config lines for csv mode."""
        root = folder / "driver-root"
        device = root / CSV_DEVICE.lstrip("/")
        device.parent.mkdir(parents=True)
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
        library = root / CSV_LIBRARY.lstrip("/")
        library.parent.mkdir(parents=True)
        library.write_text(CSV_LIBRARY_TEXT + "\n")
        csv_dir = folder / "host-files-for-container.d"
        csv_dir.mkdir()
        (csv_dir / "devices.csv").write_text(f"dev, {CSV_DEVICE}\nlib, {CSV_LIBRARY}\n")
        return (
            'mode = "csv"\n'
            "[nvidia-container-runtime.modes.csv]\n"
            f'mount-spec-path = "{csv_dir}"\n'
            "[nvidia-container-cli]\n"
            f'root = "{root}"\n'
        )


def fake_nvidia_hook(folder: Path) -> Path:
    """A folder holding an ``nvidia-container-runtime-hook`` that fails if it ever runs.

    On dockerd's PATH it makes ``docker run --gpus`` insert NVIDIA's prestart
    hook; nvshim's docker-gpus-detector must take it out again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    hook = folder / NVIDIA_HOOK
    hook.write_text("#!/bin/sh\necho 'the fake NVIDIA hook ran' >&2\nexit 1\n")
    hook.chmod(0o755)
    return folder


# --------------------------------------------------------------------------- engines


def containerd_config(folder: Path) -> Path:
    """A containerd config (version 2) with root, state and socket under ``folder``."""
    config = folder / "config.toml"
    config.write_text(
        "# containerd for an nvshim engine test\n"
        "version = 2\n"
        f'root = "{folder / "root"}"\n'
        f'state = "{folder / "state"}"\n\n'
        "[grpc]\n"
        f'  address = "{folder / "containerd.sock"}"\n\n'
        "[debug]\n"
        '  level = "info"\n'
    )
    return config


class Containerd:
    """A private containerd started on a config that ``nvshim-ctl`` edited."""

    def __init__(
        self, area: Area, name: str, nvshim: str, env: Mapping[str, str], *, for_crun: bool = False
    ) -> None:
        binary = require_binary("containerd")
        self.ctr = require_binary("ctr")
        self.folder = area.sub(name)
        self.config = containerd_config(self.folder)
        self.configure_output = configure("containerd", self.config, nvshim)
        self.socket = self.folder / "containerd.sock"
        self.runc_root = self.folder / "runc"
        # A namespace of the area's own: ctr puts its cgroups below /<namespace>.
        # ctr wants [A-Za-z0-9]+ segments joined by single [._-]; mkdtemp's random
        # suffix may hold "__" or end in "_".
        self.namespace = re.sub(r"[^A-Za-z0-9]+", "-", area.path.name).strip("-")
        area.cgroup_parents.add(self.namespace)
        argv = [binary, "--config", str(self.config)]
        if for_crun:
            argv = private_cgroup_v1(argv)
        self.daemon = Daemon(
            name, argv, self.folder / "containerd.log", env=env, ready=self._ready, timeout=30
        )
        area.daemons.append(self.daemon)

    def _ready(self) -> bool:
        if not self.socket.exists():
            return False
        return self.client("version", timeout=5).returncode == 0

    def client(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against this containerd, in the test namespace."""
        return run(
            [self.ctr, "--address", str(self.socket), "--namespace", self.namespace, *args],
            timeout=timeout,
        )


class Dockerd:
    """A private dockerd on a :class:`Containerd`, with ``--config-file`` from nvshim-ctl."""

    def __init__(
        self, area: Area, containerd: Containerd, nvshim: str, extra_path: Optional[Path] = None
    ) -> None:
        binary = require_binary("dockerd")
        self.docker = require_binary("docker")
        self.folder = area.sub("docker")
        self.config = self.folder / "daemon.json"
        settings = {
            "log-level": "info",
            "ip-forward": False,
            # dockerd (20.10) otherwise writes its trust key to the host's
            # /etc/docker/key.json; this key has no command-line flag.
            "deprecated-key-path": str(self.folder / "key.json"),
        }
        self.config.write_text(json.dumps(settings))
        self.configure_output = configure("docker", self.config, nvshim)
        self.socket = self.folder / "docker.sock"
        argv = [
            binary,
            "--config-file",
            str(self.config),
            "--containerd",
            str(containerd.socket),
            "--data-root",
            str(self.folder / "data"),
            "--exec-root",
            str(self.folder / "exec"),
            "--pidfile",
            str(self.folder / "docker.pid"),
            "--host",
            f"unix://{self.socket}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--bridge=none",
        ]
        path = SYSTEM_PATH if extra_path is None else f"{extra_path}:{SYSTEM_PATH}"
        self.daemon = Daemon(
            "dockerd",
            argv,
            self.folder / "dockerd.log",
            env={"PATH": path},
            ready=self._ready,
            timeout=45,
        )
        area.daemons.append(self.daemon)

    def _ready(self) -> bool:
        if not self.socket.exists():
            return False
        return self.client("version", timeout=5).returncode == 0

    def client(
        self, *args: str, timeout: float = 60, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this dockerd."""
        return run(
            [self.docker, "--host", f"unix://{self.socket}", *args],
            timeout=timeout,
            input_text=input_text,
        )

    def import_rootfs(self, rootfs: Path, tag: str) -> None:
        """Make image ``tag`` from a rootfs folder (``docker import`` of a tar stream)."""
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            proc = subprocess.run(
                [self.docker, "--host", f"unix://{self.socket}", "import", "-", tag],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait(60)
        check(proc)


class Podman:
    """Podman with private storage under the area and a containers.conf from nvshim-ctl."""

    def __init__(self, area: Area, nvshim: str, env: Mapping[str, str]) -> None:
        self.podman = require_binary("podman")
        self.folder = area.sub("podman")
        self.config = self.folder / "containers.conf"
        # conmon starts the runtime's `create` with exactly these variables.
        conmon_env = [f"PATH={SYSTEM_PATH}", *(f"{k}={v}" for k, v in env.items())]
        self.config.write_text(
            "# podman for an nvshim engine test\n"
            "[containers]\n"
            "default_sysctls = []\n\n"
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f"conmon_env_vars = {json.dumps(conmon_env)}\n"
        )
        self.configure_output = configure("podman", self.config, nvshim)
        self.env = {"CONTAINERS_CONF": str(self.config), **env}

    def client(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``podman --runtime nvshim`` with the private storage and config."""
        argv = [
            self.podman,
            "--root",
            str(self.folder / "storage"),
            "--runroot",
            str(self.folder / "run"),
            "--tmpdir",
            str(self.folder / "tmp"),
            "--runtime",
            "nvshim",
            *args,
        ]
        return run(argv, env=self.env, timeout=timeout)

    def close(self) -> None:
        """Remove every container of the private storage."""
        self.client("rm", "--all", "--force", "--time", "0", timeout=60)


def make_rootfs(folder: Path) -> Path:
    """A busybox rootfs in ``folder`` (skips without a static busybox)."""
    if runc_support.find_busybox() is None:
        pytest.skip("a static busybox is missing (apt-get install busybox-static)")
    folder.mkdir(parents=True, exist_ok=True)
    runc_support.make_rootfs(folder)
    return folder
