"""atomic_write_*: the old content survives a failed write; no temp files are left behind."""

from __future__ import annotations

import json
import os

import pytest

from budgetax._io import atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "results.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [x.name for x in p.parent.iterdir()] == ["results.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "results.md"
    atomic_write_text(p, "old\n")

    class Boom:
        def __str__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(TypeError):
        atomic_write_text(p, Boom())  # not a str: the write fails after the temp file exists
    assert p.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["results.md"]


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "results.md", "x")
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777) == 0o644  # not the temp file's private 0o600
