"""Tests of the ``budgetax`` command: ``demo`` (a sweep preset), ``--task``, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budgetax import cli
from tests.data.helpers import built_data_dir


def test_demo_is_a_small_sweep_and_prints_its_table(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--full-budget", "40", "--budgets", "1", "--schedules",
                   "constant,linear", "--seeds", "1", "--data-dir", built_data_dir(),
                   "--out", str(out), "--no-plots", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "1 budgets x 2 schedules x 1 lrs x 1 seeds = 2 runs" in text
    assert "| budget | steps | constant | linear |" in text and "| 100% | 40 |" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"].startswith("budgetax demo --full-budget 40")
    assert summary["spec"]["peak_lrs"] == [0.01]  # the demo preset's single lr
    got = {r["schedule"]: r for r in summary["runs"]}
    assert set(got) == {"constant", "linear"} and got["linear"]["seed"] == 1
    # 40 steps of Adam beat chance (10%) on MNIST-1D
    assert got["linear"]["final"]["test_accuracy"] > 0.2


def test_demo_rejects_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--budgets", "0,1.5"])
    assert "budget fractions" in capsys.readouterr().err
    rc = cli.main(["demo", "--dataset", "nope", "--data-dir", built_data_dir(),
                   "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "digits" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("task, message", [
    ("tests.nowhere:make_task", "no module named 'tests.nowhere'"),
    ("tests.tasks:missing", "has no attribute 'missing'"),
    ("tests.tasks:not_a_task", "must return a budgetax.training.Task, got a dict"),
    ("tests.tasks:vector_loss", "loss must return a scalar"),
    ("tests.tasks:ragged_data", "leading dimensions disagree"),
    ("no-colon", "must be 'package.module:factory'"),
])
def test_task_errors_are_one_clear_line(task, message, tmp_path, capsys):
    rc = cli.main(["sweep", "--task", task, "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert err.count("\n") <= 3 and "Traceback" not in err


TASK_FILE = """
import numpy as np
from tests import tasks
from budgetax import training

def make_task():
    return tasks.make_task()

def broken_key():
    config = {"n_train": 600}
    return config["n_test"]

def broken_reshape():
    x = np.zeros((32, 28, 28))
    return x.reshape(-1, 7, 7, 3)

def needs_args(n_train, width=4):
    return tasks.make_task()

def bad_task():
    return training.Task(name="t", model=tasks.Regressor, loss=tasks.mse,
                         train_data="train.npz")
