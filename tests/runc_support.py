"""Helpers that run real containers: busybox OCI bundles and a runtime driver.

Tests import this module as ``import runc_support`` (pytest puts ``tests/`` on
``sys.path``). A bundle is a temporary folder with a busybox rootfs and a
``config.json`` made by ``runc spec``; :func:`run_container` drives any runtime
command line (plain ``runc``, or ``nvshim`` with ``NVSHIM_CONFIG`` in its
environment) through ``run`` or through ``create``/``start``/``delete``, with a
private ``--root`` state folder, a unique container id, a timeout on every
subprocess and a ``delete -f`` that runs even when the test fails.

Host notes (Debian 12, hybrid cgroups: v1 controllers under /sys/fs/cgroup/*,
cgroup2 at /sys/fs/cgroup/unified): runc 1.1 runs containers with the spec
``runc spec`` writes, network namespace and default cgroupsPath included.
crun 1.8 refuses such a host ("cgroups in hybrid mode not supported") while a
controller is enabled in the cgroup2 hierarchy, so crun tests must call
:func:`require_working_runtime` rather than assume crun works.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

#: Folders searched after PATH, as nvshim does (podman may call with no PATH).
_SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: busybox-static installs a statically linked busybox here (Debian 12).
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

#: Seconds allowed for one runtime subprocess unless a caller says otherwise.
DEFAULT_TIMEOUT = 60.0

#: Environment of the container's process unless a caller gives one.
DEFAULT_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "TERM=xterm",
)


def find_executable(name: str) -> str | None:
    """Return the absolute path of ``name`` from PATH or the usual system folders."""
    found = shutil.which(name)
    if found:
        return os.path.abspath(found)
    for folder in _SYSTEM_DIRS:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _is_static_elf(path: str) -> bool:
    """Tell whether ``path`` is an ELF file without a PT_INTERP program header.

    A dynamically linked busybox would need the host's libc inside the rootfs;
    only the static one (package busybox-static) runs in a bare rootfs.
    """
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if ident[:4] != b"\x7fELF":
                return False
            is64 = ident[4] == 2
            endian = "<" if ident[5] == 1 else ">"
            if is64:
                f.seek(32)
                (phoff,) = struct.unpack(endian + "Q", f.read(8))
                f.seek(54)
            else:
                f.seek(28)
                (phoff,) = struct.unpack(endian + "I", f.read(4))
                f.seek(42)
            phentsize, phnum = struct.unpack(endian + "HH", f.read(4))
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                (p_type,) = struct.unpack(endian + "I", f.read(4))
                if p_type == 3:  # PT_INTERP: needs a dynamic loader
                    return False
            return True
    except (OSError, struct.error):
        return False


@functools.cache
def find_busybox() -> str | None:
    """Return the path of a statically linked busybox, or None."""
    for candidate in (*BUSYBOX_CANDIDATES, find_executable("busybox")):
        if candidate and os.path.isfile(candidate) and _is_static_elf(candidate):
            return candidate
    return None


@functools.cache
def find_runc() -> str | None:
    """Return the absolute path of runc, or None."""
    return find_executable("runc")


def is_root() -> bool:
    """Tell whether the tests run as root (runc needs it without rootless setup)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _runc_skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "real containers need Linux"
    if find_runc() is None:
        return "runc is not installed (apt-get install runc)"
    if not is_root():
        return "running containers with runc needs root"
    if find_busybox() is None:
        return "a static busybox is missing (apt-get install busybox-static)"
    return None


#: Skip unless the tests run as root.
requires_root = pytest.mark.skipif(not is_root(), reason="needs root")

#: Skip unless runc, root and a static busybox are all there.
requires_runc = pytest.mark.skipif(
    _runc_skip_reason() is not None, reason=_runc_skip_reason() or "runc available"
)

#: Skip unless a static busybox is installed (bundles without running them).
requires_busybox = pytest.mark.skipif(
    find_busybox() is None, reason="a static busybox is missing (apt-get install busybox-static)"
)

#: For ``pytestmark``: the registered ``runc``/``root`` markers plus the skip.
RUNC_MARKS = [pytest.mark.runc, pytest.mark.root, requires_runc]


# --------------------------------------------------------------------------- bundles


