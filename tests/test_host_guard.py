"""The host guard (tests/host_guard.py) sees what a run adds, removes or rewrites."""

from __future__ import annotations

import os
from pathlib import Path

import host_guard
import pytest


def test_listing_differences(tmp_path: Path) -> None:
    (tmp_path / "kept").write_text("x")
    (tmp_path / "rewritten").write_text("x")
    (tmp_path / "gone").write_text("x")
    before = host_guard.listing(str(tmp_path))
    (tmp_path / "gone").unlink()
    (tmp_path / "rewritten").write_text("longer")
    (tmp_path / "sub").mkdir()
    os.symlink("kept", tmp_path / "sub" / "link")
    lines = host_guard.differences(before, host_guard.listing(str(tmp_path)))
    assert lines == [
        f"added: {tmp_path / 'sub'}",
        f"added: {tmp_path / 'sub' / 'link'}",
        f"removed: {tmp_path / 'gone'}",
        f"changed: {tmp_path / 'rewritten'}",
    ]
    assert host_guard.listing(str(tmp_path / "missing")) == {}


def test_cache_files_of_other_checkouts_are_not_this_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_guard, "CACHE", str(tmp_path))
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours.write_text(f'{{"key": ["{host_guard.CHECKOUT}/.venv/bin/python"]}}')
    theirs.write_text('{"key": ["/elsewhere/.venv/bin/python"]}')
    assert host_guard._is_ours(f"added: {ours}")
    assert not host_guard._is_ours(f"added: {theirs}")
    assert host_guard._is_ours(f"removed: {theirs}")
    assert host_guard._is_ours("added: /etc/docker/key.json")
