"""``nvshim-ctl demo``: a container on a simulated GPU host, run through nvshim.

The demo builds, in a temporary folder that it removes afterwards:

- a fake driver root in the style of a Jetson: a library behind a two-link
  symlink chain, a folder of driver files and (as root) a character device
  made with ``mknod`` 1:3;
- the CSV files that describe it, and a ``config.toml`` with ``mode = "csv"``;
- a busybox bundle (Debian's ``busybox-static``).

It prints the unified diff that the modifier chain makes to the bundle's
config.json, then, when runc is installed and the user is root, runs the
container through the installed ``nvshim`` with runc: the container prints
the device, the library, its links and its ``/etc/ld.so.cache`` entry.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import glob
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any, Optional

__all__ = ["register", "run"]

#: Where the simulated driver puts its files (container paths).
LIB_DIR = "/usr/lib/nvdemo"
LIB_NAME = "libnvdemo.so"
SHARE_DIR = "/usr/share/nvdemo"
DEVICE = "/dev/nvdemo0"
_APPLETS = ("sh", "cat", "echo", "readlink", "grep", "stat", "wc", "ls", "head")
_TIMEOUT_S = 30

#: What the container runs: show everything csv-discovery gave it.
CONTAINER_SCRIPT = f"""
echo "== inside the container =="
echo "device:  $(stat -c '%n: %F %t:%T' {DEVICE} 2>&1)"
echo "write:   $(echo hello > {DEVICE} && echo ok)"
echo "link:    {LIB_DIR}/{LIB_NAME} -> $(readlink {LIB_DIR}/{LIB_NAME})"
echo "link:    {LIB_DIR}/{LIB_NAME}.1 -> $(readlink {LIB_DIR}/{LIB_NAME}.1)"
echo "library: $(wc -c < {LIB_DIR}/{LIB_NAME}) bytes read through the links"
echo "folder:  $(cat {SHARE_DIR}/README.txt)"
echo "ldcache: {LIB_DIR} found $(grep -c {LIB_DIR} /etc/ld.so.cache) time(s) in /etc/ld.so.cache"
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run a container on a simulated GPU host through nvshim (csv mode)",
        description="Build a simulated Jetson-style GPU host in a temporary folder, show "
        "the spec diff nvshim makes, and run a busybox container through nvshim and runc "
        "(when runc is installed and you are root).",
    )
    parser.add_argument(
        "--spec-only", action="store_true", help="only show the spec diff; run no container"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.set_defaults(func=run)


def _find(name: str) -> Optional[str]:
    from nvshim.lookup import find_executable

    return find_executable(name)


def _find_nvshim() -> Optional[str]:
    """The installed ``nvshim`` script: next to nvshim-ctl or the interpreter, else PATH."""
    import sysconfig

    folders = [
        os.path.dirname(os.path.abspath(sys.argv[0])),
        os.path.dirname(os.path.abspath(sys.executable)),
        sysconfig.get_path("scripts"),
    ]
    for folder in folders:
        path = os.path.join(folder, "nvshim")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return _find("nvshim")


def _is_static_elf(path: str) -> bool:
    """Whether ``path`` is an ELF file without an interpreter (runs in an empty rootfs)."""
    from nvshim._ldconfig import is_static_elf

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return is_static_elf(fd)
    finally:
        os.close(fd)


def _find_busybox() -> Optional[str]:
    for path in ("/bin/busybox", "/usr/bin/busybox", _find("busybox")):
        if path and _is_static_elf(path):
            return path
    return None


def _shared_object() -> Optional[str]:
    """A real shared library of the host, so that ldconfig lists the demo's folder."""
    for pattern in (
        "/lib/*-linux-gnu/libz.so.1",
        "/usr/lib/*-linux-gnu/libz.so.1",
        "/lib*/libz.so.1",
    ):
        for path in sorted(glob.glob(pattern)):
            return os.path.realpath(path)
    return None


def _put(root: str, path: str) -> str:
    host = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(host), exist_ok=True)
    return host


def build_host(folder: str, with_device: bool) -> tuple[str, str]:
    """Make the fake driver root and its CSV files in ``folder``; return both paths."""
    root = os.path.join(folder, "driver-root")
    csv_dir = os.path.join(folder, "host-files-for-container.d")
    os.makedirs(csv_dir)
    library = _put(root, f"{LIB_DIR}/{LIB_NAME}.1.0.0")
    source = _shared_object()
    if source is not None:
        shutil.copyfile(source, library)
    else:
        with open(library, "wb") as handle:
            handle.write(b"not a real library\n")
    os.symlink(f"{LIB_NAME}.1.0.0", _put(root, f"{LIB_DIR}/{LIB_NAME}.1"))
    os.symlink(f"{LIB_NAME}.1", _put(root, f"{LIB_DIR}/{LIB_NAME}"))
    with open(_put(root, f"{SHARE_DIR}/README.txt"), "w", encoding="utf-8") as handle:
        handle.write("hello from the simulated driver\n")
    lines = [f"lib, {LIB_DIR}/{LIB_NAME}", f"dir, {SHARE_DIR}"]
    if with_device:
        node = _put(root, DEVICE)
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(node, 0o666)
        with open(os.path.join(csv_dir, "devices.csv"), "w", encoding="utf-8") as handle:
            handle.write(f"dev, {os.path.basename(DEVICE)}\n")
    with open(os.path.join(csv_dir, "drivers.csv"), "w", encoding="utf-8") as handle:
        handle.write("# The simulated driver's files\n" + "".join(f"{x}\n" for x in lines))
    return root, csv_dir


