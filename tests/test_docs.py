"""The docs site: every code block runs or says why not, and the reference covers the API.

Each page's ```python blocks run in order, in one namespace, in a temporary directory (as
tests/test_readme.py runs the README's). Any other fenced block must be preceded by an HTML
comment ``<!-- not executed: REASON -->``; MyST directives (```{toctree} ...) are not code.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.data.helpers import built_data_dir

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md")
               if not {"generated", "_build"} & set(p.relative_to(DOCS).parts))
FENCE = re.compile(r"^```(\S*)")
NOT_EXECUTED = re.compile(r"^<!-- not executed: \S.* -->$")


def code_blocks(text: str) -> list[tuple[str, str, str]]:
    """``(language, code, the line before the block)`` of every fenced block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match:
            before = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            blocks.append((match.group(1), "\n".join(lines[i + 1:end]) + "\n", before))
            i = end
        i += 1
    return blocks


def executed(text: str) -> list[str]:
    return [code for lang, code, before in code_blocks(text)
            if lang == "python" and not NOT_EXECUTED.match(before)]


def load_generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_have_pages_and_blocks():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    for page in ("index.md", "guides/optax.md", "guides/task.md", "guides/sweeps.md",
                 "guides/bf16.md", "guides/autowu.md", "guides/ranking.md",
                 "guides/distributed.md", "claims.md", "performance.md", "contributing.md"):
        assert page in names
    assert sum(len(executed(p.read_text())) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_block_runs_or_says_why(page):
    for lang, code, before in code_blocks(page.read_text()):
        if lang.startswith("{") or lang == "python":
            continue
        assert NOT_EXECUTED.match(before), (
            f"{page.name}: a ```{lang} block must be python (executed) or be preceded by "
            f"'<!-- not executed: REASON -->':\n{code}")


@pytest.mark.parametrize("page", [p for p in PAGES if executed(p.read_text())],
                         ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_blocks_run(page, monkeypatch, tmp_path):
    monkeypatch.setenv("BUDGETAX_DATA_DIR", built_data_dir())
    monkeypatch.chdir(tmp_path)  # blocks that write (a sweep directory) write here
    namespace = {"__name__": "__main__"}
    for index, code in enumerate(executed(page.read_text())):
        name = f"{page.relative_to(DOCS).as_posix()} block {index}"
        exec(compile(code, name, "exec"), namespace)


def test_reference_covers_every_public_name():
    generate = load_generator()
    for module in ("budgetax", "budgetax.schedules", "budgetax.profiles",
                   "budgetax.transforms.adamp", "budgetax.transforms.autowu",
                   "budgetax.transforms.demon", "budgetax.transforms.precision",
                   "budgetax.transforms.schedule", "budgetax.training",
                   "budgetax.training.sweep", "budgetax.ranking", "budgetax.data",
                   "budgetax.report", "budgetax.frontier", "budgetax.laws"):
        assert module in generate.public_modules()
    text = "\n".join(generate.api_pages().values())
    for module in generate.public_modules():
        mod = importlib.import_module(module)
        for name in generate.public_names(module):
            obj = getattr(mod, name)
            if isinstance(obj, types.ModuleType):
                assert f"automodule:: {obj.__name__}" in text or f"]({name}.md)" in text
                continue
            assert re.search(rf":: {re.escape(module)}\.{name}$", text, flags=re.M), (
                f"{module}.{name} has no entry in the API reference")
            if inspect.isfunction(obj) or isinstance(obj, type):
                assert inspect.getdoc(obj), f"{module}.{name} has no docstring"


def test_cli_reference_is_the_parser():
    from budgetax.cli import build_parser

    page = load_generator().cli_page()
    assert build_parser().format_help().split("\n")[0] in page
    for option in ("--strategy", "--law-anchors", "--processes", "--distributed", "--predict"):
        assert option in page


def test_version_in_one_place():
    import budgetax

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'version = { attr = "budgetax.__version__" }' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, flags=re.M)
    out = subprocess.run([sys.executable, "-m", "budgetax.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"budgetax {budgetax.__version__}"
    assert f"## [{budgetax.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
