"""The ``law`` strategy: anchors, the Multi-Power Law, the best predicted cells verified."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from budgetax import cli, training
from budgetax.training.sweep import law
from budgetax.training.sweep.store import Store
from tests import tasks
from tests.conftest import interrupt

SPEC = training.SweepSpec(full_budget=40, budgets=(0.5, 1.0),
                          schedules=("constant", "cosine", "step", "linear"),
                          peak_lrs=(0.03, 0.1), seeds=(0, 1), batch_size=60, num_evals=2,
                          diagnostics=False, strategy="law", law_verify=1, law_tolerance=1.0)


@pytest.fixture(scope="module")
def task():
    return tasks.make_task()


@pytest.fixture(scope="module")
def uninterrupted(task, tmp_path_factory):
    d = tmp_path_factory.mktemp("law")
    result = training.sweep(task, SPEC, str(d), progress=False)
    with Store(d / "results.sqlite", readonly=True) as store:
        return result, store.dump(), store.get_meta("law"), d


def test_a_trusted_law_trains_the_anchors_and_the_best_predicted_cells_only(uninterrupted):
    result, _, meta, _ = uninterrupted
    runs = result.runs
    status = {r["run_id"]: r["status"] for r in runs}
    anchors = law.anchor_runs(SPEC, SPEC.runs())
    assert all(status[SPEC.runs()[i]["run_id"]] == "done" for i in anchors)
    assert meta["check"]["trusted"] and meta["check"]["cells"] >= 1
    # per budget: the law_verify best predicted cells trained with every seed, the rest
    # predicted (the anchors' cells are trained whatever their prediction)
    for budget in SPEC.budget_steps():
        cells = [c for c in meta["cells"] if c["budget"] == budget]
        best = min(cells, key=lambda c: c["predicted"])
        mine = [r for r in runs if (r["budget"], r["schedule"], r["peak_lr"])
                == (budget, best["schedule"], best["peak_lr"])]
        assert {r["status"] for r in mine} == {"done"} and len(mine) == len(SPEC.seeds)
    predicted = [r for r in runs if r["status"] == "predicted"]
    assert predicted and all(np.isfinite(r["final"][law.PREDICTED]) for r in predicted)
    trained = sum(g["steps"] for g in result.groups)
    grid = sum(r["budget"] for r in runs)
    assert trained < 0.6 * grid, (trained, grid)


@pytest.mark.parametrize("where, call", [("complete_group", 1), ("replan", 1),
                                         ("complete_group", 3)],
                         ids=["in-anchors", "after-fit", "in-verification"])
def test_a_killed_law_sweep_resumes_to_the_same_store(task, uninterrupted, tmp_path,
                                                      monkeypatch, where, call):
    interrupt(monkeypatch, Store, where,
              lambda: training.sweep(task, SPEC, str(tmp_path), progress=False),
              call=call, after=where == "replan")
    training.sweep(task, SPEC, str(tmp_path), progress=False)
    with Store(tmp_path / "results.sqlite", readonly=True) as store:
        assert store.dump() == uninterrupted[1]


def test_a_law_that_misses_trains_every_cell_and_says_so(tmp_path, capsys):
    rc = cli.main(["sweep", "--task", "tests.tasks:make_task", "--out", str(tmp_path),
                   "--full-budget", "40", "--budgets", "0.5,1",
                   "--schedules", "constant,cosine,step", "--lrs", "0.1", "--seeds", "0",
                   "--batch-size", "60", "--num-evals", "2", "--no-plots",
                   "--strategy", "law", "--law-verify", "1", "--law-tolerance", "1e-9"])
    assert rc == 0, capsys.readouterr().err
    with Store(tmp_path / "results.sqlite", readonly=True) as store:
        assert {r["status"] for r in store.runs()} == {"done"}
        assert store.get_meta("law")["check"]["trusted"] is False
    text = (tmp_path / "results.md").read_text()
    assert "the law was not trusted, and every cell was trained" in text


@pytest.mark.parametrize("change, match", [
    (dict(law_anchors=("constant", "wsd")), r"law_anchors must be at least 2 of the sweep's"),
    (dict(law_anchors=("constant",)), r"law_anchors must be at least 2"),
    (dict(law_verify=0), r"law_verify must be"),
    (dict(law_tolerance=0.0), r"law_tolerance must be"),
], ids=["anchor-not-swept", "one-anchor", "verify-0", "tolerance-0"])
def test_law_options_are_checked(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SPEC, **change)


def test_report_law_checks_the_law_on_the_trained_cells(uninterrupted, capsys):
    """`budgetax report DIR --law`: fitted on the anchors, predicting the other trained cells;
    checked against a fit made here with budgetax.laws on the stored curves."""
    import json

    from budgetax import laws
    from budgetax.training.sweep.store import decode_curves

    *_, out = uninterrupted
    assert cli.main(["report", str(out), "--no-plots", "--law"]) == 0
    capsys.readouterr()
    assert "Law check: the Multi-Power Law" in (out / "results.md").read_text()
    check = json.loads((out / "summary.json").read_text())["law_check"]
    with Store(out / "results.sqlite", readonly=True) as store:
        names = tuple(store.get_meta("metrics")["train"])
        rows = [r for r in store.runs(with_curves=True) if r["status"] == "done"]
    cell = check["cells"][0]
    anchors = [r for r in rows if r["budget"] == 40 and r["seed"] == 0
               and r["peak_lr"] == cell["peak_lr"] and r["schedule"] in SPEC.law_anchors]
    assert len(anchors) == 3
    curves = [decode_curves(r["curves"], names, 40) for r in anchors]
    fit = laws.fit([laws.Curve.from_training(c["lr"], c["loss"], every=2) for c in curves])
    mine = [decode_curves(r["curves"], names, r["budget"]) for r in rows
            if (r["budget"], r["schedule"], r["peak_lr"])
            == (cell["budget"], cell["schedule"], cell["peak_lr"])]
    window = min(10, cell["budget"] // 2)  # the last epoch (10 steps), or the last half
    steps = np.arange(cell["budget"] - window, cell["budget"])
    assert cell["predicted"] == pytest.approx(
        float(np.mean(fit.predict(mine[0]["lr"].astype(np.float64), steps))), rel=1e-9)
    assert cell["measured"] == pytest.approx(
        float(np.mean([c["loss"][-window:].mean() for c in mine])), rel=1e-6)
    keys = {(c["budget"], c["schedule"], c["peak_lr"]) for c in check["cells"]}
    assert not keys & {(40, s, lr) for s in SPEC.law_anchors for lr in SPEC.peak_lrs}
