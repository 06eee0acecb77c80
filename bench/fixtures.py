"""What the benchmark cases run on: configs, bundles, a fake Jetson root, plugin venvs.

Everything is written under one scratch folder; nothing is installed into the
environment nvshim itself runs from. Extra distributions and plugins live in
throwaway venvs that see nvshim's own site-packages through a ``.pth`` file,
so that "create with 500 more distributions" and its baseline differ in
nothing else.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The three-line exec shim ``R``: what any Python runtime shim costs at least.
EXEC_SHIM = """import os, sys
os.execv("{runtime}", ["{runtime}"] + sys.argv[1:])
"""

#: ``F``: the same shim after importing what nvshim's design puts on every create.
FLOOR_SHIM = "import attrs, pluggy\n" + EXEC_SHIM

#: The CDI spec of the cdi case: 8 GPUs in the shape ``nvidia-ctk cdi generate
#: --dev-root /run/nvidia/driver`` writes (YAML, about 14 KB).
CDI_SPEC = Path(__file__).resolve().parent / "data" / "nvidia-cdi-8gpu.yaml"
#: The driver root the CDI fixture names; the bench points it at a fake one.
CDI_DRIVER_ROOT = "/run/nvidia/driver"

#: A plugin that does something small and real on every create.
PLUGIN_MODULE = '''"""Benchmark plugin {n}: sets one annotation."""
from nvshim import Modifier, hookimpl


def _modify(spec, context):
    spec.set_annotation("bench.nvshim/plugin-{n}", "1")


@hookimpl
def nvshim_modifiers():
    return [Modifier(name="bench-plugin-{n}", modify=_modify, order=60)]
'''


def interpreter_of(script: str) -> str:
    """The interpreter nvshim's ``script`` runs (the one pip wrote), else this one.

    nvshim's scripts are ``#!/bin/sh`` wrappers that read the interpreter from
    the first line of ``nvshim-python`` beside them (links resolved); an
    older install is a ``#!python`` script.
    """
    real = os.path.realpath(script)
    for candidate in (os.path.join(os.path.dirname(real), "nvshim-python"), real):
        python = _shebang_python(candidate)
        if python is not None:
            return python
    return sys.executable


#: How pip starts a script whose interpreter path is too long for a ``#!`` line.
_LONG_FORM = b"'''exec' "


def _shebang_python(path: str) -> str | None:
    """The Python interpreter a script's ``#!`` line names (pip's long form too)."""
    try:
        with open(path, "rb") as f:
            first, second = f.readline(), f.readline()
    except OSError:
        return None
    line = first.decode(errors="replace").strip()
    if line.startswith("#!/bin/sh") and second.startswith(_LONG_FORM):
        words = second[len(_LONG_FORM) :].decode(errors="replace").split()
        line = "#!" + words[0].strip("'\"") if words else ""
    if not line.startswith("#!"):
        return None
    words = line[2:].split()
    if words and os.path.isabs(words[0]) and "python" in os.path.basename(words[0]):
        return words[0]
    return None


def nvshim_in_venv(nvshim: str, venv_python: str) -> list[str]:
    """The command that runs the installed ``nvshim`` with ``venv_python`` instead.

    For the ``#!/bin/sh`` wrapper: a copy of it (and of ``nvshim-ctl``) in the
    venv's bin folder, with an ``nvshim-python`` naming the venv's interpreter,
    as an install into that venv has.  For an older ``#!python`` script: the
    venv's interpreter running it.
    """
    real = os.path.realpath(nvshim)
    with open(real, "rb") as f:
        wrapper = f.readline().startswith(b"#!/bin/sh")
    if not wrapper:
        return [venv_python, nvshim]
    bin_dir = Path(venv_python).parent
    for name in ("nvshim", "nvshim-ctl"):
        source = Path(real).with_name(name)
        if source.is_file():
            shutil.copy2(source, bin_dir / name)
    (bin_dir / "nvshim-python").write_text(f"#!{venv_python}\n")
    return [str(bin_dir / "nvshim")]


def write_exec_shim(path: Path, python: str, runtime: str = "/bin/true") -> Path:
    """Write ``R``: ``#!<python>`` and a bare ``os.execv`` of ``runtime``."""
    path.write_text(f"#!{python}\n" + EXEC_SHIM.format(runtime=runtime))
    path.chmod(0o755)
    return path


