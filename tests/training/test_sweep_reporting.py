"""What a sweep tells its user: how an lr was chosen, what can be predicted, how long it took.

Written the way a user runs it: the ``budgetax`` command on a task file, output to a file
(not a terminal), the report rebuilt with ``budgetax report``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from budgetax import cli, report
from budgetax.training.sweep import checkpoints, progress
from budgetax.training.sweep.store import Store, decode_curves

TASK = ["--task", "tests.tasks:make_task"]
SMALL = ["--full-budget", "24", "--schedules", "cosine,constant", "--lrs", "0.01,0.1",
         "--batch-size", "60", "--num-evals", "2", "--no-plots"]


def _sweep(capsys, out, *argv) -> tuple[str, str]:
    rc = cli.main(["sweep", *TASK, "--out", str(out), *SMALL, *argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out, captured.err


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_without_diagnostics_the_lr_is_chosen_on_the_training_minibatch_loss(tmp_path,
                                                                               capsys):
    """`--diagnostics none` never selects on the test set unless asked to."""
    out = tmp_path / "s"
    _sweep(capsys, out, "--diagnostics", "none", "--budgets", "0.5,1", "--seeds", "0,1")
    text = (out / "results.md").read_text()
    assert "minibatch training loss over each run's last epoch" in text
    assert "the test set is not used" in text
    summary = _summary(out)
    assert summary["select"] == "train_minibatch_loss"
    # the chosen lr of each cell has the lowest mean loss over the last epoch (10 steps of
    # 60 of the 600 examples) or the last half of a shorter run, from the stored curves
    with Store(out / "results.sqlite", readonly=True) as store:
        names = tuple(store.get_meta("metrics")["train"])
        runs = store.runs(with_curves=True)
    for cell in summary["cells"]:
        window = min(10, cell["budget"] // 2)
        by_lr = {}
        for r in runs:
            if r["budget"] == cell["budget"] and r["schedule"] == cell["schedule"]:
                loss = decode_curves(r["curves"], names, r["budget"])["loss"]
                by_lr.setdefault(r["peak_lr"], []).append(loss[-window:].mean())
        best = min(by_lr, key=lambda lr: np.mean(by_lr[lr]))
        assert cell["best_lr"] == best, (cell, by_lr)
    # selecting on the test set is an explicit choice, and the header says what it means
    assert cli.main(["report", str(out), "--no-plots", "--select", "test_within_0.1"]) == 0
    capsys.readouterr()
    assert "tuned on the test set, so the table is optimistic" in (out / "results.md").read_text()


def test_predict_says_what_it_needs_and_refuses_non_numbers(tmp_path, capsys):
    out = tmp_path / "two"
    rc = cli.main(["sweep", *TASK, "--out", str(out), *SMALL, "--budgets", "0.5,1",
                   "--seeds", "0", "--predict", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "--predict needs at least 3 budgets" in err and "0.5,1" in err
    assert not (out / "results.sqlite").exists()  # refused before training
    _sweep(capsys, out, "--budgets", "0.5,1", "--seeds", "0")
    assert cli.main(["report", str(out), "--no-plots", "--predict", "2"]) == 2
    err = capsys.readouterr().err
    assert "no schedule can be predicted" in err and "2 budget(s) with a result" in err
    for bad, error in (((True,), TypeError), (2, TypeError), ("2", TypeError),
                       ((float("nan"),), ValueError), ((-1.0,), ValueError)):
        with pytest.raises(error, match="predict must"):
            report.write_report(str(out), plots=False, predict=bad)


def test_one_seed_predictions_say_how_sure_they_are_and_cells_show_no_spread(tmp_path,
                                                                             capsys):
    three, four = tmp_path / "three", tmp_path / "four"
    _sweep(capsys, three, "--budgets", "0.25,0.5,1", "--seeds", "0", "--predict", "2")
    preds = _summary(three)["predictions"]
    assert preds and all(p["low"] is None and p["noise_from"] == "none" for p in preds)
    text = (three / "results.md").read_text()
    assert "(no interval)" in text and "nothing measures the noise" in text
    assert "±" not in text.split("Bold:")[0].split("\n|")[-1]  # the table's last row
    assert " ± 0.0" not in text
    _sweep(capsys, four, "--budgets", "0.25,0.5,0.75,1", "--seeds", "0", "--predict", "2")
    preds = _summary(four)["predictions"]
    assert all(p["noise_from"] == "residuals" for p in preds)
    assert all(p["low"] < p["mean"] < p["high"] for p in preds), preds


def test_progress_lines_and_times_when_output_goes_to_a_file(tmp_path, capsys, monkeypatch):
    """Not on a terminal: a line per segment here (at most one a minute by default); a
    group's line and the stored rate separate compilation from training; the report counts
    the wall time of every call of a resumed sweep."""
    monkeypatch.setattr(progress.Progress, "line_every", 0.0)
    out = tmp_path / "s"
    spec_args = ["--budgets", "0.5,1", "--seeds", "0", "--checkpoint-every", "1"]
    save = checkpoints.Checkpoints.save

    def save_then_ctrl_c(self, *a, **k):
        save(self, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.Checkpoints, "save", save_then_ctrl_c)
    assert cli.main(["sweep", *TASK, "--out", str(out), *SMALL, *spec_args]) == 130
    monkeypatch.setattr(checkpoints.Checkpoints, "save", save)
    capsys.readouterr()
    _, err = _sweep(capsys, out, *spec_args)
    lines = err.splitlines()
    assert any("run-steps (" in line and "elapsed" in line for line in lines), err
    group_lines = [line for line in lines if line.startswith("budget")]
    assert group_lines and all("run-steps/s" in line for line in group_lines), err
    assert any("of it compiling" in line for line in group_lines), err
    with Store(out / "results.sqlite", readonly=True) as store:
        groups, sessions = store.groups(), store.sessions()
    assert len(sessions) == 2 and all(s["seconds"] > 0 for s in sessions), sessions
    for g in groups:
        assert 0 <= g["compile_seconds"] <= g["seconds"]
    text = (out / "results.md").read_text()
    assert "over 2 call(s) of the sweep" in text and "without compilation" in text
