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
from budgetax.training import core, device_data
from tests.conftest import EVAL_METRICS, TRAIN_METRICS, core_traces
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
    for k in TRAIN_METRICS:
        np.testing.assert_array_equal(run_a.train[k], again.train[k])
    for k in EVAL_METRICS:
        np.testing.assert_array_equal(run_a.eval[k], again.eval[k])
    assert _leaves_equal(run_a.params, again.params)
    other = training.train(mnist1d, budget=30, optimizer=SGD, seed=1, **SMALL)
    assert not np.array_equal(run_a.train["loss"], other.train["loss"])


def test_one_compilation_for_every_budget_seed_lr_and_evaluation_count(mnist1d):
    """The budget, seed and peak lr are inputs of the compiled program, not constants."""
    with core_traces() as traced:
        training.train(mnist1d, budget=29, optimizer=SGD, seed=0, **SMALL)
        compiled = traced["n"]  # 1, or 0 when an earlier test compiled these shapes
        assert compiled <= 1
        training.train(mnist1d, budget=29, optimizer=SGD, seed=5, peak_lr=0.05, **SMALL)
        training.train(mnist1d, budget=31, optimizer=SGD, seed=0, **SMALL)
        training.train(mnist1d, budget=3, optimizer=SGD, seed=2, **SMALL)
        training.train(mnist1d, budget=300, optimizer=SGD, seed=2,
                       **dict(SMALL, num_evals=3))
        assert traced["n"] == compiled


def test_history_layout_and_lr_metric(run_a):
    h = run_a
    assert h.eval_steps.tolist() == [15, 30]
    assert set(h.train) == set(TRAIN_METRICS)
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
    streamed = training.train(digits, data="stream", **kw)
    assert streamed.config["data"] == "stream"
    np.testing.assert_allclose(streamed.train["loss"], dev.train["loss"], rtol=1e-5)
    for k in EVAL_METRICS:
        np.testing.assert_allclose(streamed.eval[k], dev.eval[k], rtol=1e-4)


def test_streaming_matches_on_device_for_a_conv_model_stepped_on_cpu(digits):
    # on CPU the conv model's steps are dispatched one by one (core.dispatches_steps)
    kw = dict(budget=6, optimizer=SGD, seed=4, model="resnet",
              model_kwargs={"depth": 1, "width": 2, "stages": 1}, batch_size=32, num_evals=2,
              eval_batch_size=500)
    dev = training.train(digits, data="device", **kw)
    streamed = training.train(digits, data="stream", **kw)
    np.testing.assert_allclose(streamed.train["loss"], dev.train["loss"], rtol=1e-5)
    for k in EVAL_METRICS:
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
def test_spec_paths_using_other_budgetax_transforms(name, kw, monkeypatch):
    """Every path builds and updates, importing the transform from its module directly
    (not looked up on the top-level package, which is patched away here)."""
    assert hasattr(budgetax, name)
    monkeypatch.delattr(budgetax, name)
    spec = training.OptimizerSpec(**kw)
    params = {"w": jnp.ones((4, 3), spec.param_dtype)}
    u = _one_update(spec, params)
    assert u["w"].shape == (4, 3)
    assert bool(jnp.all(jnp.isfinite(u["w"].astype(jnp.float32))))


def _run_tx(tx, steps=4):
    """Updates of ``tx`` over a few steps with varying gradients and parameters."""
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.3)}
    state, out = tx.init(params), []
    for t in range(steps):
        grads = jax.tree.map(lambda p, t=t: jnp.cos(p * (t + 1)) + 0.1 * t, params)
        updates, state = tx.update(grads, state, params)
        out.append(updates)
        params = optax.apply_updates(params, updates)
    return out


T_DEMON, LR, WD, B1 = 10, 0.05, 0.1, 0.8


def _lin(t):
    return LR * (1 - t / T_DEMON)


# the equivalent hand-built optax chains: only the momentum changes with demon=True
DEMON_CASES = {
    # SGD: the learning rate inside the momentum buffer, as the reference Demon SGD
    "sgd_nesterov": (dict(optimizer="sgd", nesterov=True), optax.chain(
        optax.add_decayed_weights(WD), optax.scale_by_learning_rate(_lin),
        budgetax.demon(T_DEMON, B1, nesterov=True))),
    "momentum": (dict(optimizer="momentum"), optax.chain(
        optax.add_decayed_weights(WD), optax.scale_by_learning_rate(_lin),
        budgetax.demon(T_DEMON, B1))),
    # adam: coupled L2, as plain "adam"
    "adam": (dict(optimizer="adam"), optax.chain(
        optax.add_decayed_weights(WD), budgetax.scale_by_demon_adam(T_DEMON, B1, 0.99, 1e-8),
        optax.scale_by_learning_rate(_lin))),
    # adamw: decoupled, as plain "adamw"
    "adamw": (dict(optimizer="adamw"), optax.chain(
        budgetax.scale_by_demon_adam(T_DEMON, B1, 0.99, 1e-8), optax.add_decayed_weights(WD),
        optax.scale_by_learning_rate(_lin))),
}


