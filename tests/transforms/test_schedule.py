"""Schedule transforms: trajectories equal optax with the same schedule, no recompiles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import budgetax
from budgetax import schedules
from tests.reference import schedules as ref

NAMES = ["linear", "rex", "cosine", "step", "exponential", "polynomial", "wsd", "one_cycle",
         "constant"]


def quadratic_grad(params):
    # gradient of 0.5 * sum(a * x^2) + sum(b * x): depends on the trajectory
    a = jnp.array([1.0, 3.0, 0.5, 2.0])
    b = jnp.array([0.3, -1.0, 0.2, 0.0])
    return {"w": a * params["w"] + b, "v": jnp.sin(params["v"])}


def run(tx, steps, params=None):
    params = params or {"w": jnp.array([1.0, -2.0, 0.5, 3.0]), "v": jnp.array([[0.4, -0.7]])}

    @jax.jit
    def body(carry, _):
        params, state = carry
        updates, state = tx.update(quadratic_grad(params), state, params)
        return (optax.apply_updates(params, updates), state), params["w"]

    (params, _), traj = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return params, np.asarray(traj)


@pytest.mark.parametrize("name", NAMES)
def test_chain_before_sgd_equals_sgd_with_schedule(name):
    total, lr = 40, 0.1
    kw = dict(warmup_steps=5, sample_every=3)
    sched = getattr(schedules, name)(total, lr, **kw)
    p1, t1 = run(optax.chain(getattr(budgetax, name)(total, **kw), optax.sgd(lr)), total + 5)
    p2, t2 = run(optax.sgd(sched), total + 5)
    np.testing.assert_allclose(t1, t2, rtol=1e-5, atol=1e-7)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), p1, p2)


@pytest.mark.parametrize("name", ["rex", "cosine", "linear"])
def test_after_adam_direction_equals_adam_with_schedule(name):
    total, lr = 30, 1e-2
    tx = optax.chain(optax.scale_by_adam(), getattr(budgetax, name)(total), optax.scale(-lr))
    p1, t1 = run(tx, total)
    p2, t2 = run(optax.adam(getattr(schedules, name)(total, lr)), total)
    np.testing.assert_allclose(t1, t2, rtol=1e-5, atol=1e-7)


def test_trajectory_matches_float64_reference_sgd():
    # x_{t+1} = x_t - lr * rex(t) * g(x_t) for g = a x + b, computed in float64.
    total, lr = 25, 0.2
    a = np.array([1.0, 3.0, 0.5, 2.0])
    b = np.array([0.3, -1.0, 0.2, 0.0])
    x = np.array([1.0, -2.0, 0.5, 3.0])
    want = []
    for t in range(total):
        want.append(x.copy())
        x = x - ref.budgeted(ref.rex, total, lr, t) * (a * x + b)
    _, got = run(optax.chain(budgetax.rex(total), optax.sgd(lr)), total)
    np.testing.assert_allclose(got, np.array(want), rtol=2e-5, atol=1e-6)


def test_state_is_namedtuple_with_int32_count_and_no_recompile(counting_jit):
    tx = budgetax.rex(100, beta=0.7)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    assert hasattr(state, "_fields") and state.count.dtype == jnp.int32
    upd = counting_jit(tx.update)
    g = {"w": jnp.ones(3)}
    u1, state = upd(g, state)
    u2, state = upd(g, state)
    assert upd.traces == 1
    assert int(state.count) == 2
    np.testing.assert_allclose(u1["w"], 1.0)
    np.testing.assert_allclose(u2["w"], ref.rex(1 / 100, 0.7), rtol=1e-6)


def test_multiplier_keeps_update_dtype():
    tx = budgetax.cosine(10)
    g = {"w": jnp.ones(3, jnp.bfloat16)}
    u, _ = jax.jit(tx.update)(g, tx.init(g))
    assert u["w"].dtype == jnp.bfloat16


def test_scale_by_profile_generic_and_knobs():
    a = budgetax.scale_by_profile("step", 10)
    b = budgetax.step(10, milestones=(0.5,), factor=0.5)
    g = jnp.ones(())
    sa, sb = a.init(g), b.init(g)
    for t in range(12):
        ua, sa = a.update(g, sa)
        ub, sb = b.update(g, sb)
        assert float(ua) == pytest.approx(ref.step(min(t, 10) / 10))
        assert float(ub) == pytest.approx(ref.step(min(t, 10) / 10, (0.5,), 0.5))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: budgetax.rex(0), ValueError, "total_steps"),
        (lambda: budgetax.rex(12.5), TypeError, "total_steps"),
        (lambda: budgetax.rex(10, beta=1.5), ValueError, "beta"),
        (lambda: budgetax.linear(10, warmup_steps=10), ValueError, "warmup_steps"),
        (lambda: budgetax.cosine(10, sample_every=0), ValueError, "sample_every"),
        (lambda: budgetax.step(10, milestones=(0.5, 0.2)), ValueError, "milestones"),
        (lambda: budgetax.exponential(10, final=0.0), ValueError, "final"),
        (lambda: budgetax.rex(10, bogus=1.0), TypeError, "bogus"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_transform_signatures_show_the_profile_knobs():
    import inspect

    params = inspect.signature(budgetax.rex).parameters
    assert list(params)[0] == "total_steps" and "peak_value" not in params
    assert params["beta"].default == 0.5 and params["sample_every"].default == 1
    assert "milestones" in inspect.signature(budgetax.step).parameters


def test_transform_knob_vmapped_as_traced_array():
    betas = jnp.array([0.0, 0.5, 0.9])
    g = jnp.ones(())

    def multipliers(beta):
        tx = budgetax.rex(20, beta=beta, warmup_steps=2)
        state = tx.init(g)

        def body(state, _):
            u, state = tx.update(g, state)
            return state, u

        return jax.lax.scan(body, state, None, length=25)[1]

    got = np.asarray(jax.jit(jax.vmap(multipliers))(betas))
    for row, b in zip(got, (0.0, 0.5, 0.9), strict=True):
        want = [ref.budgeted(ref.rex, 20, 1.0, t, warmup=2, beta=b) for t in range(25)]
        np.testing.assert_allclose(row, want, rtol=1e-6, atol=1e-7)


def test_transform_under_inject_hyperparams_with_static_budget():
    g = {"w": jnp.array([1.0, -3.0])}
    tx = optax.inject_hyperparams(
        budgetax.wsd, static_args=("total_steps", "warmup_steps", "sample_every", "decay"))(
        total_steps=20, decay_fraction=0.5, decay="sqrt")
    state = tx.init(g)
    upd = jax.jit(tx.update)
    for t in range(22):
        u, state = upd(g, state)
        np.testing.assert_allclose(
            u["w"], ref.budgeted(ref.wsd, 20, 1.0, t, decay_fraction=0.5, decay="sqrt") * g["w"],
            rtol=2e-6, atol=1e-7)
    assert float(u["w"][0]) == 0.0  # exactly 0 from the budget on


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: budgetax.cosine(2**31), ValueError, "total_steps"),
        (lambda: budgetax.cosine(10, sample_every=2**40), ValueError, "sample_every"),
        (lambda: budgetax.step(10, milestones=()), ValueError, "milestones"),
        (lambda: budgetax.cosine(10.0), TypeError, "total_steps"),
        (lambda: budgetax.scale_by_profile("rex", 10, warmup_steps=2.5), TypeError,
         "warmup_steps"),
    ],
)
def test_bad_static_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_in_front_of_adam_the_multiplier_is_divided_out_as_documented():
    """The documented trap: chain(budgetax.rex(T), optax.adam(lr)) trains at the constant lr."""
    import jax
    import jax.numpy as jnp
    import optax

    import budgetax

    T, lr = 20, 1e-2
    grads = [{"w": jnp.array([0.3, -1.2, 2.0]) * (1 + 0.1 * t)} for t in range(T)]

    def updates(tx):
        params = {"w": jnp.zeros(3)}
        state, out = tx.init(params), []
        for g in grads:
            u, state = tx.update(g, state, params)
            out.append(u["w"])
        return jnp.stack(out)

    wrong = updates(optax.chain(budgetax.rex(T), optax.adam(lr)))
    constant = updates(optax.adam(lr))
    right = updates(optax.chain(optax.scale_by_adam(), budgetax.rex(T), optax.scale(-lr)))
    scheduled = updates(optax.adam(budgetax.schedules.rex(T, lr)))
    mid = T // 2
    # the multiplier is largely divided out: mid-budget, rex is at 2/3 but the update is not
    assert float(jnp.abs(wrong[mid] / constant[mid]).min()) > 0.95
    assert float(jnp.abs(scheduled[mid] / constant[mid]).max()) < 0.7
    assert jnp.allclose(right, scheduled, rtol=1e-5, atol=1e-9)  # the documented fix
    for doc in (budgetax.rex.__doc__, budgetax.scale_by_profile.__doc__,
                budgetax.transforms.schedule.__doc__):
        assert "cannot be detected" in " ".join(doc.split())
    del jax
