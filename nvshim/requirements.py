"""The requirement language of ``NVIDIA_REQUIRE_*`` variables, and its check.

An image states what host it needs in variables such as::

    NVIDIA_REQUIRE_CUDA="cuda>=12.4 brand=tesla,driver>=470,driver<471"

The grammar is NVIDIA's (libnvidia-container, nvidia-container-toolkit's
``internal/requirements``):

- an *expression* is one variable's value; several expressions are ANDed;
- an expression is *terms* separated by whitespace, ORed;
- a term is *factors* separated by commas, ANDed;
- a factor is ``property op value`` with no spaces, ``op`` one of
  ``!= <= >= = < >``.

Properties: ``cuda`` (the CUDA version the driver supports), ``driver`` (the
driver version), ``arch`` (the compute capability) are versions, compared
numerically component by component (``12.4`` equals ``12.4.0``, ``12.10`` is
above ``12.9``); ``brand`` is compared as a string.  A factor on any other
property is ignored, as NVIDIA ignores it: a term made only of ignored
factors drops out of its expression, and an expression left with no term
holds.  A host value that is not known compares lower than any version.

A factor without an operator, or a version property with a value that is not
a version, is a :class:`RequirementError` that names the factor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Union

import attrs

from nvshim.errors import RequirementsNotMet

__all__ = [
    "OPERATORS",
    "PROPERTIES",
    "STRING_PROPERTIES",
    "VERSION_PROPERTIES",
    "Factor",
    "HostProperties",
    "Requirement",
    "RequirementError",
    "RequirementsNotMet",
    "check_requirements",
    "compare_versions",
    "host_properties",
    "parse_requirement",
    "parse_version",
    "required_properties",
]

VERSION_PROPERTIES = frozenset({"cuda", "driver", "arch"})
STRING_PROPERTIES = frozenset({"brand"})
PROPERTIES = VERSION_PROPERTIES | STRING_PROPERTIES

# Two-character operators first, so that `>=` is never read as `>` + "=...".
OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
_OPERATOR_CHARS = "<>=!"

# 1 to 3 numeric components (Go's semver, which NVIDIA uses), an optional
# leading `v`, an optional pre-release and build suffix.  Unlike Go's semver,
# leading zeros are accepted: driver versions such as 470.57.02 have them.
_VERSION_RE = re.compile(
    r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)

# A version's sort key: three numbers, then the pre-release part, where a
# release (1,) sorts above every pre-release (0, ...).
_VersionKey = tuple[int, int, int, tuple[Union[int, tuple[int, Union[int, str]]], ...]]


class RequirementError(ValueError):
    """An ``NVIDIA_REQUIRE_*`` expression that does not follow the grammar."""


def parse_version(text: str) -> _VersionKey | None:
    """The sort key of a version string, or ``None`` when it is not a version.

    ``"12"``, ``"12.4"``, ``"v12.4.1"``, ``"470.57.02"`` and ``"1.0.0-rc1"``
    are versions; ``"12.4.1.5"``, ``"12."`` and ``"foo"`` are not.
    """
    match = _VERSION_RE.fullmatch(text)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        pre_key: tuple[int | tuple[int, int | str], ...] = (1,)
    else:
        # Semver: numeric identifiers compare as numbers and sort below
        # alphanumeric ones; more identifiers sort higher when all else is equal.
        pre_key = (0, *((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")))
    return int(major), int(minor or 0), int(patch or 0), pre_key


def compare_versions(left: str | None, right: str) -> int:
    """Compare two versions: -1, 0 or 1.

    ``left`` may be ``None`` or not a version (a host value nvshim could not
    determine): it is then lower than any version, as in NVIDIA's semver
    comparison.  ``right`` must be a version.
    """
    right_key = parse_version(right)
    if right_key is None:
        raise ValueError(f"not a version: {right!r}")
    left_key = parse_version(left) if left is not None else None
    if left_key is None:
        return -1
    return (left_key > right_key) - (left_key < right_key)


@attrs.frozen
class HostProperties:
    """What the host offers, for checking requirements against.

    Each value is ``None`` when it is not known; a requirement on an unknown
    version then fails unless its operator accepts anything below the value.
    """

    #: The CUDA version the driver supports, e.g. ``"12.4"``.
    cuda: str | None = None
    #: The driver version, e.g. ``"550.54.15"``.
    driver: str | None = None
    #: The compute capability of the first GPU, e.g. ``"8.0"``.
    arch: str | None = None
    #: The brand of the first GPU, e.g. ``"tesla"``.
    brand: str | None = None

    def value(self, name: str) -> str | None:
        """The host's value of property ``name``."""
        result: str | None = getattr(self, name)
        return result


@attrs.frozen
class Factor:
    """One ``property op value`` condition."""

    property: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.property}{self.op}{self.value}"

    def holds(self, host: HostProperties) -> bool:
        """Whether the host satisfies this condition."""
        actual = host.value(self.property)
        if self.property in VERSION_PROPERTIES:
            cmp = compare_versions(actual, self.value)
        else:
            # An unknown brand is the empty string, as in NVIDIA's toolkit.
            text = actual or ""
            cmp = (text > self.value) - (text < self.value)
        return _OUTCOMES[self.op](cmp)

    def describe_host(self, host: HostProperties) -> str:
        """``cuda=11.4``: the host's side of this condition, for messages."""
        actual = host.value(self.property)
        return f"{self.property}={actual if actual else 'unknown'}"


