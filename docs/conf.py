"""Sphinx configuration of the budgetax docs (Sphinx + MyST, as optax and Flax use).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors).
"""

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))

import generate  # noqa: E402

import budgetax  # noqa: E402

project = "budgetax"
author = "the budgetax authors"
release = version = budgetax.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "sphinx_book_theme"
html_title = f"budgetax {version}"
html_theme_options = {"show_toc_level": 2}


def _generate(app):
    generate.generate()


_PLURAL_LITERAL = re.compile(r"(``[^`\s](?:[^`]*[^`\s])?``)(?=[A-Za-z])")


def _docstring_fixes(app, what, name, obj, options, lines):
    """Reads a few plain-text habits of the docstrings as reStructuredText means them.

    ``Schedule``s (a literal followed by a letter) gets the escaped space it needs; an
    ``Args:`` entry naming several arguments over two lines (``a, b,`` then ``c: ...``)
    is joined into one line; a constant's docstring that is its type's (``dict``'s) is
    replaced by what the constant holds.
    """
    lines[:] = [_PLURAL_LITERAL.sub(r"\1\\ ", line) for line in lines]
    in_args, joined = False, []
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
        elif line and not line[0].isspace():
            in_args = False
        if in_args and joined and joined[-1].rstrip().endswith(",") and stripped \
                and ":" not in joined[-1].strip().rstrip(","):
            joined[-1] = joined[-1].rstrip() + " " + stripped
            continue
        joined.append(line)
    lines[:] = joined
    if what in ("data", "attribute") and obj is not None and not isinstance(obj, type) \
            and getattr(obj, "__doc__", None) == type(obj).__doc__:
        lines[:] = []
        if isinstance(obj, dict):
            keys = ", ".join(f"``{k}``" for k in obj)
            lines += [f"A ``dict`` with the keys {keys}.", ""]


def setup(app):
    app.connect("builder-inited", _generate)
    app.connect("autodoc-process-docstring", _docstring_fixes, priority=100)
