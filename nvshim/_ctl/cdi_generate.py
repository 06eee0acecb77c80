"""``nvshim-ctl cdi generate``: write a CDI spec for the host's NVIDIA devices.

The options, names and defaults are those of ``nvidia-ctk cdi generate``
where the feature exists; the work is done by :mod:`nvshim.host.cdi`.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``generate`` to the ``cdi`` subcommands."""
    gen = commands.add_parser(
        "generate",
        help="generate a CDI spec for the host's NVIDIA GPUs and devices",
        description="Discover the NVIDIA driver, device nodes and GPUs of this host "
        "and write a CDI spec (as nvidia-ctk cdi generate does).",
    )
    gen.add_argument(
        "--mode",
        default="auto",
        choices=(
            "auto",
            "nvml",
            "csv",
            "management",
            "gds",
            "mofed",
            "gdrcopy",
            "nvswitch",
            "imex",
        ),
        help="discovery mode (default: auto: csv on a Tegra system without discrete GPUs, "
        "else nvml)",
    )
    gen.add_argument(
        "--output",
        default="",
        metavar="FILE",
        help="write the spec to FILE, atomically (default: stdout); "
        "a .json/.yaml/.yml extension picks the format",
    )
    gen.add_argument(
        "--format", choices=("json", "yaml"), default=None, help="output format (default: yaml)"
    )
    gen.add_argument(
        "--driver-root", default="/", metavar="DIR", help="the driver's root (default: /)"
    )
    gen.add_argument(
        "--dev-root",
        default=None,
        metavar="DIR",
        help="the root holding /dev (default: the driver root)",
    )
    gen.add_argument(
        "--device-name-strategy",
        action="append",
        choices=("index", "uuid", "type-index"),
        default=None,
        metavar="STRATEGY",
        help="how devices are named: index, uuid, type-index (repeatable; default: index and uuid)",
    )
    gen.add_argument(
        "--vendor", default=None, help="the CDI vendor (default: nvidia.com, or the mode's)"
    )
    gen.add_argument(
        "--class",
        dest="device_class",
        default=None,
        help="the CDI class (default: gpu, or the mode's)",
    )
    gen.add_argument("--no-all-device", action="store_true", help="do not add the 'all' device")
    gen.add_argument(
        "--device-id",
        action="append",
        default=None,
        metavar="ID",
        help="only this device: an index, a MIG index (0:1), a UUID, or all (repeatable)",
    )
    gen.add_argument(
        "--csv.file",
        dest="csv_files",
        action="append",
        default=None,
        metavar="FILE",
        help="a CSV mount-spec file for csv mode (repeatable; default: devices.csv and "
        "drivers.csv in /etc/nvidia-container-runtime/host-files-for-container.d under "
        "the driver root)",
    )
    gen.add_argument(
        "--library-search-path",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder searched for driver libraries when the ld.so.cache lacks them (repeatable)",
    )
    gen.add_argument(
        "--disable-hook",
        action="append",
        default=None,
        metavar="NAME",
        help="leave this hook out: create-symlinks, enable-cuda-compat, update-ldcache, "
        "or all (repeatable)",
    )
    gen.add_argument(
        "--nvidia-cdi-hook-path",
        "--nvidia-ctk-path",
        "--hook-path",
        dest="hook_path",
        default=None,
        metavar="PATH",
        help="the hook executable written into the spec (default: this nvshim-ctl; "
        "nvidia-cdi-hook and nvidia-ctk work too)",
    )
    gen.set_defaults(func=run_generate)


def run_generate(namespace: argparse.Namespace) -> int:
    """Generate the spec; one line on stderr and exit 1 on failure."""
    import os

    from nvshim.host import HostError
    from nvshim.host.cdi import GenerateOptions, dump, format_for, generate

    hook_path = namespace.hook_path
    if hook_path is not None and not os.path.isabs(hook_path):
        sys.stderr.write(f"nvshim-ctl: --nvidia-cdi-hook-path {hook_path}: not an absolute path\n")
        return 1
    options = GenerateOptions(
        mode=namespace.mode,
        driver_root=namespace.driver_root,
        dev_root=namespace.dev_root,
        name_strategies=tuple(namespace.device_name_strategy or ("index", "uuid")),
        vendor=namespace.vendor,
        device_class=namespace.device_class,
        all_device=not namespace.no_all_device,
        device_ids=tuple(namespace.device_id or ()),
        csv_files=tuple(namespace.csv_files or ()),
        library_search_paths=tuple(namespace.library_search_path or ()),
        disabled_hooks=tuple(namespace.disable_hook or ()),
        hook_path=hook_path,
    )
    try:
        fmt = format_for(namespace.output, namespace.format)
        text = dump(generate(options), fmt)
    except HostError as exc:
        sys.stderr.write(f"nvshim-ctl: {exc}\n")
        return 1
    if not namespace.output:
        sys.stdout.write(text)
        return 0
    from nvshim._atomic import atomic_write

    try:
        atomic_write(namespace.output, text.encode(), default_mode=0o644)
    except OSError as exc:
        sys.stderr.write(f"nvshim-ctl: {namespace.output}: {exc.strerror or exc}\n")
        return 1
    sys.stderr.write(f"wrote {namespace.output}\n")
    return 0
