"""Tests of the ``budgetax`` command (``budgetax demo``)."""

from __future__ import annotations

import json
import types

import pytest

from budgetax import cli, training
from tests.data.helpers import built_data_dir


def test_demo_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "demo.json"
    rc = cli.main(["demo", "--full-budget", "40", "--budgets", "1", "--schedules",
                   "constant,linear", "--seed", "1", "--data-dir", built_data_dir(),
                   "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| budget | steps | constant acc / loss | linear acc / loss |" in text
    assert "| 100%   | 40    |" in text
    payload = json.loads(out.read_text())
    assert payload["seed"] == 1 and payload["dataset"] == "mnist1d"
    assert payload["command"].startswith("budgetax demo --full-budget 40")
    got = {(r["budget_fraction"], r["schedule"]): r for r in payload["results"]}
    assert set(got) == {(1.0, "constant"), (1.0, "linear")}
    assert got[(1.0, "linear")]["steps"] == 40
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in payload["results"])
    # 40 steps of Adam beat chance (10%) on MNIST-1D
    assert got[(1.0, "linear")]["test_accuracy"] > 0.2


def test_demo_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--budgets", "0,1.5"])
    assert "budget fractions" in capsys.readouterr().err
    rc = cli.main(["demo", "--dataset", "nope", "--data-dir", built_data_dir()])
    assert rc == 2
    assert "digits" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_out_is_written_atomically(tmp_path, monkeypatch, capsys):
    """A write that fails half-way leaves the previous --out file as it was, no temp files."""
    out = tmp_path / "demo.json"
    out.write_text('{"old": true}\n')

    def fake_train(*args, **kwargs):  # diverged is not JSON-serialisable: the dump fails
        return types.SimpleNamespace(final={"test_accuracy": 0.5, "test_loss": 1.0,
                                            "full_grad_norm": 0.1},
                                     diverged=object(), seconds=0.0)

    monkeypatch.setattr(training, "train", fake_train)
    rc = cli.main(["demo", "--full-budget", "10", "--budgets", "1", "--schedules", "linear",
                   "--data-dir", built_data_dir(), "--out", str(out)])
    assert rc == 2 and "not JSON serializable" in capsys.readouterr().err
    assert out.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["demo.json"]
