"""Every public factory, spec field and CLI option, driven with invalid values.

Each case must raise ``ValueError`` or ``TypeError`` whose message names the argument
and shows the value (or, for the CLI, exit 2 with one ``error:`` line naming the
option). ``test_counts`` prints the tally (tried / clear / other).
"""

from __future__ import annotations

import inspect
import math

import jax
import pytest

import budgetax
from budgetax import cli, training
from tests import tasks

NUMBER_BAD = ["x", math.nan, math.inf, -math.inf, True, [1.0]]
INT_BAD = [1.5, "3", -1, 2**40, True]
BOOL_BAD = ["False", 1, None]
STR_BAD = [123, "nope"]

# parameters that are not plain numbers/ints/bools/names (callables, pytrees, dtypes, ...)
SKIP = {"profile", "direction", "tx", "mask", "mu_dtype", "params", "opt_state",
        "milestones", "learning_rate"}
INTS = {"total_steps", "warmup_steps", "sample_every", "test_every", "patience", "seed",
        "batch_size", "base_batch_size", "num_examples", "full_steps", "steps_per_epoch"}
NAMES = {"decay", "rounding", "rule", "bias_correction"}
# values a parameter accepts by design (documented), so they are no error for it
ACCEPTS = {("end_value", True), ("seed", 2**40)}

BASE = {"total_steps": 100, "learning_rate": 0.1, "tx": None, "base_lr": 0.1,
        "batch_size": 256, "base_batch_size": 128, "base_warmup_epochs": 1.0,
        "num_examples": 1000}


def _factory_cases():
    cases = []
    for name in budgetax.__all__:
        fn = getattr(budgetax, name)
        if not callable(fn) or inspect.ismodule(fn) or name in (
                "persistent_bytes_per_param", "steps_for_budget", "precision_chain",
                "scale_by_profile", "scale_invariant_projection"):
            continue
        params = inspect.signature(fn).parameters
        base = {k: BASE[k] for k in params if k in BASE and params[k].default is
                inspect.Parameter.empty}
        for p in params.values():
            if p.name in SKIP or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.name in INTS:
                bad = INT_BAD
            elif p.name in NAMES:
                bad = STR_BAD
            elif isinstance(p.default, bool) or p.annotation in ("bool", bool):
                bad = BOOL_BAD
            else:
                bad = NUMBER_BAD
            for v in bad:
                if not any(p.name == a and v is b for a, b in ACCEPTS):
                    cases.append((f"budgetax.{name}", fn, base, p.name, v))
    return cases


def _spec_cases():
    cases = []
    for cls, fields in ((training.OptimizerSpec, {
            "peak_lr": NUMBER_BAD, "end_lr": NUMBER_BAD, "warmup_steps": INT_BAD,
            "warmup_fraction": NUMBER_BAD + [1.0], "sample_every": INT_BAD,
            "momentum": NUMBER_BAD + [1.0], "b2": NUMBER_BAD, "eps": NUMBER_BAD,
            "weight_decay": NUMBER_BAD, "nesterov": BOOL_BAD, "demon": BOOL_BAD,
            "optimizer": STR_BAD, "schedule": STR_BAD, "precision": STR_BAD,
            "seed": [1.5, "3", -1, 2**40]}),
            (training.SweepSpec, {
            "full_budget": INT_BAD, "budgets": ["x", (0.0,), (1.5,), (math.nan,), ()],
            "schedules": ["rex", ("nope",), ()], "peak_lrs": [(0.0,), (math.inf,), ("x",)],
            "seeds": [(1.5,), (-1,), (2**32,)], "batch_size": INT_BAD,
            "num_evals": INT_BAD, "eval_batch_size": INT_BAD, "diagnostics": ["no", 0, 1.5],
            "divergence_factor": [0.5, math.nan, "x"], "optimizer": ["adam"],
            "strategy": STR_BAD, "prune_rate": INT_BAD + [1],
            "prune_at": [(0.0,), (1.0,), (0.5, 0.25), ("x",), 0.5],
            "prune_estimator": STR_BAD, "law_anchors": ["constant", ("nope",), ()],
            "law_verify": INT_BAD + [0], "law_tolerance": NUMBER_BAD + [0.0]})):
        for field, bad in fields.items():
            for v in bad:
                cases.append((cls.__name__, cls, {}, field, v))
    task = tasks.make_task()
    for field, bad in {"budget": INT_BAD, "batch_size": INT_BAD + [10**6],
                       "num_evals": INT_BAD, "eval_batch_size": INT_BAD,
                       "diagnostics": ["no", 0, 1.5], "seed": [1.5, -1, 2**32],
                       "peak_lr": NUMBER_BAD, "divergence_factor": [0.5, "x"]}.items():
        for v in bad:
            kw = {"budget": 2, "batch_size": 4}
            cases.append(("training.train", lambda **k: training.train(task, **k), kw, field, v))
    return cases


