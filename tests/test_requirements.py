"""The NVIDIA_REQUIRE_* grammar, version comparison and the host's properties."""

from __future__ import annotations

import ctypes.util
import pathlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvshim import _cuda
from nvshim.requirements import (
    OPERATORS,
    Factor,
    HostProperties,
    Requirement,
    RequirementError,
    RequirementsNotMet,
    check_requirements,
    compare_versions,
    host_properties,
    parse_requirement,
    parse_version,
    required_properties,
)

# --- parsing: NVIDIA's factory_test.go cases (TestParse), adapted -----------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("cuda>=11.6", Factor("cuda", ">=", "11.6")),
        ("cuda>11.6", Factor("cuda", ">", "11.6")),
        ("cuda<=11.6", Factor("cuda", "<=", "11.6")),
        ("cuda<11.6", Factor("cuda", "<", "11.6")),
        ("cuda=11.6", Factor("cuda", "=", "11.6")),
        ("cuda!=11.6", Factor("cuda", "!=", "11.6")),
        ("driver>=418", Factor("driver", ">=", "418")),
        ("driver<470.57.02", Factor("driver", "<", "470.57.02")),
        ("arch=8.0", Factor("arch", "=", "8.0")),
        ("brand=tesla", Factor("brand", "=", "tesla")),
        ("brand!=geforce", Factor("brand", "!=", "geforce")),
        ("cuda>=v11.6", Factor("cuda", ">=", "v11.6")),
    ],
)
def test_single_factor(condition: str, expected: Factor) -> None:
    assert parse_requirement(condition).terms == ((expected,),)
    assert str(expected) == condition


@pytest.mark.parametrize("expr", ["", " ", "   ", ",", " , ,, ", "\t\n"])
def test_empty_expression_has_no_terms(expr: str) -> None:
    parsed = parse_requirement(expr)
    assert parsed.terms == ()
    assert parsed.holds(HostProperties())


@pytest.mark.parametrize(
    "factor", ["notvalid", "cuda", "brand", "cuda11.6", "tesla", "foo", "cuda~11"]
)
def test_factor_without_operator_is_an_error_naming_it(factor: str) -> None:
    with pytest.raises(RequirementError, match=repr(factor)) as info:
        parse_requirement(f"cuda>=11.0 {factor}")
    assert "no operator" in str(info.value)


def test_error_names_the_factor_in_a_longer_expression() -> None:
    with pytest.raises(RequirementError) as info:
        parse_requirement("cuda>=11.0 brand=tesla,driver,driver<419")
    assert "'driver'" in str(info.value)
    assert "brand=tesla,driver,driver<419" in str(info.value)


@pytest.mark.parametrize(
    "factor",
    ["cuda=foo", "cuda>=", "cuda>=11.6.1.2", "cuda>=11.", "cuda=>11.0", "arch>=x", "driver<4 18"],
)
def test_version_property_needs_a_version(factor: str) -> None:
    with pytest.raises(RequirementError):
        parse_requirement(factor)


@pytest.mark.parametrize("factor", ["cuda!11.0", "brand!tesla", "driver!418"])
def test_unknown_operator_is_an_error(factor: str) -> None:
    with pytest.raises(RequirementError, match="operator"):
        parse_requirement(factor)


@pytest.mark.parametrize(
    "expr", ["foo=45", "CUDA>=11.0", "jetpack=5", "foo=bar,baz<1", "=5", "!=x", "cuda_x>=1"]
)
def test_unknown_property_is_ignored(expr: str) -> None:
    parsed = parse_requirement(expr)
    assert parsed.terms == ()
    assert parsed.ignored == tuple(expr.split(","))
    assert parsed.holds(HostProperties())


def test_unknown_property_value_is_not_validated() -> None:
    assert parse_requirement("foo>=not-a-version").terms == ()