def write_floor_shim(path: Path, python: str, runtime: str = "/bin/true") -> Path:
    """Write ``F``: ``R`` after ``import attrs, pluggy`` (the floor of nvshim's create)."""
    path.write_text(f"#!{python}\n" + FLOOR_SHIM.format(runtime=runtime))
    path.chmod(0o755)
    return path


def write_sh_wrapper(path: Path, runtime: str) -> Path:
    """The small ``#!/bin/sh`` wrapper each runtime runs behind in the podman case."""
    path.write_text(f'#!/bin/sh\nexec {runtime} "$@"\n')
    path.chmod(0o755)
    return path


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    *,
    runtimes: Iterable[str] = ("/bin/true",),
    mode: str = "legacy",
    hook: str = "/bin/true",
    csv_dir: Path | None = None,
    driver_root: Path | None = None,
    cdi_dirs: Iterable[Path] = (),
) -> Path:
    """An nvshim config.toml for one case."""
    lines = [
        "[nvidia-container-runtime]",
        "runtimes = [" + ", ".join(_toml_str(r) for r in runtimes) + "]",
        f"mode = {_toml_str(mode)}",
        "",
        "[nvidia-container-runtime-hook]",
        f"path = {_toml_str(hook)}",
        "",
    ]
    if csv_dir is not None:
        lines += [
            "[nvidia-container-runtime.modes.csv]",
            f"mount-spec-path = {_toml_str(str(csv_dir))}",
            "",
        ]
    cdi_dirs = list(cdi_dirs)
    if cdi_dirs:
        lines += [
            "[nvidia-container-runtime.modes.cdi]",
            "spec-dirs = [" + ", ".join(_toml_str(str(d)) for d in cdi_dirs) + "]",
            "",
        ]
    if driver_root is not None:
        lines += ["[nvidia-container-cli]", f"root = {_toml_str(str(driver_root))}", ""]
    path.write_text("\n".join(lines))
    return path


