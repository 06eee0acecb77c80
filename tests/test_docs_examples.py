"""The messages the docs quote are the ones the code prints (issue #11).

A quoted message in the docs is preceded by a marker that says how to make
it happen::

    <!-- example: create, config
    [nvidia-container-cli]
    root = 3
    -->
    ```
    nvshim: bad configuration: config /etc/...: key 'nvidia-container-cli.root': ...
    ```

``create`` runs ``nvshim create`` with that config.toml (``config none``: a
``NVSHIM_CONFIG`` that names a missing file) and compares its stderr;
``validate`` runs ``nvshim-ctl config validate FILE``.  The temporary file's
path is shown as ``/etc/nvidia-container-runtime/config.toml``.  The docs'
own example CSV file is parsed too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from nvshim_csv_discovery.csvfiles import parse_csv

DOCS = Path(__file__).resolve().parent.parent / "docs"
SHOWN_PATH = "/etc/nvidia-container-runtime/config.toml"
_EXAMPLE = re.compile(
    r"<!-- example: (?P<kind>create|validate), config(?: none -->|\n(?P<body>.*?)-->)\n"
    r"```\n(?P<expected>.*?)```",
    re.S,
)


def _examples() -> list[tuple[str, str, str | None, str]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for match in _EXAMPLE.finditer(page.read_text()):
            body = match["body"]
            found.append((f"{page.name}:{match.start()}", match["kind"], body, match["expected"]))
    return found


EXAMPLES = _examples()


def test_the_configuration_reference_has_checked_examples() -> None:
    """Every configuration error the reference quotes is one of the checked examples."""
    text = (DOCS / "configuration.md").read_text()
    quoted = [
        line
        for line in text.splitlines()
        if line.startswith(("nvshim: bad configuration:", "nvshim-ctl: config"))
    ]
    checked = {line for *_, expected in EXAMPLES for line in expected.splitlines()}
    assert quoted
    assert [line for line in quoted if line not in checked] == []


@pytest.mark.parametrize(
    ("where", "kind", "body", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES]
)
def test_quoted_message_is_what_the_code_prints(
    tmp_path: Path,
    nvshim_exe: str,
    nvshim_ctl: str,
    where: str,
    kind: str,
    body: str | None,
    expected: str,
) -> None:
    config = tmp_path / "config.toml"
    if body is not None:
        config.write_text(body)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NVSHIM_", "NVIDIA_"))}
    environ["NVSHIM_CACHE_DIR"] = str(tmp_path / "cache")
    environ["NVSHIM_CONFIG"] = str(config)
    if kind == "create":
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(
            json.dumps({"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/"}})
        )
        argv = [nvshim_exe, "create", "--bundle", str(bundle), "ctr"]
    else:
        argv = [nvshim_ctl, "config", "validate", str(config)]
    proc = subprocess.run(
        argv, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.replace(str(config), SHOWN_PATH) == expected


def test_the_example_csv_file_reads_as_documented() -> None:
    """The example of csv-discovery.md: every entry line gives a clean path, no warning."""
    text = (DOCS / "modifiers" / "csv-discovery.md").read_text()
    block = text.split("## The CSV files", 1)[1].split("```\n", 2)[1]
    warnings: list[str] = []
    entries = parse_csv(block.splitlines(), "example.csv", warnings.append)
    assert warnings == []
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(entries) == len(lines)
    assert all("#" not in entry.path and " " not in entry.path for entry in entries)


def test_csv_doc_says_none_gets_the_devices() -> None:
    """``NVIDIA_VISIBLE_DEVICES=none`` gets every CSV device (NVIDIA's behaviour, kept)."""
    text = " ".join((DOCS / "modifiers" / "csv-discovery.md").read_text().split())
    assert "`none` counts, and gets what `all` gets" in text
    assert "no devices" not in text
