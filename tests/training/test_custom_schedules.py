"""The user's own schedules in a sweep: trained, identified by their values, resumed, refused."""

from __future__ import annotations

import dataclasses
import os

import jax.numpy as jnp
import numpy as np
import pytest

from budgetax import laws, training
from budgetax.training.sweep import CustomSchedule
from budgetax.training.sweep.store import Store, decode_curves
from tests import tasks
from tests.conftest import interrupt

T = 40
ONE_SQRT = np.sqrt(np.arange(T + 1) / T)  # 1-sqrt cooldown's complement, per step at T


def _linear(p):
    return 1.0 - p


MY_LINEAR = CustomSchedule("my_linear", _linear)
STEPS = CustomSchedule("one_sqrt_steps", 1.0 - ONE_SQRT)  # T + 1 multipliers
SPEC = training.SweepSpec(full_budget=T, budgets=(0.5, 1.0),
                          schedules=("linear", MY_LINEAR, STEPS), peak_lrs=(0.05,),
                          seeds=(0, 1), batch_size=60, num_evals=2, diagnostics=False)


@pytest.fixture(scope="module")
def task():
    return tasks.make_task()


@pytest.fixture(scope="module")
def swept(task, tmp_path_factory):
    d = tmp_path_factory.mktemp("custom")
    result = training.sweep(task, SPEC, str(d), progress=False)
    with Store(d / "results.sqlite", readonly=True) as store:
        return result, store.dump(), store.get_meta("spec"), d


def _curve(result, run_id, name="lr"):
    with Store(os.path.join(result.out_dir, "results.sqlite"), readonly=True) as store:
        row = next(r for r in store.runs(with_curves=True) if r["run_id"] == run_id)
    return decode_curves(row["curves"], result.metrics["train"], row["budget"])[name]


def test_a_custom_profile_trains_as_the_builtin_it_equals(swept):
    result, _, _, _ = swept
    by_id = {r["run_id"]: r for r in result.runs}
    for budget in SPEC.budget_steps():
        for seed in SPEC.seeds:
            mine = by_id[f"T{budget}/my_linear/lr0.05/seed{seed}"]
            builtin = by_id[f"T{budget}/linear/lr0.05/seed{seed}"]
            assert mine["status"] == builtin["status"] == "done"
            assert mine["final"] == builtin["final"]
            np.testing.assert_array_equal(
                _curve(result, mine["run_id"], "loss"), _curve(result, builtin["run_id"], "loss"))


def test_per_step_multipliers_give_their_learning_rate_at_every_step(swept):
    result, _, _, _ = swept
    lr = _curve(result, f"T{T}/one_sqrt_steps/lr0.05/seed0")
    want = 0.05 * (1.0 - ONE_SQRT[:T])
    np.testing.assert_allclose(lr, want, rtol=1e-6, atol=1e-9)
    # at half the budget the multipliers are resampled over its progress
    half = _curve(result, f"T{T // 2}/one_sqrt_steps/lr0.05/seed0")
    np.testing.assert_allclose(half, 0.05 * (1.0 - ONE_SQRT[:T:2]), rtol=1e-6, atol=1e-9)


def test_the_store_identifies_a_custom_schedule_by_its_values(swept):
    _, _, stored, _ = swept
    assert stored["schedules"] == ["linear", "my_linear", "one_sqrt_steps"]
    digests = stored["custom_schedules"]
    assert set(digests) == {"my_linear", "one_sqrt_steps"}
    # the same values from another function: the same identity; other values: another
    same = CustomSchedule("my_linear", lambda p: 1.0 - p)
    other = CustomSchedule("my_linear", lambda p: 1.0 - p * p)
    for t in SPEC.budget_steps():
        assert same.digest(t) == digests["my_linear"][str(t)]
        assert other.digest(t) != digests["my_linear"][str(t)]