def test_space_is_or_comma_is_and() -> None:
    # NVIDIA's TestNewConstraintFromRequirement, with the libnvidia-container
    # meaning of the separators.
    cuda, arch = Factor("cuda", ">=", "11.6"), Factor("arch", "=", "5.3")
    assert parse_requirement("cuda>=11.6 arch=5.3").terms == ((cuda,), (arch,))
    assert parse_requirement("cuda>=11.6,arch=5.3").terms == ((cuda, arch),)
    assert parse_requirement("cuda<13.6 cuda>=11.6,arch=5.3").terms == (
        (Factor("cuda", "<", "13.6"),),
        (cuda, arch),
    )


def test_term_of_unknown_properties_drops_out_of_the_or() -> None:
    # "cuda>=11.6 foo=bar" is just cuda>=11.6: the unknown term is not "true".
    parsed = parse_requirement("cuda>=11.6 foo=bar")
    assert parsed.terms == ((Factor("cuda", ">=", "11.6"),),)
    assert parsed.ignored == ("foo=bar",)
    assert not parsed.holds(HostProperties(cuda="11.0"))


def test_unknown_factor_inside_a_term_is_dropped_from_the_and() -> None:
    parsed = parse_requirement("cuda>=11.6,foo=bar")
    assert parsed.terms == ((Factor("cuda", ">=", "11.6"),),)


def test_empty_items_and_extra_whitespace_are_skipped() -> None:
    parsed = parse_requirement("  cuda>=11.6,,brand=tesla,   \tdriver>=418  ")
    assert parsed.terms == (
        (Factor("cuda", ">=", "11.6"), Factor("brand", "=", "tesla")),
        (Factor("driver", ">=", "418"),),
    )


def test_nvidia_cuda_image_expression() -> None:
    expr = (
        "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471"
        " brand=nvidia,driver>=535,driver<536"
    )
    parsed = parse_requirement(expr)
    assert len(parsed.terms) == 4
    assert parsed.expression == expr
    assert parsed.terms[1] == (
        Factor("brand", "=", "tesla"),
        Factor("driver", ">=", "470"),
        Factor("driver", "<", "471"),
    )
    assert parsed.holds(HostProperties(cuda="12.4"))
    assert parsed.holds(HostProperties(cuda="11.4", driver="470.57.02", brand="tesla"))
    assert not parsed.holds(HostProperties(cuda="11.4", driver="470.57.02", brand="geforce"))
    assert parsed.holds(HostProperties(cuda="12.2", driver="535.54.03", brand="nvidia"))
    assert not parsed.holds(HostProperties(cuda="12.2", driver="536.1", brand="nvidia"))


