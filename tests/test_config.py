"""Configuration: where it is found, what it holds, how errors read."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from nvshim._configfile import DEFAULT_CONFIG_PATH, config_path, runtimes_from
from nvshim.config import Config, ConfigError, load_config, plugin_options, structure_config

NVIDIA_DEFAULT_CONFIG = """\
#accept-nvidia-visible-devices-as-volume-mounts = false
#accept-nvidia-visible-devices-envvar-when-unprivileged = true
disable-require = false
supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"
#swarm-resource = "DOCKER_RESOURCE_GPU"

[nvidia-container-cli]
#debug = "/var/log/nvidia-container-toolkit.log"
environment = []
#ldcache = "/etc/ld.so.cache"
ldconfig = "@/sbin/ldconfig"
load-kmods = true
#no-cgroups = false
#path = "/usr/bin/nvidia-container-cli"
#root = "/run/nvidia/driver"
#user = "root:video"

[nvidia-container-runtime]
#debug = "/var/log/nvidia-container-runtime.log"
log-level = "info"
mode = "auto"
runtimes = ["docker-runc", "runc", "crun"]

[nvidia-container-runtime.modes]

[nvidia-container-runtime.modes.cdi]
annotation-prefixes = ["cdi.k8s.io/"]
default-kind = "nvidia.com/gpu"
spec-dirs = ["/etc/cdi", "/var/run/cdi"]

[nvidia-container-runtime.modes.csv]
mount-spec-path = "/etc/nvidia-container-runtime/host-files-for-container.d"

[nvidia-container-runtime-hook]
path = "nvidia-container-runtime-hook"
skip-mode-detection = false

[nvidia-ctk]
path = "nvidia-ctk"
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DEFAULT_CONFIG_PATH),
        ({"XDG_CONFIG_HOME": "/x"}, "/x/nvidia-container-runtime/config.toml"),
        ({"NVIDIA_CTK_CONFIG_FILE_PATH": "/n.toml", "XDG_CONFIG_HOME": "/x"}, "/n.toml"),
        ({"NVSHIM_CONFIG": "/s.toml", "NVIDIA_CTK_CONFIG_FILE_PATH": "/n.toml"}, "/s.toml"),
        ({"NVSHIM_CONFIG": "", "XDG_CONFIG_HOME": "/x"}, "/x/nvidia-container-runtime/config.toml"),
    ],
)
def test_config_path_precedence(env: dict[str, str], expected: str) -> None:
    assert config_path(env) == expected


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(str(tmp_path / "none.toml"))
    assert config == Config()
    assert config.runtime.runtimes == ("runc", "crun")
    assert config.mode == "auto"
    assert config.runtime.debug == "/dev/null"
    assert config.runtime.modes.cdi.spec_dirs == ("/etc/cdi", "/var/run/cdi")
    assert config.accept_nvidia_visible_devices_envvar_when_unprivileged is True
    assert config.accept_nvidia_visible_devices_as_volume_mounts is False


def test_nvidia_default_config_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(NVIDIA_DEFAULT_CONFIG)
    config = load_config(str(path))
    assert config.source == str(path)
    assert config.runtime.runtimes == ("docker-runc", "runc", "crun")
    assert config.nvidia_container_cli.ldconfig == "@/sbin/ldconfig"
    assert config.nvidia_container_runtime_hook.path == "nvidia-container-runtime-hook"
    assert config.nvidia_ctk.path == "nvidia-ctk"
    assert "nvidia-container-cli.load-kmods" in config.ignored_keys


def test_dotted_keys_equal_tables(tmp_path: Path) -> None:
    dotted = tmp_path / "dotted.toml"
    dotted.write_text('nvidia-container-runtime.modes.csv.mount-spec-path = "/csv"\n')
    tables = tmp_path / "tables.toml"
    tables.write_text('[nvidia-container-runtime.modes.csv]\nmount-spec-path = "/csv"\n')
    assert load_config(str(dotted)) == load_config(str(tables))
    assert load_config(str(dotted)).runtime.modes.csv.mount_spec_path == "/csv"


def test_older_experimental_spelling_means_mode() -> None:
    raw = {"nvidia-container-runtime": {"experimental": True, "discover-mode": "csv"}}
    assert structure_config(raw).mode == "csv"
    raw = {"nvidia-container-runtime": {"experimental": False, "discover-mode": "csv"}}
    assert structure_config(raw).mode == "auto"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[nvidia-container-runtime]\nlog-level = 3", "key 'nvidia-container-runtime.log-level'"),
        ("[nvidia-container-runtime]\nmode = 'gpu'", "key 'nvidia-container-runtime.mode'"),
        ("[nvidia-container-runtime]\nruntimes = 'runc'", "expected a list of strings"),
        ("disable-require = 'yes'", "key 'disable-require': expected true or false"),
        ("[nvshim]\nunknown = 1", "key 'nvshim': unknown key(s): unknown"),
        ("[nvshim]\nmodifier-timeout = 'slow'", "key 'nvshim.modifier-timeout'"),
        ("nvshim = 1", "key 'nvshim': expected a table"),
        ("[nvidia-container-runtime.modes.cdi]\nspec-dirs = [1]", "modes.cdi.spec-dirs"),
        ("[nvidia-container-runtime\n", "invalid TOML"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(path) in str(info.value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_runtimes_from_tolerates_bad_values() -> None:
    assert runtimes_from(None) == ("runc", "crun")
    assert runtimes_from({"nvidia-container-runtime": {"runtimes": "runc"}}) == ("runc", "crun")
    assert runtimes_from({"nvidia-container-runtime": {"runtimes": ["/x"]}}) == ("/x",)


@attrs.frozen
class _Options:
    on_hook: str = "remove"
    limit: int = 3


def test_plugin_tables(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[nvshim.plugins.demo]\non-hook = 'error'\n")
    config = load_config(str(path))
    assert plugin_options(config, "demo", None) == {"on-hook": "error"}
    assert plugin_options(config, "demo", _Options) == _Options(on_hook="error")
    assert plugin_options(config, "other", _Options) == _Options()
    path.write_text("[nvshim.plugins.demo]\non-hook = 1\nextra = 2\n")
    with pytest.raises(ConfigError, match=r"nvshim\.plugins\.demo"):
        plugin_options(load_config(str(path)), "demo", _Options)
