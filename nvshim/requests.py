"""What a container asks for: GPUs, driver capabilities, requirements.

One parsed view of the request, read from the container's OCI spec, shared by
every modifier (legacy-hook, csv-discovery, cdi, ...) so that they all agree
on whether a container is a GPU container at all.  The rules are those of
NVIDIA's ``nvidia-container-runtime-hook`` (and its ``internal/config/image``
package), so images and hosts set up for NVIDIA's runtime behave the same:

Devices
    ``NVIDIA_VISIBLE_DEVICES`` unset, empty or ``void``: not a GPU container.
    ``none``: a GPU container with no devices (driver files only).  ``all``,
    or a comma list of indices, UUIDs, MIG ids or CDI names (trimmed, empty
    items dropped; ``void`` anywhere in the list wins over ``none``, which
    wins over ``all``, which wins over ids).  A legacy CUDA image
    (``CUDA_VERSION`` set, ``NVIDIA_REQUIRE_CUDA`` not) without the variable
    asks for ``all``.  The config's ``swarm-resource`` variables (a comma
    list of names), when one of them is in the env, replace
    ``NVIDIA_VISIBLE_DEVICES``; the lists of all that are set are joined.
    With ``accept-nvidia-visible-devices-as-volume-mounts``, mounts of
    ``/dev/null`` under ``/var/run/nvidia-container-devices/`` name the
    devices and win over the env.  A request through the env counts only for
    a privileged container (``CAP_SYS_ADMIN`` in the bounding set) or with
    ``accept-nvidia-visible-devices-envvar-when-unprivileged`` (the default).

Capabilities
    ``NVIDIA_DRIVER_CAPABILITIES``: unset or empty means ``utility,compute``
    (a legacy image without the variable gets all of them, as with NVIDIA's
    hook); ``all``; or a comma list.  The result is intersected with
    ``supported-driver-capabilities``.

Requirements
    The value of every ``NVIDIA_REQUIRE_*`` variable except
    ``NVIDIA_REQUIRE_JETPACK*`` (those are csv-mode switches), plus
    ``cuda>=<major.minor of CUDA_VERSION>`` for a legacy image.
    ``NVIDIA_DISABLE_REQUIRE`` true (Go's ``strconv.ParseBool``) or the
    config's ``disable-require`` turns the check off.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from nvshim.errors import RequestError
from nvshim.spec import is_privileged

if TYPE_CHECKING:
    from nvshim.config import Config
    from nvshim.requirements import HostProperties
    from nvshim.spec import Spec

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DEVICE_MOUNTS_ROOT",
    "ContainerRequest",
    "RequestError",
    "RequestOptions",
    "is_cdi_name",
    "lookup_env",
    "parse_bool",
    "read_container_request",
    "read_request",
]

ALL_CAPABILITIES: frozenset[str] = frozenset(
    {"compute", "compat32", "graphics", "utility", "video", "display", "ngx"}
)
DEFAULT_CAPABILITIES: frozenset[str] = frozenset({"utility", "compute"})

#: Where device ids are mounted (from ``/dev/null``) to request devices.
DEVICE_MOUNTS_ROOT = "/var/run/nvidia-container-devices"

ENV_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
ENV_DRIVER_CAPABILITIES = "NVIDIA_DRIVER_CAPABILITIES"
ENV_DISABLE_REQUIRE = "NVIDIA_DISABLE_REQUIRE"
ENV_REQUIRE_PREFIX = "NVIDIA_REQUIRE_"
ENV_REQUIRE_CUDA = "NVIDIA_REQUIRE_CUDA"
ENV_REQUIRE_JETPACK = "NVIDIA_REQUIRE_JETPACK"
ENV_CUDA_VERSION = "CUDA_VERSION"

SOURCE_VOLUME_MOUNTS = "volume-mounts"
SOURCE_LEGACY_IMAGE = "legacy-cuda-image"

# Go's strconv.ParseBool, which NVIDIA applies to NVIDIA_DISABLE_REQUIRE.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_UINT32_MAX = 2**32 - 1
# Go's golang.org/x/mod/semver: `v`, 1 to 3 numbers without leading zeros,
# pre-release and build only after all three.  Compiled on first use (by re's
# cache): only a container with CUDA_VERSION needs it.
_GO_SEMVER = (
    r"v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)"
    r"(?:\.(?:0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)


@attrs.frozen
class RequestOptions:
    """The configuration keys (NVIDIA's hook keys) that change how a request is read."""

    #: ``swarm-resource``: the name of the env variable (or a comma list of
    #: names) through which Docker Swarm passes the devices.
    swarm_resource: str | None = None
    #: ``accept-nvidia-visible-devices-envvar-when-unprivileged``.
    accept_envvar_unprivileged: bool = True
    #: ``accept-nvidia-visible-devices-as-volume-mounts``.
    accept_volume_mounts: bool = False
    #: ``supported-driver-capabilities`` as a set; ``None`` means all.
    supported_driver_capabilities: frozenset[str] | None = None
    #: ``disable-require``.
    disable_require: bool = False

    @classmethod
    def from_config(cls, config: Config) -> RequestOptions:
        """The options that an :class:`nvshim.config.Config` sets."""
        supported = frozenset(
            c.strip() for c in config.supported_driver_capabilities.split(",") if c.strip()
        )
        return cls(
            swarm_resource=config.swarm_resource,
            accept_envvar_unprivileged=(
                config.accept_nvidia_visible_devices_envvar_when_unprivileged
            ),
            accept_volume_mounts=config.accept_nvidia_visible_devices_as_volume_mounts,
            supported_driver_capabilities=supported or None,
            disable_require=config.disable_require,
        )

    def swarm_variables(self) -> tuple[str, ...]:
        """The variable names in ``swarm_resource`` (trimmed, empty ones dropped)."""
        if not self.swarm_resource:
            return ()
        return tuple(n for n in (p.strip() for p in self.swarm_resource.split(",")) if n)


@attrs.frozen
class ContainerRequest:
    """What one container asks for, read from its spec by :func:`read_request`."""

    #: Whether this is a GPU container at all.  Modifiers leave other
    #: containers alone.
    gpu: bool
    #: ``("all",)``; the requested ids (indices, UUIDs, MIG ids, CDI names)
    #: in order, duplicates dropped; or ``()`` for ``none`` and for a
    #: container that is not a GPU container.
    devices: tuple[str, ...]
    #: Where the devices came from: ``"NVIDIA_VISIBLE_DEVICES"``, the swarm
    #: variable(s) (comma-joined when several were set), ``"volume-mounts"``,
    #: ``"legacy-cuda-image"``; ``""`` when not a GPU container.
    source: str
    #: The driver capabilities, already intersected with the supported ones.
    capabilities: frozenset[str]
    #: One requirement expression per ``NVIDIA_REQUIRE_*`` variable, in env
    #: order, plus ``cuda>=X.Y`` for a legacy image (last).
    requirements: tuple[str, ...]
    #: Whether the requirement check is turned off.
    disable_require: bool
    #: Whether the container is privileged (``CAP_SYS_ADMIN`` in its bounding set).
    privileged: bool
    #: Capabilities the image asked for by name that the host does not
    #: support (left out of ``capabilities``; NVIDIA's hook refuses these).
    unsupported_capabilities: frozenset[str] = frozenset()

    def check_requirements(self, host: HostProperties | None = None) -> None:
        """Check the requirements against the host unless they are disabled.

        ``host`` defaults to asking the host (:func:`nvshim.requirements.
        host_properties`) for just the properties the expressions compare.

        :raises nvshim.requirements.RequirementError: an expression that does not parse.
        :raises nvshim.requirements.RequirementsNotMet: a requirement the host fails.
        """
        if self.disable_require or not self.requirements:
            return
        from nvshim import requirements

        if host is None:
            host = requirements.host_properties(requirements.required_properties(self.requirements))
        requirements.check_requirements(self.requirements, host)


def lookup_env(env: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in an OCI ``process.env`` list, or ``None``.

    The last entry wins, as in the container and in NVIDIA's runtime;
    ``NAME`` alone (no ``=``) gives ``""``; ``NAME_X=...`` does not match
    ``NAME``.  Entries that are not strings are skipped.
    """
    for entry in reversed(env):
        if not isinstance(entry, str) or not entry.startswith(name):
            continue
        rest = entry[len(name) :]
        if not rest:
            return ""
        if rest[0] == "=":
            return rest[1:]
    return None


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool`` truth: ``1 t T TRUE true True``; anything else is false."""
    return text in _TRUE


def _is_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _valid_vendor_or_class(name: str) -> bool:
    return (
        bool(name)
        and name[0].isascii()
        and name[0].isalpha()
        and _is_alnum(name[-1])
        and all(_is_alnum(c) or c in "_-." for c in name)
    )


def _valid_device_name(name: str) -> bool:
    return (
        bool(name)
        and _is_alnum(name[0])
        and _is_alnum(name[-1])
        and all(_is_alnum(c) or c in "_-.:" for c in name)
    )


def is_cdi_name(s: str) -> bool:
    """Whether ``s`` is a fully qualified CDI device name, ``vendor/class=name``.

    CDI's rules (``pkg/parser`` of container-device-interface): vendor and
    class start with an ASCII letter, end with a letter or digit, and hold
    letters, digits, ``_ - .``; the device name starts and ends with a letter
    or digit and holds letters, digits, ``_ - . :``.
    """
    if not s or s[0] == "/":
        return False
    kind, sep, name = s.partition("=")
    if not sep:
        return False
    vendor, sep, cls = kind.partition("/")
    if not sep:
        return False
    return (
        _valid_vendor_or_class(vendor) and _valid_vendor_or_class(cls) and _valid_device_name(name)
    )


def _normalise_devices(items: Sequence[str]) -> tuple[bool, tuple[str, ...]]:
    """Apply NVIDIA's special values to a device list: (gpu, devices).

    Items are already trimmed and non-empty.  ``void`` (or nothing) means no
    GPU container; else ``none`` means none; else ``all`` means all.
    """
    present = set(items)
    if not items or "void" in present:
        return False, ()
    if "none" in present:
        return True, ()
    if "all" in present:
        return True, ("all",)
    return True, tuple(dict.fromkeys(items))


def _split_list(value: str) -> list[str]:
    return [item for item in (part.strip() for part in value.split(",")) if item]


def _clean(path: str) -> str:
    # posixpath.normpath keeps a leading "//" (POSIX allows it a meaning);
    # Go's filepath.Clean, which NVIDIA uses here, does not.
    cleaned = posixpath.normpath(path) if path else ""
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _devices_from_mounts(mounts: Any) -> list[str]:
    if not isinstance(mounts, list):
        return []
    devices: list[str] = []
    prefix = DEVICE_MOUNTS_ROOT + "/"
    for mount in mounts:
        if not isinstance(mount, Mapping):
            continue
        source, destination = mount.get("source"), mount.get("destination")
        if not isinstance(source, str) or not isinstance(destination, str):
            continue
        if _clean(source) != "/dev/null":
            continue
        destination = _clean(destination)
        # NVIDIA compares a bare string prefix, so that
        # /var/run/nvidia-container-devicesX/0 would ask for "X/0"; only
        # paths strictly below the folder count here.
        if destination.startswith(prefix):
            devices.append(destination[len(prefix) :])
    return devices


def _major_minor(version: str) -> str | None:
    """``CUDA_VERSION`` reduced to ``major.minor`` as NVIDIA's hook reduces it.

    ``None`` unless it is a Go semver whose major and minor fit 32 bits.
    """
    match = re.fullmatch(_GO_SEMVER, version)
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major > _UINT32_MAX or minor > _UINT32_MAX:
        return None
    return f"{major}.{minor}"


def _env_list(process: Mapping[str, Any]) -> list[str]:
    env = process.get("env")
    if not isinstance(env, list):
        return []
    return [e for e in env if isinstance(e, str)]


def _capabilities(
    env: Sequence[str], legacy: bool, supported: frozenset[str]
) -> tuple[frozenset[str], frozenset[str]]:
    value = lookup_env(env, ENV_DRIVER_CAPABILITIES)
    if value is None and legacy:
        # NVIDIA's hook: an old CUDA image predates the variable; give it all.
        return supported, frozenset()
    requested = frozenset(_split_list(value or ""))
    if not requested:
        return DEFAULT_CAPABILITIES & supported, frozenset()
    if "all" in requested:
        return supported, frozenset()
    return requested & supported, requested - supported


def _requirements(env: Sequence[str]) -> list[str]:
    # One value a variable, the last one (what the container sees), in the
    # order the variables first appear.
    values: dict[str, str] = {}
    for entry in env:
        name, _, value = entry.partition("=")
        if name.startswith(ENV_REQUIRE_PREFIX):
            values[name] = value
    return [
        value
        for name, value in values.items()
        if not name.startswith(ENV_REQUIRE_JETPACK) and value.strip()
    ]


def read_request(
    spec: Mapping[str, Any], options: RequestOptions = RequestOptions()
) -> ContainerRequest:
    """Read what a container asks for from its OCI spec (the parsed config.json).

    ``spec`` is only read.  It uses ``process.env``, ``process.capabilities``
    and ``mounts``; missing or malformed parts count as absent.

    :raises RequestError: for a GPU container from a legacy CUDA image whose
        ``CUDA_VERSION`` is not a version (unless requirements are disabled).
    """
    process = spec.get("process")
    if not isinstance(process, Mapping):
        process = {}
    env = _env_list(process)
    privileged = is_privileged(spec)

    cuda_version = lookup_env(env, ENV_CUDA_VERSION)
    legacy = bool(cuda_version) and not lookup_env(env, ENV_REQUIRE_CUDA)

    gpu, devices, source = _read_devices(spec, env, options, privileged, legacy)

    supported = options.supported_driver_capabilities
    if supported is None or "all" in supported:
        supported = ALL_CAPABILITIES
    capabilities, unsupported = _capabilities(env, legacy, supported)

    disable = options.disable_require or parse_bool(lookup_env(env, ENV_DISABLE_REQUIRE) or "")
    requirements = _requirements(env)
    if legacy and cuda_version:
        major_minor = _major_minor(cuda_version)
        if major_minor is not None:
            requirements.append(f"cuda>={major_minor}")
        elif gpu and not disable:
            raise RequestError(
                f"invalid {ENV_CUDA_VERSION} {cuda_version!r} in a legacy CUDA image:"
                " expected a version such as 11.8 or 11.8.0"
            )

    if not gpu:
        devices, source = (), ""
    return ContainerRequest(
        gpu=gpu,
        devices=devices,
        source=source,
        capabilities=capabilities,
        requirements=tuple(requirements),
        disable_require=disable,
        privileged=privileged,
        unsupported_capabilities=unsupported,
    )


def read_container_request(spec: Spec, config: Config) -> ContainerRequest:
    """What the container of ``spec`` asks for, read with the options ``config`` sets.

    :raises RequestError: as :func:`read_request`.
    """
    from nvshim.spec import readonly_data  # only read: see Spec.raw

    return read_request(readonly_data(spec), RequestOptions.from_config(config))


def _read_devices(
    spec: Mapping[str, Any],
    env: Sequence[str],
    options: RequestOptions,
    privileged: bool,
    legacy: bool,
) -> tuple[bool, tuple[str, ...], str]:
    if options.accept_volume_mounts:
        from_mounts = _devices_from_mounts(spec.get("mounts"))
        if from_mounts:
            gpu, devices = _normalise_devices(from_mounts)
            return gpu, devices, SOURCE_VOLUME_MOUNTS

    if not (privileged or options.accept_envvar_unprivileged):
        return False, (), ""

    swarm = [
        (name, value)
        for name in options.swarm_variables()
        if (value := lookup_env(env, name)) is not None
    ]
    if swarm:
        items = [item for _, value in swarm for item in _split_list(value)]
        gpu, devices = _normalise_devices(items)
        return gpu, devices, ",".join(name for name, _ in swarm)

    value = lookup_env(env, ENV_VISIBLE_DEVICES)
    if value is None:
        if legacy:
            return True, ("all",), SOURCE_LEGACY_IMAGE
        return False, (), ""
    gpu, devices = _normalise_devices(_split_list(value))
    return gpu, devices, ENV_VISIBLE_DEVICES
