"""A pytest plugin: a test run leaves the host's /etc and /var/cache/nvshim as they were.

Tests write only inside their temporary folders.  nvshim run as root keeps
its entry-point cache in ``/var/cache/nvshim`` unless ``NVSHIM_CACHE_DIR``
says otherwise, and an engine (dockerd) writes under ``/etc`` unless told
where: a helper that drops the variable, or a daemon started with its
defaults, shows up here.  The listings (names, kinds, sizes, modification
times, link targets) are taken when the session starts and compared when it
ends; any difference fails the run, naming the paths.  A listing of both
trees costs a few milliseconds.

Another process changing these folders during the run (a package manager,
a test run of another checkout) shows up too, with one exception: a cache
file of ``/var/cache/nvshim`` is this run's only when it names this checkout
(its key holds the interpreter and ``sys.path``), so other checkouts' test
runs on the same machine are told apart.  Disable with ``-p no:host_guard``.
"""

from __future__ import annotations

import os
import stat

import pytest

#: The host folders a test run must leave alone.
GUARDED = ("/etc", "/var/cache/nvshim")
CACHE = "/var/cache/nvshim"
#: This checkout: nvshim runs from it, so its cache files name it.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Listing = dict[str, tuple[object, ...]]
_KEY = pytest.StashKey[dict[str, Listing]]()


def listing(top: str) -> Listing:
    """``{path: (kind, size, mtime_ns) or ("link", target)}`` of every entry under ``top``."""
    found: Listing = {}
    if not os.path.lexists(top):
        return found
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    found[path] = ("link", os.readlink(path))
                except OSError:
                    found[path] = ("link", None)
            elif stat.S_ISDIR(st.st_mode):
                found[path] = ("dir",)
            else:
                found[path] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return found


def differences(before: Listing, after: Listing) -> list[str]:
    """One line a path added, removed or changed."""
    lines = [f"added: {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"removed: {p}" for p in sorted(before.keys() - after.keys())]
    lines += [
        f"changed: {p}"
        for p in sorted(before.keys() & after.keys())
        if before[p] != after[p]
    ]
    return lines


def _is_ours(line: str) -> bool:
    """Whether a difference can be this run's (see the module's docstring)."""
    what, _, path = line.partition(": ")
    if not path.startswith(CACHE + "/") or what == "removed":
        return True
    try:
        with open(path, "rb") as handle:
            return (CHECKOUT + "/").encode() in handle.read(1 << 20)
    except OSError:
        return True


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_KEY] = {top: listing(top) for top in GUARDED}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_KEY, None)
    if before is None:
        return
    problems = [
        line
        for top in GUARDED
        for line in differences(before[top], listing(top))
        if _is_ours(line)
    ]
    if not problems:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
    text = (
        "host_guard: the test run changed host folders it must leave alone "
        f"({', '.join(GUARDED)}; another process working there at the same time "
        "shows up too):\n  " + "\n  ".join(shown)
    )
    if reporter is not None:
        reporter.write_sep("=", "host folders changed", red=True)
        reporter.write_line(text)
    else:  # pragma: no cover - without a terminal reporter (-p no:terminal)
        print(text)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
