"""Keys of config.toml that nvshim does not read: NVIDIA's own, or mistakes.

The file is NVIDIA's, shared with NVIDIA's other tools, so a key nvshim does
not know is not an error when creating a container.  But a misspelt key
(``mount-spec-paths``) silently leaves its setting at the default, which can
leave a GPU container without its GPU: such keys are warned about on every
create, with the known key they most likely meant, and ``nvshim-ctl config
validate`` refuses them.  Keys that NVIDIA's current toolkit defines and
nvshim has no use for are only noted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

from nvshim.config import Config

__all__ = ["NVIDIA_ONLY_KEYS", "KeyReport", "classify", "known_keys", "suggest"]

#: Keys (and tables, ending in ``.``) of NVIDIA's config.toml (toolkit v1.17 and
#: its main branch, ``api/config/v1``) that nvshim does not use.
NVIDIA_ONLY_KEYS = (
    "features.",
    "nvidia-container-cli.environment",
    "nvidia-container-cli.debug",
    "nvidia-container-cli.ldcache",
    "nvidia-container-cli.load-kmods",
    "nvidia-container-cli.no-pivot",
    "nvidia-container-cli.no-cgroups",
    "nvidia-container-cli.user",
    "nvidia-container-runtime.modes.csv.compat-container-root",
    # Only what is ignored gets here: the jit-cdi keys nvshim reads are parsed.
    "nvidia-container-runtime.modes.jit-cdi.",
    "nvidia-container-runtime.modes.legacy.",
)
_HIDDEN_FIELDS = frozenset({"source", "ignored_keys"})


def _is_nvidia_only(key: str) -> bool:
    for known in NVIDIA_ONLY_KEYS:
        if known.endswith("."):
            if key == known[:-1] or key.startswith(known):
                return True
        elif key == known:
            return True
    return False


def _walk(cls: type, prefix: str = "") -> Iterator[str]:
    for field in attrs.fields(cls):
        if field.name in _HIDDEN_FIELDS:
            continue
        key = prefix + field.name.replace("_", "-")
        yield key
        if isinstance(field.type, type) and attrs.has(field.type):
            yield from _walk(field.type, key + ".")


def known_keys() -> tuple[str, ...]:
    """Every dotted key (and table) nvshim reads, then NVIDIA's that it does not."""
    attrs.resolve_types(Config)
    own = tuple(_walk(Config))
    nvidia = tuple(k.rstrip(".") for k in NVIDIA_ONLY_KEYS)
    return own + tuple(k for k in nvidia if k not in own)


def suggest(key: str, known: Iterable[str] | None = None) -> str | None:
    """The known key ``key`` most likely meant, or None.

    A close name in the same table first (``mount-spec-paths`` for
    ``mount-spec-path``), else the same name in another table
    (``ldconfig`` under ``[nvidia-container-runtime]``).
    """
    import difflib  # only when a key is unknown: not on every create

    keys = tuple(known if known is not None else known_keys())
    table, _, name = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == table}
    close = difflib.get_close_matches(name, list(siblings), n=1, cutoff=0.75)
    if close:
        return siblings[close[0]]
    elsewhere = [k for k in keys if k.rpartition(".")[2] == name and k != key]
    return elsewhere[0] if len(elsewhere) == 1 else None


@attrs.frozen
class KeyReport:
    """The keys of a config file that nvshim ignores, sorted out.

    :param unknown: ``(key, suggestion or None)``: keys no one defines,
        most likely typos.
    :param nvidia: keys of NVIDIA's toolkit that nvshim does not use.
    """

    unknown: tuple[tuple[str, str | None], ...] = ()
    nvidia: tuple[str, ...] = ()

    def unknown_lines(self, source: str) -> list[str]:
        """One message a misspelt key: ``config F: unknown key 'K' ignored (did you mean ...)``."""
        lines = []
        for key, suggestion in self.unknown:
            hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
            lines.append(f"config {source}: unknown key '{key}' ignored{hint}")
        return lines

    def nvidia_lines(self, source: str) -> list[str]:
        """One note a key of NVIDIA's that nvshim does not use."""
        return [
            f"config {source}: NVIDIA's key '{key}' is ignored by nvshim" for key in self.nvidia
        ]


def classify(config: Config) -> KeyReport:
    """Sort :attr:`Config.ignored_keys` into NVIDIA's keys and unknown ones."""
    if not config.ignored_keys:
        return KeyReport()
    known = known_keys()
    unknown: list[tuple[str, str | None]] = []
    nvidia: list[str] = []
    for key in config.ignored_keys:
        if _is_nvidia_only(key):
            nvidia.append(key)
        else:
            unknown.append((key, suggest(key, known)))
    return KeyReport(tuple(unknown), tuple(nvidia))