def test_a_killed_sweep_with_custom_schedules_resumes_to_the_same_store(task, swept, tmp_path,
                                                                      monkeypatch):
    interrupt(monkeypatch, Store, "complete_group",
              lambda: training.sweep(task, SPEC, str(tmp_path), progress=False))
    spec = training.SweepSpec(**{**{f.name: getattr(SPEC, f.name)
                                    for f in dataclasses.fields(SPEC)},
                                 "schedules": ("linear", "my_linear", "one_sqrt_steps"),
                                 "custom_schedules": (CustomSchedule("my_linear", _linear),
                                                      CustomSchedule("one_sqrt_steps",
                                                                     1.0 - ONE_SQRT))})
    training.sweep(task, spec, str(tmp_path), progress=False)
    with Store(tmp_path / "results.sqlite", readonly=True) as store:
        assert store.dump() == swept[1]


def test_resuming_with_changed_values_is_refused_and_writes_nothing(task, swept, tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(swept[3], d)
    before = (d / "results.sqlite").read_bytes()
    changed = dataclasses.replace(
        SPEC, schedules=("linear", CustomSchedule("my_linear", lambda p: 1.0 - p * p),
                         STEPS), custom_schedules=())
    with pytest.raises(training.SweepSpecMismatchError, match="my_linear"):
        training.sweep(task, changed, str(d), progress=False)
    assert (d / "results.sqlite").read_bytes() == before


def test_a_sweep_extended_by_a_budget_and_a_custom_schedule_keeps_its_runs(task, swept,
                                                                          tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(swept[3], d)
    wider = dataclasses.replace(
        SPEC, budgets=(0.25, 0.5, 1.0), custom_schedules=(),
        schedules=("linear", MY_LINEAR, STEPS, CustomSchedule("late", lambda p: 1.0 - p ** 4)))
    result = training.sweep(task, wider, str(d), progress=False)
    before = {r["run_id"]: r for r in swept[0].runs}
    after = {r["run_id"]: r for r in result.runs}
    assert len(after) == 3 * 4 * 2 and set(before) < set(after)
    assert all(after[k]["final"] == r["final"] for k, r in before.items())
    assert {r["status"] for r in after.values()} == {"done"}
    trained = {g["group_id"] for g in result.groups} - {g["group_id"] for g in swept[0].groups}
    assert sum(g["runs"] for g in result.groups if g["group_id"] in trained) == \
        len(after) - len(before)


def test_the_law_optimised_schedule_is_a_sweep_schedule():
    fit = laws.Fit.from_params("multi_power", (2.0, 0.6, 0.5, 300.0, 2.0, 0.6, 0.5))
    opt = laws.optimize_schedule(fit, 200, 3e-3, warmup_steps=20, end_lr=3e-4, max_iter=5)
    custom = CustomSchedule.from_schedule("optimized", opt, 200, 3e-3,
                                          warmup_steps=20, end_lr=3e-4)
    spec = training.SweepSpec(full_budget=200, budgets=(1.0,), schedules=(custom,),
                              peak_lrs=(3e-3,), seeds=(0,),
                              optimizer=training.OptimizerSpec(warmup_steps=20, end_lr=3e-4))
    from budgetax.training.sweep.plan import lr_values

    got = lr_values(spec.optimizer, spec.profile("optimized"), 200, 3e-3)
    np.testing.assert_allclose(got, opt.lrs, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("make, error, match", [
    (lambda: CustomSchedule("cosine", _linear), None, None),  # checked by the spec
    (lambda: CustomSchedule("two words", _linear), ValueError, "identifier"),
    (lambda: CustomSchedule(3, _linear), TypeError, "name must be a str"),
    (lambda: CustomSchedule("x", "1 - p"), TypeError, "function p -> multiplier"),
    (lambda: CustomSchedule("x", [1.0]), ValueError, "at least 2"),
    (lambda: CustomSchedule("x", [1.0, np.nan]), ValueError, r"finite and >= 0, got nan"),
    (lambda: CustomSchedule("x", [1.0, -0.5]), ValueError, r"got -0.5 at index 1"),
    (lambda: CustomSchedule("x", [[1.0, 0.5]]), ValueError, "one dimension"),
])
def test_bad_custom_schedules_are_refused_naming_the_value(make, error, match):
    if error is None:
        make()
        return
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(schedules=("linear", CustomSchedule("cosine", _linear))), ValueError,
     "'cosine' is a built-in profile's name"),
    (dict(schedules=("linear", "mine")), ValueError, r"got 'mine'"),
    (dict(schedules=("linear",), custom_schedules=(CustomSchedule("mine", _linear),)),
     ValueError, r"custom_schedules \['mine'\] are not in schedules"),
    (dict(schedules=(CustomSchedule("a", _linear), CustomSchedule("a", _linear))),
     ValueError, "two custom schedules are named 'a'"),
    (dict(schedules=("linear", "a"), custom_schedules=("a",)), TypeError,
     "CustomSchedule objects, got 'a'"),
    (dict(schedules=(CustomSchedule("neg", lambda p: p - 0.5),)), ValueError,
     r"'neg': profile at budget \d+ must be finite and >= 0"),
    (dict(schedules=(CustomSchedule("branchy", lambda p: 1.0 if p < 0.5 else 0.1),)),
     TypeError, "jnp.where"),
    (dict(schedules=(CustomSchedule("vec", lambda p: jnp.ones(2) * p),)), ValueError,
     "one number per p"),
])
def test_a_spec_checks_its_custom_schedules(kwargs, error, match):
    with pytest.raises(error, match=match):
        training.SweepSpec(full_budget=T, **kwargs)