def gpu_spec(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` as a GPU container: all devices, compute and utility."""
    spec = copy.deepcopy(base)
    env = spec.setdefault("process", {}).setdefault("env", [])
    env += ["NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"]
    return spec


def large_spec(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with 2,000 more mounts, 500 devices and 200 env vars."""
    spec = gpu_spec(base)
    spec["mounts"] = list(spec.get("mounts", [])) + [
        {
            "destination": f"/data/m{i:04d}",
            "type": "bind",
            "source": f"/srv/bench/m{i:04d}",
            "options": ["rbind", "ro"],
        }
        for i in range(2000)
    ]
    linux = spec.setdefault("linux", {})
    linux["devices"] = list(linux.get("devices") or []) + [
        {
            "path": f"/dev/bench{i}",
            "type": "c",
            "major": 240,
            "minor": i,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        }
        for i in range(500)
    ]
    spec["process"]["env"] += [f"BENCH_VAR_{i:03d}=value-{i}" for i in range(200)]
    return spec


def write_bundle(folder: Path, spec: dict[str, Any]) -> Path:
    """A bundle folder with ``spec`` as config.json, and a pristine copy to restore it from."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rootfs").mkdir(exist_ok=True)
    text = json.dumps(spec, indent=2)
    (folder / "config.json").write_text(text)
    (folder / "config.json.orig").write_text(text)
    return folder


def restore_command(bundle: Path) -> list[str]:
    """The untimed step run before each create: put the pristine config.json back."""
    return ["cp", str(bundle / "config.json.orig"), str(bundle / "config.json")]


def _csv_entries(csv_dir: Path) -> list[tuple[str, str]]:
    entries = []
    for csv in sorted(csv_dir.glob("*.csv")):
        for line in csv.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "," not in line:
                continue
            kind, _, path = line.partition(",")
            entries.append((kind.strip(), path.strip()))
    return entries


def make_fake_jetson_root(root: Path, csv_dir: Path) -> Path:
    """A host root holding everything ``csv_dir``'s CSV files name.

    ``dev``: character nodes (mknod, major 240; needs root), globs expanded to
    two nodes; ``dir``: folders; ``lib``: empty files; ``sym``: a link to a
    file beside it.
    """
    minor = 0
    for kind, raw in _csv_entries(csv_dir):
        rel = raw.lstrip("/")
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dev":
            names = [rel.replace("*", str(k)) for k in (0, 128)] if "*" in rel else [rel]
            for name in names:
                node = root / name
                if not node.exists():
                    os.mknod(node, 0o666 | 0o020000, os.makedev(240, minor))
                    minor += 1
        elif kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif kind == "lib":
            if not target.exists():
                target.write_bytes(b"")
        elif kind == "sym":
            real = target.with_name(target.name + ".real")
            if not real.exists():
                real.write_bytes(b"")
            if not os.path.lexists(target):
                target.symlink_to(real.name)
    return root


def make_cdi_host(folder: Path, spec: Path = CDI_SPEC) -> Path:
    """A CDI spec folder holding ``spec`` with its driver root moved under ``folder``.

    Every device node the spec names is made (mknod, major 240; needs root)
    under ``folder/driver/dev``, as a driver container leaves them under
    /run/nvidia/driver; the libraries it mounts are empty files.  Returns the
    spec folder (``folder/cdi``).
    """
    root = folder / "driver"
    text = spec.read_text().replace(CDI_DRIVER_ROOT, str(root))
    minor = 0
    for line in text.splitlines():
        key, _, value = line.strip().lstrip("- ").partition(": ")
        if key != "hostPath" or not value.startswith(str(root)):
            continue
        target = Path(value)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            continue
        if value.startswith(str(root / "dev")):
            os.mknod(target, 0o666 | 0o020000, os.makedev(240, minor))
            minor += 1
        else:
            target.write_bytes(b"")
    spec_dir = folder / "cdi"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / spec.name).write_text(text)
    return spec_dir


def cdi_gpu_spec(base: dict[str, Any], count: int = 2) -> dict[str, Any]:
    """``base`` asking for the first ``count`` GPUs of the CDI fixture by index."""
    spec = copy.deepcopy(base)
    env = spec.setdefault("process", {}).setdefault("env", [])
    env += [
        "NVIDIA_VISIBLE_DEVICES=" + ",".join(str(i) for i in range(count)),
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    ]
    return spec


def make_rootfs(rootfs: Path) -> Path | None:
    """A minimal busybox rootfs; None without a static busybox."""
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
    if busybox is None:
        return None
    for sub in ("bin", "etc", "tmp", "dev", "proc", "sys", "root", "run"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in ("sh", "true", "echo", "sleep"):
        if not os.path.lexists(rootfs / "bin" / applet):
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    return rootfs


def write_podman_conf(path: Path, env: dict[str, str]) -> Path:
    """A containers.conf for the podman case: conmon gives the runtime's create ``env``."""
    conmon_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    conmon_env += [f"{k}={v}" for k, v in env.items()]
    path.write_text(
        "[containers]\n"
        "default_sysctls = []\n\n"
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f"conmon_env_vars = {json.dumps(conmon_env)}\n"
    )
    return path


def make_jit_cdi_host(folder: Path, python: str) -> dict[str, str] | str:
    """The environment of a create in jit-cdi mode on a simulated GPU host, or why not.

    The jit-cdi row (issue #14): the simulated 8-GPU host of the tests
    (tests/host_support.py: real ELF libraries, a fake ``libnvidia-ml.so.1``
    compiled from C, an ``ld.so.cache`` from ``ldconfig -r``, nodes made with
    mknod) under ``folder``, and a config in mode jit-cdi with it as the driver
    root.  The check run and warm-ups build the host inventory (through the
    fake NVML); the timed runs read it from the cache, as every create after
    the first does on a real host.
    """
    probe = subprocess.run(
        [python, "-c", "import nvshim_jit_cdi, pynvml"], capture_output=True, timeout=60,
        check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return "nvshim's jit-cdi modifier or nvidia-ml-py (the nvml extra) is not installed"
    if os.geteuid() != 0:
        return "the simulated GPU host needs root (mknod, ldconfig -r)"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    try:
        import host_support  # its helpers use pytest to skip tests
    except ImportError as exc:
        return f"tests/host_support.py cannot be imported ({exc})"
    try:
        host = host_support.build_simulated_host(folder / "root")
    except Exception as exc:  # a compiler or ldconfig failing
        return f"cannot build the simulated GPU host: {exc}"
    except BaseException as exc:  # pytest.skip's exception: a missing tool
        if type(exc).__name__ != "Skipped":
            raise
        return str(exc)
    config = write_config(folder / "jit-cdi.toml", mode="jit-cdi", driver_root=host.root)
    return {"NVSHIM_CONFIG": str(config)}


def _site_packages(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def make_overlay_venv(folder: Path, python: str) -> tuple[str, Path]:
    """A bare venv that sees ``python``'s site-packages; returns (its python, its site)."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    venv_python = str(folder / "bin" / "python")
    site = Path(_site_packages(venv_python))
    # addsitedir, not a bare path line: the base's own .pth files (an editable
    # install's finder, for one) must be processed too.
    base = _site_packages(python)
    (site / "nvshim_bench_base.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    return venv_python, site


def _dist_info(site: Path, name: str, entry_points: str = "", top_level: str = "") -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "INSTALLER").write_text("bench\n")
    records = [f"{info.name}/METADATA,,", f"{info.name}/INSTALLER,,", f"{info.name}/RECORD,,"]
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points)
        records.append(f"{info.name}/entry_points.txt,,")
    if top_level:
        (info / "top_level.txt").write_text(top_level + "\n")
    (info / "RECORD").write_text("\n".join(records) + "\n")


def add_distributions(site: Path, count: int) -> None:
    """``count`` installed distributions without nvshim plugins (a fifth with scripts)."""
    for i in range(count):
        name = f"benchdist_{i:04d}"
        eps = f"[console_scripts]\n{name} = {name}:main\n" if i % 5 == 0 else ""
        _dist_info(site, name, eps, name)
        (site / f"{name}.py").write_text("def main():\n    return 0\n")


def add_plugins(site: Path, count: int, python: str | None = None) -> None:
    """``count`` installed nvshim plugins, each registered through the entry-point group.

    With ``python`` (the venv's interpreter), their modules are byte-compiled
    as pip does on install: otherwise, with PYTHONDONTWRITEBYTECODE set, every
    create would compile them again and the case would measure the compiler.
    """
    for i in range(count):
        module = f"nvshim_bench_plugin_{i:02d}"
        _dist_info(
            site,
            f"nvshim_bench_plugin_{i:02d}",
            f"[nvshim]\nbench-plugin-{i:02d} = {module}\n",
            module,
        )
        (site / f"{module}.py").write_text(PLUGIN_MODULE.format(n=f"{i:02d}"))
    if python is not None:
        files = [str(site / f"nvshim_bench_plugin_{i:02d}.py") for i in range(count)]
        subprocess.run([python, "-m", "py_compile", *files], check=True, timeout=120)


def make_busybox_bundle(folder: Path, runc: str, args: list[str]) -> Path | None:
    """A runnable busybox bundle made with ``runc spec``; None without a static busybox."""
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
    if busybox is None:
        return None
    rootfs = folder / "rootfs"
    for sub in ("bin", "etc", "tmp", "dev", "proc", "sys"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in ("sh", "true", "echo", "sleep"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    subprocess.run([runc, "spec", "--bundle", str(folder)], check=True, timeout=60)
    spec = json.loads((folder / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args
    spec["root"]["readonly"] = False
    (folder / "config.json").write_text(json.dumps(spec, indent=2))
    return folder
