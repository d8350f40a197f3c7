"""The sweep engine: equivalence with single runs, sharding, fault isolation, resume, store, CLI."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from budgetax import cli, report, training
from budgetax.launch import xla_flags
from budgetax.training import core
from budgetax.training.sweep import plan
from budgetax.training.sweep.store import Store, decode_curves, encode_curves
from tests.conftest import EVAL_METRICS, TRAIN_METRICS, core_traces
from tests.data.helpers import built_data_dir, dataset

# The module's shared sweep: 2 budgets x 3 schedules x 2 lrs x 2 seeds of SGD with momentum;
# lr 1e4 diverges; diagnostics on the whole training set, as train()'s.
BASE = dict(full_budget=40, budgets=(0.5, 1.0), schedules=("rex", "cosine", "step"),
            seeds=(0, 1), num_evals=2, optimizer=training.OptimizerSpec("sgd", momentum=0.9),
            diagnostics=True)
SPEC = training.SweepSpec(peak_lrs=(0.05, 1e4), **BASE)
SPEC_NO_DIV = training.SweepSpec(peak_lrs=(0.05, 0.01), **BASE)


def mlp():
    """The MNIST-1D MLP preset (one task object: its programs are compiled once)."""
    return training.preset(dataset("mnist1d"), "mlp")


def _env():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, BUDGETAX_DATA_DIR=built_data_dir(),
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["XLA_FLAGS"] = xla_flags()
    return env


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """``(result, traces)``: the shared sweep and how many programs it compiled."""
    out = tmp_path_factory.mktemp("sweep")
    with core_traces() as traced:
        result = training.sweep(mlp(), SPEC, str(out), progress=False)
    return result, traced["n"]


@pytest.fixture(scope="module")
def swept_no_div(tmp_path_factory, swept):
    out = tmp_path_factory.mktemp("sweep-no-div")
    with core_traces() as traced:
        result = training.sweep(mlp(), SPEC_NO_DIV, str(out), progress=False)
    return result, traced["n"]


def _row(result, budget, schedule, lr, seed):
    return next(r for r in result.runs if r["budget"] == budget and r["schedule"] == schedule
                and r["peak_lr"] == lr and r["seed"] == seed)


def _curves(result, run_id):
    with Store(os.path.join(result.out_dir, "results.sqlite")) as store:
        row = next(r for r in store.runs(with_curves=True) if r["run_id"] == run_id)
    return decode_curves(row["curves"], result.metrics["train"], row["budget"])


# ------------------------------------------------------------------ planning
def test_spec_runs_and_plan():
    assert SPEC.budget_steps() == [20, 40]
    runs = SPEC.runs()
    assert len(runs) == 2 * 3 * 2 * 2
    assert len({r["run_id"] for r in runs}) == len(runs)
    groups = plan.plan_groups(SPEC, None)
    assert [g["budget"] for g in groups] == [20, 40]
    assert sorted(i for g in groups for i in g["run_idx"]) == list(range(len(runs)))
    groups = plan.plan_groups(SPEC, 5)  # 12 runs per budget -> groups of 4, 4, 4
    assert [len(g["run_idx"]) for g in groups] == [4, 4, 4, 4, 4, 4]
    assert sorted(i for g in groups for i in g["run_idx"]) == list(range(len(runs)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(schedules=("linear", "nope")),
     r"schedules must name profiles from \[.*'rex'.*got 'nope'"),
    (dict(schedules=("autowu",)), "AutoWU"),
    (dict(schedules=()), "schedules must be a non-empty sequence"),
    (dict(peak_lrs=()), "peak_lrs must be a non-empty sequence"),
    (dict(seeds=()), "seeds must be a non-empty sequence"),
    (dict(budgets=(-0.5,)), "budgets must be"),
    (dict(budgets=(0.0,)), "budgets must be"),
    (dict(budgets=(1.5,)), "budgets must be"),
    (dict(full_budget=-10), "full_budget must be a positive int, got -10"),
    (dict(peak_lrs=(0.0,)), "peak_lrs must be"),
    (dict(peak_lrs=(0.1, 0.1)), "peak_lrs has duplicates"),
    (dict(num_evals=0), "num_evals must be a positive int, got 0"),
    (dict(optimizer=training.OptimizerSpec(schedule="autowu")), "autowu"),
])
def test_spec_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.SweepSpec(**kwargs)


def test_spec_rejects_wrong_types():
    with pytest.raises(TypeError, match="schedules must be a sequence, got 'rex'"):
        training.SweepSpec(schedules="rex")
    with pytest.raises(TypeError, match="optimizer must be an OptimizerSpec"):
        training.SweepSpec(optimizer="adam")
    with pytest.raises(TypeError, match="seeds must be an int, got 1.5"):
        training.SweepSpec(seeds=(1.5,))


def test_unknown_dataset_and_model_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="digits"):
        training.sweep("nope", training.SweepSpec(), str(tmp_path))
    with pytest.raises(ValueError, match=r"model must be one of \['cnn1d', 'mlp', 'resnet'\]"):
        training.sweep(training.preset(dataset("mnist1d"), "transformer"), training.SweepSpec(),
                       str(tmp_path))
    with pytest.raises(ValueError, match="batch_size"):
        training.sweep(mlp(), training.SweepSpec(batch_size=10**6), str(tmp_path))
    assert not os.path.exists(tmp_path / "results.sqlite")  # nothing written on bad input


# ------------------------------------------------------------------ results
def test_one_compilation_for_every_budget_and_none_on_a_second_sweep(swept, swept_no_div):
    result, traces = swept
    # the budget is data: both budgets' groups (12 runs each) run one compiled program
    assert result.compiled_budgets == len(SPEC.budgets) == 2
    assert traces <= 1  # 0 when an earlier test of this worker compiled these shapes
    # another sweep with the same budgets and shapes (other lrs): the programs are reused
    assert swept_no_div[1] == 0


def test_every_run_is_stored_once_with_its_history(swept):
    result, _ = swept
    assert [r["run_id"] for r in result.runs] == [r["run_id"] for r in SPEC.runs()]
    for r in result.runs:
        assert r["status"] in ("done", "diverged")
        assert r["eval_steps"] == training.eval_steps(r["budget"], SPEC.num_evals).tolist()
        assert set(r["eval_history"]) == set(EVAL_METRICS)
        assert r["final"] == {k: v[-1] for k, v in r["eval_history"].items()}
        if r["status"] == "done":
            assert r["best"]["test_accuracy"] == max(r["eval_history"]["test_accuracy"])
    groups = result.groups
    assert {g["group_id"] for g in groups} == {"T20/g0", "T40/g0"}
    assert all(g["runs"] == 12 and g["devices"] == 1 for g in groups)


def test_single_run_sweep_equals_train_exactly(tmp_path):
    spec = training.SweepSpec(full_budget=30, budgets=(1.0,), schedules=("step",),
                            peak_lrs=(3e-2,), seeds=(3,), num_evals=3)
    result = training.sweep(mlp(), spec, str(tmp_path), progress=False)
    h = training.train(mlp(), budget=30, num_evals=3, seed=3, diagnostics=spec.diagnostics,
                       peak_lr=3e-2, optimizer=training.OptimizerSpec(schedule="step"))
    r = result.runs[0]
    curves = _curves(result, r["run_id"])
    for k in TRAIN_METRICS:
        np.testing.assert_array_equal(curves[k], h.train[k], err_msg=k)
    for k in EVAL_METRICS:
        np.testing.assert_array_equal(np.float32(r["eval_history"][k]), h.eval[k], err_msg=k)


def test_demon_and_bf16_stochastic_rounding_sweep_equals_train_exactly(tmp_path):
    """The optional modes go through the same program: Demon momentum, bf16 params + SR."""
    opt = training.OptimizerSpec("sgd", momentum=0.9, demon=True, precision="bf16_sr")
    spec = training.SweepSpec(full_budget=20, budgets=(1.0,), schedules=("wsd",),
                            peak_lrs=(5e-2,), seeds=(7,), num_evals=2, optimizer=opt)
    result = training.sweep(mlp(), spec, str(tmp_path), progress=False)
    h = training.train(mlp(), budget=20, num_evals=2, seed=7,
                       peak_lr=5e-2, optimizer=dataclasses.replace(opt, schedule="wsd"))
    (r,) = result.runs
    assert r["status"] == "done"
    curves = _curves(result, r["run_id"])
    for k in TRAIN_METRICS:
        np.testing.assert_array_equal(curves[k], h.train[k], err_msg=k)


@pytest.mark.parametrize("schedule", ["rex", "cosine", "step"])
def test_a_run_inside_a_sweep_equals_it_trained_alone(swept, schedule):
    """Same numbers up to float reassociation: 12 runs share the vmapped program."""
    result, _ = swept
    spec = training.OptimizerSpec("sgd", schedule=schedule, momentum=0.9)
    h = training.train(mlp(), budget=40, num_evals=2, seed=1,
                       peak_lr=0.05, optimizer=spec)
    r = _row(result, 40, schedule, 0.05, 1)
    curves = _curves(result, r["run_id"])
    np.testing.assert_array_equal(curves["lr"], h.train["lr"])  # the schedule is exact
    np.testing.assert_allclose(curves["loss"], h.train["loss"], rtol=2e-5, atol=1e-6)
    for k in ("test_loss", "test_accuracy", "train_loss"):
        np.testing.assert_allclose(r["eval_history"][k], h.eval[k], rtol=2e-5, atol=1e-6)


def test_diverging_runs_are_masked_and_leave_the_others_bit_identical(swept, swept_no_div):
    result, _ = swept
    clean, _ = swept_no_div
    for r in result.runs:
        if r["peak_lr"] == 1e4:
            assert r["status"] == "diverged", r["run_id"]
            assert 0 <= r["diverged_step"] < r["budget"]
            c = _curves(result, r["run_id"])
            assert np.isnan(c["loss"][r["diverged_step"] + 1:]).all()
            assert np.isfinite(c["loss"][:r["diverged_step"]]).all()
        else:
            assert r["status"] == "done" and r["diverged_step"] is None
            twin = _row(clean, r["budget"], r["schedule"], r["peak_lr"], r["seed"])
            assert r["final"] == twin["final"] and r["eval_history"] == twin["eval_history"]
            a, b = _curves(result, r["run_id"]), _curves(clean, twin["run_id"])
            for k in TRAIN_METRICS:
                np.testing.assert_array_equal(a[k], b[k])
    assert all(r["status"] == "done" for r in clean.runs)


def test_the_same_spec_resumes_as_a_no_op_and_another_spec_is_refused(swept):
    result, _ = swept
    before = Store(os.path.join(result.out_dir, "results.sqlite")).dump()
    again = training.sweep(mlp(), SPEC, result.out_dir, progress=False)
    assert again.compiled_budgets == 0
    assert Store(os.path.join(result.out_dir, "results.sqlite")).dump() == before
    other = training.SweepSpec(peak_lrs=(0.05, 1e3), **BASE)
    with pytest.raises(training.SweepSpecMismatchError,
                       match=r"different spec \(peak_lrs: stored \[0.05, 10000.0\], given "
                             r"\[0.05, 1000.0\]\)"):
        training.sweep(mlp(), other, result.out_dir, progress=False)
    with pytest.raises(FileExistsError, match="already holds a sweep"):
        training.sweep(mlp(), SPEC, result.out_dir, resume=False)


def test_report_table_and_files(swept, tmp_path):
    result, _ = swept
    table = report.write_report(result.out_dir, command="budgetax sweep ...")
    for name in ("results.md", report.SUMMARY, *report.PLOTS):
        assert os.path.getsize(os.path.join(result.out_dir, name)) > 0
    md = open(os.path.join(result.out_dir, "results.md")).read()
    assert table in md and "budgetax sweep ..." in md
    assert "T40/rex/lr10000/seed0" in md  # the diverged runs are listed
    assert "Elasticity early stopping" in md
    cells = report.summarize(result.runs)
    assert len(cells) == 2 * 3
    for c in cells:
        assert c.best_lr == 0.05 and c.diverged_lrs == (1e4,)  # the diverged lr is ineligible
        rows = [_row(result, c.budget, c.schedule, 0.05, s) for s in SPEC.seeds]
        acc = [r["final"]["test_accuracy"] for r in rows]
        assert c.mean == pytest.approx(np.mean(acc)) and c.std == pytest.approx(np.std(acc, ddof=1))
    for steps in (20, 40):
        row = [c for c in cells if c.budget == steps]
        assert sum(c.best_in_budget for c in row) >= 1
        assert max(row, key=lambda c: c.mean).best_in_budget


def _fake_run(budget, schedule, lr, seed, acc, train_loss, status="done"):
    return {"run_id": f"{budget}/{schedule}/{lr}/{seed}", "budget_fraction": budget / 100,
            "budget": budget, "schedule": schedule, "peak_lr": lr, "seed": seed,
            "status": status, "final": {"test_accuracy": acc, "train_loss": train_loss}}


def test_summarize_picks_the_lr_by_train_loss_not_test_accuracy():
    runs = [
        # lr 0.1: better test accuracy but worse train loss; lr 0.01: lower train loss
        _fake_run(100, "rex", 0.1, 0, 0.9, 0.5), _fake_run(100, "rex", 0.1, 1, 0.8, 0.7),
        _fake_run(100, "rex", 0.01, 0, 0.6, 0.1), _fake_run(100, "rex", 0.01, 1, 0.7, 0.2),
        # lr 1.0 has the lowest train loss on one seed, but the other seed diverged
        _fake_run(100, "rex", 1.0, 0, 0.99, 0.0), _fake_run(100, "rex", 1.0, 1, 0.1, 9.0,
                                                            status="diverged"),
        _fake_run(100, "linear", 0.1, 0, 0.5, 0.3), _fake_run(100, "linear", 0.1, 1, 0.55, 0.3),
    ]
    cells = {c.schedule: c for c in report.summarize(runs)}
    assert cells["rex"].best_lr == 0.01 and cells["rex"].diverged_lrs == (1.0,)
    assert cells["rex"].mean == pytest.approx(0.65)
    assert cells["rex"].std == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert cells["rex"].best_in_budget and not cells["linear"].best_in_budget
    by_test = {c.schedule: c for c in report.summarize(runs, select="test_accuracy")}
    assert by_test["rex"].best_lr == 0.1 and by_test["rex"].mean == pytest.approx(0.85)
    table = report.format_table(list(cells.values()))
    # lr 0.01 is the smallest of rex's grid (0.01, 0.1, 1.0): marked as an edge
    assert "**65.0 ± 7.1 (lr 0.01⇥)**" in table and "| 52.5 ± 3.5 (lr 0.1) |" in table
    assert not cells["rex"].lr_near_tie and not cells["rex"].winner_near_tie
    with pytest.raises(ValueError, match="select must be one of"):
        report.summarize(runs, select="nope")


def test_near_ties_and_edge_lrs_are_marked():
    runs = [
        # rex: lr 0.03 wins on train loss by 0.01, within the seed spread (0.1): a near-tie;
        # 0.03 is inside the grid (0.01, 0.03, 0.1)
        _fake_run(10, "rex", 0.01, 0, 0.70, 0.9), _fake_run(10, "rex", 0.01, 1, 0.71, 1.0),
        _fake_run(10, "rex", 0.03, 0, 0.80, 0.40), _fake_run(10, "rex", 0.03, 1, 0.82, 0.54),
        _fake_run(10, "rex", 0.1, 0, 0.79, 0.42), _fake_run(10, "rex", 0.1, 1, 0.81, 0.54),
        # linear: 0.805 ± 0.035 vs rex 0.81 ± 0.014: the winner's lead is within the spread
        _fake_run(10, "linear", 0.1, 0, 0.78, 0.5), _fake_run(10, "linear", 0.1, 1, 0.83, 0.5),
    ]
    cells = {c.schedule: c for c in report.summarize(runs)}
    assert cells["rex"].best_lr == 0.03 and cells["rex"].lr_near_tie
    assert not cells["rex"].lr_at_edge
    assert cells["rex"].best_in_budget and cells["rex"].winner_near_tie
    table = report.format_table(list(cells.values()))
    assert "~**81.0 ± 1.4 (lr 0.03†)**" in table
    # a clear winner is not marked
    runs[6:] = [_fake_run(10, "linear", 0.1, 0, 0.5, 0.5), _fake_run(10, "linear", 0.1, 1, 0.51,
                                                                      0.5)]
    assert not {c.schedule: c for c in report.summarize(runs)}["rex"].winner_near_tie


# ------------------------------------------------------------------ sharding
SHARD_CODE = textwrap.dedent("""
    import json, sys
    import jax
    from budgetax import training
    from budgetax.training.sweep import checkpoints
    spec = training.SweepSpec(full_budget=30, budgets=(1.0,), schedules=("rex", "cosine", "step"),
                            peak_lrs=(0.05,), seeds=(0, 1), num_evals=2,
                            optimizer=training.OptimizerSpec("sgd", momentum=0.9))
    if len(sys.argv) > 2:  # interrupt the sweep right after its first checkpoint, then resume
        save = checkpoints.Checkpoints.save
        def save_then_stop(self, seg, tree):
            save(self, seg, tree)
            raise KeyboardInterrupt
        checkpoints.Checkpoints.save = save_then_stop
        try:
            training.sweep("mnist1d", spec, sys.argv[1], progress=False)
        except KeyboardInterrupt:
            pass
        checkpoints.Checkpoints.save = save
    res = training.sweep("mnist1d", spec, sys.argv[1], progress=False)
    print(json.dumps({"devices": len(jax.devices()), "groups": res.groups, "runs": res.runs}))
