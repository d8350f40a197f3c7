"""What a sweep tells its user: how an lr was chosen, what can be predicted, how long it took.

Written the way a user runs it: the ``budgetax`` command on a task file, output to a file
(not a terminal), the report rebuilt with ``budgetax report``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from budgetax import cli, report, training
from budgetax.training.sweep import checkpoints, progress
from budgetax.training.sweep.spec import DEFAULT_DIAGNOSTICS
from budgetax.training.sweep.store import Store, decode_curves
from tests import tasks

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


def larger_task() -> training.Task:
    """The toy regression task with more training examples than the default diagnostics."""
    n = DEFAULT_DIAGNOSTICS + 200
    return training.Task(name="toy-regression-larger", model=tasks.Regressor, loss=tasks.mse,
                         train_data=tasks.regression_data(n, 0),
                         eval_data=tasks.regression_data(200, 1),
                         eval_metrics=tasks.within_tenth, config={"n_train": n})


def test_by_default_the_lr_is_chosen_on_a_fixed_training_subset_and_the_header_says_so(
        tmp_path, capsys):
    """No --diagnostics: the train_* metrics are computed on the spec's default subset of the
    training set, the stored runs' final train_loss is that of train(..., diagnostics=N),
    and the table's header (also when rebuilt by `budgetax report`) says so."""
    assert training.SweepSpec().diagnostics == DEFAULT_DIAGNOSTICS
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    assert f"(default: {DEFAULT_DIAGNOSTICS})" in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "s"
    rc = cli.main(["sweep", "--task", f"{__name__}:larger_task", "--out", str(out), *SMALL,
                   "--budgets", "1", "--schedules", "constant", "--seeds", "0"])
    capsys.readouterr()
    assert rc == 0
    summary = _summary(out)
    assert summary["spec"]["diagnostics"] == DEFAULT_DIAGNOSTICS
    assert summary["select"] == "train_loss"
    said = (f"lowest mean final training loss on a fixed random subset of "
            f"{DEFAULT_DIAGNOSTICS:,} training examples, the same for every run "
            f"(diagnostics={DEFAULT_DIAGNOSTICS})")
    assert said in (out / "results.md").read_text()
    assert cli.main(["report", str(out), "--no-plots"]) == 0
    capsys.readouterr()
    assert said in (out / "results.md").read_text()
    run = next(r for r in summary["runs"] if r["peak_lr"] == 0.01)
    opt = training.OptimizerSpec(schedule="constant")  # the sweep's default optimizer
    kw = dict(budget=24, batch_size=60, num_evals=2, optimizer=opt, seed=0, peak_lr=0.01)
    subset = training.train(larger_task(), diagnostics=DEFAULT_DIAGNOSTICS, **kw)
    whole = training.train(larger_task(), diagnostics=True, **kw)
    assert run["final"]["train_loss"] == pytest.approx(subset.final["train_loss"], rel=1e-5)
    assert run["final"]["train_loss"] != pytest.approx(whole.final["train_loss"], rel=1e-3)


def test_the_header_names_the_training_examples_that_chose_the_lr():
    assert report.sections.selected_by("train_loss", True) == (
        "lowest mean final training loss on the whole training set (diagnostics=full)")
    assert "at most 1,000 training examples (the whole set when it is smaller)" in (
        report.sections.selected_by("train_loss", 1000, 600))
    assert "subset of 500 training examples, the same" in (
        report.sections.selected_by("train_loss", 500, 600))


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