def write_config(path: str, root: str, csv_dir: str, runc: Optional[str]) -> None:
    """The demo's config.toml: csv mode on the fake root."""
    runtimes = json.dumps([runc] if runc else ["runc", "crun"])
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            "[nvidia-container-runtime]\n"
            'mode = "csv"\n'
            f"runtimes = {runtimes}\n"
            "[nvidia-container-runtime.modes.csv]\n"
            f"mount-spec-path = {json.dumps(csv_dir)}\n"
            "[nvidia-container-cli]\n"
            f"root = {json.dumps(root)}\n"
        )


def _base_spec() -> dict[str, Any]:
    """A spec like ``runc spec`` writes, for when runc is not there to write it."""
    from nvshim._minimal import minimal_spec_dict

    spec = minimal_spec_dict()
    spec["hostname"] = "nvshim-demo"
    spec["linux"] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
    }
    return spec


def build_bundle(folder: str, busybox: Optional[str], runc: Optional[str]) -> str:
    """A busybox bundle asking for all GPUs (rootfs only when busybox is there)."""
    bundle = os.path.join(folder, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs)
    spec = _base_spec()
    if runc is not None:
        subprocess.run(
            [runc, "spec", "--bundle", bundle],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=_TIMEOUT_S,
        )
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as handle:
            spec = json.load(handle)
    process = spec["process"]
    process["terminal"] = False
    process["args"] = ["sh", "-c", CONTAINER_SCRIPT]
    process["env"] = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "NVIDIA_VISIBLE_DEVICES=all",
    ]
    # ldconfig (run by the update-ldcache hook) writes the rootfs' ld.so.cache.
    spec["root"] = {"path": "rootfs", "readonly": False}
    with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(spec, handle, indent=2)
        handle.write("\n")
    if busybox is not None:
        for sub in ("bin", "etc", "dev", "proc", "sys", "tmp"):
            os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
        shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
        for applet in _APPLETS:
            os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    return bundle


def spec_diff(bundle: str, config_path: str) -> tuple[str, int]:
    """The unified diff the modifier chain makes to the bundle, and the change count."""
    from nvshim.config import load_config
    from nvshim.runtime import apply_modifiers

    config_json = os.path.join(bundle, "config.json")
    with open(config_json, encoding="utf-8") as handle:
        before = json.load(handle)
    result = apply_modifiers(bundle, config=load_config(config_path), write=False)
    after = result.spec.to_dict()
    lines = difflib.unified_diff(
        json.dumps(before, indent=2).splitlines(keepends=True),
        json.dumps(after, indent=2).splitlines(keepends=True),
        fromfile="config.json (from the engine)",
        tofile="config.json (after nvshim)",
    )
    return "".join(lines), len(result.changes)


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="nvshim-demo-")
    try:
        yield folder
    finally:
        if keep:
            print(f"(kept {folder})")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _run_container(nvshim: str, runc: str, bundle: str, config_path: str, state: str) -> int:
    container = f"nvshim-demo-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, NVSHIM_CONFIG=config_path)
    command = [nvshim, "--root", state, "run", "--bundle", bundle, container]
    print(f"$ NVSHIM_CONFIG={config_path} {' '.join(command[:-1])} {container}")
    sys.stdout.flush()
    try:
        proc = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"nvshim-ctl demo: the container did not finish in {_TIMEOUT_S} s", file=sys.stderr)
        return 1
    finally:
        subprocess.run(
            [runc, "--root", state, "delete", "-f", container],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=_TIMEOUT_S,
            check=False,
        )
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        print(f"nvshim-ctl demo: the container exited {proc.returncode}", file=sys.stderr)
        return 1
    return 0


def run(namespace: argparse.Namespace) -> int:
    """Build the simulated host, show the spec diff, run the container if possible."""
    from nvshim.errors import NvshimError

    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    runc = _find("runc")
    busybox = _find_busybox()
    nvshim = _find_nvshim()
    why_not = None
    if namespace.spec_only:
        why_not = "--spec-only"
    elif not sys.platform.startswith("linux"):
        why_not = "containers need Linux"
    elif runc is None:
        why_not = "runc is not installed"
    elif not is_root:
        why_not = "running a container with runc needs root"
    elif busybox is None:
        why_not = "a static busybox is missing (apt-get install busybox-static)"
    elif nvshim is None:
        why_not = "the nvshim command is not installed"

    with _workdir(namespace.keep) as folder:
        root, csv_dir = build_host(folder, with_device=is_root)
        config_path = os.path.join(folder, "config.toml")
        write_config(config_path, root, csv_dir, runc)
        bundle = build_bundle(folder, busybox if why_not is None else None, runc)
        print(f"Simulated GPU host (csv mode) in {folder}:")
        print(f"  driver root  {root}")
        print(f"  CSV files    {csv_dir}")
        if not is_root:
            print("  (not root: no device node; the demo shows libraries and folders only)")
        try:
            diff, count = spec_diff(bundle, config_path)
        except NvshimError as exc:
            print(exc.line, file=sys.stderr)
            return 1
        print(f"\nThe modifier chain made {count} change(s) to config.json:\n")
        sys.stdout.write(diff)
        if why_not is not None:
            print(f"\nNo container run ({why_not}); the diff above is what nvshim would apply.")
            return 0
        assert nvshim is not None
        assert runc is not None
        print()
        return _run_container(nvshim, runc, bundle, config_path, os.path.join(folder, "state"))