SCHEDULE_FILE = '''
import jax.numpy as jnp

def one_sqrt(p):
    return 1.0 - jnp.sqrt(p)

EIGHTHS = [1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
'''


def test_the_command_line_sweeps_custom_schedules_from_a_file(tmp_path, capsys):
    from budgetax import cli

    f = tmp_path / "my_schedules.py"
    f.write_text(SCHEDULE_FILE)
    out = tmp_path / "sweep"
    argv = ["sweep", "--task", "tests.tasks:make_task", "--out", str(out),
            "--full-budget", "20", "--budgets", "1", "--schedules", "linear",
            "--custom-schedule", f"one_sqrt={f}:one_sqrt",
            "--custom-schedule", f"eighths={f}:EIGHTHS", "--lrs", "0.05", "--seeds", "0",
            "--batch-size", "60", "--num-evals", "1", "--diagnostics", "none", "--no-plots"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    with Store(out / "results.sqlite", readonly=True) as store:
        assert [r["schedule"] for r in store.runs()] == ["linear", "one_sqrt", "eighths"]
        assert {r["status"] for r in store.runs()} == {"done"}
        assert set(store.get_meta("spec")["custom_schedules"]) == {"one_sqrt", "eighths"}
    assert "eighths" in (out / "results.md").read_text()
    # the same command resumes (nothing left to train); another file's values are refused
    assert cli.main(argv) == 0
    f.write_text(SCHEDULE_FILE.replace("jnp.sqrt(p)", "p"))
    capsys.readouterr()
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert "one_sqrt" in err and "Traceback" not in err


@pytest.mark.parametrize("ref, match", [
    ("one_sqrt", r"--custom-schedule must be NAME="),
    ("one_sqrt=nope_module_xyz:f", r"no module named 'nope_module_xyz'"),
    ("one_sqrt=tests.tasks:nope", r"has no attribute 'nope'"),
    ("one_sqrt=tests.tasks:regression_data",
     r"CustomSchedule .one_sqrt.: its profile failed on p.*missing 1 required"),
    ("two words=tests.tasks:mse", r"identifier"),
])
def test_bad_custom_schedule_options_are_one_line(ref, match, capsys):
    from budgetax import cli

    rc = cli.main(["sweep", "--task", "tests.tasks:make_task", "--out", "/nonexistent/x",
                   "--custom-schedule", ref])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert __import__("re").search(match, err), err