def _ranking_cases():
    from budgetax import ranking

    return [("ranking.goodness_ranks", ranking.goodness_ranks, {"values": [1.0, 2.0]},
             "higher_is_better", v) for v in BOOL_BAD] + [
        ("ranking.goodness_ranks", ranking.goodness_ranks, {"higher_is_better": True},
         "values", v) for v in ([[1.0, 2.0], [3.0, 4.0]], 3.0)]


class _Opaque:
    """A value JSON cannot encode, with a repr that is the same in every process (xdist
    compares the test ids its workers collect)."""

    def __repr__(self):
        return "<opaque>"


def _make_task(**fields):
    """A Task as the user makes it, checked as train/sweep/load_task check it first."""
    return training.Task(**fields).metric_names()


def _task_cases():
    import numpy as np

    data = tasks.regression_data(16, 0)
    base = {"name": "t", "model": tasks.Regressor, "loss": tasks.mse, "train_data": data}
    fields = {
        "name": ["", 3, None], "model": ["mlp", None], "loss": ["mse", None],
        "train_data": ["train.npz", b"train.npz", {}, {"x": np.zeros((4, 4))},
                       {"x": data["x"], "y": data["y"][:3]}],
        "eval_data": ["test.npz", {"x": np.float32(1.0)}],
        "eval_metrics": ["accuracy", 3], "config": ["abc", None, 3, {"f": _Opaque()}],
        "report_metric": [3, b"x"], "higher_is_better": ["yes", 1, None.__class__],
    }
    cases = [("training.Task", _make_task, base, f, v) for f, bad in fields.items()
             for v in bad]
    many = lambda **k: training.train_many(tasks.make_task(), **k)
    for field, bad in {"seeds": [(0, 0), 3, "0"],
                       "peak_lrs": [0.01, (0.01, 0.01), "0.01", (math.nan,)]}.items():
        cases += [("training.train_many", many, {"budget": 2, "batch_size": 4}, field, v)
                  for v in bad]
    cases += [("training.train", lambda **k: training.train("mnist1d", **k),
               {"budget": 2}, "model", v) for v in ("", "nope", 3)]
    cases += [("training.preset", training.preset, {"dataset": "mnist1d"}, "model_kwargs",
               v) for v in ({"hiden": (10,)}, "hidden=10")]
    cases += [("History.early_stop", _early_stop, {}, "steps_per_epoch", v)
              for v in (0, -1, 1.5, "10")]
    cases += [("budgetax.profiles." + name, getattr(budgetax.profiles, name), {}, "p",
               math.nan) for name in ("linear", "cosine", "rex", "wsd", "one_cycle")]
    cases += [("budgetax.autowu_lamb", budgetax.autowu_lamb, {"total_steps": 100}, "mask", v)
              for v in ("abc", 3)]
    cases += [("budgetax.persistent_bytes_per_param", budgetax.persistent_bytes_per_param,
               {"params": {"w": np.zeros(3, np.float32)}}, "opt_state", v)
              for v in ("state", {"count": "3"})]
    return cases


def _early_stop(steps_per_epoch):
    import numpy as np

    h = training.History(config={"steps_per_epoch": 4}, eval_steps=np.array([40]), eval={},
                         train={"loss": np.linspace(2.0, 1.0, 40)}, diverged=False,
                         diverged_step=None, seconds=0.0)
    return h.early_stop(steps_per_epoch=steps_per_epoch)


def _load_task(path):
    return training.load_task(path)


LOAD_CASES = [("training.load_task", _load_task, {}, "path", v)
              for v in (":make_task", "tests.tasks:", "tests.nowhere:make_task", 3, None,
                        "tests.tasks:missing", "tests.tasks:not_a_task", "a b:c")]


def _predict(predict):
    from budgetax import report

    return report.check_predict(predict)


def _sweep_call(**kw):
    """``training.sweep`` of a one-run spec into a fresh directory, with ``kw`` changed."""
    import tempfile

    spec = training.SweepSpec(full_budget=4, budgets=(1.0,), schedules=("linear",),
                              peak_lrs=(0.01,), seeds=(0,), batch_size=32)
    kw = {"task": tasks.make_task(), "spec": spec, "out_dir": tempfile.mkdtemp(),
          "progress": False, **kw}
    return training.sweep(**kw)


