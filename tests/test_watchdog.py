"""Bounded work on create: a plugin that ignores the time limit cannot hang ``nvshim create``.

``[nvshim] modifier-timeout`` is a ``SIGALRM`` raised inside the plugin.  A
plugin that catches it, or sits in one long C call (a regular expression that
backtracks for minutes holds the GIL: no signal handler runs), used to hang
the create for as long as it liked.  The watchdog (nvshim/_watchdog.py) ends
nvshim ``GRACE_S`` after the limit: one line on stderr, the runtime never
started, config.json untouched.  Imports and ``nvshim_modifiers()`` are
bounded the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import attack_support
import pytest
from plugin_support import dedent, plugin_dist
from reliability_support import Shim

from nvshim import _watchdog

TIMEOUT = 0.5

#: Sleeps forever, catching the time limit's exception each time.
SWALLOW = """
    import time
    def _forever():
        while True:
            try:
                time.sleep(3600)
            except BaseException:
                pass
"""
#: One C call that runs for minutes and never returns to the interpreter,
#: where the SIGALRM handler would run.
C_CALL = """
    import hashlib
    def _forever():
        hashlib.pbkdf2_hmac("sha512", b"x", b"y", 2**31 - 1)
"""

PLACES = {
    "modify": "{body}\n    from nvshim import Modifier, hookimpl\n"
    "    def _modify(spec, context):\n        _forever()\n"
    "    @hookimpl\n    def nvshim_modifiers():\n"
    "        return [Modifier('wd-hang', _modify)]\n",
    "nvshim_modifiers": "{body}\n    from nvshim import hookimpl\n"
    "    @hookimpl\n    def nvshim_modifiers():\n        _forever()\n",
    "import": "{body}\n    _forever()\n",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("place", "how"),
    [
        *((place, "swallows-the-exception") for place in sorted(PLACES)),
        ("modify", "long-c-call"),
        ("nvshim_modifiers", "long-c-call"),
    ],
)
def test_a_plugin_that_ignores_the_time_limit_is_stopped(
    tmp_path: Path, place: str, how: str
) -> None:
    shim = Shim(tmp_path)
    shim.config.write_text(shim.config_text() + f"modifier-timeout = {TIMEOUT}\n")
    body = SWALLOW if how == "swallows-the-exception" else C_CALL
    site = plugin_dist(
        tmp_path / "hang-site", "nvshim-wd-hang", dedent(PLACES[place].format(body=body))
    )
    bundle = shim.bundle()
    before = (bundle / "config.json").read_bytes()
    with attack_support.attack(f"plugin {how} in {place}"):
        started = time.monotonic()
        result = shim.create(bundle, stamp="wd", PYTHONPATH=f"{site}:{shim.env['PYTHONPATH']}")
        elapsed = time.monotonic() - started
        assert elapsed < TIMEOUT + _watchdog.GRACE_S + 8, elapsed
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("nvshim: "), lines[0]
        assert "'wd-hang' (nvshim-wd-hang 1.0)" in lines[0]
        assert f"did not finish within {TIMEOUT:g} s and ignored the time limit" in lines[0]
        assert result.returncode == -9  # SIGKILL: no code of nvshim's ran after it
        assert shim.calls() == [], "the runtime was started"
        assert (bundle / "config.json").read_bytes() == before


def test_a_plugin_that_honours_the_limit_still_gets_the_soft_error(tmp_path: Path) -> None:
    shim = Shim(tmp_path)
    shim.config.write_text(shim.config_text() + f"modifier-timeout = {TIMEOUT}\n")
    bundle = shim.bundle()
    before = (bundle / "config.json").read_bytes()
    result = shim.create(bundle, stamp="wd", RELTEST_SLEEP="30")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"nvshim: modifier 'reltest-stamp' (nvshim-reltest 1.0): did not finish within"
        f" {TIMEOUT:g} s"
    ]
    assert shim.calls() == []
    assert (bundle / "config.json").read_bytes() == before


def test_without_a_timeout_no_watchdog_is_started(tmp_path: Path) -> None:
    """``modifier-timeout = 0`` keeps its meaning: no limit at all."""
    shim = Shim(tmp_path)
    shim.config.write_text(shim.config_text() + "modifier-timeout = 0\n")
    bundle = shim.bundle()
    result = shim.create(bundle, stamp="wd", RELTEST_SLEEP=str(_watchdog.GRACE_S + 0.5))
    assert result.returncode == 0, result.stderr
    assert len(shim.calls()) == 1


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "-inf", '"10"'])
def test_modifier_timeout_must_be_finite_and_not_negative(tmp_path: Path, value: str) -> None:
    shim = Shim(tmp_path)
    shim.config.write_text(shim.config_text() + f"modifier-timeout = {value}\n")
    bundle = shim.bundle()
    before = (bundle / "config.json").read_bytes()
    result = shim.create(bundle, stamp="wd")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nvshim: bad configuration: config ")
    assert "modifier-timeout" in lines[0]
    assert shim.calls() == []
    assert (bundle / "config.json").read_bytes() == before