"""


def _lines_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


@pytest.fixture
def task_files(tmp_path):
    (tmp_path / "my_task.py").write_text(TASK_FILE)
    (tmp_path / "syntax_error.py").write_text("def make_task(:\n    pass\n")
    (tmp_path / "raises_on_import.py").write_text("import os\nos.environ['NOPE_NOT_SET']\n")
    (tmp_path / "run").mkdir()
    return tmp_path


@pytest.mark.parametrize("factory, lines", [
    ("my_task.py:broken_key", ["my_task.py:broken_key': broken_key() raised KeyError: 'n_test'",
                               "my_task.py:{broken_key}, in broken_key", "hint:"]),
    ("my_task.py:broken_reshape", ["broken_reshape() raised ValueError: cannot reshape",
                                   "my_task.py:{broken_reshape}, in broken_reshape"]),
    ("my_task.py:needs_args", ["needs_args(n_train, width=4) needs arguments (n_train)",
                               "hint: give them defaults"]),
    ("my_task.py:bad_task", ["bad_task() raised TypeError: train_data must be",
                             "path-like 'train.npz'", "my_task.py:{bad_task}, in bad_task"]),
    ("my_task.py:nope", ["has no attribute 'nope'", "'make_task'"]),
    ("syntax_error.py:make_task", ["importing ../syntax_error.py raised SyntaxError",
                                   "syntax_error.py:1"]),
    ("raises_on_import.py:make_task", ["raised KeyError: 'NOPE_NOT_SET'",
                                       "raises_on_import.py:2, in <module>"]),
    (":make_task", ["names no module"]),
])
def test_a_task_factory_that_fails_is_told_what_where_and_why(factory, lines, task_files,
                                                               monkeypatch, capsys):
    monkeypatch.chdir(task_files / "run")  # the file is given by a relative path
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    rc = cli.main(["sweep", "--task", "../" + factory if factory[0] != ":" else factory,
                   "--out", str(task_files / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert 1 <= err.count("\n") <= 4, err
    at = {name: _lines_of(TASK_FILE, f"    {text}") for name, text in [
        ("broken_key", 'return config["n_test"]'), ("broken_reshape", "return x.reshape"),
        ("bad_task", "return training.Task(")]}
    for line in lines:
        assert line.format(**at) in err, err
    assert not (task_files / "out").exists()


def test_a_task_in_a_py_file_by_its_path(task_files, monkeypatch):
    from budgetax import training

    monkeypatch.chdir(task_files / "run")
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    task = training.load_task("../my_task.py:make_task")
    assert task.name == "toy-regression"


def test_task_and_dataset_are_exclusive(tmp_path, capsys):
    rc = cli.main(["sweep", "--task", "tests.tasks:make_task", "--model", "mlp",
                   "--out", str(tmp_path / "x")])
    assert rc == 2 and "either --task or --dataset/--model" in capsys.readouterr().err


def test_a_schedule_typo_gets_a_suggestion(tmp_path, capsys):
    rc = cli.main(["sweep", "--schedules", "linear,cosin", "--out", str(tmp_path / "x")])
    assert rc == 2 and "did you mean 'cosine'?" in capsys.readouterr().err


def test_the_sweep_fills_a_persistent_compilation_cache(tmp_path):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "budgetax.cli", "sweep", "--task", "tests.tasks:make_task",
           "--full-budget", "4", "--budgets", "1", "--schedules", "linear", "--lrs", "0.01",
           "--seeds", "0", "--batch-size", "32", "--no-progress", "--no-plots",
           "--compile-cache", str(cache)]
    # the flag wins over a cache directory the user gave JAX itself, which the parser's
    # checks open before the flag is read
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-own"))
    del env["BUDGETAX_COMPILE_CACHE"]
    subprocess.run(cmd + ["--out", str(tmp_path / "a")], check=True, capture_output=True,
                   cwd=root, env=env)
    own = tmp_path / "jax-own"
    step_programs = lambda d: [p for p in d.iterdir() if "advance" in p.name] if d.exists() else []
    assert step_programs(cache) and not step_programs(own)
    # 'off' is off, whatever JAX's own setting
    subprocess.run(cmd[:-1] + ["off", "--out", str(tmp_path / "b")], check=True,
                   capture_output=True, cwd=root, env=env)
    assert not (tmp_path / "off").exists() and not step_programs(own)
    assert cli.compile_cache_dir("off") is None
    assert cli.compile_cache_dir(str(cache)) == str(cache)


def test_without_the_flag_the_cache_directory_given_to_jax_is_kept(tmp_path, monkeypatch):
    import jax

    monkeypatch.delenv("BUDGETAX_COMPILE_CACHE")
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax-own"))
    try:  # rather than ~/.cache/budgetax/jax
        assert cli.use_compile_cache(None) == str(tmp_path / "jax-own")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax-own")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_a_negative_budget_reaches_the_budget_check(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--budgets", "-0.5,1"])
    err = capsys.readouterr().err
    assert "budget fractions must be in (0, 1], got '-0.5,1'" in err, err
    rc = cli.main(["sweep", "--seeds", "-1", "--out", str(tmp_path / "x")])
    assert rc == 2 and "seeds must be in [0, 2**32)" in capsys.readouterr().err


def test_help_says_sgd_has_momentum(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "sgd is SGD with --momentum, so 0.9 unless you pass --momentum 0" in text
    assert "75 epochs of the task's training set" in text


def test_the_report_names_the_momentum_of_sgd():
    from budgetax import report

    assert report.optimizer_text({"optimizer": "sgd", "momentum": 0.9}).startswith(
        "sgd with momentum 0.9")
    assert report.optimizer_text({"optimizer": "sgd", "momentum": 0.0}).startswith(
        "sgd without momentum")
    assert "b1 0.9" in report.optimizer_text({"optimizer": "adam", "momentum": 0.9})


def test_the_default_full_budget_is_75_epochs_of_the_task(tmp_path, capsys):
    assert cli.default_full_budget(4000, 100) == 3000  # the default mnist1d sweep, unchanged
    assert cli.default_full_budget(600, 32) == 1406
    out = tmp_path / "x"
    rc = cli.main(["sweep", "--task", "tests.tasks:make_task", "--out", str(out),
                   "--batch-size", "600", "--budgets", "1", "--schedules", "linear",
                   "--lrs", "0.01", "--seeds", "0", "--num-evals", "1", "--no-progress",
                   "--no-plots", "--optimizer", "sgd"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "full budget 75 steps: 75 epochs of 600 training examples at batch 600" in text
    assert "sgd with momentum 0.9" in text
    assert json.loads((out / "summary.json").read_text())["spec"]["full_budget"] == 75
    md = (out / "results.md").read_text()
    assert "sgd with momentum 0.9" in md and "full budget 75 steps (75 epochs)" in md


def test_sweep_help_is_fast_and_its_defaults_are_the_specs():
    import dataclasses
    import subprocess
    import sys

    from budgetax import training

    for name in ("SweepSpec", "OptimizerSpec"):
        want = {f.name: f.default for f in dataclasses.fields(getattr(training, name))
                if f.default is not dataclasses.MISSING}
        assert cli.spec_defaults(name) == want, name
    code = ("import sys\nfrom budgetax import cli\ntry:\n    cli.main(['sweep', '--help'])\n"
            "except SystemExit:\n    pass\nprint('jax imported:', 'jax' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1]).stdout
    assert "jax imported: False" in out
    text = " ".join(out.split())
    assert "examples per optimizer step (default: 100)" in text
    assert "decoupled for adamw, lamb, adamp and sgdp (default: 0)" in text


def test_a_task_smaller_than_one_batch_is_told_so(tmp_path, monkeypatch, capsys):
    (tmp_path / "one.py").write_text(
        "from tests import tasks\nfrom budgetax import training\n\n"
        "def make_task():\n"
        "    return training.Task(name='one', model=tasks.Regressor, loss=tasks.mse,\n"
        "                         train_data=tasks.regression_data(1, 0))\n")
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    rc = cli.main(["sweep", "--task", str(tmp_path / "one.py") + ":make_task",
                   "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--batch-size 100 is more than the task's 1 training examples" in err
