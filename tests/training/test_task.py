"""A task defined outside the package runs through every driver, with identical results."""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from budgetax import cli, training
from budgetax.training.sweep.store import Store, decode_curves
from tests import tasks

SGD = training.OptimizerSpec("sgd", "cosine", peak_lr=0.05, momentum=0.9)
RUN = dict(budget=24, batch_size=32, num_evals=3, eval_batch_size=64)


@pytest.fixture(scope="module")
def task():
    return tasks.make_task()


@pytest.fixture(scope="module")
def run_a(task):
    return training.train(task, optimizer=SGD, seed=3, **RUN)


def _stored_curves(result, row):
    with Store(os.path.join(result.out_dir, "results.sqlite")) as store:
        blob = next(r for r in store.runs(with_curves=True) if r["run_id"] == row["run_id"])
    return decode_curves(blob["curves"], result.metrics["train"], row["budget"])


def test_metric_names_come_from_the_task(task, run_a):
    assert task.metric_names() == {
        "train": ("loss", "mae"),
        "eval": ("test_loss", "test_within_0.1", "train_loss", "train_within_0.1",
                 "full_grad_norm")}
    assert set(run_a.train) == {"loss", "mae", "grad_norm", "update_norm", "lr"}
    assert set(run_a.eval) == set(task.metric_names()["eval"])
    assert task.table_metric() == ("test_loss", False)
    assert run_a.config["task"] == {"name": "toy-regression",
                                    "config": {"features": 4, "n_test": 200, "n_train": 600}}
    # it learns: the loss falls
    assert run_a.train["loss"][-4:].mean() < 0.7 * run_a.train["loss"][:4].mean()


def test_evaluation_matches_a_direct_computation(task, run_a):
    """Held-out metrics and full-gradient diagnostics, recomputed without the library."""
    model = tasks.Regressor(nnx.Rngs(0))
    nnx.update(model, run_a.params)
    test = {k: jnp.asarray(v) for k, v in task.eval_data.items()}
    err = model(test["x"]) - test["y"]
    assert run_a.final["test_loss"] == pytest.approx(float(jnp.mean(err ** 2)), rel=1e-5)
    assert run_a.final["test_within_0.1"] == pytest.approx(
        float(jnp.mean(jnp.abs(err) < 0.1)), abs=1e-6)
    train = {k: jnp.asarray(v) for k, v in task.train_data.items()}

    def full_loss(m):
        return jnp.mean((m(train["x"]) - train["y"]) ** 2)

    value, grads = nnx.value_and_grad(full_loss)(model)
    gnorm = np.sqrt(sum(float(jnp.sum(g ** 2)) for g in jax.tree.leaves(grads)))
    assert run_a.final["train_loss"] == pytest.approx(float(value), rel=1e-5)
    assert run_a.final["full_grad_norm"] == pytest.approx(gnorm, rel=1e-4)


def test_one_run_sweep_equals_train_bit_for_bit(task, run_a, tmp_path):
    spec = training.SweepSpec(full_budget=24, budgets=(1.0,), schedules=("cosine",),
                              peak_lrs=(0.05,), seeds=(3,), batch_size=32, num_evals=3,
                              eval_batch_size=64,
                              optimizer=training.OptimizerSpec("sgd", momentum=0.9))
    result = training.sweep(task, spec, str(tmp_path), progress=False)
    (row,) = result.runs
    curves = _stored_curves(result, row)
    for k in run_a.train:
        np.testing.assert_array_equal(curves[k], run_a.train[k], err_msg=k)
    for k in run_a.eval:
        np.testing.assert_array_equal(np.float32(row["eval_history"][k]), run_a.eval[k],
                                      err_msg=k)


def test_train_many_runs_the_grid_and_matches_train(task, run_a):
    many = training.train_many(task, seeds=[3, 4], peak_lrs=[0.05, 0.01], optimizer=SGD, **RUN)
    assert [(h.config["seed"], h.config["optimizer"]["peak_lr"]) for h in many] == [
        (3, 0.05), (3, 0.01), (4, 0.05), (4, 0.01)]
    np.testing.assert_allclose(many[0].train["loss"], run_a.train["loss"], rtol=2e-5)
    assert not np.allclose(many[0].train["loss"], many[2].train["loss"])


