"""The examples run end to end through the public API, in a CI-sized form."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from budgetax import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_transformer_example_imports_no_private_budgetax_name():
    tree = ast.parse((EXAMPLES / "transformer_lm.py").read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("budgetax"):
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("budgetax")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            names.append(ast.unparse(node))
    assert names and not [n for n in names if "._" in n or n.split(".")[-1].startswith("_")
                          and n.startswith("budgetax")], names
    assert not [n for n in names if n.startswith("training._") or n.startswith("budgetax._")]


def test_the_transformer_example_sweeps_from_the_cli(tmp_path, capsys):
    out = tmp_path / "lm"
    rc = cli.main(["sweep", "--task", "examples.transformer_lm:make_ci_task", "--out", str(out),
                   "--full-budget", "24", "--budgets", "0.5,1", "--schedules", "cosine,wsd",
                   "--lrs", "3e-3", "--seeds", "0", "--num-evals", "2", "--batch-size", "16",
                   "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "task stdlib-bytes/transformer-ci" in text
    assert "| budget | steps | cosine | wsd |" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spec"]["table_metric"] == ["test_bits_per_byte", False]
    for run in summary["runs"]:
        assert run["status"] == "done"
        # better than a uniform guess over 256 byte values (8 bits per byte)
        assert run["final"]["test_bits_per_byte"] < 7.0
    assert (out / "metric_vs_budget.png").stat().st_size > 0