_OUTCOMES: dict[str, Callable[[int], bool]] = {
    "=": lambda c: c == 0,
    "!=": lambda c: c != 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


@attrs.frozen
class Requirement:
    """A parsed expression: an OR of terms, each an AND of factors.

    Factors on properties nvshim does not know are left out of ``terms`` and
    listed in ``ignored``; terms left empty are dropped.
    """

    expression: str
    terms: tuple[tuple[Factor, ...], ...]
    ignored: tuple[str, ...] = ()

    def unsatisfied(self, host: HostProperties) -> Factor | None:
        """``None`` when the host satisfies the expression, else the factor to report.

        The factor reported is the first failing one of the first term: images
        put their main condition (``cuda>=X``) first and the driver-branch
        exceptions after it, so that is the one worth telling the user about.
        """
        first_failure: Factor | None = None
        for term in self.terms:
            failed = next((f for f in term if not f.holds(host)), None)
            if failed is None:
                return None
            if first_failure is None:
                first_failure = failed
        return first_failure

    def holds(self, host: HostProperties) -> bool:
        """Whether the host satisfies the expression."""
        return self.unsatisfied(host) is None


def _parse_factor(factor: str, expression: str) -> Factor | None:
    end = next((i for i, c in enumerate(factor) if c in _OPERATOR_CHARS), -1)
    if end == -1:
        raise RequirementError(
            f"invalid requirement {factor!r} in {expression!r}: no operator"
            f" (expected property, one of {' '.join(OPERATORS)}, value)"
        )
    name, rest = factor[:end], factor[end:]
    if name not in PROPERTIES:
        return None
    op = next((o for o in OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise RequirementError(
            f"invalid requirement {factor!r} in {expression!r}: unknown operator"
            f" (expected one of {' '.join(OPERATORS)})"
        )
    value = rest[len(op) :]
    if name in VERSION_PROPERTIES and parse_version(value) is None:
        raise RequirementError(
            f"invalid requirement {factor!r} in {expression!r}: {value!r} is not a version"
        )
    return Factor(name, op, value)


def parse_requirement(expr: str) -> Requirement:
    """Parse one expression (one ``NVIDIA_REQUIRE_*`` value).

    Terms are split at any whitespace (NVIDIA splits at spaces only; a tab
    or newline in a variable is read the same way here rather than as part
    of a value).  Empty terms and factors (``"a,,b"``, double spaces) are
    skipped.

    :raises RequirementError: for a factor without an operator, with an
        unknown operator, or with a version property whose value is not a
        version.  The message names the factor and the expression.
    """
    terms: list[tuple[Factor, ...]] = []
    ignored: list[str] = []
    for term in expr.split():
        factors: list[Factor] = []
        for text in term.split(","):
            if not text:
                continue
            factor = _parse_factor(text, expr)
            if factor is None:
                ignored.append(text)
            else:
                factors.append(factor)
        if factors:
            terms.append(tuple(factors))
    return Requirement(expr, tuple(terms), tuple(ignored))


def required_properties(requirements: Iterable[str | Requirement]) -> frozenset[str]:
    """The properties the given expressions compare (to know what to ask the host).

    :raises RequirementError: as :func:`parse_requirement`.
    """
    names: set[str] = set()
    for item in requirements:
        parsed = item if isinstance(item, Requirement) else parse_requirement(item)
        names.update(f.property for term in parsed.terms for f in term)
    return frozenset(names)


def check_requirements(requirements: Sequence[str | Requirement], host: HostProperties) -> None:
    """Check that the host satisfies every expression (they are ANDed).

    Every expression is parsed before any is evaluated, so a grammar error
    is reported as such even when another expression would fail.

    :raises RequirementError: when an expression does not parse.
    :raises RequirementsNotMet: with the message ``requirements not met:
        unsatisfied condition: cuda>=12.4 (cuda=11.4)`` (``cuda=unknown``
        when the host value is not known).
    """
    parsed = [r if isinstance(r, Requirement) else parse_requirement(r) for r in requirements]
    for requirement in parsed:
        failed = requirement.unsatisfied(host)
        if failed is not None:
            raise RequirementsNotMet(
                f"requirements not met: unsatisfied condition: {failed}"
                f" ({failed.describe_host(host)})",
                failed,
            )


def host_properties(properties: Collection[str] | None = None) -> HostProperties:
    """Ask the host for the properties that requirements compare.

    ``properties`` names the ones wanted (see :func:`required_properties`);
    ``None`` means the cheap ones, ``cuda`` (``cuDriverGetVersion`` in
    ``libcuda.so.1``) and ``driver`` (the kernel module's version file).
    ``arch`` initialises CUDA and ``brand`` NVML, which take time on a GPU
    host, so they are asked only when named.  What cannot be determined is
    ``None``.
    """
    from nvshim import _cuda

    wanted = frozenset({"cuda", "driver"}) if properties is None else frozenset(properties)
    cuda = arch = driver = brand = None
    if "cuda" in wanted:
        version = _cuda.cuda_driver_version()
        cuda = f"{version[0]}.{version[1]}" if version else None
    if "driver" in wanted:
        driver = _cuda.driver_version()
    if "arch" in wanted:
        capability = _cuda.compute_capability()
        arch = f"{capability[0]}.{capability[1]}" if capability else None
    if "brand" in wanted:
        brand = _cuda.nvml_brand()
    return HostProperties(cuda=cuda, driver=driver, arch=arch, brand=brand)