PREDICT_CASES = [("report.check_predict", _predict, {}, "predict", v)
                 for v in ((True,), 2, "2", (math.nan,), (-1.0,), (0,), ("x",), (math.inf,),
                           None, [[2.0]])]
SWEEP_CASES = [("training.sweep", _sweep_call, {}, name, v)
               for name, values in (
                   ("devices", ([], [5], "cpu", [None], 3)),
                   ("max_runs_per_program", (0, 1.5, "3", True, -2)),
                   ("checkpoint_every", (-1, 1.5, "1", None)),
                   ("auto_lrs", (-1, 0.5, "2")),
                   ("resume", ("yes", 1, None)),
                   ("overwrite", ("no", 0)),
                   ("progress", ("off", None)),
                   ("out_dir", (3, None, ["x"])),
                   ("spec", ({"full_budget": 4}, "spec")))
               for v in values]

CASES = (_factory_cases() + _spec_cases() + _ranking_cases() + _task_cases() + PREDICT_CASES
         + SWEEP_CASES)


def _outcome(fn, base, name, value) -> str:
    try:
        fn(**dict(base, **{name: value}))
    except (ValueError, TypeError) as err:
        msg = str(err)
        if fn is _load_task:  # load_task's errors show the --task value it was given
            name = "--task"
        items = value if isinstance(value, list | tuple) and value else [value]
        shown = repr(value) in msg or str(value) in msg or all(repr(v) in msg for v in items)
        if isinstance(value, dict):  # data (shown by its shapes) or settings (by the leaf)
            leaves = jax.tree.leaves(value)
            shown = shown or any(hasattr(v, "shape") for v in leaves) or bool(leaves) and all(
                repr(v) in msg for v in leaves)
        return "clear" if name in msg and shown else f"unclear: {type(err).__name__}: {msg}"
    except Exception as err:  # noqa: BLE001
        return f"other: {type(err).__name__}: {err}"
    return "accepted"


@pytest.mark.parametrize("where, fn, base, name, value", CASES + LOAD_CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[4]!r}" for c in CASES + LOAD_CASES])
def test_invalid_value_is_a_clear_error(where, fn, base, name, value):
    assert _outcome(fn, base, name, value) == "clear"


CLI_CASES = [
    ("--full-budget", "-5"), ("--full-budget", "1.5"), ("--budgets", "-0.5,1"),
    ("--budgets", "x"), ("--lrs", "0"), ("--lrs", "nan"), ("--seeds", "-1"),
    ("--seeds", "18446744073709551616"), ("--schedules", "nope"), ("--optimizer", "nope"),
    ("--momentum", "1.5"), ("--weight-decay", "-1"), ("--warmup-fraction", "1"),
    ("--precision", "fp8"), ("--batch-size", "0"), ("--batch-size", "100000"),
    ("--num-evals", "0"), ("--max-runs-per-program", "0"), ("--checkpoint-every", "-1"),
    ("--select", "nope"), ("--diagnostics", "0"), ("--divergence-factor", "0.5"),
    ("--processes", "0"), ("--task", "nope"), ("--dataset", "nope"), ("--model", "nope"),
    ("--dataset", ""), ("--model", ""), ("--task", ":make_task"),
    ("--predict", "x"), ("--predict", "-1"), ("--predict", "nan"), ("--predict", "2"),
]


@pytest.mark.parametrize("option, value", CLI_CASES)
def test_cli_option_is_one_clear_line(option, value, tmp_path, capsys):
    try:
        rc = cli.main(["sweep", "--out", str(tmp_path / "x"), "--full-budget", "4",
                       "--budgets", "1", "--schedules", "linear", "--lrs", "0.01",
                       "--seeds", "0", "--no-progress", "--no-plots", option, value])
    except SystemExit as exit_:  # argparse's own check of a value's type
        rc = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err, err
    last = err[-1]
    assert "error:" in last
    name = option.lstrip("-").replace("-", "_")
    assert option in last or name in last or "budget fractions" in last, last


def test_counts(capsys):
    outcomes = [_outcome(fn, base, name, value) for _, fn, base, name, value in CASES]
    clear = sum(o == "clear" for o in outcomes)
    with capsys.disabled():
        print(f"\nfuzz: {len(outcomes)} tried, {clear} clear, {len(outcomes) - clear} other; "
              f"{len(CLI_CASES)} CLI options")
    assert clear == len(outcomes)