# --- evaluation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "host", "holds"),
    [
        ("cuda>=9.0", HostProperties(cuda="9.0"), True),
        ("cuda>=9.0", HostProperties(cuda="8.0"), False),
        ("cuda>=9.0", HostProperties(cuda="10.2"), True),
        ("cuda>=9.0", HostProperties(cuda="9.2"), True),
        ("cuda>9.0", HostProperties(cuda="9.0"), False),
        ("cuda<9.0", HostProperties(cuda="8.99"), True),
        ("cuda<=9.0", HostProperties(cuda="9.0.0"), True),
        ("cuda=9", HostProperties(cuda="9.0"), True),
        ("cuda!=9.0", HostProperties(cuda="9.0"), False),
        ("cuda>=12.10", HostProperties(cuda="12.9"), False),
        ("cuda>=12.4", HostProperties(cuda="12.10"), True),
        # The classic: CUDA 9.0 or a Tesla on the 418 branch.
        ("cuda>=9.0 brand=tesla,driver>=418,driver<419", HostProperties(cuda="9.0"), True),
        (
            "cuda>=10.1 brand=tesla,driver>=418,driver<419",
            HostProperties(cuda="9.0", driver="418.87.01", brand="tesla"),
            True,
        ),
        (
            "cuda>=10.1 brand=tesla,driver>=418,driver<419",
            HostProperties(cuda="9.0", driver="419.0", brand="tesla"),
            False,
        ),
        (
            "cuda>=10.1 brand=tesla,driver>=418,driver<419",
            HostProperties(cuda="9.0", driver="418.87.01", brand="quadro"),
            False,
        ),
        ("arch>=7.0", HostProperties(arch="8.0"), True),
        ("arch>=7.0", HostProperties(arch="6.1"), False),
        ("brand=tesla", HostProperties(brand="tesla"), True),
        ("brand=tesla", HostProperties(brand="Tesla"), False),
        ("brand!=geforce", HostProperties(brand="tesla"), True),
        # Unknown host values compare lower than any version.
        ("cuda>=0", HostProperties(), False),
        ("cuda<1", HostProperties(), True),
        ("cuda!=12.0", HostProperties(), True),
        ("cuda=0", HostProperties(), False),
        ("driver>=418", HostProperties(driver="not-a-version"), False),
        # An unknown brand is the empty string (as in NVIDIA's toolkit).
        ("brand=tesla", HostProperties(), False),
        ("brand!=tesla", HostProperties(), True),
        # Pre-releases sort below their release.
        ("cuda>=12.4.0", HostProperties(cuda="12.4.0-rc1"), False),
        ("cuda>=12.4.0-rc1", HostProperties(cuda="12.4.0"), True),
    ],
)
def test_evaluation(expr: str, host: HostProperties, holds: bool) -> None:
    assert parse_requirement(expr).holds(host) is holds


def test_message_names_factor_and_host_value() -> None:
    with pytest.raises(RequirementsNotMet) as info:
        check_requirements(["cuda>=12.4"], HostProperties(cuda="11.4"))
    assert str(info.value) == (
        "requirements not met: unsatisfied condition: cuda>=12.4 (cuda=11.4)"
    )
    assert info.value.factor == Factor("cuda", ">=", "12.4")


def test_message_for_unknown_host_value() -> None:
    with pytest.raises(RequirementsNotMet) as info:
        check_requirements(["cuda>=12.4"], HostProperties())
    assert str(info.value) == (
        "requirements not met: unsatisfied condition: cuda>=12.4 (cuda=unknown)"
    )


def test_message_reports_first_term_of_an_or() -> None:
    host = HostProperties(cuda="11.4", driver="510.1", brand="tesla")
    with pytest.raises(RequirementsNotMet) as info:
        check_requirements(["cuda>=12.4 brand=tesla,driver>=470,driver<471"], host)
    assert str(info.value).endswith("unsatisfied condition: cuda>=12.4 (cuda=11.4)")


def test_message_reports_failing_factor_of_an_and() -> None:
    host = HostProperties(cuda="12.4", driver="510.1", brand="geforce")
    with pytest.raises(RequirementsNotMet) as info:
        check_requirements(["cuda>=12.0,brand=tesla"], host)
    assert str(info.value).endswith("unsatisfied condition: brand=tesla (brand=geforce)")


def test_several_expressions_are_anded() -> None:
    host = HostProperties(cuda="12.4", brand="geforce")
    check_requirements(["cuda>=12.0", "brand=geforce"], host)
    with pytest.raises(RequirementsNotMet, match=r"brand=tesla \(brand=geforce\)"):
        check_requirements(["cuda>=12.0", "brand=tesla", "cuda>=13"], host)


def test_no_requirements_hold() -> None:
    check_requirements([], HostProperties())
    check_requirements(["", "foo=bar"], HostProperties())


def test_grammar_errors_come_before_evaluation() -> None:
    with pytest.raises(RequirementError):
        check_requirements(["cuda>=99", "broken"], HostProperties(cuda="12.0"))