@pytest.mark.parametrize("case", sorted(DEMON_CASES))
def test_demon_spec_matches_hand_built_chain(case):
    kw, ref = DEMON_CASES[case]
    spec = training.OptimizerSpec(schedule="linear", peak_lr=LR, momentum=B1, b2=0.99,
                                  weight_decay=WD, demon=True, **kw)
    for got, want in zip(_run_tx(spec.build(T_DEMON)), _run_tx(ref), strict=True):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)


def test_weight_decay_means_the_same_with_and_without_demon():
    """Coupled L2 for sgd/adam and decoupled for adamw, whether or not demon is on."""
    def first_update_from_decay(**kw):
        # zero gradients: the first update comes from weight decay alone
        spec = training.OptimizerSpec(schedule="constant", peak_lr=LR, momentum=B1,
                                      weight_decay=WD, **kw)
        tx = spec.build(T_DEMON)
        params = {"w": jnp.array([2.0, -1.0])}
        u, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
        return np.asarray(u["w"])

    w = np.array([2.0, -1.0])
    for demon in (False, True):
        # adamw: decoupled, -lr * wd * w
        np.testing.assert_allclose(first_update_from_decay(optimizer="adamw", demon=demon),
                                   -LR * WD * w, rtol=1e-5)
        # adam: coupled, the L2 gradient is normalised by Adam: about -lr * sign(w)
        np.testing.assert_allclose(first_update_from_decay(optimizer="adam", demon=demon),
                                   -LR * np.sign(w), rtol=1e-4)
        # sgd: coupled, -lr * wd * w on the first step
        np.testing.assert_allclose(first_update_from_decay(optimizer="sgd", demon=demon),
                                   -LR * WD * w, rtol=1e-5)


def test_demon_sgd_keeps_nesterov():
    on = training.OptimizerSpec("sgd", "constant", peak_lr=LR, momentum=B1, demon=True,
                                nesterov=True)
    off = dataclasses.replace(on, nesterov=False)
    a, b = _run_tx(on.build(T_DEMON)), _run_tx(off.build(T_DEMON))
    # first step: nesterov gives g + beta_1 * g, plain momentum g
    assert not np.allclose(np.asarray(a[0]["w"]), np.asarray(b[0]["w"]))


def test_sr_seed_is_not_compiled_in(mnist1d, run_a):
    """OptimizerSpec.seed is not part of the static config: no recompilation for it."""
    training.train(mnist1d, budget=30, optimizer=SGD, seed=0, **SMALL)  # compiled (if not yet)
    with core_traces() as traced:
        h = training.train(mnist1d, budget=30, optimizer=dataclasses.replace(SGD, seed=7),
                           seed=0, **SMALL)
    assert traced["n"] == 0
    np.testing.assert_array_equal(h.train["loss"], run_a.train["loss"])


def _sr_key(opt_state):
    keys = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]
            if getattr(path[-1], "name", None) == "key"]
    assert len(keys) == 1
    return np.asarray(keys[0])


def test_bf16_sr_training_each_vmapped_run_has_its_own_sr_stream(mnist1d):
    """bf16_sr under train_many's core: bf16 params, it learns, and run r's rounding key
    comes from its own key (not from OptimizerSpec.seed, shared by all runs)."""
    spec = training.OptimizerSpec("adam", "linear", peak_lr=1e-2, precision="bf16_sr")
    budget, seeds = 30, [0, 1]
    task = training.preset(mnist1d, "mlp", model_kwargs={"hidden": (16,)})
    prog = core.make_program(task, budget, spec, batch_size=50, num_evals=1,
                             diagnostics=False)
    runs = core.Runs(prog, core.make_mesh(jax.devices()[:1]), seeds, [1e-2, 1e-2], [0, 0])
    carry, train_m, _, _ = runs.run()
    states = carry.states
    assert {x.dtype for x in jax.tree.leaves(states.params)} == {jnp.dtype(jnp.bfloat16)}
    loss = np.asarray(train_m["loss"])
    assert np.all(np.isfinite(loss)) and np.all(loss[:, -5:].mean(1) < loss[:, :5].mean(1))
    got = _sr_key(states.opt_state)  # [R, 2]
    assert not np.array_equal(got[0], got[1])
    # independent expectation: PRNGKey(seed drawn from the run's key), split once per update
    for r, s in enumerate(seeds):
        seed = jax.random.randint(jax.random.fold_in(jax.random.key(s), core.SR_STREAM), (), 0,
                                  2**31 - 1, dtype=jnp.int32)
        k = jax.random.PRNGKey(seed)
        for _ in range(budget):
            k, _ = jax.random.split(k)
        np.testing.assert_array_equal(got[r], np.asarray(k))


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


def test_train_state_has_no_dead_divergence_field():
    assert "diverged_step" not in training.TrainState._fields