""")


def _sharded(tmp_path, ndev, interrupt=False):
    env = _env()
    if ndev > 1:
        env["XLA_FLAGS"] = xla_flags(ndev)
    d = tmp_path / f"d{ndev}{'-interrupted' if interrupt else ''}"
    out = subprocess.run([sys.executable, "-c", SHARD_CODE, str(d)] + (["x"] if interrupt else []),
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_over_emulated_devices_equals_unsharded_and_resumes_exactly(tmp_path):
    one = _sharded(tmp_path, 1)
    assert one["devices"] == 1
    for ndev in (2, 4):
        many = _sharded(tmp_path, ndev)
        assert many["devices"] == ndev
        (g,) = many["groups"]
        assert g["devices"] == ndev and g["runs"] == 6 and g["padded_runs"] % ndev == 0
        for a, b in zip(one["runs"], many["runs"], strict=True):
            assert a["run_id"] == b["run_id"] and a["status"] == b["status"] == "done"
            for k in EVAL_METRICS:
                np.testing.assert_allclose(a["eval_history"][k], b["eval_history"][k],
                                           rtol=2e-5, atol=1e-6, err_msg=f"{ndev} {k}")
        if ndev == 2:  # a sharded sweep resumed from its (sharded) checkpoint: bit-identical
            resumed = _sharded(tmp_path, ndev, interrupt=True)
            assert resumed["groups"][0]["resumed"] == 1
            assert resumed["runs"] == many["runs"]


# ------------------------------------------------------------------ kill + resume
KILL_CODE = textwrap.dedent("""
    import sys
    from budgetax import training
    spec = training.SweepSpec(full_budget=400, budgets=(0.5, 1.0), schedules=("rex", "cosine"),
                            peak_lrs=(0.05, 1e4), seeds=(0,), num_evals=4,
                            optimizer=training.OptimizerSpec("sgd", momentum=0.9))
    training.sweep("mnist1d", spec, sys.argv[1], progress=False, max_runs_per_program=2)
