"""nvshim's configuration: NVIDIA's ``config.toml``, typed.

The file and its keys are those of NVIDIA's ``nvidia-container-runtime``, so a
host set up for it keeps working; nvshim's own settings live in ``[nvshim]``.
Keys are written with dashes in the file and with underscores here.  Unknown
keys in NVIDIA's tables are ignored (other NVIDIA tools share the file); an
unknown key in ``[nvshim]`` or a value of the wrong type is a
:class:`ConfigError` naming the file, the key and what was expected.
"""

# No ``from __future__ import annotations`` here, on purpose: the config
# classes' field types are needed as objects on every create (the quick
# structuring plan, cattrs), and annotations written as strings would be
# resolved with typing.get_type_hints, which compiles each one (about 2 ms of
# every create).  Annotations that cannot be evaluated on Python 3.9 are quoted.
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from nvshim._configfile import DEFAULT_RUNTIMES, config_path, read_toml
from nvshim._quick import GIVE_UP, Plan, plan_of, structure
from nvshim.errors import ConfigError

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "CdiModeConfig",
    "Config",
    "ConfigError",
    "ContainerCliConfig",
    "CsvModeConfig",
    "CtkConfig",
    "HookConfig",
    "JitCdiModeConfig",
    "ModesConfig",
    "NvshimConfig",
    "RuntimeConfig",
    "load_config",
    "structure_config",
    "toml_name",
]

MODES = ("auto", "legacy", "csv", "cdi", "jit-cdi")
ALL_DRIVER_CAPABILITIES = "compat32,compute,display,graphics,ngx,utility,video"


LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "fatal", "panic")
#: Keys whose value must be one of a few words, checked with a message naming the key.
_CHOICES = {
    ("nvidia-container-runtime", "mode"): MODES,
    ("nvidia-container-runtime", "discover-mode"): MODES,
    ("nvidia-container-runtime", "log-level"): LOG_LEVELS,
}


@attrs.frozen
class CsvModeConfig:
    """``[nvidia-container-runtime.modes.csv]``."""

    mount_spec_path: str = "/etc/nvidia-container-runtime/host-files-for-container.d"


@attrs.frozen
class CdiModeConfig:
    """``[nvidia-container-runtime.modes.cdi]``."""

    spec_dirs: tuple[str, ...] = ("/etc/cdi", "/var/run/cdi")
    default_kind: str = "nvidia.com/gpu"
    annotation_prefixes: tuple[str, ...] = ("cdi.k8s.io/",)


@attrs.frozen
class JitCdiModeConfig:
    """``[nvidia-container-runtime.modes.jit-cdi]``: the just-in-time CDI mode.

    :param nvcdi_feature_flags: NVIDIA's nvcdi feature flags (e.g.
        ``no-additional-gids-for-device-nodes``); the ones nvshim does not
        implement are logged at debug level and have no effect.
    :param nvcdi_disable_hooks: hooks left out of the generated edits
        (``create-symlinks``, ``enable-cuda-compat``, ``update-ldcache``,
        ``all``), as ``nvidia-ctk cdi generate --disable-hook``.
    """

    nvcdi_feature_flags: tuple[str, ...] = ()
    nvcdi_disable_hooks: tuple[str, ...] = ()


@attrs.frozen
class ModesConfig:
    """``[nvidia-container-runtime.modes]``."""

    csv: CsvModeConfig = CsvModeConfig()
    cdi: CdiModeConfig = CdiModeConfig()
    jit_cdi: JitCdiModeConfig = JitCdiModeConfig()


@attrs.frozen
class RuntimeConfig:
    """``[nvidia-container-runtime]``: the runtime's own settings."""

    debug: str = "/dev/null"
    log_level: str = "info"
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    mode: str = "auto"
    # Older spellings: experimental = true with discover-mode = "<mode>".
    experimental: bool = False
    discover_mode: Optional[str] = None
    modes: ModesConfig = ModesConfig()

    @property
    def effective_mode(self) -> str:
        """``mode``, or ``discover-mode`` when the older ``experimental`` spelling is used."""
        if self.experimental and self.discover_mode and self.mode == "auto":
            return self.discover_mode
        return self.mode


@attrs.frozen
class ContainerCliConfig:
    """``[nvidia-container-cli]``: the driver root and the ldconfig to run."""

    root: str = ""
    ldconfig: str = "@/sbin/ldconfig"
    path: Optional[str] = None