def test_parsed_requirements_are_accepted() -> None:
    parsed = parse_requirement("cuda>=11")
    check_requirements([parsed], HostProperties(cuda="11.0"))
    with pytest.raises(RequirementsNotMet):
        check_requirements([parsed], HostProperties(cuda="10.2"))


def test_required_properties() -> None:
    reqs = ["cuda>=12.4 brand=tesla,driver>=470", "foo=1", "arch>=8.0"]
    assert required_properties(reqs) == {"cuda", "brand", "driver", "arch"}
    assert required_properties(["cuda>=1"]) == {"cuda"}
    assert required_properties([]) == frozenset()


# --- versions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["0", "8", "7.5", "9.0.116", "v11.6", "470.57.02", "1.0.0-rc.1", "1.2.3+build.5"]
)
def test_valid_versions(text: str) -> None:
    assert parse_version(text) is not None


@pytest.mark.parametrize(
    "text",
    ["", "foo", "v", "9.0.116.50", "9.0.116foo", "7.foo", "9.", "9..0", ".5", "-9", "+9", "1 .2"],
)
def test_invalid_versions(text: str) -> None:
    assert parse_version(text) is None


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("12.4", "12.4.0", 0),
        ("12", "12.0.0", 0),
        ("v12.4", "12.4", 0),
        ("12.10", "12.9", 1),
        ("470.57.02", "470.57.2", 0),
        ("1.0.0-alpha", "1.0.0-alpha.1", -1),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1),
        ("1.0.0-beta.2", "1.0.0-beta.11", -1),
        ("1.0.0-rc.1", "1.0.0", -1),
        ("1.0.0+a", "1.0.0+b", 0),
        (None, "0", -1),
        ("junk", "0", -1),
    ],
)
def test_compare_versions(left: str | None, right: str, expected: int) -> None:
    assert compare_versions(left, right) == expected
    if left is not None and parse_version(left) is not None:
        assert compare_versions(right, left) == -expected


def test_compare_versions_needs_a_right_version() -> None:
    with pytest.raises(ValueError, match="not a version"):
        compare_versions("1.0", "x")


# --- property tests -----------------------------------------------------------

_numbers = st.integers(min_value=0, max_value=10_000)
_versions = st.lists(_numbers, min_size=1, max_size=3).map(lambda p: ".".join(map(str, p)))
_brands = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)


@st.composite
def _factors(draw: st.DrawFn) -> Factor:
    prop = draw(st.sampled_from(["cuda", "driver", "arch", "brand"]))
    value = draw(_brands if prop == "brand" else _versions)
    return Factor(prop, draw(st.sampled_from(OPERATORS)), value)


_terms = st.lists(_factors(), min_size=1, max_size=4).map(tuple)
_expressions = st.lists(_terms, min_size=1, max_size=4).map(tuple)
_hosts = st.builds(
    HostProperties,
    cuda=st.none() | _versions,
    driver=st.none() | _versions,
    arch=st.none() | _versions,
    brand=st.none() | _brands,
)


def _render(terms: tuple[tuple[Factor, ...], ...]) -> str:
    return " ".join(",".join(str(f) for f in term) for term in terms)


@given(_expressions)
def test_render_then_parse_round_trips(terms: tuple[tuple[Factor, ...], ...]) -> None:
    assert parse_requirement(_render(terms)).terms == terms


@given(_expressions, _hosts)
def test_evaluation_is_or_of_ands(
    terms: tuple[tuple[Factor, ...], ...], host: HostProperties
) -> None:
    expected = any(all(f.holds(host) for f in term) for term in terms)
    parsed = parse_requirement(_render(terms))
    assert parsed.holds(host) is expected
    failed = parsed.unsatisfied(host)
    if expected:
        assert failed is None
    else:
        assert failed is not None
        assert failed in terms[0]
        assert not failed.holds(host)


