"""The /bin/sh wrappers ``nvshim`` and ``nvshim-ctl``: how they find their Python.

They exec the interpreter named in the first line of ``nvshim-python`` beside
them (after resolving links to the wrapper) with ``-I``.  Installers write that
line as ``#!/path/python``, or, for a long path or one with spaces, as
``#!/bin/sh`` plus an ``'''exec' '/path/python' "$0" "$@"`` line (the
``installer`` library, uv, distlib).  Checked here on copies of the installed
wrappers, with the test interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from script_support import installed_script

FORMS = {
    "plain": "#!{python}\n",
    "sh-single-quotes": "#!/bin/sh\n'''exec' '{python}' \"$0\" \"$@\"\n' '''\n",
    "sh-double-quotes": "#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\n",
}


def _copy(folder: Path, form: str) -> Path:
    folder.mkdir(parents=True)
    for name in ("nvshim", "nvshim-ctl"):
        shutil.copy2(installed_script(name), folder / name)
    # The test interpreter itself: a link to it elsewhere would leave its venv.
    (folder / "nvshim-python").write_text(FORMS[form].format(python=sys.executable))
    return folder


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_interpreter_line_in_each_installer_form(tmp_path: Path, form: str) -> None:
    folder = _copy(tmp_path / "bin", form)
    result = subprocess.run(
        [str(folder / "nvshim-ctl"), "--version"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nvshim-ctl ")


def test_reached_through_a_link_with_no_path(tmp_path: Path) -> None:
    """Podman runs ``delete`` with an empty environment; admins link the wrapper."""
    folder = _copy(tmp_path / "venv" / "bin", "plain")
    links = tmp_path / "usr-local-bin"
    links.mkdir()
    (links / "nvshim").symlink_to(folder / "nvshim")
    (links / "nvshim-ctl").symlink_to(os.path.relpath(folder / "nvshim-ctl", links))
    config = tmp_path / "config.toml"
    config.write_text('[nvidia-container-runtime]\nruntimes = ["/bin/true"]\n')
    for name, want in (("nvshim", "nvshim version "), ("nvshim-ctl", "nvshim-ctl ")):
        result = subprocess.run(
            [str(links / name), "--version"],
            # The test's cache folder: `nvshim --version` loads the plugins,
            # which writes the entry-point cache (never the host's).
            env={
                "PATH": "",
                "NVSHIM_CONFIG": str(config),
                "NVSHIM_CACHE_DIR": os.environ["NVSHIM_CACHE_DIR"],
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.stdout.startswith(want), (name, result.stderr)


def test_a_missing_interpreter_line_is_one_clear_line(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy2(installed_script("nvshim"), folder / "nvshim")
    result = subprocess.run(
        [str(folder / "nvshim"), "state", "x"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"nvshim: cannot read the interpreter from {folder}/nvshim-python"
    )
