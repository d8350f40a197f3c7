"""The typed plan of a sweep: stored as before, read back from old stores, sized right."""

from __future__ import annotations

import dataclasses
import json

import pytest

from budgetax import training
from budgetax.training.sweep import plan as plans
from tests.training import sweep_regression

with open(sweep_regression.FIXTURE, encoding="utf-8") as _f:
    RECORDED = json.load(_f)["sweeps"]


@pytest.mark.parametrize("strategy", sweep_regression.STRATEGIES)
def test_a_plan_is_stored_as_recorded_and_reads_back_equal(strategy):
    spec = training.SweepSpec(strategy=strategy, **sweep_regression.BASE)
    plan = plans.make_plan(spec, 6, 600 // spec.batch_size)
    stored = json.loads(RECORDED[strategy]["meta"]["plan"])
    assert plan.to_dict() == stored
    assert plans.Plan.from_dict(stored) == plan
    kinds = {type(g) for g in plan.groups}
    assert kinds == {"grid": {plans.GridGroup}, "halving": {plans.HalvingGroup},
                     "branch": {plans.GridGroup, plans.BranchGroup},
                     "branch+halving": {plans.HalvingGroup, plans.BranchGroup}}[strategy]
    # the progress display's total is what the groups train, trunks counted once
    steps = sum(g["steps"] for g in RECORDED[strategy]["groups"])
    assert plans.steps_to_train(spec, plan, list(plan.groups), list(plan.trunks)) == steps


def test_an_extended_plan_reads_back_with_its_rounds():
    stored = json.loads(RECORDED["extended"]["meta"]["plan"])
    plan = plans.Plan.from_dict(stored)
    assert plan.to_dict() == stored
    assert [(g.group_id, g.extension) for g in plan.groups] == [
        ("T10/g0", 0), ("T10/g1", 0), ("T20/g0", 0), ("T20/g1", 0), ("T10/x1/g0", 1),
        ("T20/x1/g0", 1)]


def test_a_plan_stored_before_the_strategies_reads_as_a_grid_padded_per_round():
    old = {"groups": [{"group_id": "T10/g0", "budget": 10, "budget_fraction": 0.5,
                       "run_idx": [0, 1, 2]},
                      {"group_id": "T10/g1", "budget": 10, "budget_fraction": 0.5,
                       "run_idx": [3, 4]},
                      {"group_id": "T10/x1/g0", "kind": "grid", "budget": 10,
                       "budget_fraction": 0.5, "run_idx": [5], "extension": 1}]}
    plan = plans.Plan.from_dict(old)
    assert all(type(g) is plans.GridGroup for g in plan.groups)
    assert plan.trunks == () and plan.steps_per_epoch is None
    # a budget's groups share one shape; the groups added by an extension their own
    assert [plan.padded_size(g) for g in plan.groups] == [3, 3, 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.groups[0].budget = 20


def test_lr_values_are_the_schedules_and_compile_once_for_every_budget_and_peak():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from budgetax import profiles

    spec = training.OptimizerSpec("adam", "linear", warmup_fraction=0.1, end_lr=1e-4)
    prof = profiles.get("cosine")
    for budget, peak in ((10, 0.01), (100, 0.03), (700, 0.01), (1500, 0.003)):
        got = plans.lr_values(spec, prof, budget, peak)
        sched = spec.learning_rate(budget, peak, profile=prof)
        want = np.asarray(jax.jit(jax.vmap(sched))(jnp.arange(budget, dtype=jnp.int32)))
        assert got.dtype == np.float32 and got.shape == (budget,)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert plans._lr_program(spec, prof)._cache_size() == 1  # every budget has a warmup here