def test_a_diverging_run_is_reported_identically_by_train_and_sweep(task, tmp_path):
    opt = training.OptimizerSpec("sgd", "constant", momentum=0.9)
    h = training.train(task, optimizer=opt, peak_lr=1e6, seed=0, **RUN)
    spec = training.SweepSpec(full_budget=24, budgets=(1.0,), schedules=("constant",),
                              peak_lrs=(1e6,), seeds=(0,), batch_size=32, num_evals=3,
                              eval_batch_size=64, optimizer=dataclasses.replace(opt))
    result = training.sweep(task, spec, str(tmp_path), progress=False)
    (row,) = result.runs
    assert h.diverged and row["status"] == "diverged"
    assert h.diverged_step == row["diverged_step"] and 0 <= h.diverged_step < 24
    curves = _stored_curves(result, row)
    for k in h.train:
        np.testing.assert_array_equal(curves[k], h.train[k], err_msg=k)
    # frozen at its last finite state: NaN metrics after the step, finite parameters
    assert np.isnan(h.train["loss"][h.diverged_step + 1:]).all()
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(h.params))


def test_a_streamed_source_gives_the_same_run_as_in_memory_data(run_a):
    streamed = tasks.make_task(streamed=True)
    assert streamed.streamed
    h = training.train(streamed, optimizer=SGD, seed=3, **RUN)
    assert h.config["data"] == "stream"
    np.testing.assert_allclose(h.train["loss"], run_a.train["loss"], rtol=1e-5)
    for k in run_a.eval:
        np.testing.assert_allclose(h.eval[k], run_a.eval[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_bf16_precision_casts_a_factory_without_dtype_keywords(task):
    opt = dataclasses.replace(SGD, precision="bf16")
    h = training.train(task, optimizer=opt, seed=0, **dict(RUN, budget=6))
    assert {x.dtype for x in jax.tree.leaves(h.params)} == {jnp.dtype(jnp.bfloat16)}
    assert np.isfinite(h.train["loss"]).all()


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_a_seed_gives_every_precision_the_same_initial_weights(model):
    """bf16 models are initialised in float32 and rounded: paired by seed across modes."""
    task = training.preset("mnist1d", model)
    full = nnx.state(task.build_model(nnx.Rngs(7)))
    half = nnx.state(task.build_model(nnx.Rngs(7), "bf16_sr"))
    want = nnx.state(nnx.eval_shape(lambda: task.model(
        nnx.Rngs(0), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)))
    assert jax.tree.structure(half) == jax.tree.structure(want)
    for a, b, t in zip(jax.tree.leaves(full), jax.tree.leaves(half), jax.tree.leaves(want),
                       strict=True):
        assert b.dtype == t.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a.astype(jnp.bfloat16)))


