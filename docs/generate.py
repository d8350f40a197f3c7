"""Pages of the docs that are generated at build time, so that they cannot drift.

- the API reference: one page per public module, one entry per name of its ``__all__``
  (its docstring, through Sphinx autodoc);
- the CLI reference: the ``--help`` of every command, from ``budgetax.cli.build_parser``;
- the experiments' and benchmarks' results pages, copied from the repository so that the
  guides link to them inside the site.

``docs/conf.py`` calls :func:`generate` before Sphinx reads the sources; the tests import
this file to check the reference covers every public name. Everything is written under
``docs/generated/`` (not committed).
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
OUT = DOCS / "generated"

# The reference's pages, in the order of its table of contents: (page, title, modules).
PAGES = [
    ("budgetax", "budgetax (top level)", ["budgetax"]),
    ("schedules", "budgetax.schedules", ["budgetax.schedules"]),
    ("profiles", "budgetax.profiles", ["budgetax.profiles"]),
    ("transforms", "budgetax.transforms", [
        "budgetax.transforms.schedule", "budgetax.transforms.adamp",
        "budgetax.transforms.autowu", "budgetax.transforms.demon",
        "budgetax.transforms.precision"]),
    ("batch_size", "budgetax.batch_size", ["budgetax.batch_size"]),
    ("training", "budgetax.training", ["budgetax.training"]),
    ("sweep", "budgetax.training.sweep", ["budgetax.training.sweep"]),
    ("ranking", "budgetax.ranking", ["budgetax.ranking"]),
    ("laws", "budgetax.laws", ["budgetax.laws"]),
    ("data", "budgetax.data", ["budgetax.data"]),
    ("models", "budgetax.models", ["budgetax.models"]),
    ("report", "budgetax.report", ["budgetax.report"]),
    ("frontier", "budgetax.frontier", ["budgetax.frontier"]),
]
# Where an object exported under several names is indexed (the others are shown
# with ``:no-index:``, so that a cross-reference has one target): the defining
# modules first, the re-exporting packages last.
INDEX_ORDER = [m for _, _, mods in PAGES for m in mods if m != "budgetax"] + ["budgetax"]
# Modules that have their own page: a member that is one of them is a link.
PAGE_OF = {m: page for page, _, mods in PAGES for m in mods}


def public_modules() -> list[str]:
    return [m for _, _, mods in PAGES for m in mods]


def public_names(module: str) -> list[str]:
    """The public names of a module: its ``__all__``, ``__version__`` excepted."""
    return [n for n in importlib.import_module(module).__all__ if n != "__version__"]


def _kind(obj) -> str:
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return "autoexception"
    if isinstance(obj, type):
        return "autoclass"
    if callable(obj):
        return "autofunction"
    return "autodata"


def _entry(module: str, name: str, obj, indexed: bool) -> list[str]:
    kind = _kind(obj)
    lines = [f".. {kind}:: {module}.{name}"]
    if kind == "autoclass":
        lines.append("   :members:")
    if kind == "autodata" and len(repr(obj)) > 120:
        lines.append("   :no-value:")
    if not indexed:
        lines.append("   :no-index:")
    return lines + [""]


def _module_section(module: str, level: int, seen: dict[int, str]) -> list[str]:
    mod = importlib.import_module(module)
    out = [f"{'#' * level} `{module}`", "", "```{eval-rst}",
           f".. automodule:: {module}", "   :no-members:", ""]
    submodules = []
    for name in public_names(module) if hasattr(mod, "__all__") else []:
        obj = getattr(mod, name)
        if isinstance(obj, types.ModuleType):
            submodules.append((name, obj))
            continue
        key = id(obj) if (inspect.isfunction(obj) or isinstance(obj, type)) else None
        indexed = key is None or seen.get(key) == module
        out += _entry(module, name, obj, indexed)
    out += ["```", ""]
    for name, sub in submodules:
        if sub.__name__ in PAGE_OF:
            page = PAGE_OF[sub.__name__]
            out += [f"`{module}.{name}`: the module [`{sub.__name__}`]({page}.md).", ""]
        else:
            out += _module_section(sub.__name__, level + 1, seen)
    return out


def _exporters(found: dict[int, list], module: str) -> None:
    mod = importlib.import_module(module)
    for name in public_names(module) if hasattr(mod, "__all__") else []:
        obj = getattr(mod, name)
        if isinstance(obj, types.ModuleType):
            if obj.__name__ not in PAGE_OF:
                _exporters(found, obj.__name__)
        elif inspect.isfunction(obj) or isinstance(obj, type):
            found.setdefault(id(obj), [obj]).append(module)


def _home(obj, modules: list[str]) -> str:
    """Of the modules exporting ``obj``, the one nearest to where it is defined."""
    defined = getattr(obj, "__module__", "") or ""

    def common(module):
        return 1 + module.count(".") if (defined + ".").startswith(module + ".") else 0
    return max(modules, key=lambda m: (common(m), -modules.index(m)))


def api_pages() -> dict[str, str]:
    """``{page: MyST source}`` of the API reference, ``index`` included."""
    found: dict[int, list] = {}
    for module in INDEX_ORDER:
        _exporters(found, module)
    seen = {key: _home(obj, modules) for key, (obj, *modules) in found.items()}
    pages = {}
    for page, title, modules in PAGES:
        lines = [f"# {title}", ""]
        if len(modules) > 1:
            lines += [f"```{{eval-rst}}\n.. automodule:: {title}\n   :no-members:\n```", ""]
        for module in modules:
            lines += _module_section(module, 1 if len(modules) == 1 else 2, seen)
        if len(modules) == 1:  # the page's title is the module's heading
            lines = lines[2:]
        pages[page] = "\n".join(lines)
    toc = "\n".join(page for page, _, _ in PAGES)
    pages["index"] = (
        "# API reference\n\nEvery public name of every public module (its `__all__`), with its "
        "docstring. Names re-exported by a package (`budgetax.adamp` is "
        "`budgetax.transforms.adamp.adamp`) are shown at both places; the index points to "
        f"the defining module.\n\n```{{toctree}}\n:maxdepth: 1\n\n{toc}\n```\n")
    return pages


def cli_page() -> str:
    """The CLI reference: ``budgetax --help`` and each command's ``--help``."""
    import argparse
    import os

    from budgetax.cli import build_parser

    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    lines = ["# Command line", "",
             "Generated from `budgetax.cli.build_parser` when the docs are built: these are "
             "the `--help` texts of the installed version. The guides explain the options: "
             "[sweeps and strategies](../guides/sweeps.md), "
             "[several processes](../guides/distributed.md).", "",
             "## `budgetax`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                lines += [f"## `budgetax {name}`", "", "```text",
                          sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


# The results pages: the pages of experiments/, benchmarks/ and the examples' results.
RESULTS_GLOBS = [
    "experiments/*/*.md", "examples/results/*/results.md", "benchmarks/results/*.md",
    "benchmarks/bf16/*.md",
]
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def _rewrite_links(text: str, source: Path, copied: set[Path]) -> str:
    """Links to copied pages and images stay; others become the repository path."""
    def fix(match):
        bang, label, target = match.groups()
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve()
        if resolved.is_dir() and (resolved / "README.md").exists():
            resolved = resolved / "README.md"
        if resolved in copied:
            rel = Path(*([".."] * (len(source.parent.relative_to(ROOT).parts))),
                       resolved.relative_to(ROOT))
            return f"{bang}[{label}]({rel.as_posix()}{'#' + anchor if anchor else ''})"
        shown = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else path
        return f"{label} (`{shown}`)" if label and label != shown else f"`{shown}`"
    return _LINK.sub(fix, text)


def copy_results(out: Path) -> list[str]:
    sources = sorted(p for g in RESULTS_GLOBS for p in ROOT.glob(g))
    images = {(p.parent / m.group(3)).resolve() for p in sources
              for m in _LINK.finditer(p.read_text()) if m.group(1)}
    copied = set(sources) | {i for i in images if i.exists()}
    for path in copied:
        dest = out / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".md":
            dest.write_text(_rewrite_links(path.read_text(), path, copied))
        else:
            shutil.copyfile(path, dest)
    return [p.relative_to(ROOT).as_posix() for p in sources]


def generate(out: Path = OUT) -> None:
    if out.exists():
        shutil.rmtree(out)
    (out / "api").mkdir(parents=True)
    for page, text in api_pages().items():
        (out / "api" / f"{page}.md").write_text(text)
    (out / "cli.md").write_text(cli_page())
    pages = copy_results(out / "results")
    toc = "\n".join(p[: -len(".md")] for p in pages)
    (out / "results" / "index.md").write_text(
        "# Results pages\n\nThe experiments' and benchmarks' pages, as the repository holds "
        "them (links to scripts and data files are shown as their paths in the repository)."
        f"\n\n```{{toctree}}\n:maxdepth: 1\n\n{toc}\n```\n")


if __name__ == "__main__":
    generate()
