"""Reading what a container asks for (nvshim.requests).

Most tables are NVIDIA's (nvidia-container-toolkit's
cmd/nvidia-container-runtime-hook/container_config_test.go and
internal/config/image tests), rewritten as specs.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvshim.requests import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    ContainerRequest,
    RequestError,
    RequestOptions,
    is_cdi_name,
    lookup_env,
    parse_bool,
    read_request,
)
from nvshim.requirements import HostProperties, RequirementsNotMet

ROOT = "/var/run/nvidia-container-devices"


def make_spec(
    env: Mapping[str, str] | list[str] = (),  # type: ignore[assignment]
    *,
    privileged: bool = False,
    mounts: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    entries = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env)
    bounding = ["CAP_CHOWN", "CAP_KILL"] + (["CAP_SYS_ADMIN"] if privileged else [])
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "env": entries,
            "capabilities": {"bounding": bounding, "effective": list(bounding)},
        },
        "root": {"path": "rootfs"},
    }
    if mounts is not None:
        spec["mounts"] = [
            {"source": src, "destination": dst, "type": "bind", "options": ["bind"]}
            for src, dst in mounts
        ]
    return spec


def caps(text: str) -> frozenset[str]:
    return frozenset(text.split(",")) if text else frozenset()


SUPPORTED = "compute,compat32,display,graphics,ngx,utility,video"
DEFAULT = "compute,utility"

# --- NVIDIA's TestGetNvidiaConfig ------------------------------------------------
# (description, env, privileged, options, expected) where expected is None for
# "not a GPU container", else (devices, capabilities, requirements).

_Expected = tuple[tuple[str, ...], str, list[str]]

NVIDIA_CONFIG_CASES: list[tuple[str, dict[str, str], bool, RequestOptions, _Expected | None]] = [
    ("No environment, unprivileged", {}, False, RequestOptions(), None),
    ("No environment, privileged", {}, True, RequestOptions(), None),
    (
        "Legacy image, no devices, no capabilities, no requirements",
        {"CUDA_VERSION": "9.0"},
        False,
        RequestOptions(),
        (("all",), SUPPORTED, ["cuda>=9.0"]),
    ),
    (
        "Legacy image, devices 'all', no capabilities, no requirements",
        {"CUDA_VERSION": "9.0", "NVIDIA_VISIBLE_DEVICES": "all"},
        False,
        RequestOptions(),
        (("all",), SUPPORTED, ["cuda>=9.0"]),
    ),
    (
        "Legacy image, devices 'empty', no capabilities, no requirements",
        {"CUDA_VERSION": "9.0", "NVIDIA_VISIBLE_DEVICES": ""},
        False,
        RequestOptions(),
        None,
    ),
    (
        "Legacy image, devices 'void', no capabilities, no requirements",
        {"CUDA_VERSION": "9.0", "NVIDIA_VISIBLE_DEVICES": "void"},
        False,
        RequestOptions(),
        None,
    ),
    (
        "Legacy image, devices 'none', no capabilities, no requirements",
        {"CUDA_VERSION": "9.0", "NVIDIA_VISIBLE_DEVICES": "none"},
        False,
        RequestOptions(),
        ((), SUPPORTED, ["cuda>=9.0"]),
    ),
    (
        "Legacy image, devices set, no capabilities, no requirements",
        {"CUDA_VERSION": "9.0", "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1"},
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), SUPPORTED, ["cuda>=9.0"]),
    ),
    (
        "Legacy image, devices set, capabilities 'empty', no requirements",
        {
            "CUDA_VERSION": "9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "",
        },
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), DEFAULT, ["cuda>=9.0"]),
    ),
    (
        "Legacy image, devices set, capabilities 'all', no requirements",
        {
            "CUDA_VERSION": "9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "all",
        },
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), SUPPORTED, ["cuda>=9.0"]),
    ),
    (
        "Legacy image, devices set, capabilities set, no requirements",
        {
            "CUDA_VERSION": "9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "video,display",
        },
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), "display,video", ["cuda>=9.0"]),
    ),
    (
        "Legacy image, devices set, capabilities set, requirements set",
        {
            "CUDA_VERSION": "9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "video,display",
            "NVIDIA_REQUIRE_REQ0": "req0=true",
            "NVIDIA_REQUIRE_REQ1": "req1=false",
        },
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), "display,video", ["cuda>=9.0", "req0=true", "req1=false"]),
    ),
    (
        "Modern image, no devices, no capabilities, no requirements, no envCUDAVersion",
        {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0"},
        False,
        RequestOptions(),
        None,
    ),
    (
        "Modern image, no devices, no capabilities, no requirement, envCUDAVersion set",
        {"CUDA_VERSION": "9.0", "NVIDIA_REQUIRE_CUDA": "cuda>=9.0"},
        False,
        RequestOptions(),
        None,
    ),
    (
        "Modern image, devices 'all', no capabilities, no requirements",
        {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0", "NVIDIA_VISIBLE_DEVICES": "all"},
        False,
        RequestOptions(),
        (("all",), DEFAULT, ["cuda>=9.0"]),
    ),
    (
        "Modern image, devices 'empty', no capabilities, no requirements",
        {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0", "NVIDIA_VISIBLE_DEVICES": ""},
        False,
        RequestOptions(),
        None,
    ),
    (
        "Modern image, devices 'void', no capabilities, no requirements",
        {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0", "NVIDIA_VISIBLE_DEVICES": "void"},
        False,
        RequestOptions(),
        None,
    ),
    (
        "Modern image, devices 'none', no capabilities, no requirements",
        {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0", "NVIDIA_VISIBLE_DEVICES": "none"},
        False,
        RequestOptions(),
        ((), DEFAULT, ["cuda>=9.0"]),
    ),
    (
        "Modern image, devices set, no capabilities, no requirements",
        {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0", "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1"},
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), DEFAULT, ["cuda>=9.0"]),
    ),
    (
        "Modern image, devices set, capabilities 'empty', no requirements",
        {
            "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "",
        },
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), DEFAULT, ["cuda>=9.0"]),
    ),
    (
        "Modern image, devices set, capabilities 'all', no requirements",
        {
            "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "all",
        },
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), SUPPORTED, ["cuda>=9.0"]),
    ),
    (
        "Modern image, devices set, capabilities set, requirements set",
        {
            "NVIDIA_REQUIRE_CUDA": "cuda>=9.0",
            "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
            "NVIDIA_DRIVER_CAPABILITIES": "video,display",
            "NVIDIA_REQUIRE_REQ0": "req0=true",
            "NVIDIA_REQUIRE_REQ1": "req1=false",
        },
        False,
        RequestOptions(),
        (("gpu0", "gpu1"), "display,video", ["cuda>=9.0", "req0=true", "req1=false"]),
    ),
    (
        "No cuda envs, devices 'all'",
        {"NVIDIA_VISIBLE_DEVICES": "all"},
        False,
        RequestOptions(),
        (("all",), DEFAULT, []),
    ),
    (
        "Hook config set as driver-capabilities-all",
        {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "all"},
        True,
        RequestOptions(supported_driver_capabilities=caps("video,display")),
        (("all",), "display,video", []),
    ),
    (
        "Hook config set, envvar sets driver-capabilities",
        {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "video,display"},
        True,
        RequestOptions(supported_driver_capabilities=caps("video,display,compute,utility")),
        (("all",), "display,video", []),
    ),
    (
        "Hook config set, envvar unset sets default driver-capabilities",
        {"NVIDIA_VISIBLE_DEVICES": "all"},
        True,
        RequestOptions(supported_driver_capabilities=caps("video,display,utility,compute")),
        (("all",), DEFAULT, []),
    ),
    (
        "Hook config set, swarmResource overrides device selection",
        {"NVIDIA_VISIBLE_DEVICES": "all", "DOCKER_SWARM_RESOURCE": "GPU1,GPU2"},
        True,
        RequestOptions(swarm_resource="DOCKER_SWARM_RESOURCE"),
        (("GPU1", "GPU2"), DEFAULT, []),
    ),
    (
        "Hook config set, comma separated swarmResource is split and overrides device selection",
        {"NVIDIA_VISIBLE_DEVICES": "all", "DOCKER_SWARM_RESOURCE": "GPU1,GPU2"},
        True,
        RequestOptions(swarm_resource="NOT_DOCKER_SWARM_RESOURCE,DOCKER_SWARM_RESOURCE"),
        (("GPU1", "GPU2"), DEFAULT, []),
    ),
]


@pytest.mark.parametrize(
    ("env", "privileged", "options", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in NVIDIA_CONFIG_CASES],
)
def test_nvidia_config_table(
    env: dict[str, str], privileged: bool, options: RequestOptions, expected: _Expected | None
) -> None:
    request = read_request(make_spec(env, privileged=privileged), options)
    assert request.privileged is privileged
    if expected is None:
        assert not request.gpu
        assert request.devices == ()
        assert request.source == ""
        return
    devices, capabilities, requirements = expected
    assert request.gpu
    assert request.devices == devices
    assert request.capabilities == caps(capabilities)
    assert sorted(request.requirements) == sorted(requirements)
    assert not request.disable_require


@pytest.mark.parametrize("legacy", [True, False])
def test_disable_require(legacy: bool) -> None:
    env = {
        "NVIDIA_VISIBLE_DEVICES": "gpu0,gpu1",
        "NVIDIA_REQUIRE_REQ0": "req0=true",
        "NVIDIA_DISABLE_REQUIRE": "true",
        **({"CUDA_VERSION": "9.0"} if legacy else {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0"}),
    }
    request = read_request(make_spec(env))
    assert request.disable_require
    assert request.gpu
    # The expressions stay visible (for logs); the flag turns the check off.
    request.check_requirements(HostProperties(cuda="1.0"))


@pytest.mark.parametrize(
    ("value", "disabled"),
    [
        ("1", True),
        ("t", True),
        ("T", True),
        ("TRUE", True),
        ("true", True),
        ("True", True),
        ("0", False),
        ("false", False),
        ("yes", False),
        ("tRuE", False),
        ("", False),
        (" true", False),
    ],
)
def test_disable_require_uses_go_parse_bool(value: str, disabled: bool) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DISABLE_REQUIRE": value}
    assert read_request(make_spec(env)).disable_require is disabled
    assert parse_bool(value) is disabled


def test_disable_require_option() -> None:
    request = read_request(
        make_spec({"NVIDIA_VISIBLE_DEVICES": "all"}), RequestOptions(disable_require=True)
    )
    assert request.disable_require


# --- NVIDIA's TestGetRequirements --------------------------------------------------


@pytest.mark.parametrize(
    ("env", "requirements"),
    [
        pytest.param(["NVIDIA_REQUIRE_JETPACK=csv-mounts=all"], [], id="jetpack ignored"),
        pytest.param(
            ["NVIDIA_REQUIRE_JETPACK_HOST_MOUNTS=base-only"], [], id="jetpack_host_mounts ignored"
        ),
        pytest.param(["NVIDIA_REQUIRE_CUDA=cuda>=11.6"], ["cuda>=11.6"], id="single"),
        pytest.param(
            ["NVIDIA_REQUIRE_CUDA=cuda>=11.6", "NVIDIA_REQUIRE_BRAND=brand=tesla"],
            ["cuda>=11.6", "brand=tesla"],
            id="concatenated",
        ),
        pytest.param(["CUDA_VERSION=11.6"], ["cuda>=11.6"], id="legacy image"),
        pytest.param(
            ["CUDA_VERSION=11.6", "NVIDIA_REQUIRE_BRAND=brand=tesla"],
            ["brand=tesla", "cuda>=11.6"],
            id="legacy image with additional requirement",
        ),
        pytest.param(["CUDA_VERSION=11.6.2"], ["cuda>=11.6"], id="legacy patch dropped"),
        pytest.param(
            ["NVIDIA_REQUIRE_CUDA=cuda>=12", "NVIDIA_REQUIRE_CUDA=cuda>=99"],
            ["cuda>=99"],
            id="last entry wins",
        ),
        pytest.param(["NVIDIA_REQUIRE_X=", "NVIDIA_REQUIRE_Y=  "], [], id="empty values dropped"),
        pytest.param(["NVIDIA_REQUIRE=cuda>=1"], [], id="prefix needs the underscore"),
    ],
)
def test_requirements(env: list[str], requirements: list[str]) -> None:
    request = read_request(make_spec(["NVIDIA_VISIBLE_DEVICES=all", *env]))
    assert list(request.requirements) == requirements


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0", "0.0"),
        ("8", "8.0"),
        ("7.5", "7.5"),
        ("9.0.116", "9.0"),
        ("4294967295.4294967295.4294967295", "4294967295.4294967295"),
        ("v11.6", "11.6"),
        ("11.0.0-rc1", "11.0"),
    ],
)
def test_legacy_cuda_version_major_minor(version: str, expected: str) -> None:
    request = read_request(make_spec({"CUDA_VERSION": version}))
    assert request.requirements == (f"cuda>={expected}",)
    assert request.source == "legacy-cuda-image"


@pytest.mark.parametrize(
    "version",
    [
        "foo",
        "foo.5.10",
        "9.0.116.50",
        "9.0.116foo",
        "7.foo",
        "9.0.bar",
        "9.4294967296",
        "9.0.116.",
        "9..0",
        "9.",
        ".5.10",
        "-9",
        "+9",
        "-9.1.116",
        "-9.-1.-116",
    ],
)
def test_legacy_cuda_version_invalid(version: str) -> None:
    with pytest.raises(RequestError, match="CUDA_VERSION"):
        read_request(make_spec({"CUDA_VERSION": version}))
    # Not a GPU container, or requirements disabled: nothing to refuse.
    assert not read_request(
        make_spec({"CUDA_VERSION": version, "NVIDIA_VISIBLE_DEVICES": "void"})
    ).gpu
    disabled = read_request(make_spec({"CUDA_VERSION": version, "NVIDIA_DISABLE_REQUIRE": "1"}))
    assert disabled.gpu
    assert disabled.requirements == ()


# --- NVIDIA's TestGetDevicesFromMounts --------------------------------------------


@pytest.mark.parametrize(
    ("mounts", "devices"),
    [
        pytest.param([], None, id="no mounts"),
        pytest.param([("/not/dev/null", f"{ROOT}/GPU0")], None, id="host path not /dev/null"),
        pytest.param([("/dev/null", "/other/prefix/GPU0")], None, id="not under root"),
        pytest.param([("/dev/null", ROOT)], None, id="root itself"),
        pytest.param([("/dev/null", ROOT + "/")], None, id="root with slash"),
        pytest.param([("/dev/null", ROOT + "X/GPU0")], None, id="sibling of root"),
        pytest.param(
            [("/dev/null", f"{ROOT}/GPU0"), ("/dev/null", f"{ROOT}/GPU1")],
            ("GPU0", "GPU1"),
            id="two devices",
        ),
        pytest.param(
            [("/dev/null", f"{ROOT}/GPU0-MIG0/0/1"), ("/dev/null", f"{ROOT}/GPU1-MIG0/0/1")],
            ("GPU0-MIG0/0/1", "GPU1-MIG0/0/1"),
            id="slashes in the name",
        ),
        pytest.param(
            [("//dev//null", f"{ROOT}//GPU0/"), ("/dev/./null", f"{ROOT}/x/../GPU1")],
            ("GPU0", "GPU1"),
            id="paths are cleaned",
        ),
        pytest.param([("/dev/null", f"{ROOT}/../GPU0")], None, id="dotdot leaves root"),
        pytest.param([("/dev/null", f"{ROOT}/all")], ("all",), id="all"),
        pytest.param(
            [("/dev/null", f"{ROOT}/0"), ("/dev/null", f"{ROOT}/all")], ("all",), id="all wins"
        ),
        pytest.param(
            [("/dev/null", f"{ROOT}/nvidia.com/gpu=0")], ("nvidia.com/gpu=0",), id="cdi name"
        ),
    ],
)
def test_devices_from_mounts(
    mounts: list[tuple[str, str]], devices: tuple[str, ...] | None
) -> None:
    options = RequestOptions(accept_volume_mounts=True, accept_envvar_unprivileged=False)
    request = read_request(make_spec({}, mounts=mounts), options)
    if devices is None:
        assert not request.gpu
    else:
        assert request.gpu
        assert request.devices == devices
        assert request.source == "volume-mounts"


def test_devices_from_mounts_tolerates_odd_entries() -> None:
    spec = make_spec({})
    spec["mounts"] = [
        "not a mount",
        {"destination": f"{ROOT}/0"},
        {"source": "/dev/null"},
        {"source": 5, "destination": f"{ROOT}/1"},
        {"source": "/dev/null", "destination": f"{ROOT}/GPU2"},
    ]
    request = read_request(spec, RequestOptions(accept_volume_mounts=True))
    assert request.devices == ("GPU2",)


# --- NVIDIA's TestDeviceListSourcePriority ------------------------------------------

_TWO_MOUNTS = [("/dev/null", f"{ROOT}/GPU0"), ("/dev/null", f"{ROOT}/GPU1")]


@pytest.mark.parametrize(
    ("mounts", "privileged", "accept_unprivileged", "accept_mounts", "expected"),
    [
        pytest.param(_TWO_MOUNTS, False, False, True, ("GPU0", "GPU1"), id="mounts win"),
        pytest.param(None, False, False, True, None, id="unprivileged env refused"),
        pytest.param(None, True, False, True, ("GPU0", "GPU1"), id="privileged env"),
        pytest.param(None, False, True, True, ("GPU0", "GPU1"), id="unprivileged env accepted"),
        pytest.param(_TWO_MOUNTS, False, True, False, ("GPU2", "GPU3"), id="mounts not accepted"),
        pytest.param(_TWO_MOUNTS, False, False, False, None, id="nothing accepted"),
    ],
)
def test_device_list_source_priority(
    mounts: list[tuple[str, str]] | None,
    privileged: bool,
    accept_unprivileged: bool,
    accept_mounts: bool,
    expected: tuple[str, ...] | None,
) -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "GPU2,GPU3" if mounts else "GPU0,GPU1"}
    options = RequestOptions(
        accept_envvar_unprivileged=accept_unprivileged, accept_volume_mounts=accept_mounts
    )
    request = read_request(make_spec(env, privileged=privileged, mounts=mounts), options)
    if expected is None:
        assert not request.gpu
    else:
        assert request.devices == expected


def test_legacy_image_needs_env_permission() -> None:
    options = RequestOptions(accept_envvar_unprivileged=False)
    assert not read_request(make_spec({"CUDA_VERSION": "11.0"}), options).gpu
    privileged = read_request(make_spec({"CUDA_VERSION": "11.0"}, privileged=True), options)
    assert privileged.devices == ("all",)


# --- NVIDIA's TestGetDevicesFromEnvvar ------------------------------------------------

GPU, OTHER, THIRD = "GPU-12345", "GPU-67890", "MIG-12345"


@pytest.mark.parametrize(
    ("swarm", "env", "expected"),
    [
        pytest.param(None, {}, None, id="empty env"),
        pytest.param(None, {"NVIDIA_VISIBLE_DEVICES": ""}, None, id="blank"),
        pytest.param(None, {"NVIDIA_VISIBLE_DEVICES": "void"}, None, id="void"),
        pytest.param(None, {"NVIDIA_VISIBLE_DEVICES": "none"}, (), id="none"),
        pytest.param(None, {"NVIDIA_VISIBLE_DEVICES": GPU}, (GPU,), id="set"),
        pytest.param(
            None, {"NVIDIA_VISIBLE_DEVICES": GPU, "CUDA_VERSION": "9.0"}, (GPU,), id="set legacy"
        ),
        pytest.param(None, {"CUDA_VERSION": "9.0"}, ("all",), id="legacy defaults to all"),
        pytest.param(None, {"DOCKER_RESOURCE_GPUS": OTHER}, None, id="swarm var not configured"),
        pytest.param(
            None,
            {"NVIDIA_VISIBLE_DEVICES": "", "DOCKER_RESOURCE_GPUS": OTHER},
            None,
            id="blank, swarm var not configured",
        ),
        pytest.param(
            None,
            {"NVIDIA_VISIBLE_DEVICES": "none", "DOCKER_RESOURCE_GPUS": OTHER},
            (),
            id="none, swarm var not configured",
        ),
        pytest.param(
            None,
            {"DOCKER_RESOURCE_GPUS": OTHER, "CUDA_VERSION": "9.0"},
            ("all",),
            id="legacy, swarm var not configured",
        ),
        pytest.param("DOCKER_RESOURCE_GPUS", {}, None, id="swarm: empty env"),
        pytest.param("DOCKER_RESOURCE_GPUS", {"DOCKER_RESOURCE_GPUS": ""}, None, id="swarm blank"),
        pytest.param(
            "DOCKER_RESOURCE_GPUS", {"DOCKER_RESOURCE_GPUS": "void"}, None, id="swarm void"
        ),
        pytest.param("DOCKER_RESOURCE_GPUS", {"DOCKER_RESOURCE_GPUS": "none"}, (), id="swarm none"),
        pytest.param("DOCKER_RESOURCE_GPUS", {"DOCKER_RESOURCE_GPUS": GPU}, (GPU,), id="swarm set"),
        pytest.param(
            "DOCKER_RESOURCE_GPUS",
            {"DOCKER_RESOURCE_GPUS": GPU, "CUDA_VERSION": "9.0"},
            (GPU,),
            id="swarm set legacy",
        ),
        pytest.param(
            "DOCKER_RESOURCE_GPUS",
            {"NVIDIA_VISIBLE_DEVICES": GPU, "DOCKER_RESOURCE_GPUS": OTHER},
            (OTHER,),
            id="swarm overrides",
        ),
        pytest.param(
            "DOCKER_RESOURCE_GPUS",
            {"NVIDIA_VISIBLE_DEVICES": GPU, "DOCKER_RESOURCE_GPUS": ""},
            None,
            id="blank swarm var still overrides",
        ),
        pytest.param(
            "DOCKER_RESOURCE_GPUS_ADDITIONAL",
            {"NVIDIA_VISIBLE_DEVICES": GPU, "DOCKER_RESOURCE_GPUS_ADDITIONAL": OTHER},
            (OTHER,),
            id="additional overrides",
        ),
        pytest.param(
            "DOCKER_RESOURCE_GPUS,DOCKER_RESOURCE_GPUS_ADDITIONAL",
            {
                "NVIDIA_VISIBLE_DEVICES": GPU,
                "DOCKER_RESOURCE_GPUS": THIRD,
                "DOCKER_RESOURCE_GPUS_ADDITIONAL": OTHER,
            },
            (THIRD, OTHER),
            id="all swarm vars joined",
        ),
        pytest.param(
            " DOCKER_RESOURCE_GPUS , ,DOCKER_RESOURCE_GPUS_ADDITIONAL ",
            {"NVIDIA_VISIBLE_DEVICES": GPU, "DOCKER_RESOURCE_GPUS_ADDITIONAL": OTHER},
            (OTHER,),
            id="either swarm var overrides",
        ),
    ],
)
def test_devices_from_env(
    swarm: str | None, env: dict[str, str], expected: tuple[str, ...] | None
) -> None:
    request = read_request(make_spec(env), RequestOptions(swarm_resource=swarm))
    if expected is None:
        assert not request.gpu
        assert request.devices == ()
    else:
        assert request.gpu
        assert request.devices == expected


def test_source() -> None:
    swarm = RequestOptions(swarm_resource="A,B,C")
    assert read_request(make_spec({"NVIDIA_VISIBLE_DEVICES": "0"})).source == (
        "NVIDIA_VISIBLE_DEVICES"
    )
    assert read_request(make_spec({"A": "0", "C": "1"}), swarm).source == "A,C"
    assert read_request(make_spec({"B": "0"}), swarm).source == "B"
    assert read_request(make_spec({"CUDA_VERSION": "12.0"})).source == "legacy-cuda-image"
    assert read_request(make_spec({})).source == ""


# --- device lists -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", ("all",)),
        (" all ", ("all",)),
        ("0", ("0",)),
        ("0,1", ("0", "1")),
        (" 0 , 1 ,", ("0", "1")),
        (",,0,,", ("0",)),
        ("0,1,0", ("0", "1")),
        ("GPU-fef8089b-4820-abfc-e83e-94318197576e", ("GPU-fef8089b-4820-abfc-e83e-94318197576e",)),
        ("MIG-GPU-fef8089b/0/0,1:0", ("MIG-GPU-fef8089b/0/0", "1:0")),
        ("nvidia.com/gpu=0,nvidia.com/gpu=all", ("nvidia.com/gpu=0", "nvidia.com/gpu=all")),
        ("0,all", ("all",)),
        ("none", ()),
        (" none ", ()),
        ("all,none", ()),
        ("0,void", None),
        ("none,void", None),
        (" ", None),
        (",", None),
        ("void", None),
        ("VOID", ("VOID",)),
    ],
)
def test_device_lists(value: str, expected: tuple[str, ...] | None) -> None:
    request = read_request(make_spec({"NVIDIA_VISIBLE_DEVICES": value}))
    if expected is None:
        assert not request.gpu
    else:
        assert request.gpu
        assert request.devices == expected


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        # Not every name is a CDI name: served just in time (NVIDIA v1.18+).
        ("nvidia.com/gpu=0,1", "jit-cdi"),
        ("nvidia.com/gpu=0,nvidia.com/gpu=1", "cdi"),
        ("none", "jit-cdi"),
        (None, "jit-cdi"),
    ],
)
def test_auto_mode_picks_cdi_only_for_cdi_names(value: str | None, mode: str) -> None:
    from nvshim.modes import resolve_mode

    request = read_request(make_spec({} if value is None else {"NVIDIA_VISIBLE_DEVICES": value}))
    assert resolve_mode("auto", request.devices, tegra=False) == mode


# --- capabilities -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "legacy", "supported", "expected", "unsupported"),
    [
        # NVIDIA's TestGetDriverCapabilities.
        ("display,video", True, "compute,display,utility,video", "display,video", ""),
        ("all", True, "compute,display,utility,video", "compute,display,utility,video", ""),
        ("", True, "compute,display,utility,video", DEFAULT, ""),
        (None, True, "compute,display,utility,video", "compute,display,utility,video", ""),
        ("display,video", False, "compute,display,utility,video", "display,video", ""),
        (None, False, "compute,display,utility,video", DEFAULT, ""),
        ("all", False, "compute,display,utility,video", "compute,display,utility,video", ""),
        ("", False, "compute,display,utility,video", DEFAULT, ""),
        ("compute,utility", False, "not-compute,not-utility", "", "compute,utility"),
        (None, False, "compute", "compute", ""),
        # NVIDIA's TestDriverCapabilitiesList: separators and blanks.
        ("  ", False, None, DEFAULT, ""),
        (",", False, None, DEFAULT, ""),
        (",video", False, None, "video", ""),
        ("video,", False, None, "video", ""),
        ("video,,display", False, None, "display,video", ""),
        (" video , display ", False, None, "display,video", ""),
        # Intersections (TestDriverCapabilitiesIntersection).
        ("all", False, "", "", ""),
        (
            "compute,compat32,graphics,utility,video,display",
            False,
            None,
            "compute,compat32,display,graphics,utility,video",
            "",
        ),
        (
            "compute,compat32,graphics,utility,video,display,ngx",
            False,
            "compute,compat32,graphics,utility,video,display",
            "compute,compat32,display,graphics,utility,video",
            "ngx",
        ),
        ("cap1", False, None, "", "cap1"),
        ("all,video", False, "video,ngx", "ngx,video", ""),
        ("all", False, "all", SUPPORTED, ""),
    ],
)
def test_capabilities(
    env: str | None, legacy: bool, supported: str | None, expected: str, unsupported: str
) -> None:
    variables = {"NVIDIA_VISIBLE_DEVICES": "all"}
    if env is not None:
        variables["NVIDIA_DRIVER_CAPABILITIES"] = env
    if legacy:
        variables["CUDA_VERSION"] = "9.0"
    options = RequestOptions(
        supported_driver_capabilities=None if supported is None else caps(supported)
    )
    request = read_request(make_spec(variables), options)
    assert request.capabilities == caps(expected)
    assert request.unsupported_capabilities == caps(unsupported)


def test_capability_constants() -> None:
    assert caps(SUPPORTED) == ALL_CAPABILITIES
    assert caps(DEFAULT) == DEFAULT_CAPABILITIES


# --- privileged, robustness, read-only ----------------------------------------------


@pytest.mark.parametrize(
    ("process", "privileged"),
    [
        ({"capabilities": {"bounding": ["CAP_SYS_ADMIN"]}}, True),
        ({"capabilities": {"effective": ["CAP_SYS_ADMIN"], "bounding": []}}, False),
        ({"capabilities": {"bounding": None}}, False),
        ({"capabilities": None}, False),
        ({}, False),
        # runtime-spec 1.0.0-rc1..rc4: a flat list.
        ({"capabilities": ["CAP_SYS_ADMIN"]}, True),
        ({"capabilities": "CAP_SYS_ADMIN"}, False),
    ],
)
def test_privileged(process: dict[str, Any], privileged: bool) -> None:
    assert read_request({"process": process}).privileged is privileged


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"process": None},
        {"process": "x"},
        {"process": {"env": None}},
        {"process": {"env": "NVIDIA_VISIBLE_DEVICES=all"}},
        {"process": {"env": [1, None, {"a": 1}]}},
        {"mounts": None},
        {"mounts": "x"},
    ],
)
def test_malformed_specs_read_as_no_request(spec: dict[str, Any]) -> None:
    request = read_request(spec, RequestOptions(accept_volume_mounts=True))
    assert not request.gpu
    assert request.capabilities == DEFAULT_CAPABILITIES


def test_non_string_env_entries_are_skipped() -> None:
    spec = {"process": {"env": [5, None, "NVIDIA_VISIBLE_DEVICES=0"]}}
    assert read_request(spec).devices == ("0",)


def test_spec_is_not_modified() -> None:
    spec = make_spec(
        {"NVIDIA_VISIBLE_DEVICES": "0", "CUDA_VERSION": "11.0"},
        privileged=True,
        mounts=[("/dev/null", f"{ROOT}/1")],
    )
    before = copy.deepcopy(spec)
    text = json.dumps(spec)
    read_request(spec, RequestOptions(accept_volume_mounts=True, swarm_resource="X"))
    assert spec == before
    assert json.dumps(spec) == text


def test_request_is_frozen() -> None:
    request = read_request(make_spec({"NVIDIA_VISIBLE_DEVICES": "all"}))
    with pytest.raises(AttributeError):
        request.gpu = False  # type: ignore[misc]
    assert isinstance(request, ContainerRequest)


def test_check_requirements_against_a_host() -> None:
    request = read_request(make_spec({"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VERSION": "12.4.1"}))
    request.check_requirements(HostProperties(cuda="12.4"))
    with pytest.raises(RequirementsNotMet) as info:
        request.check_requirements(HostProperties(cuda="11.4"))
    assert str(info.value) == (
        "requirements not met: unsatisfied condition: cuda>=12.4 (cuda=11.4)"
    )


def test_check_requirements_asks_the_host_for_what_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nvshim import requirements

    asked: list[frozenset[str]] = []

    def fake_host(properties: frozenset[str]) -> HostProperties:
        asked.append(frozenset(properties))
        return HostProperties(cuda="12.0", arch="9.0")

    monkeypatch.setattr(requirements, "host_properties", fake_host)
    env = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_REQUIRE_ARCH": "arch>=8.0 foo=1"}
    read_request(make_spec(env)).check_requirements()
    assert asked == [frozenset({"arch"})]
    # Nothing to check, nothing asked.
    read_request(make_spec({"NVIDIA_VISIBLE_DEVICES": "all"})).check_requirements()
    assert len(asked) == 1


# --- lookup_env ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "name", "expected"),
    [
        ([], "A", None),
        (["A=1"], "A", "1"),
        (["A="], "A", ""),
        (["A"], "A", ""),
        (["A=1", "A=2"], "A", "2"),
        (["A=2", "A"], "A", ""),
        (["A_X=1"], "A", None),
        (["AB=1"], "A", None),
        (["A_X=1", "A=2"], "A", "2"),
        (["A=b=c"], "A", "b=c"),
        (["a=1"], "A", None),
        (["=1"], "", "1"),
        (["NVIDIA_VISIBLE_DEVICES=all"], "NVIDIA_VISIBLE", None),
    ],
)
def test_lookup_env(env: list[str], name: str, expected: str | None) -> None:
    assert lookup_env(env, name) == expected


_names = st.text(alphabet=string.ascii_uppercase + "_", min_size=1, max_size=6)
_values = st.text(alphabet=string.printable, max_size=8)
_entries = st.one_of(
    st.tuples(_names, _values).map(lambda nv: f"{nv[0]}={nv[1]}"),
    _names,
    st.text(max_size=10),
)


def _reference_lookup(env: list[str], name: str) -> str | None:
    for entry in reversed(env):
        key, sep, value = entry.partition("=")
        if key == name:
            return value if sep else ""
    return None


@given(st.lists(_entries, max_size=8), _names)
def test_lookup_env_matches_the_definition(env: list[str], name: str) -> None:
    assert lookup_env(env, name) == _reference_lookup(env, name)


@given(st.lists(_entries, max_size=8), _names, _values, st.lists(_entries, max_size=4))
def test_lookup_env_last_match_wins(
    before: list[str], name: str, value: str, after: list[str]
) -> None:
    after = [e for e in after if e.partition("=")[0] != name]
    assert lookup_env([*before, f"{name}={value}", *after], name) == value


@given(st.lists(_entries, max_size=8), _names, _values)
def test_lookup_env_ignores_longer_names(env: list[str], name: str, value: str) -> None:
    env = [e for e in env if e.partition("=")[0] != name]
    assert lookup_env([*env, f"{name}_X={value}", f"{name}X={value}"], name) is None


# --- CDI names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "nvidia.com/gpu=0",
        "nvidia.com/gpu=all",
        "nvidia.com/gpu=GPU-fef8089b-4820-abfc-e83e-94318197576e",
        "nvidia.com/gpu=0:1",
        "nvidia.com/mig-1g.10gb=0",
        "vendor.com/class_1=dev.1",
        "a/b=c",
        "A1/B2=3",
        "example.com/device=x_y-z.w:v",
    ],
)
def test_cdi_names_valid(name: str) -> None:
    assert is_cdi_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "0",
        "all",
        "GPU-fef8089b",
        "nvidia.com/gpu",
        "nvidia.com=0",
        "/nvidia.com/gpu=0",
        "nvidia.com/=0",
        "/gpu=0",
        "nvidia.com/gpu=",
        "1nvidia.com/gpu=0",
        "nvidia.com-/gpu=0",
        "nvidia.com/gpu-=0",
        "nvidia.com/_gpu=0",
        "nvidia.com/gpu=-0",
        "nvidia.com/gpu=0-",
        "nvidia.com/gpu=0=1",
        "nvidia.com/gpu/x=0",
        "nvidia.com/gpu=a/b",
        "nvidia com/gpu=0",
        "nvidia.com/gpu=0 1",
        "nvidiä.com/gpu=0",
        "nvidia.com/gpu=٣",
    ],
)
def test_cdi_names_invalid(name: str) -> None:
    assert not is_cdi_name(name)


_alnum = string.ascii_letters + string.digits


@given(
    st.text(alphabet=string.ascii_letters, min_size=1, max_size=1),
    st.text(alphabet=_alnum + "_-.", max_size=6),
    st.text(alphabet=_alnum, min_size=1, max_size=1),
    st.text(alphabet=_alnum, min_size=1, max_size=1),
    st.text(alphabet=_alnum + "_-.:", max_size=6),
)
def test_cdi_names_built_by_the_rules_are_valid(
    first: str, middle: str, last: str, name_first: str, name_middle: str
) -> None:
    vendor = first + middle + last
    assert is_cdi_name(f"{vendor}/{vendor}={name_first}{name_middle}{last}")
    assert is_cdi_name(f"{vendor}/{vendor}={name_first}")
    assert not is_cdi_name(f"{vendor}/{vendor}")
    assert not is_cdi_name(f"{vendor}={name_first}")