@given(_expressions, _hosts)
def test_unknown_terms_do_not_change_the_outcome(
    terms: tuple[tuple[Factor, ...], ...], host: HostProperties
) -> None:
    plain = parse_requirement(_render(terms))
    noisy = parse_requirement("foo=1 " + _render(terms).replace(",", ",bar>=x,") + " baz!=2")
    assert noisy.terms == plain.terms
    assert noisy.holds(host) is plain.holds(host)


@given(st.text(alphabet=string.printable + "≥é", max_size=60))
def test_arbitrary_text_parses_or_raises_requirement_error(text: str) -> None:
    error: RequirementError | None = None
    try:
        parsed: Requirement | None = parse_requirement(text)
    except RequirementError as exc:
        parsed, error = None, exc
    if parsed is None:
        # The message quotes the whole expression.
        assert repr(text) in str(error)
    else:
        # Whatever parsed can be evaluated without error.
        assert parsed.holds(HostProperties()) in (True, False)


@given(_versions, _versions)
def test_version_comparison_is_antisymmetric_and_padded(a: str, b: str) -> None:
    assert compare_versions(a, b) == -compare_versions(b, a)
    assert compare_versions(a, a + ".0" * (3 - a.count(".") - 1)) == 0
    key = tuple(int(p) for p in a.split(".")) + (0,) * (2 - a.count("."))
    other = tuple(int(p) for p in b.split(".")) + (0,) * (2 - b.count("."))
    assert compare_versions(a, b) == (key > other) - (key < other)


@given(_versions)
def test_unknown_is_lower_than_any_version(v: str) -> None:
    assert compare_versions(None, v) == -1
    assert Factor("cuda", "<", v).holds(HostProperties())
    assert not Factor("cuda", ">=", v).holds(HostProperties())


# --- the host ----------------------------------------------------------------


def test_host_properties_asks_only_what_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def record(name: str, value: object):  # type: ignore[no-untyped-def]
        def fake(*args: object) -> object:
            asked.append(name)
            return value

        return fake

    monkeypatch.setattr(_cuda, "cuda_driver_version", record("cuda", (12, 4)))
    monkeypatch.setattr(_cuda, "driver_version", record("driver", "550.54.15"))
    monkeypatch.setattr(_cuda, "compute_capability", record("arch", (9, 0)))
    monkeypatch.setattr(_cuda, "nvml_brand", record("brand", "nvidia"))

    assert host_properties() == HostProperties(cuda="12.4", driver="550.54.15")
    assert asked == ["cuda", "driver"]
    asked.clear()
    assert host_properties({"arch"}) == HostProperties(arch="9.0")
    assert asked == ["arch"]
    asked.clear()
    assert host_properties(["cuda", "driver", "arch", "brand"]) == HostProperties(
        cuda="12.4", driver="550.54.15", arch="9.0", brand="nvidia"
    )
    assert host_properties(()) == HostProperties()


def test_host_properties_unknown_when_nothing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cuda, "cuda_driver_version", lambda: None)
    monkeypatch.setattr(_cuda, "driver_version", lambda: None)
    monkeypatch.setattr(_cuda, "compute_capability", lambda: None)
    monkeypatch.setattr(_cuda, "nvml_brand", lambda: None)
    assert host_properties({"cuda", "driver", "arch", "brand"}) == HostProperties()


def test_cuda_helpers_never_raise_without_a_driver() -> None:
    missing = "libnvshim-test-does-not-exist.so.1"
    assert _cuda.cuda_driver_version(missing) is None
    assert _cuda.compute_capability(0, missing) is None
    assert _cuda.nvml_brand(0, missing) is None
    assert _cuda.nvml_loadable(missing) is False


def test_cuda_helpers_survive_a_library_without_the_symbols() -> None:
    # libc loads but has no cuDriverGetVersion: an AttributeError inside.
    libc = ctypes.util.find_library("c")
    if libc is None:
        pytest.skip("no libc found by ctypes.util.find_library")
    assert _cuda.cuda_driver_version(libc) is None
    assert _cuda.compute_capability(0, libc) is None
    assert _cuda.nvml_brand(0, libc) is None
    assert _cuda.nvml_loadable(libc) is True