def test_device_arrays_are_uploaded_once(mnist1d, run_a):
    """Repeated train() calls of one task reuse its device arrays: the data is uploaded once."""
    task = training.preset(mnist1d, "mlp", model_kwargs={"hidden": (16,)})
    assert training.preset(mnist1d, "mlp", model_kwargs={"hidden": (16,)}) is task
    training.train(mnist1d, budget=30, optimizer=SGD, seed=2, **SMALL)
    first = dict(device_data._DEVICE_DATA[task])
    training.train(mnist1d, budget=30, optimizer=SGD, seed=1, **SMALL)
    (key, (train_dev, eval_dev, diag_dev)), = device_data._DEVICE_DATA[task].items()
    assert first[key][0] is train_dev and first[key][1] is eval_dev
    assert diag_dev is train_dev  # full-set diagnostics: the same arrays, not a copy
    assert isinstance(train_dev["x"], jax.Array)
    np.testing.assert_array_equal(np.asarray(train_dev["x"]), mnist1d.x_train)
    np.testing.assert_array_equal(np.asarray(eval_dev["y"]), mnist1d.y_test)


def test_history_early_stop_replays_the_elasticity_rule_with_the_runs_epochs():
    # per-epoch loss 1 + 2 exp(-t), t = 1..20. By hand, with epoch time t: the elasticity
    # (L_t / L_{t-1} - 1) (t - 1) is -0.0187 at t = 7, -0.0081 at t = 8, -0.0034 at t = 9, so
    # with |eps| < 0.01 for 2 epochs the rule stops after epoch 9, saving 11/20 of the compute.
    t = np.arange(1.0, 21.0)
    loss = 1.0 + 2.0 * np.exp(-t)
    h = training.History(config={"steps_per_epoch": 3}, eval_steps=np.array([60]), eval={},
                         train={"loss": np.repeat(loss, 3).astype(np.float32)}, diverged=False,
                         diverged_step=None, seconds=0.0)
    out = h.early_stop(threshold=0.01, patience=2, smoothing=0.0)
    assert out.stop_epoch == 9 and out.compute_saved == pytest.approx(0.55)
    assert out.loss_given_up == pytest.approx(loss[8] - loss[19], abs=1e-6)  # float32 losses
    # one 60-step epoch: the rule never fires, the whole run is trained
    whole = h.early_stop(threshold=0.01, patience=2, smoothing=0.0, steps_per_epoch=60)
    assert whole.stop_epoch == 1 and whole.compute_saved == 0.0


def test_config_records_steps_per_epoch(run_a):
    assert run_a.config["steps_per_epoch"] == 4000 // run_a.config["batch_size"]


def test_autowu_trains_through_the_core(mnist1d):
    """AutoWU keeps a PRNG key in its state: the core's carry holds typed keys too."""
    spec = training.OptimizerSpec("adamp", "autowu", schedule_kwargs={"min_lr": 1e-4})
    h = training.train(mnist1d, budget=30, optimizer=spec, seed=0, **SMALL)
    lr = h.train["lr"]
    assert lr[0] == pytest.approx(1e-4) and lr[1] > lr[0]  # exponential warmup from min_lr
    assert lr[-1] < 1e-6 and np.isfinite(h.train["loss"]).all()  # decayed to 0 at the budget


BUDGET_DATA_SPECS = [
    training.OptimizerSpec("sgd", "step", peak_lr=0.1, momentum=0.9, demon=True,
                           warmup_fraction=0.1),
    training.OptimizerSpec("adamw", "cosine", peak_lr=0.01, demon=True, warmup_steps=3,
                           weight_decay=1e-3),
    training.OptimizerSpec("momentum", "rex", peak_lr=0.05, sample_every=4, end_lr=1e-3),
]


@pytest.mark.parametrize("spec", BUDGET_DATA_SPECS, ids=["demon-sgd-step", "demon-adamw",
                                                         "rex-sampled"])
def test_the_budget_as_data_builds_the_same_optimizer_bit_for_bit(spec):
    """``spec.build(spec.budget_steps(T))`` traced equals ``spec.build(T)`` with T a constant."""
    params = {"w": jnp.linspace(-1.0, 1.0, 7)}

    def run(tx):
        def body(carry, t):
            p, state = carry
            g = {"w": jnp.sin(p["w"] * (t + 1).astype(jnp.float32))}
            u, state = tx.update(g, state, p, value=jnp.float32(1.0))
            p = optax.apply_updates(p, u)
            return (p, state), p["w"]
        return jax.lax.scan(body, (params, tx.init(params)), jnp.arange(45))[1]

    as_data = jax.jit(lambda steps: run(spec.build(steps)))
    for total in (37, 40):
        static = np.asarray(jax.jit(lambda: run(spec.build(total)))())  # noqa: B023
        traced = np.asarray(as_data(spec.budget_steps(total)))
        np.testing.assert_array_equal(traced.view(np.uint32), static.view(np.uint32))
    assert as_data._cache_size() == 1


def test_autowu_keeps_a_static_budget():
    spec = training.OptimizerSpec("sgd", "autowu", peak_lr=0.1)
    with pytest.raises(ValueError, match="autowu"):
        spec.budget_steps(100)
    steps = training.OptimizerSpec("sgd", "linear").budget_steps(100)
    with pytest.raises(TypeError, match="autowu"):
        spec.build(steps)
