"""Tests of budgetax.training: reproducibility, compilation, metrics, diagnostics, bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import budgetax
from budgetax import data, models, training
from tests.data.helpers import dataset

SMALL = dict(model="mlp", model_kwargs={"hidden": (16,)}, batch_size=50, num_evals=2)
SGD = training.OptimizerSpec("sgd", "linear", peak_lr=0.1, momentum=0.0)


@pytest.fixture(scope="module")
def mnist1d():
    return dataset("mnist1d")


@pytest.fixture(scope="module")
def digits():
    return dataset("digits")


@pytest.fixture(scope="module")
def run_a(mnist1d):
    """A small run (budget 30) shared by several tests: compiled once."""
    return training.train(mnist1d, budget=30, optimizer=SGD, seed=0, **SMALL)


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_bit_reproducible_and_seed_dependent(mnist1d, run_a):
    again = training.train(mnist1d, budget=30, optimizer=SGD, seed=0, **SMALL)
    for k in training.TRAIN_METRICS:
        np.testing.assert_array_equal(run_a.train[k], again.train[k])
    for k in training.EVAL_METRICS:
        np.testing.assert_array_equal(run_a.eval[k], again.eval[k])
    assert _leaves_equal(run_a.params, again.params)
    other = training.train(mnist1d, budget=30, optimizer=SGD, seed=1, **SMALL)
    assert not np.array_equal(run_a.train["loss"], other.train["loss"])


def test_no_recompile_for_same_budget_once_for_a_new_budget(mnist1d, run_a):
    before = training.trace_count("device")
    # same budget and shapes; a different seed and peak lr are traced inputs
    training.train(mnist1d, budget=30, optimizer=SGD, seed=5, peak_lr=0.05, **SMALL)
    assert training.trace_count("device") == before
    training.train(mnist1d, budget=31, optimizer=SGD, seed=0, **SMALL)
    assert training.trace_count("device") == before + 1
    training.train(mnist1d, budget=31, optimizer=SGD, seed=2, **SMALL)
    assert training.trace_count("device") == before + 1


def test_history_layout_and_lr_metric(run_a):
    h = run_a
    assert h.eval_steps.tolist() == [15, 30]
    assert set(h.train) == set(training.TRAIN_METRICS)
    assert all(v.shape == (30,) for v in h.train.values())
    assert all(v.shape == (2,) for v in h.eval.values())
    # linear decay from 0.1 over 30 steps (independent formula)
    np.testing.assert_allclose(h.train["lr"], 0.1 * (1 - np.arange(30) / 30), rtol=1e-6)
    # plain SGD: the update is -lr * g, so its norm is lr * |g|
    np.testing.assert_allclose(h.train["update_norm"], h.train["lr"] * h.train["grad_norm"],
                               rtol=1e-4)
    assert not h.diverged and h.diverged_step is None
    assert h.train["loss"][-5:].mean() < h.train["loss"][:5].mean()
    d = h.to_dict()
    assert d["final"]["test_accuracy"] == pytest.approx(float(h.eval["test_accuracy"][-1]))
    assert d["config"]["budget"] == 30 and d["config"]["optimizer"]["peak_lr"] == 0.1


def test_eval_steps_split():
    assert training.eval_steps(10, 4).tolist() == [3, 6, 8, 10]
    assert training.eval_steps(3, 5).tolist() == [1, 2, 3]
    assert training.eval_steps(100, 1).tolist() == [100]


def test_diagnostics_match_a_direct_computation(mnist1d, run_a):
    """Full-training-set loss, accuracy and gradient norm, recomputed without the library loop."""
    m = models.create("mlp", mnist1d, rngs=nnx.Rngs(0), hidden=(16,))
    nnx.update(m, run_a.params)
    x, y = jnp.asarray(mnist1d.x_train), jnp.asarray(mnist1d.y_train)

    def loss(model):
        logits = model(x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    value, grads = nnx.value_and_grad(loss)(m)
    gnorm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads)))
    assert run_a.final["train_loss"] == pytest.approx(float(value), rel=1e-4)
    assert run_a.final["full_grad_norm"] == pytest.approx(gnorm, rel=1e-3)
    acc = float(jnp.mean(jnp.argmax(m(x), -1) == y))
    assert run_a.final["train_accuracy"] == pytest.approx(acc, abs=1e-6)
    tacc = float(jnp.mean(jnp.argmax(m(jnp.asarray(mnist1d.x_test)), -1) == mnist1d.y_test))
    assert run_a.final["test_accuracy"] == pytest.approx(tacc, abs=1e-6)


def test_train_many_matches_single_runs(mnist1d, run_a):
    seeds, lrs = [0, 3], [0.1, 0.03]
    many = training.train_many(mnist1d, seeds=seeds, peak_lrs=lrs, budget=30, optimizer=SGD,
                               **SMALL)
    assert [(h.config["seed"], h.config["optimizer"]["peak_lr"]) for h in many] == [
        (0, 0.1), (0, 0.03), (3, 0.1), (3, 0.03)]
    singles = [(many[0], run_a),
               (many[3], training.train(mnist1d, budget=30, optimizer=SGD, seed=3,
                                        peak_lr=0.03, **SMALL))]
    for h, single in singles:
        np.testing.assert_allclose(h.train["loss"], single.train["loss"], rtol=1e-5)
        np.testing.assert_allclose(h.eval["test_loss"], single.eval["test_loss"], rtol=1e-5)
        np.testing.assert_allclose(h.eval["full_grad_norm"], single.eval["full_grad_norm"],
                                   rtol=1e-4)
    assert not np.allclose(many[0].train["loss"], many[1].train["loss"])
    assert not np.allclose(many[0].train["loss"], many[2].train["loss"])


def test_streaming_matches_on_device(digits):
    kw = dict(budget=20, optimizer=SGD, seed=4, model="mlp", model_kwargs={"hidden": (8,)},
              batch_size=64, num_evals=2, eval_batch_size=500)
    dev = training.train(digits, data="device", **kw)
    streamed = training.train(digits, data="stream", prefetch=1, **kw)
    assert streamed.config["data"] == "stream"
    np.testing.assert_allclose(streamed.train["loss"], dev.train["loss"], rtol=1e-5)
    for k in training.EVAL_METRICS:
        np.testing.assert_allclose(streamed.eval[k], dev.eval[k], rtol=1e-4)


def test_nan_loss_is_reported_as_divergence(digits):
    """A NaN input poisons the first batch that contains it: that step is reported."""
    x, y = digits.arrays("train")
    bad = 100
    x = x.copy()
    x[bad] = np.nan
    poisoned = dataclasses.replace(digits, name="digits-nan", _cache={"train": (x, y),
                                   "test": digits.arrays("test")})
    h = training.train(poisoned, budget=30, optimizer=SGD, seed=0, model="mlp",
                       model_kwargs={"hidden": (8,)}, batch_size=64, num_evals=1,
                       diagnostics=False)
    key = jax.random.split(jax.random.key(0))[1]
    first = next(t for t in range(30)
                 if bad in np.asarray(data.batch_indices(key, t, 1437, 64)).tolist())
    assert h.diverged and h.diverged_step == first
    assert np.all(np.isfinite(h.train["loss"][:first]))


def test_bad_input(mnist1d):
    with pytest.raises(ValueError, match="budget must be a positive int, got 0"):
        training.train(mnist1d, budget=0, **SMALL)
    with pytest.raises(ValueError, match="budget.*-3"):
        training.train(mnist1d, budget=-3, **SMALL)
    with pytest.raises(ValueError, match=r"batch_size must be <= .*4000.*4001"):
        training.train(mnist1d, budget=5, model="mlp", batch_size=4001)
    with pytest.raises(ValueError, match=r"\['cnn1d', 'mlp', 'resnet'\].*'transformer'"):
        training.train(mnist1d, budget=5, model="transformer")
    with pytest.raises(ValueError, match=r"digits.*mnist1d.*'nope'"):
        training.train("nope", budget=5)
    with pytest.raises(ValueError, match="data must be one of"):
        training.train(mnist1d, budget=5, data="disk")
    with pytest.raises(ValueError, match="warmup_steps"):
        training.train(mnist1d, budget=5, optimizer=training.OptimizerSpec(warmup_steps=5))


def test_optimizer_spec_validation_and_hashing():
    a = training.OptimizerSpec("adamw", "rex", schedule_kwargs={"beta": 0.9}, weight_decay=0.1)
    b = training.OptimizerSpec("adamw", "rex", schedule_kwargs=(("beta", 0.9),),
                               weight_decay=0.1)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(ValueError, match=r"optimizer must be one of .*'rmsprop'"):
        training.OptimizerSpec("rmsprop")
    with pytest.raises(ValueError, match="schedule must be one of"):
        training.OptimizerSpec(schedule="triangle")
    with pytest.raises(ValueError, match="precision"):
        training.OptimizerSpec(precision="fp8")
    with pytest.raises(ValueError, match="beta"):
        training.OptimizerSpec(schedule="rex", schedule_kwargs={"beta": 1.5})
    with pytest.raises(ValueError, match="demon"):
        training.OptimizerSpec("lamb", demon=True)
    assert training.OptimizerSpec(warmup_fraction=0.1).warmup_for(200) == 20


def _one_update(spec, params):
    tx = spec.build(100)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, state, params, value=jnp.float32(1.0))
    return updates


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam", "adamw", "lamb"])
def test_spec_builds_optax_optimizers(opt):
    params = {"w": jnp.ones((3,)), "b": jnp.zeros(())}
    spec = training.OptimizerSpec(opt, "cosine", peak_lr=0.1, warmup_steps=10,
                                  weight_decay=0.01)
    u = _one_update(spec, params)
    assert jax.tree.structure(u) == jax.tree.structure(params)
    # warmup: lr(0) = 0, so the first update is zero
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(u))
    sched = spec.learning_rate(100)
    assert float(sched(10)) == pytest.approx(0.1) and float(sched(100)) == pytest.approx(0.0)


def test_spec_sgd_matches_optax_directly():
    params = {"w": jnp.arange(3.0)}
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    spec = training.OptimizerSpec("sgd", "linear", peak_lr=0.2, momentum=0.9)
    tx = spec.build(10)
    ref = optax.sgd(lambda t: 0.2 * (1 - t / 10), momentum=0.9)
    s, r = tx.init(params), ref.init(params)
    for _ in range(3):
        u, s = tx.update(grads, s, params, value=jnp.float32(0.0))
        v, r = ref.update(grads, r, params)
        np.testing.assert_allclose(u["w"], v["w"], rtol=1e-6)


EXTRA = [
    ("demon_sgd", dict(optimizer="sgd", demon=True)),
    ("demon_adam", dict(optimizer="adam", demon=True)),
    ("adamp", dict(optimizer="adamp")),
    ("sgdp", dict(optimizer="sgdp")),
    ("stochastic_rounding", dict(precision="bf16_sr")),
    ("kahan_summation", dict(precision="bf16_kahan")),
    ("autowu", dict(schedule="autowu")),
]


@pytest.mark.parametrize("name,kw", EXTRA, ids=[e[0] for e in EXTRA])
def test_spec_paths_using_other_budgetax_transforms(name, kw):
    spec = training.OptimizerSpec(**kw)
    params = {"w": jnp.ones((4, 3), spec.param_dtype)}
    if not hasattr(budgetax, name):
        with pytest.raises(NotImplementedError, match=name):
            spec.build(100)
        pytest.skip(f"budgetax.{name} not available yet")
    u = _one_update(spec, params)
    assert u["w"].shape == (4, 3)


def test_bf16_training_runs(mnist1d):
    spec = training.OptimizerSpec("adam", "linear", peak_lr=1e-2, precision="bf16")
    h = training.train(mnist1d, budget=30, optimizer=spec, **SMALL)
    assert {x.dtype for x in jax.tree.leaves(h.params)} == {jnp.dtype(jnp.bfloat16)}
    assert not h.diverged and h.train["loss"][-5:].mean() < h.train["loss"][:5].mean()


def test_resnet_trains_on_digits(digits):
    spec = training.OptimizerSpec("sgd", "linear", peak_lr=0.05)
    h = training.train(digits, model="resnet", budget=2, batch_size=32, optimizer=spec,
                       model_kwargs={"width": 2, "depth": 1, "stages": 1}, num_evals=1,
                       eval_batch_size=512, diagnostics=False)
    assert not h.diverged and np.all(np.isfinite(h.train["loss"]))
    m = models.create("resnet", digits, rngs=nnx.Rngs(0), width=2, depth=1, stages=1)
    fresh = nnx.state(m, nnx.BatchStat)
    # batch-norm running statistics were updated in train mode (fresh: mean 0, var 1)
    moved = jax.tree.map(lambda a, b: not np.allclose(np.asarray(a), np.asarray(b)),
                         nnx.state(nnx.merge(nnx.graphdef(m), h.params, h.rest), nnx.BatchStat),
                         fresh)
    assert all(jax.tree.leaves(moved))


def test_make_core_is_the_pure_core_of_train(mnist1d, run_a):
    core, data_args = training.make_core(mnist1d, budget=30, optimizer=SGD, **SMALL)
    keys = jnp.stack([jax.random.key(0)])
    _, train_m, eval_m = jax.jit(core)(keys, jnp.array([0.1], jnp.float32), *data_args)
    assert train_m["loss"].shape == (1, 30) and eval_m["test_accuracy"].shape == (1, 2)
    np.testing.assert_array_equal(np.asarray(train_m["loss"][0]), run_a.train["loss"])
    np.testing.assert_array_equal(np.asarray(eval_m["test_loss"][0]), run_a.eval["test_loss"])