def test_real_host_answers_are_well_formed() -> None:
    # On a GPU host these are real values; elsewhere None.  Either way the
    # shape holds and nothing raises.
    version = _cuda.cuda_driver_version()
    assert version is None or (version[0] >= 1 and version[1] >= 0)
    props = host_properties()
    assert props.cuda is None or parse_version(props.cuda) is not None
    assert props.driver is None or parse_version(props.driver) is not None
    assert isinstance(_cuda.nvml_loadable(), bool)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550.54.15\n", "550.54.15"),
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC"
            " 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            "550.54.15",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build\n",
            "535.104.05",
        ),
        ("", None),
        ("garbage\n", None),
    ],
)
def test_parse_driver_version_text(text: str, expected: str | None) -> None:
    assert _cuda.parse_driver_version_text(text) == expected


def test_driver_version_reads_the_first_file_that_answers(tmp_path: pathlib.Path) -> None:
    base = tmp_path
    (base / "empty").write_text("")
    (base / "proc").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.57.02  x\n")
    files = (str(base / "missing"), str(base / "empty"), str(base / "proc"))
    assert _cuda.driver_version(files) == "470.57.02"
    assert _cuda.driver_version((str(base / "missing"),)) is None


# A stand-in driver: a tiny shared library with the entry points nvshim calls,
# built by the test, so that the ctypes calls are exercised on hosts without
# a GPU (what a real driver answers is checked where one exists).
_FAKE_DRIVER_C = r"""
int cuDriverGetVersion(int *v) { *v = 12040; return 0; }
int cuInit(unsigned flags) { return flags == 0 ? 0 : 1; }
int cuDeviceGet(int *dev, int ordinal) { if (ordinal != 0) return 101; *dev = 7; return 0; }
int cuDeviceGetAttribute(int *v, int attr, int dev) {
    if (dev != 7) return 101;
    if (attr == 75) { *v = 9; return 0; }
    if (attr == 76) { *v = 0; return 0; }
    return 1;
}
static int nvml_up = 0;
int nvmlInit_v2(void) { nvml_up = 1; return 0; }
int nvmlShutdown(void) { nvml_up = 0; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **h) {
    if (!nvml_up || i != 0) return 2; *h = (void *)0x1; return 0;
}
int nvmlDeviceGetBrand(void *h, int *b) { if (h != (void *)0x1) return 2; *b = 2; return 0; }
"""

_BROKEN_DRIVER_C = r"""
int cuDriverGetVersion(int *v) { *v = 0; return 999; }
int cuInit(unsigned flags) { return 100; }
int nvmlInit_v2(void) { return 1; }
"""


def _build_library(tmp_path: pathlib.Path, name: str, source: str) -> str:
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a stand-in driver library")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    lib = tmp_path / f"{name}.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True
    )
    return str(lib)


def test_cuda_helpers_read_a_driver(tmp_path: pathlib.Path) -> None:
    lib = _build_library(tmp_path, "fakedriver", _FAKE_DRIVER_C)
    assert _cuda.cuda_driver_version(lib) == (12, 4)
    assert _cuda.compute_capability(0, lib) == (9, 0)
    assert _cuda.compute_capability(1, lib) is None
    assert _cuda.nvml_brand(0, lib) == "tesla"
    assert _cuda.nvml_brand(3, lib) is None
    assert _cuda.nvml_loadable(lib)


def test_cuda_helpers_survive_failing_calls(tmp_path: pathlib.Path) -> None:
    lib = _build_library(tmp_path, "brokendriver", _BROKEN_DRIVER_C)
    assert _cuda.cuda_driver_version(lib) is None
    assert _cuda.compute_capability(0, lib) is None
    assert _cuda.nvml_brand(0, lib) is None
