"""Sweep strategies: branched decays equal the grid bit for bit; halving; the frontier."""

from __future__ import annotations

import json
import math
import os
import sqlite3

import numpy as np
import pytest

from budgetax import profiles, training
from budgetax.frontier import fit_frontier
from budgetax.training.sweep import execute, plan, selection, strategies
from budgetax.training.sweep.spec import plan_groups, plan_trunks
from budgetax.training.sweep.store import RUN_COLUMNS, Store
from tests import tasks
from tests.conftest import interrupt

BASE = dict(full_budget=40, budgets=(0.25, 0.5, 1.0), schedules=("wsd", "constant", "linear"),
            peak_lrs=(0.03, 0.1, 0.3), seeds=(0, 1), batch_size=20, num_evals=4,
            eval_batch_size=100)
BRANCHING = dict(BASE, schedules=("wsd", "constant"))  # the schedules that branch


def task():
    return _TASK


_TASK = tasks.make_task()


def _dump(out_dir) -> dict:
    """Every run's columns except its group (which differs between strategies), by run id."""
    with Store(os.path.join(out_dir, "results.sqlite")) as store:
        rows = store.dump()
    skip = RUN_COLUMNS.index("group_id")
    return {r[0]: tuple(v for i, v in enumerate(r) if i != skip) for r in rows}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The branching schedules as a grid and branched; all three branched and with halving."""
    out = {}
    for name, strategy, base in (("grid", "grid", BRANCHING), ("branch", "branch", BRANCHING),
                                 ("mixed", "branch", BASE), ("halving", "halving", BASE)):
        d = str(tmp_path_factory.mktemp(name))
        out[name] = training.sweep(task(), training.SweepSpec(strategy=strategy, **base), d,
                                   progress=False)
    return out


def test_branched_runs_equal_the_grid_bit_for_bit_in_fewer_steps(swept):
    grid, branch, mixed = swept["grid"], swept["branch"], swept["mixed"]
    assert _dump(branch.out_dir) == _dump(grid.out_dir)
    steps = lambda res: sum(g["steps"] for g in res.groups)
    # the trunk (12 runs) to the full budget, then every run's decay of the shorter budgets
    # from one step before wsd's starts (the last 20% of 10 and 20 steps)
    branched = 12 * 40 + 12 * ((10 - 8) + (20 - 16))
    assert steps(branch) == branched
    assert steps(grid) == sum(r["budget"] for r in grid.spec.runs()) == 12 * 70
    # with a schedule that cannot branch, it is trained as in the grid and the others'
    # trunk is the same program as above: their runs are still bit-identical
    mixed_rows = _dump(mixed.out_dir)
    for run_id, row in _dump(grid.out_dir).items():
        assert mixed_rows[run_id][2:] == row[2:]  # all but the run's id and plan index
    assert steps(mixed) == branched + 6 * 70


def test_branch_points_follow_the_learning_rate():
    spec = training.SweepSpec(strategy="branch", **BASE)
    points = strategies.branched_schedules(spec)
    assert points == {"wsd": [8, 16, 40], "constant": [10, 20, 40]}
    for t, s in zip((10, 20), points["wsd"][:2], strict=True):  # lr equal up to s, not after
        short = np.asarray([spec.optimizer.learning_rate(t, 0.1, profile=profiles.wsd)(i)
                            for i in range(t)])
        long_ = np.asarray([spec.optimizer.learning_rate(40, 0.1, profile=profiles.wsd)(i)
                            for i in range(t)])
        assert np.array_equal(short[:s], long_[:s]) and not np.array_equal(short, long_)
    demon = training.SweepSpec(strategy="branch", optimizer=training.OptimizerSpec(
        "sgd", demon=True), **BASE)
    assert strategies.branched_schedules(demon) == {}  # Demon's momentum depends on T
    groups = plan_groups(spec, None)
    assert {g["kind"] for g in groups} == {"grid", "branch"}
    assert [g["branch_step"] for g in groups if g["kind"] == "branch"] == [8, 16, 40]
    assert [len(t["cells"]) for t in plan_trunks(spec, 5)] == [4, 4, 4]  # 12, <= 5 a program


def test_a_killed_branched_sweep_resumes_to_the_same_store(swept, tmp_path, monkeypatch):
    spec = training.SweepSpec(strategy="branch", **BRANCHING)
    interrupt(monkeypatch, execute, "branch",  # killed as the second branch starts
              lambda: training.sweep(task(), spec, str(tmp_path), progress=False), call=2)
    assert os.path.isdir(tmp_path / "checkpoints" / "trunk0")  # the trunk at its branch step
    again = training.sweep(task(), spec, str(tmp_path), progress=False)
    assert any(g["resumed"] for g in again.groups)
    assert _dump(tmp_path) == _dump(swept["branch"].out_dir)
    assert not os.path.exists(tmp_path / "checkpoints")


def test_halving_prunes_lrs_per_schedule_and_keeps_the_survivors(swept):
    grid, halving = swept["grid"], swept["halving"]
    for steps in halving.spec.budget_steps():
        for s in BASE["schedules"]:
            mine = [r for r in halving.runs if r["budget"] == steps and r["schedule"] == s]
            done = {r["peak_lr"] for r in mine if r["status"] != "pruned"}
            assert len(done) == 1  # ceil(3 / 3) lrs survive both rungs, seeds together
            pruned = [r for r in mine if r["status"] == "pruned"]
            assert len(pruned) == 4
            assert all(r["pruned_step"] == round(0.25 * steps) for r in pruned)
            assert all(r["final"] == {} for r in pruned)
    # a survivor is the grid's run, up to the rounding of a vmapped program of another size
    for r in halving.runs:
        if r["status"] == "done" and r["schedule"] != "linear":
            g = next(x for x in grid.runs if x["run_id"] == r["run_id"])
            for k, v in g["eval_history"].items():
                np.testing.assert_allclose(r["eval_history"][k], v, rtol=1e-4, atol=1e-6)
    cells = [(s, lr) for s in BASE["schedules"] for lr in BASE["peak_lrs"] for _ in BASE["seeds"]]
    expected = sum(plan.halving_steps(18, plan.halving_plan(halving.spec, t, cells), t, t)
                   for t in (10, 20, 40))
    assert expected == sum(18 * round(0.25 * t) + 6 * (t - round(0.25 * t)) for t in (10, 20, 40))
    assert sum(g["steps"] for g in halving.groups) == expected


def test_a_killed_halving_sweep_resumes_to_the_same_store(swept, tmp_path, monkeypatch):
    spec = training.SweepSpec(strategy="halving", **BASE)
    interrupt(monkeypatch, execute, "prune",  # killed at the second rung
              lambda: training.sweep(task(), spec, str(tmp_path), progress=False), call=2)
    again = training.sweep(task(), spec, str(tmp_path), progress=False)
    assert any(g["resumed"] for g in again.groups)
    assert _dump(tmp_path) == _dump(swept["halving"].out_dir)


def test_prune_keeps_a_share_of_each_schedules_lrs_with_their_seeds():
    cells = [(s, lr) for s in ("a", "b") for lr in (1, 2, 3, 4, 5) for _ in range(2)]
    scores = np.array([lr * (1 if s == "a" else -1) for s, lr in cells], np.float64)
    scores[1] = -100.0  # one seed of ("a", 1) is very good: the mean over seeds decides
    keep = strategies.prune(cells, scores, 3)
    kept = sorted({c for c, k in zip(cells, keep, strict=True) if k})
    assert kept == [("a", 1), ("a", 2), ("b", 4), ("b", 5)]  # ceil(5/3) = 2 per schedule
    assert all(keep[i] == keep[i + 1] for i in range(0, len(cells), 2))


def test_score_curves_rank_lower_losses_first_and_nan_last():
    k = np.arange(1, 41, dtype=np.float32)
    curves = np.stack([2.0 / k ** 0.5, 1.0 / k ** 0.5, 1.5 / k ** 0.5, 1.0 / k ** 0.5])
    curves[3, 20] = np.nan
    for name in strategies.ESTIMATORS:
        scores = strategies.score_curves(curves, 8, name)
        assert np.isinf(scores[3]), name
        if name != "lcga":  # LCGA scores the normalised shape, identical for the three
            assert list(np.argsort(scores[:3])) == [1, 2, 0], name


@pytest.mark.parametrize("kwargs,match", [
    (dict(strategy="grids"), "strategy"), (dict(prune_rate=1), "prune_rate"),
    (dict(prune_at=(0.5, 0.25)), "prune_at"), (dict(prune_at=(1.0,)), "prune_at"),
    (dict(prune_estimator="oracle"), "prune_estimator")])
def test_spec_rejects_bad_strategy_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.SweepSpec(**kwargs)


def test_a_store_written_before_strategies_existed_still_resumes(swept, tmp_path):
    import shutil
    shutil.copytree(swept["grid"].out_dir, tmp_path / "old")
    path = tmp_path / "old" / "results.sqlite"
    with sqlite3.connect(path) as conn:
        spec = json.loads(conn.execute("SELECT value FROM meta WHERE key='spec'").fetchone()[0])
        for k in ("strategy", "prune_rate", "prune_at", "prune_estimator"):
            spec.pop(k)
        conn.execute("UPDATE meta SET value=? WHERE key='spec'", (json.dumps(spec),))
    again = training.sweep(task(), training.SweepSpec(**BRANCHING), str(tmp_path / "old"),
                           progress=False)
    assert len(again.runs) == len(swept["grid"].runs)
    # halving's options change nothing in a grid sweep: another value of them resumes it
    other = training.SweepSpec(prune_estimator="lcga", prune_rate=2, **BRANCHING)
    assert training.sweep(task(), other, str(tmp_path / "old"), progress=False).runs
    with pytest.raises(training.SweepSpecMismatchError, match="strategy"):
        training.sweep(task(), training.SweepSpec(strategy="halving", **BRANCHING),
                       str(tmp_path / "old"), progress=False)


def test_the_frontier_recovers_a_power_law_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(0)
    fractions = np.array([0.05, 0.1, 0.25, 0.5])
    truth = lambda f: 70.0 - 3.0 * f ** -0.5
    exact = fit_frontier(fractions, truth(fractions)[:, None] * np.ones((1, 3)))
    assert abs(float(exact.predict(1.0)) - truth(1.0)) < 1e-3
    covered = 0
    for _ in range(100):
        noisy = truth(fractions)[:, None] + rng.normal(scale=0.5, size=(4, 3))
        lo, hi = fit_frontier(fractions, noisy, n_boot=200).interval(1.0)
        covered += lo <= truth(1.0) <= hi
    assert covered >= 80  # a 95% interval: most datasets' intervals hold the true value
    with pytest.raises(ValueError, match="at least 3 budgets"):
        fit_frontier([0.1, 0.2], [[1.0], [2.0]])
    assert math.isfinite(float(exact.interval(2.0)[1]))


# ------------------------------------------------------------------ extending a sweep
SMALL = dict(full_budget=20, budgets=(0.5, 1.0), schedules=("linear",), batch_size=20,
             num_evals=2, eval_batch_size=100, optimizer=training.OptimizerSpec("sgd", momentum=0))


def test_a_finished_sweep_extended_with_more_lrs_and_seeds_trains_only_the_new_runs(tmp_path):
    small = training.SweepSpec(peak_lrs=(0.03, 0.1), seeds=(0,), **SMALL)
    first = training.sweep(task(), small, str(tmp_path), progress=False)
    before = {r[0]: r[2:] for r in _dump(tmp_path).values()}  # all but run id and plan index
    wider = training.SweepSpec(peak_lrs=(0.01, 0.03, 0.1), seeds=(0, 1), **SMALL)
    again = training.sweep(task(), wider, str(tmp_path), progress=False)
    assert [r["run_id"] for r in again.runs] == [r["run_id"] for r in wider.runs()]
    new = [g for g in again.groups if "/x1/" in g["group_id"]]
    assert sum(g["runs"] for g in new) == len(wider.runs()) - len(first.runs) == 8
    assert len(again.groups) == len(first.groups) + len(new)
    after = {r[0]: r[2:] for r in _dump(tmp_path).values()}
    assert all(after[k] == v for k, v in before.items())  # the stored runs are untouched
    assert all(r["status"] == "done" for r in again.runs)
    # the extended sweep resumes as a no-op; a narrower or different one is refused
    assert training.sweep(task(), wider, str(tmp_path), progress=False).compiled_budgets == 0
    with pytest.raises(training.SweepSpecMismatchError, match="extend it"):
        training.sweep(task(), small, str(tmp_path), progress=False)
    with pytest.raises(training.SweepSpecMismatchError, match="batch_size"):
        training.sweep(task(), training.SweepSpec(
            peak_lrs=(0.01, 0.03, 0.1), seeds=(0, 1), **dict(SMALL, batch_size=10)),
            str(tmp_path), progress=False)


def test_auto_lrs_extends_the_grid_until_every_best_lr_is_interior(tmp_path):
    """The optimum of plain SGD on the toy regression lies far above the initial grid."""
    spec = training.SweepSpec(peak_lrs=(1e-3, 3e-3), seeds=(0,), **SMALL)
    result = training.sweep(task(), spec, str(tmp_path), progress=False, auto_lrs=6)
    lrs = result.spec.peak_lrs
    added = len(lrs) - 2
    assert 0 < added < 6  # stopped because the best lrs became interior, not at the bound
    assert all(b / a == pytest.approx(3.0, rel=1e-2) for a, b in zip(lrs, lrs[1:]))
    assert selection.lr_extension(result.runs, lrs, "train_loss", False) == []
    assert len(result.runs) == len(lrs) * 2  # 2 budgets x 1 schedule x 1 seed per lr
    bounded = training.sweep(task(), spec, str(tmp_path / "bounded"), progress=False,
                             auto_lrs=1)
    assert bounded.spec.peak_lrs == (1e-3, 3e-3, 9e-3)  # one step at most
    # the same call again resumes the widened grid (no error, nothing trained)
    again = training.sweep(task(), spec, str(tmp_path), progress=False, auto_lrs=6)
    assert again.spec.peak_lrs == lrs and again.compiled_budgets == 0
    # a larger bound continues past the stored lrs
    more = training.sweep(task(), spec, str(tmp_path / "bounded"), progress=False,
                          auto_lrs=2)
    assert more.spec.peak_lrs[:3] == (1e-3, 3e-3, 9e-3) and len(more.spec.peak_lrs) == 4


def test_cli_strategy_prediction_and_auto_lrs(tmp_path, capsys, monkeypatch):
    from budgetax import cli

    monkeypatch.setattr(tasks, "make_task", task)  # the same task object: programs are reused
    out = tmp_path / "cli"
    argv = ["sweep", "--task", "tests.tasks:make_task", "--out", str(out), "--full-budget", "40",
            "--budgets", "0.25,0.5,1", "--schedules", "wsd,constant,linear",
            "--lrs", "0.03,0.1,0.3", "--seeds", "0,1", "--batch-size", "20",
            "--strategy", "branch+halving", "--predict", "2", "--no-progress", "--no-plots"]
    assert cli.main(argv) == 0
    text = (out / "results.md").read_text()
    assert "Strategy `branch+halving`" in text and "| all |" in text
    assert "pruned by successive halving" in text
    assert "| 200% (predicted) | 80 |" in text
    capsys.readouterr()
    assert cli.main(["report", str(out), "--no-plots", "--predict", "-1"]) == 2
    assert "predict" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv[:-6] + ["--strategy", "nope", "--no-plots"])
    assert exit_.value.code == 2 and "--strategy: invalid choice" in capsys.readouterr().err
    auto = ["sweep", "--task", "tests.tasks:make_task", "--out", str(tmp_path / "auto"),
            "--full-budget", "20", "--budgets", "1", "--schedules", "linear", "--lrs", "auto",
            "--auto-lrs", "1", "--seeds", "0", "--batch-size", "20", "--optimizer", "sgd",
            "--momentum", "0", "--no-progress", "--no-plots"]
    assert cli.main(auto) == 0
    assert "peak lrs [0.003, 0.01, 0.03, 0.0949]" in (tmp_path / "auto" / "results.md").read_text()


def test_a_bounded_frontier_never_predicts_past_the_bound():
    """An accuracy rising fast at small budgets: unbounded, the law passes 100%."""
    fractions = np.array([0.05, 0.1, 0.25])
    acc = np.array([[0.40, 0.41, 0.39], [0.70, 0.71, 0.69], [0.90, 0.89, 0.91]])
    free = fit_frontier(fractions, acc)
    bounded = fit_frontier(fractions, acc, bound=1.0, higher_is_better=True)
    assert float(free.predict(4.0)) > 1.0  # what the bound prevents
    for f in (0.5, 1.0, 4.0):
        lo, hi = bounded.interval(f)
        assert float(bounded.predict(f)) <= 1.0 and hi <= 1.0 and lo <= float(bounded.predict(f))
    assert float(bounded.predict(0.25)) == pytest.approx(0.90, abs=0.02)