def _fallback_spec() -> dict[str, Any]:
    """A spec close to ``runc spec``'s, for hosts without runc (bundles only)."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {
                key: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                for key in ("bounding", "effective", "permitted", "ambient")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge ``extra`` into ``base``: dicts recursively, anything else replaced."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


@functools.cache
def _busybox_applets(busybox: str) -> tuple[str, ...]:
    out = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return tuple(name for name in out.split() if name and "/" not in name)


@dataclass
class Bundle:
    """An OCI bundle on disk: ``path/config.json`` and ``path/rootfs``."""

    path: Path

    @property
    def rootfs(self) -> Path:
        """The container's root folder on the host."""
        return self.path / "rootfs"

    @property
    def config_path(self) -> Path:
        """The bundle's config.json."""
        return self.path / "config.json"

    def load_config(self) -> dict[str, Any]:
        """Read config.json."""
        with open(self.config_path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
        return data

    def save_config(self, config: Mapping[str, Any]) -> None:
        """Write config.json (indented, as runc spec does)."""
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
            f.write("\n")

    def edit_config(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Load config.json, let ``edit`` change it in place, write it back."""
        config = self.load_config()
        edit(config)
        self.save_config(config)

    def write_file(self, container_path: str, data: str | bytes, mode: int = 0o644) -> Path:
        """Create a file in the rootfs at the absolute ``container_path``; return its host path."""
        if not container_path.startswith("/") or ".." in container_path.split("/"):
            raise ValueError(f"container path must be absolute without '..': {container_path!r}")
        target = self.rootfs / container_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)
        return target


def make_rootfs(rootfs: Path, busybox: str | None = None) -> None:
    """Fill ``rootfs`` with a static busybox, one link per applet and the usual folders."""
    busybox = busybox or find_busybox()
    if busybox is None:
        raise RuntimeError("a static busybox is missing (apt-get install busybox-static)")
    for folder in ("bin", "sbin", "usr/bin", "etc", "tmp", "dev", "proc", "sys", "root", "run"):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in _busybox_applets(busybox):
        link = rootfs / "bin" / applet
        if applet != "busybox" and not os.path.lexists(link):
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    (rootfs / "etc" / "hostname").write_text("runc\n")


def make_bundle(
    dest: str | os.PathLike[str],
    args: Sequence[str] = ("sh", "-c", "true"),
    *,
    env: Sequence[str] | None = None,
    cwd: str = "/",
    readonly: bool = False,
    extra: Mapping[str, Any] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    rootfs: bool = True,
) -> Bundle:
    """Build a busybox OCI bundle in ``dest`` (created if missing).

    config.json comes from ``runc spec`` (a close copy of it without runc),
    then: ``terminal`` false, ``args``/``env``/``cwd`` as given, the root
    read-only only if ``readonly``, ``extra`` deep-merged (dicts merge, lists
    and scalars replace), and finally ``edit(config)`` for anything else.
    ``rootfs=False`` skips the busybox copy (for tests that never run it).
    """
    path = Path(dest)
    path.mkdir(parents=True, exist_ok=True)
    bundle = Bundle(path.resolve())
    runc = find_runc()
    if runc is not None:
        if bundle.config_path.exists():
            bundle.config_path.unlink()  # runc spec refuses to overwrite
        subprocess.run(
            [runc, "spec", "--bundle", str(bundle.path)],
            capture_output=True,
            timeout=30,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        config = bundle.load_config()
    else:
        config = _fallback_spec()
    process = config.setdefault("process", {})
    process["terminal"] = False
    process["args"] = list(args)
    process["env"] = list(DEFAULT_ENV if env is None else env)
    process["cwd"] = cwd
    config.setdefault("root", {})["readonly"] = readonly
    config["root"]["path"] = "rootfs"
    if extra:
        _deep_merge(config, extra)
    if edit is not None:
        edit(config)
    bundle.save_config(config)
    if rootfs:
        make_rootfs(bundle.rootfs)
    else:
        bundle.rootfs.mkdir(exist_ok=True)
    return bundle


# --------------------------------------------------------------------------- running


@dataclass
class Step:
    """One runtime subprocess: its argv, exit status and output."""

    argv: list[str]
    returncode: Optional[int]  # None: killed by the timeout
    stdout: str = ""
    stderr: str = ""


@dataclass
class ContainerResult:
    """What a container run gave: the container's exit status and output.

    ``returncode`` is the container process's exit status (for ``run``, the
    runtime's, which is the container's when the runtime works); a negative
    value ``-N`` means killed by signal N, None means it did not finish in time
    or never started. ``steps`` lists every runtime call, ``delete`` included.
    """

    container_id: str
    returncode: Optional[int]
    stdout: str
    stderr: str
    steps: list[Step] = field(default_factory=list)
    timed_out: bool = False

    def describe(self) -> str:
        """A multi-line account of every step, for assertion messages."""
        lines = [f"container {self.container_id}: exit {self.returncode}"]
        for step in self.steps:
            lines.append(f"$ {' '.join(step.argv)}  -> {step.returncode}")
            if step.stdout:
                lines.append("  stdout: " + step.stdout.rstrip().replace("\n", "\n          "))
            if step.stderr:
                lines.append("  stderr: " + step.stderr.rstrip().replace("\n", "\n          "))
        lines.append("container stdout: " + self.stdout.rstrip())
        lines.append("container stderr: " + self.stderr.rstrip())
        return "\n".join(lines)

    def check(self, expected: int = 0) -> ContainerResult:
        """Raise AssertionError with :meth:`describe` unless the exit status is ``expected``."""
        if self.returncode != expected:
            raise AssertionError(f"expected exit {expected}\n{self.describe()}")
        return self


def new_container_id(prefix: str = "nvshim-test") -> str:
    """A container id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def _call(
    argv: list[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | None,
    timeout: float,
    input_data: bytes | None = None,
) -> Step:
    try:
        proc = subprocess.run(
            argv,
            input=input_data,
            stdin=None if input_data is not None else subprocess.DEVNULL,
            capture_output=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Step(argv, None, _decode(exc.stdout), _decode(exc.stderr) + "\n[timed out]")
    return Step(argv, proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def _runtime_env(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    if env:
        merged.update(env)
    return merged


@contextlib.contextmanager
def state_dir(parent: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """A private runtime ``--root`` folder, removed afterwards."""
    path = tempfile.mkdtemp(prefix="runc-state-", dir=None if parent is None else str(parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _delete(
    runtime: Sequence[str],
    root: str,
    container_id: str,
    env: Mapping[str, str],
    timeout: float,
) -> list[Step]:
    """``delete -f`` through the runtime under test, then plain runc if that failed."""
    steps = [
        _call(
            [*runtime, "--root", root, "delete", "-f", container_id],
            env=env,
            cwd=None,
            timeout=timeout,
        )
    ]
    runc = find_runc()
    if steps[-1].returncode != 0 and runc is not None and list(runtime) != [runc]:
        steps.append(
            _call(
                [runc, "--root", root, "delete", "-f", container_id],
                env=None,
                cwd=None,
                timeout=timeout,
            )
        )
    return steps


def run_container(
    runtime: Sequence[str],
    bundle: Bundle | str | os.PathLike[str],
    *,
    lifecycle: bool = False,
    env: Mapping[str, str] | None = None,
    global_args: Sequence[str] = (),
    container_id: str | None = None,
    root: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ContainerResult:
    """Run the bundle's container through ``runtime`` and return what it did.

    ``runtime`` is the command that stands in for runc (``[runc]``,
    ``[nvshim_path]``, ``[crun, "--cgroup-manager=disabled"]``); ``env`` is
    added to this process's environment for every runtime call (for example
    ``{"NVSHIM_CONFIG": path}``); ``global_args`` go before the subcommand,
    after ``--root``. ``lifecycle=False`` uses ``run``; ``lifecycle=True`` uses
    ``create``, ``start``, waits for the container to exit and reads its exit
    status as a child subreaper would (as containerd's shim does). Either way
    ``delete -f`` runs at the end, also after a failure or a timeout, and the
    private state folder (unless ``root`` is given) is removed.
    """
    bundle_path = str(bundle.path if isinstance(bundle, Bundle) else Path(bundle).resolve())
    cid = container_id or new_container_id()
    run_env = _runtime_env(env)
    with contextlib.ExitStack() as stack:
        root_path = str(root) if root is not None else stack.enter_context(state_dir())
        base = [*runtime, "--root", root_path, *global_args]
        try:
            if lifecycle:
                result = _lifecycle(base, bundle_path, cid, run_env, cwd, timeout)
            else:
                step = _call(
                    [*base, "run", "--bundle", bundle_path, cid],
                    env=run_env,
                    cwd=None if cwd is None else str(cwd),
                    timeout=timeout,
                )
                result = ContainerResult(
                    cid,
                    step.returncode,
                    step.stdout,
                    step.stderr,
                    [step],
                    timed_out=step.returncode is None,
                )
        finally:
            deletes = _delete(runtime, root_path, cid, run_env, min(timeout, 30.0))
        result.steps.extend(deletes)
        return result


def _lifecycle(
    base: list[str],
    bundle_path: str,
    cid: str,
    env: dict[str, str],
    cwd: str | os.PathLike[str] | None,
    timeout: float,
) -> ContainerResult:
    """create/start in a child helper that is a subreaper, so it can wait for the container."""
    request = {"base": base, "bundle": bundle_path, "id": cid, "timeout": timeout}
    helper = [sys.executable, os.path.abspath(__file__), "--lifecycle-helper"]
    try:
        proc = subprocess.run(
            helper,
            input=json.dumps(request).encode(),
            capture_output=True,
            env=env,
            cwd=None if cwd is None else str(cwd),
            timeout=timeout * 3 + 10,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return ContainerResult(cid, None, "", _decode(exc.stderr), [], timed_out=True)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return ContainerResult(
            cid, None, "", f"lifecycle helper failed ({proc.returncode}): {_decode(proc.stderr)}"
        )
    steps = [Step(**s) for s in report["steps"]]
    return ContainerResult(
        cid,
        report["returncode"],
        report["stdout"],
        report["stderr"],
        steps,
        timed_out=report["timed_out"],
    )


def _helper_main() -> int:
    """The lifecycle helper: become a subreaper, create, start, wait, report JSON on stdout."""
    request = json.loads(sys.stdin.read())
    base: list[str] = request["base"]
    cid: str = request["id"]
    timeout: float = request["timeout"]
    report: dict[str, Any] = {
        "steps": [],
        "returncode": None,
        "stdout": "",
        "stderr": "",
        "timed_out": False,
    }
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    with tempfile.TemporaryDirectory(prefix="lifecycle-") as tmp:
        pid_file = os.path.join(tmp, "pid")
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        # The container inherits create's stdout/stderr; files, not pipes, so
        # that create returns while the container still holds them open.
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            argv = [*base, "create", "--bundle", request["bundle"], "--pid-file", pid_file, cid]
            try:
                proc = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    timeout=timeout,
                    check=False,
                )
                create = Step(argv, proc.returncode)
            except subprocess.TimeoutExpired:
                create = Step(argv, None)
        report["steps"].append(create.__dict__)
        if create.returncode == 0:
            with open(pid_file) as f:
                pid = int(f.read().strip())
            start = _call([*base, "start", cid], env=None, cwd=None, timeout=timeout)
            report["steps"].append(start.__dict__)
            if start.returncode == 0:
                report["returncode"], report["timed_out"] = _wait_for(pid, timeout)
        out_text = Path(out_path).read_bytes().decode("utf-8", errors="replace")
        err_text = Path(err_path).read_bytes().decode("utf-8", errors="replace")
        if create.returncode == 0:
            report["stdout"], report["stderr"] = out_text, err_text
        else:
            # Before the container exists, these files hold the runtime's own output.
            create.stdout, create.stderr = out_text, err_text
            report["steps"][0] = create.__dict__
    # Reap what is left (runc's intermediate processes) before exiting.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    sys.stdout.write(json.dumps(report))
    return 0


def _wait_for(pid: int, timeout: float) -> tuple[Optional[int], bool]:
    """Reap children until ``pid`` exits; return its exit status (``-sig`` if killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reaped, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            # Not our descendant (the runtime double-forked outside us): poll for it.
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None, False
            time.sleep(0.01)
            continue
        if reaped == pid:
            if os.WIFSIGNALED(status):
                return -os.WTERMSIG(status), False
            return os.WEXITSTATUS(status), False
        if reaped == 0:
            time.sleep(0.005)
    return None, True


# --------------------------------------------------------------------------- probes


@functools.cache
def _probe(runtime: tuple[str, ...]) -> str | None:
    reason = _runc_skip_reason()
    if reason is not None:
        return reason
    if shutil.which(runtime[0]) is None and not os.access(runtime[0], os.X_OK):
        return f"{runtime[0]} is not installed"
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        bundle = make_bundle(Path(tmp) / "bundle", ["sh", "-c", "echo probe-ok"])
        result = run_container(list(runtime), bundle, timeout=30)
        if result.returncode == 0 and "probe-ok" in result.stdout:
            return None
        why = (result.stderr or (result.steps[0].stderr if result.steps else "")).strip()
        return f"{' '.join(runtime)} cannot run a container on this host: {why[-300:]}"


def require_working_runtime(runtime: Sequence[str]) -> None:
    """Skip the calling test unless ``runtime`` really runs a busybox container here.

    The probe runs once per runtime command per test session.
    """
    reason = _probe(tuple(runtime))
    if reason is not None:
        pytest.skip(reason)


if __name__ == "__main__" and sys.argv[1:] == ["--lifecycle-helper"]:
    sys.exit(_helper_main())