@attrs.frozen
class CtkConfig:
    """``[nvidia-ctk]``."""

    path: Optional[str] = None


@attrs.frozen
class HookConfig:
    """``[nvidia-container-runtime-hook]``."""

    path: Optional[str] = None
    skip_mode_detection: bool = False


@attrs.frozen
class NvshimConfig:
    """``[nvshim]``: nvshim's own settings.

    :param disabled_modifiers: modifier (or entry-point) names not applied.
    :param modifier_timeout: seconds a modifier may run before the create is refused.
    :param plugins: the ``[nvshim.plugins.<name>]`` tables, raw; each belongs
        to the plugin of that name.
    """

    disabled_modifiers: tuple[str, ...] = ()
    modifier_timeout: float = attrs.field(default=10.0)
    plugins: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    @modifier_timeout.validator
    def _check_timeout(self, _attribute: "attrs.Attribute[float]", value: float) -> None:
        # nan and -1 used to turn the limit off, inf to fail every create.
        if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
            raise ValueError(
                f"modifier-timeout must be a finite number of seconds >= 0 (0: no limit),"
                f" got {value!r}"
            )


@attrs.frozen
class Config:
    """The whole configuration."""

    nvidia_container_runtime: RuntimeConfig = RuntimeConfig()
    nvidia_container_cli: ContainerCliConfig = ContainerCliConfig()
    nvidia_ctk: CtkConfig = CtkConfig()
    nvidia_container_runtime_hook: HookConfig = HookConfig()
    nvshim: NvshimConfig = NvshimConfig()
    # Top-level keys of NVIDIA's hook.
    disable_require: bool = False
    swarm_resource: Optional[str] = None
    accept_nvidia_visible_devices_envvar_when_unprivileged: bool = True
    accept_nvidia_visible_devices_as_volume_mounts: bool = False
    supported_driver_capabilities: str = ALL_DRIVER_CAPABILITIES
    #: The file this configuration came from (None: defaults, no file).
    source: Optional[str] = attrs.field(default=None, eq=False)
    #: Keys of NVIDIA's tables that nvshim does not know (dotted), ignored.
    ignored_keys: tuple[str, ...] = attrs.field(default=(), eq=False)

    @property
    def runtime(self) -> RuntimeConfig:
        """Shorthand for ``nvidia_container_runtime``."""
        return self.nvidia_container_runtime

    @property
    def mode(self) -> str:
        """The configured mode (``auto``, ``legacy``, ``csv``, ``cdi`` or ``jit-cdi``)."""
        return self.nvidia_container_runtime.effective_mode


# Classes whose unknown keys are errors (nvshim's own tables).
_STRICT = (NvshimConfig,)
# Config fields that are not TOML keys.
_CONFIG_OMIT = frozenset({"source", "ignored_keys"})
# Leaves first: cattrs resolves a nested class's hook when the outer one is built.
_NESTED = (
    CsvModeConfig,
    CdiModeConfig,
    JitCdiModeConfig,
    ModesConfig,
    RuntimeConfig,
    ContainerCliConfig,
    CtkConfig,
    HookConfig,
    NvshimConfig,
    Config,
)

for _cls in _NESTED:
    attrs.resolve_types(_cls)


def toml_name(name: str) -> str:
    """The file's name of an attrs field: ``log_level`` is ``log-level``."""
    return name.replace("_", "-")