""")


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_store(tmp_path):
    env = _env()
    # a persistent compilation cache keeps each new process from compiling again
    env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    run = lambda d: subprocess.run([sys.executable, "-c", KILL_CODE, str(d)], env=env,
                                   check=True, capture_output=True)
    t0 = time.perf_counter()
    run(tmp_path / "ref")
    duration = time.perf_counter() - t0
    with Store(tmp_path / "ref" / "results.sqlite") as store:
        ref = store.dump()
    assert len(ref) == 8 and sum(r[8] == "diverged" for r in ref) == 4
    rng = random.Random(1234)
    interrupted = resumed_from_checkpoint = 0
    # kill (a) when the first checkpoint is complete, (b) when a group is stored, (c) at random
    for trial in range(3):
        d = tmp_path / f"kill{trial}"
        proc = subprocess.Popen([sys.executable, "-c", KILL_CODE, str(d)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.perf_counter()
        while proc.poll() is None and time.perf_counter() - start < 120:
            if trial == 0 and glob.glob(str(d / "checkpoints" / "*" / "*.sha256.json")):
                break  # a complete checkpoint: saved, and its checksums written
            if trial == 1 and os.path.exists(d / "results.sqlite"):
                with Store(d / "results.sqlite") as store:
                    if store.finished_groups():
                        break
            if trial >= 2 and time.perf_counter() - start > rng.uniform(0.5, duration):
                break
            time.sleep(0.005)
        interrupted += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # a finalised orbax checkpoint left by the killed process (not a half-written tmp dir)
        finished = set()
        if os.path.exists(d / "results.sqlite"):
            with Store(d / "results.sqlite") as store:
                finished = {g.replace("/", "_") for g in store.finished_groups()}
        # a complete checkpoint (with its checksums) left by the killed process; one
        # without checksums is discarded by design and its group trained again
        left = [p for p in glob.glob(str(d / "checkpoints" / "*" / "*.sha256.json"))
                if p.rsplit(os.sep, 2)[-2] not in finished]
        resumed_from_checkpoint += bool(left)
        run(d)  # resume
        with Store(d / "results.sqlite") as store:
            assert store.dump() == ref, f"trial {trial}"
            if left:  # the group it belonged to continued from it instead of starting again
                assert any(g["resumed"] for g in store.groups()), f"trial {trial}"
        assert not os.path.exists(d / "checkpoints")
    assert interrupted >= 2  # at least the two event-triggered kills hit a running sweep
    assert resumed_from_checkpoint >= 1


# ------------------------------------------------------------------ CLI
def test_cli_sweep_and_report(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["sweep", "--out", str(out), "--full-budget", "20", "--budgets", "1",
            "--schedules", "linear,wsd", "--lrs", "0.01", "--seeds", "0", "--num-evals", "1",
            "--no-progress", "--data-dir", built_data_dir()]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "1 budgets x 2 schedules x 1 lrs x 1 seeds = 2 runs" in text
    assert "| budget | steps | linear | wsd |" in text and "| 100% | 20 |" in text
    assert (out / "results.md").exists() and (out / "metric_vs_budget.png").exists()
    os.remove(out / "results.md")
    assert cli.main(["report", str(out), "--no-plots"]) == 0
    assert "| budget | steps | linear | wsd |" in capsys.readouterr().out
    assert (out / "results.md").exists()
    # the same directory with another grid is refused, with the reason
    assert cli.main(argv[:-2] + ["--lrs", "0.02", "--data-dir", built_data_dir()]) == 2
    assert "different spec (peak_lrs" in capsys.readouterr().err
    assert cli.main(["sweep", "--schedules", "nope", "--out", str(tmp_path / "x"),
                     "--data-dir", built_data_dir()]) == 2
    assert "'one_cycle'" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "no sweep in" in capsys.readouterr().err


def test_runs_per_program_follow_the_memory_the_devices_report():
    class FakeDevice:
        def __init__(self, limit):
            self.limit = limit

        def memory_stats(self):
            return {"bytes_limit": self.limit, "bytes_in_use": 0}

    prog = core.make_program(mlp(), 100, training.SweepSpec().optimizer,
                             schedules=("rex", "cosine"))
    fits = lambda limit, n: plan.memory_limited_runs(prog, [FakeDevice(limit)] * n)
    # the MLP 40-100-100-10 has 15210 float32 parameters; Adam keeps two more copies; the
    # carry also holds the epoch permutation (4000 int32) and a few scalars; counted 4 times
    params = 15210 * 4
    low, high = 4 * (3 * params + 4000 * 4 + 256), 4 * 3 * params
    limit = 10**9
    assert int(0.5 * limit // low) <= fits(limit, 1) <= int(0.5 * limit // high)
    assert fits(limit, 4) == 4 * fits(limit, 1)        # runs are sharded: 4 devices, 4x the runs
    assert fits(1, 1) == 1                              # never zero
    assert plan.memory_limited_runs(prog, [object()]) is None  # CPU: no limit


def test_elasticity_stops_per_budget_from_stored_curves():
    t = np.arange(1.0, 21.0)
    fast = 1.0 + 2.0 * np.exp(-t)     # stops after epoch 9 (see test_training), saves 55%
    slow = 10.0 / t                    # elasticity exactly -1 at every epoch: never stops
    def run(loss, status="done"):
        curves = {k: np.zeros(40, np.float32) for k in TRAIN_METRICS}
        curves["loss"] = np.repeat(loss, 2).astype(np.float32)
        return {"budget": 40, "status": status, "curves": encode_curves(curves,
                                                                        TRAIN_METRICS)}
    runs = [run(fast), run(slow), run(fast * np.nan, status="diverged")]
    (row,) = report.elasticity_stops(runs, 2, TRAIN_METRICS, threshold=0.01, patience=2,
                                     smoothing=0.0)
    assert row["budget"] == 40 and row["epochs"] == 20 and row["runs"] == 2
    assert row["stopped"] == 1
    assert row["compute_saved"] == pytest.approx((0.55 + 0.0) / 2)
    assert row["loss_given_up"] == pytest.approx((fast[8] - fast[19]) / 2, abs=1e-6)
