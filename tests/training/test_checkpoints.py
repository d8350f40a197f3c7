"""Tests of the sweep's checkpoints: a resume after a kill is quiet and exact."""

from __future__ import annotations

import logging
import os

from budgetax import training
from budgetax.training.sweep import checkpoints
from budgetax.training.sweep.store import Store
from tests import tasks
from tests.conftest import interrupt

SPEC = training.SweepSpec(full_budget=16, budgets=(1.0,), schedules=("cosine",),
                          peak_lrs=(0.05,), seeds=(0, 1), batch_size=32, num_evals=4,
                          optimizer=training.OptimizerSpec("sgd", momentum=0.9))


def test_a_save_cut_short_by_a_kill_is_removed_without_a_warning(tmp_path, monkeypatch, caplog):
    task = tasks.make_task()
    ref = tmp_path / "ref"
    training.sweep(task, SPEC, str(ref), progress=False)
    out = tmp_path / "out"
    interrupt(monkeypatch, checkpoints.Checkpoints, "save",
              lambda: training.sweep(task, SPEC, str(out), progress=False), after=True)
    (group,) = os.listdir(out / "checkpoints")
    # what a kill in the middle of the next save leaves: orbax's unfinished folder
    unfinished = out / "checkpoints" / group / f"2{checkpoints.TMP_MARK}"
    (unfinished / "default").mkdir(parents=True)
    (unfinished / "default" / "half-written").write_bytes(b"\0" * 10)
    with caplog.at_level(logging.WARNING):
        result = training.sweep(task, SPEC, str(out), progress=False)
    assert all(g["resumed"] for g in result.groups)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not unfinished.exists()
    with Store(ref / "results.sqlite") as a, Store(out / "results.sqlite") as b:
        assert a.dump() == b.dump()
