"""Every ```python block of README.md runs as written (so the quickstart cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.data.helpers import built_data_dir

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


def test_readme_is_short_and_cites_no_results_file():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "(tested)" not in text
    assert not re.search(r"\]\((experiments|benchmarks)/", text)


def test_readme_links_exist():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text()):
        assert (README.parent / target).exists(), target


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, monkeypatch, tmp_path):
    monkeypatch.setenv("BUDGETAX_DATA_DIR", built_data_dir())
    monkeypatch.chdir(tmp_path)  # blocks that write (a sweep directory) write here
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__main__"})
