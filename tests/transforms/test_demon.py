"""Demon momentum, Demon SGD and Demon Adam against the float64 reference, under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import budgetax
from budgetax.transforms.demon import DemonAdamState, DemonState, demon_schedule
from tests.reference import demon as ref
from tests.reference import demon_keras as keras_ref

T = 20
STEPS = T + 10


def _grads(seed, shape=(3, 4), steps=STEPS):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(steps)]


def _run(tx, params, grads, counting_jit, params_fn=None):
    """Applies ``tx`` step by step under one jitted update; returns outputs, params, traces."""
    step = counting_jit(tx.update)
    state = tx.init(params)
    outs, traj = [], []
    for g in grads:
        updates, state = step({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
        outs.append(np.asarray(updates["w"], np.float64))
        traj.append(np.asarray(params["w"], np.float64))
    return outs, traj, state, step.traces


@pytest.mark.parametrize("beta_init", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("total_steps", [1, 7, 100])
def test_beta_values(beta_init, total_steps, counting_jit):
    sched = counting_jit(demon_schedule(total_steps, beta_init))
    for t in range(total_steps + 10):
        got = float(sched(jnp.asarray(t, jnp.int32)))
        np.testing.assert_allclose(got, ref.demon_beta(t, total_steps, beta_init),
                                   rtol=1e-5, atol=1e-6)
    assert sched.traces == 1
    assert float(sched(0)) == pytest.approx(beta_init)
    assert float(sched(total_steps)) == 0.0


def test_beta_is_exactly_zero_from_the_budget_on():
    # XLA's float32 T / T is an ulp below 1 on CPU for these budgets (found by
    # scanning T = 1..3000); beta must still be exactly 0 from t = T on.
    for total in (41, 47, 55, 77777):
        ts = jnp.arange(total - 3, total + 5)
        betas = np.asarray(jax.jit(jax.vmap(demon_schedule(total, 0.9)))(ts))
        assert np.all(betas[:3] > 0.0) and np.all(betas[3:] == 0.0), (total, betas)


def test_beta_is_rex_profile():
    # Demon's rule is the REX profile with curvature beta_init.
    for p in np.linspace(0, 1, 11):
        t = int(round(p * 100))
        assert float(demon_schedule(100, 0.9)(t)) == pytest.approx(
            0.9 * float(budgetax.profiles.rex(t / 100, beta=0.9)), rel=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("beta_init", [0.9, 0.5])
def test_demon_momentum_step_by_step(nesterov, beta_init, counting_jit):
    grads = _grads(0)
    params = {"w": jnp.zeros((3, 4))}
    outs, _, state, traces = _run(budgetax.demon(T, beta_init, nesterov=nesterov), params,
                                  grads, counting_jit)
    expected = ref.demon_momentum(grads, T, beta_init, nesterov=nesterov)
    for t, (got, want) in enumerate(zip(outs, expected, strict=True)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=f"step {t}")
    assert traces == 1
    assert isinstance(state, DemonState)
    assert state.count.dtype == jnp.int32 and int(state.count) == STEPS


def test_demon_after_budget_is_plain_gradient(counting_jit):
    grads = _grads(1)
    outs, _, _, _ = _run(budgetax.demon(T, 0.9), {"w": jnp.zeros((3, 4))}, grads, counting_jit)
    for t in range(T, STEPS):
        np.testing.assert_array_equal(outs[t], grads[t])
    # and before the budget the momentum really is there
    assert np.abs(outs[T - 5] - grads[T - 5]).max() > 1e-3


def test_demon_differs_from_constant_momentum(counting_jit):
    grads = _grads(2)
    outs, _, _, _ = _run(budgetax.demon(T, 0.9), {"w": jnp.zeros((3, 4))}, grads, counting_jit)
    const, _, _, _ = _run(optax.trace(0.9), {"w": jnp.zeros((3, 4))}, grads, counting_jit)
    np.testing.assert_allclose(outs[0], const[0], rtol=1e-6)
    assert np.abs(outs[T // 2] - const[T // 2]).max() > 1e-2


# ------------------------------------------------------------ against the Keras reference code

T_REF = 30  # the reference code is undefined after its budget: compare within it
REF_STEPS = 25


def _keras_run(opt, w0, grads, weight_decay=0.0):
    """Runs a Keras-port optimizer; L2 weight decay enters the gradient as a regularizer does."""
    var = np.asarray(w0, np.float64).copy()
    traj = []
    for g in grads:
        opt.apply_gradients([(np.asarray(g, np.float64) + weight_decay * var, var)])
        traj.append(var.copy())
    return traj


def _assert_traj(got, want, rtol, atol):
    for t, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"step {t}")


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_demon_sgd_matches_keras_reference(nesterov, weight_decay, counting_jit):
    grads = _grads(3, steps=REF_STEPS)
    w0 = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    lr = optax.linear_schedule(0.1, 0.01, REF_STEPS)
    tx = budgetax.demon_sgd(lr, T_REF, 0.9, nesterov=nesterov, weight_decay=weight_decay)
    _, traj, _, traces = _run(tx, {"w": jnp.asarray(w0)}, grads, counting_jit)
    keras = keras_ref.DemonSGD(T_REF, lambda t: 0.1 + (0.01 - 0.1) * t / REF_STEPS, 0.9,
                               nesterov=nesterov)
    _assert_traj(traj, _keras_run(keras, w0, grads, weight_decay), rtol=2e-5, atol=2e-5)
    assert traces == 1


def test_demon_sgd_nesterov_lookahead_guard():
    """The look-ahead with beta_{t+1} (the earlier behaviour) fails the comparison above."""
    grads = _grads(3, steps=REF_STEPS)
    w0 = np.random.default_rng(4).standard_normal((3, 4))
    keras = _keras_run(keras_ref.DemonSGD(T_REF, 0.1, 0.9, nesterov=True), w0, grads)
    theta, m, traj = w0.copy(), np.zeros_like(w0), []
    for t, g in enumerate(grads):
        m = ref.demon_beta(t, T_REF, 0.9) * m + g
        theta = theta - 0.1 * (g + ref.demon_beta(t + 1, T_REF, 0.9) * m)
        traj.append(theta.copy())
    with pytest.raises(AssertionError):
        _assert_traj(traj, keras, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_demon_sgd_lr_after_momentum_option(nesterov, counting_jit):
    grads = _grads(3)
    lr = optax.linear_schedule(0.1, 0.01, STEPS)
    w0 = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    tx = budgetax.demon_sgd(lr, T, 0.9, nesterov=nesterov, weight_decay=1e-2,
                            lr_in_momentum=False)
    _, traj, _, traces = _run(tx, {"w": jnp.asarray(w0)}, grads, counting_jit)
    expected = ref.demon_sgd(w0, grads, lambda t: 0.1 + (0.01 - 0.1) * t / STEPS, T, 0.9,
                             nesterov=nesterov, weight_decay=1e-2)
    _assert_traj(traj, expected, rtol=2e-5, atol=2e-5)
    assert traces == 1
    # with a learning-rate schedule the two forms really differ
    _, default, _, _ = _run(budgetax.demon_sgd(lr, T, 0.9, nesterov=nesterov, weight_decay=1e-2),
                            {"w": jnp.asarray(w0)}, grads, counting_jit)
    assert np.abs(default[10] - traj[10]).max() > 1e-3


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_demon_adam_matches_keras_reference(eps, counting_jit):
    grads = _grads(5, steps=REF_STEPS)
    w0 = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    tx = budgetax.demon_adam(0.05, T_REF, 0.9, b2=0.99, eps=eps)
    _, traj, state, traces = _run(tx, {"w": jnp.asarray(w0)}, grads, counting_jit)
    keras = keras_ref.DemonAdam(T_REF, 0.05, beta_1=0.9, beta_2=0.99, epsilon=eps)
    _assert_traj(traj, _keras_run(keras, w0, grads), rtol=2e-5, atol=2e-5)
    assert traces == 1
    assert isinstance(state[0], DemonAdamState)


def test_demon_adam_exact_option(counting_jit):
    grads = _grads(5)
    w0 = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    tx = budgetax.demon_adam(0.05, T, 0.9, b2=0.99, eps=1e-8, weight_decay=1e-2,
                             bias_correction="exact")
    _, traj, _, traces = _run(tx, {"w": jnp.asarray(w0)}, grads, counting_jit)
    expected = ref.demon_adam(w0, grads, lambda t: 0.05, T, 0.9, b2=0.99, eps=1e-8,
                              weight_decay=1e-2)
    _assert_traj(traj, expected, rtol=2e-5, atol=2e-5)
    assert traces == 1


def test_bias_corrections_really_differ_as_documented(counting_jit):
    """Guard for the two tests above, and the ratio quoted in the docstring (T = 20)."""
    g = np.full((1, 3), 0.7, np.float32)
    outs = {}
    for bc in ("original", "exact"):
        tx = budgetax.scale_by_demon_adam(20, 0.9, b2=0.999, eps=0.0, bias_correction=bc)
        outs[bc], _, _, _ = _run(tx, {"w": jnp.zeros((1, 3))}, [g] * 5, counting_jit)
    ratios = [float(outs["exact"][t][0, 0] / outs["original"][t][0, 0]) for t in range(5)]
    assert ratios[0] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ratios[1:], [1.0217, 1.0424, 1.0616, 1.0791], atol=2e-4)


def test_exact_bias_correction_is_unbiased_for_constant_gradient(counting_jit):
    # With a constant gradient g, m_hat_t = g exactly, so the Adam direction is g / (|g| + eps).
    g = np.array([[0.5, -2.0, 3.0]], np.float32)
    tx = budgetax.scale_by_demon_adam(10, 0.9, b2=0.999, eps=0.0, bias_correction="exact")
    outs, _, _, _ = _run(tx, {"w": jnp.zeros((1, 3))}, [g] * 15, counting_jit)
    for out in outs:
        np.testing.assert_allclose(out, np.sign(g), rtol=1e-5)


def test_learning_rate_schedule_and_float_agree(counting_jit):
    grads = _grads(7, steps=5)
    params = {"w": jnp.ones((3, 4))}
    _, a, _, _ = _run(budgetax.demon_adam(1e-2, T), params, grads, counting_jit)
    _, b, _, _ = _run(budgetax.demon_adam(optax.constant_schedule(1e-2), T), params, grads,
                      counting_jit)
    np.testing.assert_allclose(a[-1], b[-1], rtol=1e-6)


def test_mu_dtype_bfloat16(counting_jit):
    grads = _grads(8)
    params = {"w": jnp.zeros((3, 4), jnp.bfloat16)}
    tx = budgetax.demon(T, 0.9, mu_dtype=jnp.bfloat16)
    outs, _, state, traces = _run(tx, params, grads, counting_jit)
    assert state.mu["w"].dtype == jnp.bfloat16
    expected = ref.demon_momentum(grads, T, 0.9)
    for got, want in zip(outs, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=3e-2, atol=3e-2)
    assert traces == 1

    adam = budgetax.demon_adam(1e-3, T, mu_dtype=jnp.bfloat16)
    st = adam.init(params)
    assert st[0].mu["w"].dtype == jnp.bfloat16
    assert st[0].nu["w"].dtype == jnp.bfloat16  # the second moment follows the params
    st32 = budgetax.demon_adam(1e-3, T, mu_dtype=jnp.bfloat16).init({"w": jnp.zeros(3)})
    assert st32[0].mu["w"].dtype == jnp.bfloat16 and st32[0].nu["w"].dtype == jnp.float32


def test_empty_and_mixed_pytrees(counting_jit):
    for tx in (budgetax.demon(T), budgetax.demon_sgd(0.1, T), budgetax.demon_adam(1e-3, T)):
        state = tx.init({})
        updates, state = jax.jit(tx.update)({}, state, {})
        assert updates == {}
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones((2, 2))}
    tx = budgetax.demon_adam(1e-3, T)
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


def test_no_recompile_across_budget_reuse(counting_jit):
    params = {"w": jnp.zeros(4)}
    tx = budgetax.demon_adam(1e-3, T)
    step = counting_jit(tx.update)
    state = tx.init(params)
    for _ in range(3):
        _, state = step({"w": jnp.ones(4)}, state, params)
    assert step.traces == 1


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(total_steps=0), ValueError, "total_steps"),
    (dict(total_steps=-3), ValueError, "total_steps"),
    (dict(total_steps=10.0), TypeError, "total_steps"),
    (dict(total_steps=True), TypeError, "total_steps"),
    (dict(total_steps=10, beta_init=1.0), ValueError, "beta_init"),
    (dict(total_steps=10, beta_init=-0.1), ValueError, "beta_init"),
    (dict(total_steps=10, beta_init=float("nan")), ValueError, "beta_init"),
    (dict(total_steps=10, beta_init="0.9"), TypeError, "beta_init"),
    (dict(total_steps=10, nesterov=1), TypeError, "nesterov"),
    (dict(total_steps=10, mu_dtype=jnp.int32), TypeError, "mu_dtype"),
])
def test_demon_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        budgetax.demon(**kwargs)
    if "nesterov" not in kwargs:
        with pytest.raises(exc, match=match):
            budgetax.demon_adam(1e-3, **kwargs)


def test_optimizer_bad_input():
    with pytest.raises(ValueError, match="bias_correction"):
        budgetax.demon_adam(1e-3, 10, bias_correction="paper")
    with pytest.raises(ValueError, match="learning_rate"):
        budgetax.demon_sgd(-0.1, 10)
    with pytest.raises(ValueError, match="weight_decay"):
        budgetax.demon_adam(1e-3, 10, weight_decay=-1.0)
    with pytest.raises(ValueError, match="b2"):
        budgetax.demon_adam(1e-3, 10, b2=1.0)
    with pytest.raises(ValueError, match="eps"):
        budgetax.demon_adam(1e-3, 10, eps=-1e-8)


# ------------------------------------------------------------- drop-in: arrays as hyperparameters


@pytest.mark.parametrize("factory, kwargs", [
    (budgetax.demon_sgd, dict(learning_rate=0.1, beta_init=0.9, nesterov=True)),
    (budgetax.demon_adam, dict(learning_rate=1e-2, beta_init=0.9, weight_decay=1e-2)),
])
def test_inject_hyperparams_matches_plain(factory, kwargs, counting_jit):
    """What a user writes: inject_hyperparams (total_steps too becomes an array), jit, update."""
    injected = optax.inject_hyperparams(factory)(total_steps=T, **kwargs)
    plain = factory(total_steps=T, **kwargs)
    params = {"w": jnp.ones((3, 4))}
    step = counting_jit(injected.update)
    s_inj, s_plain = injected.init(params), plain.init(params)
    assert s_inj.hyperparams["total_steps"].dtype == jnp.int32
    for g in _grads(9):
        u_inj, s_inj = step({"w": jnp.asarray(g)}, s_inj, params)
        u_plain, s_plain = plain.update({"w": jnp.asarray(g)}, s_plain, params)
        np.testing.assert_allclose(u_inj["w"], u_plain["w"], rtol=2e-5, atol=1e-7)
    assert step.traces == 1


@pytest.mark.parametrize("factory, name, values", [
    (lambda **kw: budgetax.demon_sgd(0.1, T, **kw), "beta_init", (0.0, 0.5, 0.9)),
    (lambda **kw: budgetax.demon_adam(1e-2, T, **kw), "beta_init", (0.5, 0.9, 0.99)),
    (lambda **kw: budgetax.demon_adam(1e-2, T, **kw), "b2", (0.9, 0.99, 0.999)),
    (lambda **kw: budgetax.demon(T, **kw), "beta_init", (0.5, 0.8, 0.95)),
    (lambda **kw: budgetax.demon_sgd(0.1, beta_init=0.9, **kw), "total_steps", (5, 10, 20)),
])
def test_vmap_over_a_hyperparameter(factory, name, values):
    grads = [jnp.asarray(g) for g in _grads(10, steps=12)]

    def run(value):
        tx = factory(**{name: value})
        params = {"w": jnp.ones((3, 4))}
        state = tx.init(params)
        for g in grads:
            updates, state = tx.update({"w": g}, state, params)
            params = optax.apply_updates(params, updates)
        return params["w"]

    batched = jax.jit(jax.vmap(run))(jnp.asarray(values))
    for i, v in enumerate(values):
        np.testing.assert_allclose(batched[i], run(v), rtol=2e-5, atol=2e-6)
    assert np.abs(batched[0] - batched[-1]).max() > 1e-4


def test_no_params_needed_without_weight_decay():
    """As optax.sgd: update(g, state) with no params works when nothing uses them."""
    g = {"w": jnp.ones(3)}
    for tx, ref_tx in ((budgetax.demon_sgd(0.1, T), optax.sgd(0.1, momentum=0.9)),
                       (budgetax.demon_adam(1e-3, T), optax.adam(1e-3))):
        updates, _ = jax.jit(tx.update)(g, tx.init(g))
        first, _ = ref_tx.update(g, ref_tx.init(g))
        np.testing.assert_allclose(updates["w"], first["w"], rtol=1e-5)  # equal at t = 0
    with pytest.raises(ValueError):
        tx = budgetax.demon_sgd(0.1, T, weight_decay=1e-4)
        tx.update(g, tx.init(g))


def test_concrete_arrays_are_validated():
    with pytest.raises(ValueError, match=r"beta_init .*Array\(1"):
        budgetax.demon_sgd(0.1, T, beta_init=jnp.asarray(1.0))
    with pytest.raises(ValueError, match="total_steps"):
        budgetax.demon(jnp.asarray(0))
    with pytest.raises(TypeError, match="total_steps"):
        budgetax.demon(jnp.asarray(10.0))
    with pytest.raises(ValueError, match="b2"):
        budgetax.demon_adam(1e-3, T, b2=jnp.asarray([0.9, 1.0]))
    tx = optax.inject_hyperparams(budgetax.demon_sgd)(0.1, T, beta_init=1.5)
    with pytest.raises(ValueError, match="beta_init"):
        tx.init({"w": jnp.ones(2)})


@pytest.mark.parametrize("flag", ["nesterov", "lr_in_momentum"])
@pytest.mark.parametrize("value", ["False", 0, None, np.bool_(True)])
def test_booleans_are_bools(flag, value):
    with pytest.raises(TypeError, match=f"{flag} must be a bool, got {value!r}"):
        budgetax.demon_sgd(0.1, T, **{flag: value})
    if flag == "nesterov":
        with pytest.raises(TypeError, match=flag):
            budgetax.demon(T, **{flag: value})