def _strict_str(value: Any, _cls: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _strict_bool(value: Any, _cls: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _strict_float(value: Any, _cls: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def _strict_strings(value: Any, _cls: type) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _tables(value: Any, _cls: type) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise TypeError(f"expected tables [nvshim.plugins.<name>], got {value!r}")
    return {k: dict(v) for k, v in value.items()}


@functools.cache
def _converter() -> "cattrs.Converter":
    """The private, strict converter for config classes."""
    import cattrs
    from cattrs.gen import make_dict_structure_fn, override

    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(float, _strict_float)
    # Generic aliases cannot be registered as classes: match them by predicate.
    strings_type = tuple[str, ...]
    optional_str = Optional[str]
    tables_type = dict[str, dict[str, Any]]
    conv.register_structure_hook_func(lambda t: t == strings_type, _strict_strings)
    conv.register_structure_hook_func(
        lambda t: t == optional_str, lambda v, _t: None if v is None else _strict_str(v, str)
    )
    conv.register_structure_hook_func(lambda t: t == tables_type, _tables)
    for cls in _NESTED:
        overrides: dict[str, Any] = {
            f.name: override(rename=toml_name(f.name)) for f in attrs.fields(cls) if "_" in f.name
        }
        overrides["source"] = override(omit=True)
        overrides["ignored_keys"] = override(omit=True)
        overrides = {k: v for k, v in overrides.items() if k in attrs.fields_dict(cls)}
        conv.register_structure_hook(
            cls,
            make_dict_structure_fn(
                cls, conv, _cattrs_forbid_extra_keys=cls in _STRICT, **overrides
            ),
        )
    return conv


def _check_tables(raw: Mapping[str, Any], cls: type, source: str, prefix: str = "") -> None:
    """Refuse a scalar where a table belongs, naming the key."""
    for field in attrs.fields(cls):
        key = toml_name(field.name)
        value = raw.get(key)
        if value is None or not (isinstance(field.type, type) and attrs.has(field.type)):
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"config {source}: key '{prefix}{key}': expected a table, "
                f"got {type(value).__name__} {value!r}"
            )
        _check_tables(value, field.type, source, f"{prefix}{key}.")


def _unknown_keys(raw: Mapping[str, Any], cls: type, prefix: str = "") -> list[str]:
    known = {toml_name(f.name): f for f in attrs.fields(cls)}
    unknown = []
    for key, value in raw.items():
        field = known.get(key)
        if field is None:
            unknown.append(prefix + key)
        elif isinstance(value, Mapping) and isinstance(field.type, type) and attrs.has(field.type):
            unknown.extend(_unknown_keys(value, field.type, f"{prefix}{key}."))
    return unknown


def _error_lines(exc: BaseException, source: str) -> list[str]:
    from cattrs import transform_error

    def describe(error: BaseException, _type: Any) -> str:
        if isinstance(error, KeyError):
            return "required key missing"
        if getattr(error, "extra_fields", None):
            extra = ", ".join(sorted(error.extra_fields))  # type: ignore[attr-defined]
            return f"unknown key(s): {extra}"
        if isinstance(error, (TypeError, ValueError)) and str(error):
            return str(error)
        return f"invalid value ({type(error).__name__})"

    lines = []
    for line in transform_error(exc, path="", format_exception=describe):
        message, _, where = line.rpartition(" @ ")
        key = toml_name(where.lstrip(".").replace("[", ".").replace("]", "")) or "(top level)"
        lines.append(f"config {source}: key '{key}': {message or line}")
    return lines


# --- Structuring without cattrs, for values that are already right: see nvshim._quick.

_GIVE_UP = GIVE_UP


@functools.cache
def _plan(cls: type, omit: frozenset[str] = frozenset()) -> Plan:
    return plan_of(cls, toml_name, omit)


def _quick_structure(
    data: Mapping[str, Any],
    cls: type,
    *,
    strict: Callable[[type], bool],
    omit: frozenset[str] = frozenset(),
) -> Any:
    """``cls`` built from ``data``, or :data:`_GIVE_UP`.

    ``strict(cls)`` says whether an unknown key of ``cls``'s table is an error.
    """

    def nested(field_type: type, value: Any) -> Any:
        return _quick_structure(value, field_type, strict=strict)

    return structure(cls, data, _plan(cls, omit), strict=strict(cls), nested=nested)


def _quick_config(data: Mapping[str, Any]) -> "Config | None":
    """The :class:`Config` for ``data`` without cattrs, or None to leave it to cattrs."""
    nvshim_table: Any = data.get("nvshim")
    plugins_table = nvshim_table.get("plugins") if isinstance(nvshim_table, dict) else None
    if plugins_table is not None:
        # [nvshim.plugins.*]: raw tables, the one field of a kind of its own.
        if not isinstance(plugins_table, dict) or not all(
            isinstance(v, dict) for v in plugins_table.values()
        ):
            return None
        data = {**data, "nvshim": {k: v for k, v in nvshim_table.items() if k != "plugins"}}
    config = _quick_structure(data, Config, strict=_STRICT.__contains__, omit=_CONFIG_OMIT)
    if config is _GIVE_UP:
        return None
    if plugins_table is not None:
        plugins = {k: dict(v) for k, v in plugins_table.items()}
        config = attrs.evolve(config, nvshim=attrs.evolve(config.nvshim, plugins=plugins))
    return config  # type: ignore[no-any-return]


def structure_config(raw: Mapping[str, Any], source: str = "<config>") -> Config:
    """Build a :class:`Config` from parsed TOML, or raise :class:`ConfigError`."""
    data = dict(raw)
    # Fields are resolved by class annotations; the hidden ones are not TOML keys.
    data.pop("source", None)
    data.pop("ignored-keys", None)
    _check_tables(data, Config, source)
    for (table, key), choices in _CHOICES.items():
        value = (data.get(table) or {}).get(key)
        if value is not None and value not in choices:
            raise ConfigError(
                f"config {source}: key '{table}.{key}': expected one of "
                f"{', '.join(choices)}, got {value!r}"
            )
    nvshim_table = data.get("nvshim")
    timeout = nvshim_table.get("modifier-timeout") if isinstance(nvshim_table, dict) else None
    if (
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and not 0 <= timeout < float("inf")  # nan fails both comparisons
    ):
        raise ConfigError(
            f"config {source}: key 'nvshim.modifier-timeout': expected a finite number"
            f" of seconds >= 0 (0: no limit), got {timeout!r}"
        )
    quick = _quick_config(data)
    config = quick if quick is not None else _structure_with_cattrs(data, source)
    ignored = tuple(k for k in _unknown_keys(raw, Config) if not k.startswith("nvshim."))
    return attrs.evolve(config, source=source, ignored_keys=ignored)


def _structure_with_cattrs(data: Mapping[str, Any], source: str) -> Config:
    import cattrs

    try:
        config = _converter().structure(data, Config)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            lines = _error_lines(exc, source)
        else:
            lines = [f"config {source}: {exc}"]
        raise ConfigError(lines[0] if len(lines) == 1 else "; ".join(lines)) from None
    return config


def load_config(path: "str | None" = None, environ: "Mapping[str, str] | None" = None) -> "Config":
    """Load the configuration from ``path`` (default: see :func:`config_path`).

    A missing file gives the defaults, except one that ``$NVSHIM_CONFIG``
    names (an admin who points nvshim at a file means that file); a bad one
    raises :class:`ConfigError`.
    """
    name = path if path is not None else config_path(environ)
    raw = read_toml(name)
    if raw is None:
        if path is None and _named_by_nvshim_config(name, environ):
            raise ConfigError(f"config {name}: no such file (named by NVSHIM_CONFIG)")
        return Config()
    return structure_config(raw, name)


def _named_by_nvshim_config(name: str, environ: "Mapping[str, str] | None") -> bool:
    import os

    return (os.environ if environ is None else environ).get("NVSHIM_CONFIG") == name


def plugin_options(config: "Config", name: str, config_class: "type | None") -> Any:
    """The ``[nvshim.plugins.<name>]`` table, structured into ``config_class`` if given."""
    table = config.nvshim.plugins.get(name, {})
    if config_class is None:
        return dict(table)
    if attrs.has(config_class):
        quick = _quick_options(table, config_class)
        if quick is not _GIVE_UP:
            return quick
    import cattrs
    from cattrs.gen import make_dict_structure_fn, override

    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(float, _strict_float)
    if attrs.has(config_class):
        overrides: dict[str, Any] = {
            f.name: override(rename=toml_name(f.name))
            for f in attrs.fields(config_class)
            if "_" in f.name
        }
        conv.register_structure_hook(
            config_class,
            make_dict_structure_fn(config_class, conv, _cattrs_forbid_extra_keys=True, **overrides),
        )
    try:
        return conv.structure(table, config_class)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        source = config.source or "<defaults>"
        if isinstance(exc, cattrs.BaseValidationError):
            lines = _error_lines(exc, source)
            lines = [
                line.replace("key '", f"key 'nvshim.plugins.{name}.", 1).replace(
                    ".(top level)'", "'"
                )
                for line in lines
            ]
        else:
            lines = [f"config {source}: [nvshim.plugins.{name}]: {exc}"]
        raise ConfigError("; ".join(lines)) from None


def _quick_options(table: Mapping[str, Any], config_class: type) -> Any:
    """``config_class`` from a plugin's table without cattrs, or :data:`_GIVE_UP`.

    Only for field types whose valid values cattrs passes through unchanged
    here (strings, booleans, ints, floats, lists of strings, nested classes):
    see :func:`_quick_structure`.
    """
    try:
        attrs.resolve_types(config_class)  # what cattrs does first, too
    except Exception:
        return _GIVE_UP
    # Its converter forbids unknown keys in every table.
    return _quick_structure(table, config_class, strict=lambda _cls: True)