def test_cli_sweeps_a_user_task(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli.main(["sweep", "--task", "tests.tasks:make_task", "--out", str(out),
                   "--full-budget", "12", "--budgets", "1", "--schedules", "linear,wsd",
                   "--lrs", "0.05", "--seeds", "0", "--num-evals", "1", "--batch-size", "32",
                   "--optimizer", "sgd", "--no-progress", "--no-plots"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "task toy-regression" in text and "| budget | steps | linear | wsd |" in text
    assert "batch 32, 1 budgets x 2 schedules" in text  # the header says the batch size
    md = (out / "results.md").read_text()
    assert "test_loss at the end of each budget" in md
    # resuming the directory with another task is refused, naming the difference
    other = tasks.make_task()
    object.__setattr__(other, "config", {"n_train": 601})
    spec = training.SweepSpec(full_budget=12, budgets=(1.0,), schedules=("linear", "wsd"),
                              peak_lrs=(0.05,), seeds=(0,), num_evals=1, batch_size=32,
                              optimizer=training.OptimizerSpec("sgd"))
    with pytest.raises(training.SweepSpecMismatchError, match="different task"):
        training.sweep(other, spec, str(out), progress=False)


@pytest.mark.parametrize("bad, match", [
    (dict(train_data={"x": np.zeros((4, 2)), "y": np.zeros(3)}), "leading dimensions disagree"),
    (dict(train_data={}), "pytree of arrays"),
    (dict(name=""), "name must be a non-empty str"),
    (dict(loss="mse"), "loss must be callable"),
    (dict(config={"f": object()}), "config must be JSON-serialisable"),
])
def test_bad_tasks_are_refused_with_the_reason(bad, match):
    kw = dict(name="t", model=tasks.Regressor, loss=tasks.mse,
              train_data=tasks.regression_data(8, 0))
    with pytest.raises((TypeError, ValueError), match=match):
        training.Task(**dict(kw, **bad))


def test_a_loss_returning_a_vector_or_a_bad_model_is_refused_before_training():
    with pytest.raises(training.TaskError, match="loss must return a scalar"):
        training.train(tasks.vector_loss(), budget=2, batch_size=4)
    task = training.Task(name="t", model=lambda rngs: "not a module", loss=tasks.mse,
                         train_data=tasks.regression_data(8, 0))
    with pytest.raises(training.TaskError, match="must return an nnx.Module"):
        training.train(task, budget=2, batch_size=4)


def test_diagnostics_on_a_fixed_subset_of_the_training_set(task):
    h = training.train(task, optimizer=SGD, seed=3, **dict(RUN, num_evals=1), diagnostics=100)
    idx = training.core.diagnostic_indices(task, 100)
    assert len(idx) == len(set(idx.tolist())) == 100 and idx.max() < task.num_train
    model = tasks.Regressor(nnx.Rngs(0))
    nnx.update(model, h.params)
    x, y = (jnp.asarray(task.train_data[k][idx]) for k in ("x", "y"))
    assert h.final["train_loss"] == pytest.approx(float(jnp.mean((model(x) - y) ** 2)),
                                                  rel=1e-5)
    full = training.train(task, optimizer=SGD, seed=3, **dict(RUN, num_evals=1))
    np.testing.assert_array_equal(full.train["loss"], h.train["loss"])  # training unchanged
    assert full.final["train_loss"] != h.final["train_loss"]
    with pytest.raises(ValueError, match="diagnostics must be a bool or a positive int"):
        training.train(task, optimizer=SGD, diagnostics=0, **RUN)


def test_a_users_own_jitted_step_with_budgetax_transforms_compiles_once(task):
    """The way a user writes a step: optax chain with a budgetax schedule, jitted once."""
    import chex
    import optax

    import budgetax

    model = tasks.Regressor(nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tx = optax.chain(optax.scale_by_adam(), budgetax.rex(50), optax.scale(-1e-2))
    opt_state = tx.init(params)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, opt_state, batch):
        def loss(p):
            return tasks.mse(nnx.merge(graphdef, p), batch)[0]

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    losses = []
    for t in range(50):
        idx = np.arange(t * 8, t * 8 + 32) % task.num_train
        batch = {k: jnp.asarray(v[idx]) for k, v in task.train_data.items()}
        params, opt_state, value = step(params, opt_state, batch)
        losses.append(float(value))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


# ---------------------------------------------------------------- Flax tutorial style
class TutorialCNN(nnx.Module):
    """The CNN of Flax's MNIST tutorial (smaller, for 8x8 images): keyword-only ``rngs``."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.linear1 = nnx.Linear(4 * 4 * 4, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        return self.linear1(x.reshape(x.shape[0], -1))


class TutorialMLP(nnx.Module):
    """Flax layers' own dtype keywords, passed through, with keyword-only ``rngs``."""

    def __init__(self, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.linear = nnx.Linear(64, 10, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x):
        return self.linear(x.reshape(x.shape[0], -1))


def images(n=64):
    rng = np.random.default_rng(0)
    return {"image": rng.normal(size=(n, 8, 8, 1)).astype(np.float32),
            "label": rng.integers(0, 10, n).astype(np.int32)}


def tutorial_loss(model, batch):
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits=logits, labels=batch["label"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}


def test_a_flax_tutorial_model_with_keyword_rngs_trains():
    task = training.Task(name="cnn", model=TutorialCNN, loss=tutorial_loss, train_data=images())
    h = training.train(task, budget=4, batch_size=16, num_evals=1, diagnostics=False)
    assert np.isfinite(h.train["loss"]).all()
    model = TutorialCNN(rngs=nnx.Rngs(0))  # the run's parameters fit the user's own model
    nnx.update(model, h.params)


def test_keyword_rngs_and_dtype_keywords_reach_the_model_in_bf16():
    task = training.Task(name="mlp", model=TutorialMLP, loss=tutorial_loss, train_data=images())
    opt = training.OptimizerSpec("sgd", "constant", peak_lr=0.1, precision="bf16")
    h = training.train(task, budget=2, batch_size=16, num_evals=1, optimizer=opt,
                       diagnostics=False)
    assert {x.dtype for x in jax.tree.leaves(h.params)} == {jnp.dtype(jnp.bfloat16)}
    part = training.Task(name="p", model=functools.partial(TutorialMLP, dtype=jnp.float32),
                         loss=tutorial_loss, train_data=images())
    assert isinstance(part.build_model(nnx.Rngs(0)), TutorialMLP)


def test_an_error_in_the_model_factory_is_worded_by_the_factory():
    class Broken(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs):
            self.linear = nnx.Linear(3136, 10, rngs=rngs)
            raise ValueError("layer sizes do not match")

    task = training.Task(name="broken", model=Broken, loss=tutorial_loss, train_data=images())
    with pytest.raises(training.TaskError) as err:
        training.train(task, budget=2, batch_size=16)
    text = str(err.value)
    assert "the model factory, " in text and "Broken(rngs=rngs)" in text
    assert "ValueError: layer sizes do not match" in text and "loss(model" not in text
    assert f"{__file__}:" in text  # the line that raised

    def needs_width(width, rngs):
        return nnx.Linear(64, width, rngs=rngs)

    task = training.Task(name="w", model=needs_width, loss=tutorial_loss, train_data=images())
    with pytest.raises(training.TaskError, match="functools.partial"):
        training.train(task, budget=2, batch_size=16)
    with pytest.raises(training.TaskError, match=r"model\(\*, rngs\)"):
        training.Task(name="n", model=lambda: TutorialCNN(rngs=nnx.Rngs(0)),
                      loss=tutorial_loss, train_data=images())


def test_a_loss_returning_logits_says_the_second_element_must_be_a_dict():
    def loss_fn(model, batch):  # the Flax tutorial's loss
        logits = model(batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(
            logits=logits, labels=batch["label"]).mean()
        return loss, logits

    task = training.Task(name="cnn", model=TutorialCNN, loss=loss_fn, train_data=images())
    with pytest.raises(training.TaskError,
                       match=r"second element must be a dict \{name: scalar batch mean\}") as err:
        training.train(task, budget=2, batch_size=16)
    assert "loss, a (2, 10) float32 array" in str(err.value)


def test_64_bit_data_is_said_to_be_trained_in_32_bits():
    data = images()
    data = {"image": data["image"].astype(np.float64), "label": data["label"].astype(np.int64)}
    with pytest.warns(UserWarning, match=r"train_data\['image'\] float64 -> float32, "
                                         r"train_data\['label'\] int64 -> int32"):
        training.Task(name="digits", model=TutorialCNN, loss=tutorial_loss, train_data=data)
    data["label"][0] = 2 ** 40  # would wrap around in 32 bits
    with pytest.raises(ValueError, match=r"train_data\['label'\] is int64 with values in"):
        training.Task(name="digits", model=TutorialCNN, loss=tutorial_loss, train_data=data)


def test_float_labels_are_shown_next_to_the_losss_own_error():
    data = images()
    data["label"] = data["label"].astype(np.float32)
    task = training.Task(name="cnn", model=TutorialCNN, loss=tutorial_loss, train_data=data)
    with pytest.raises(training.TaskError, match=r"\['label'\]: \(2,\) float32") as err:
        training.train(task, budget=2, batch_size=16)
    assert "hint: check the dtypes of the batch" in str(err.value)


class LongSource(tasks.ListSource):
    """A source whose len() claims more examples than it holds."""

    def __len__(self):
        return 100


class FixedGather:
    """A source whose gather returns 32 examples whatever it is asked for."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return 64

    def gather(self, idx):
        return {k: v[:32] for k, v in self.data.items()}


DATA = tasks.regression_data(64, 0)


@pytest.mark.parametrize("fields, match", [
    (dict(train_data="train.npz"), r"train_data must be .* got the path-like 'train.npz'"),
    (dict(eval_data="test.npz"), r"eval_data must be .* got the path-like 'test.npz'"),
    (dict(train_data=[DATA["x"], DATA["y"]]), r"hint: train_data is a list, so a batch is one too"),
    (dict(train_data=LongSource(DATA)), r"train_data: len\(\) is 100, but gathering"),
    (dict(train_data=FixedGather(DATA)), r"train_data: gathering the 3 examples .* one "
                                         r"example per index"),
    (dict(eval_data={"x": DATA["x"]}), r"eval_data lacks \['y'\] of train_data"),
    (dict(eval_data={"x": np.zeros((8, 5), np.float32), "y": DATA["y"][:8]}),
     r"loss\(model, batch\) on a batch of eval_data .*\['x'\]: \(2, 5\) float32"),
    (dict(config="abc"), r"config must be a dict .* got a str 'abc'"),
    (dict(config=None), r"config must be a dict .* got None"),
])
def test_obscure_tasks_are_refused_naming_the_field_before_compiling(fields, match):
    kw = dict(name="t", model=tasks.Regressor, loss=tasks.mse, train_data=DATA)
    with pytest.raises((TypeError, ValueError), match=match):
        task = training.Task(**dict(kw, **fields))
        task.metric_names()  # what train/sweep/load_task check first, before compiling


def test_a_single_example_is_fewer_than_one_batch():
    task = training.Task(name="t", model=tasks.Regressor, loss=tasks.mse,
                         train_data={k: v[:1] for k, v in DATA.items()})
    with pytest.raises(ValueError, match=r"batch_size must be <= the number of training "
                                         r"examples \(1\), got 4"):
        training.train(task, budget=2, batch_size=4)


def test_nan_in_an_eval_target_is_said_at_the_first_evaluation():
    test = tasks.regression_data(16, 1)
    test["y"][3] = np.nan
    task = training.Task(name="t", model=tasks.Regressor, loss=tasks.mse, train_data=DATA,
                         eval_data=test, eval_metrics=tasks.within_tenth)
    with pytest.warns(UserWarning, match=r"test_loss not finite at the first evaluation"):
        h = training.train(task, budget=2, batch_size=4, num_evals=1, diagnostics=False)
    assert not h.diverged
