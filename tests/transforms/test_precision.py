"""Stochastic rounding and Kahan summation of 16-bit weight updates, under jit.

Checked against the NumPy / ml_dtypes reference in ``tests/reference/precision.py``.
"""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import budgetax
from budgetax.transforms.precision import (
    KahanSummationState,
    StochasticRoundingState,
    stochastically_round,
)
from tests.reference import precision as ref

DTYPES = [jnp.bfloat16, jnp.float16]
NP_DTYPES = {jnp.dtype(jnp.bfloat16): np.dtype(ml_dtypes.bfloat16),
             jnp.dtype(jnp.float16): np.dtype(np.float16)}


def _np_dtype(dtype):
    return NP_DTYPES[jnp.dtype(dtype)]


def _apply(tx, params, updates, state=None, counting_jit=None):
    """One jitted update + ``optax.apply_updates`` (plain optax, as nnx.Optimizer does)."""
    state = tx.init(params) if state is None else state
    step = counting_jit(tx.update) if counting_jit else jax.jit(tx.update)
    out, state = step(updates, state, params)
    return optax.apply_updates(params, out), out, state


def _f64(x):
    return np.asarray(jnp.asarray(x).astype(jnp.float32), np.float64)


def _random_case(dtype, n, seed, scale_exp=(-3, 3), rel_update=2.0**-8):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n) * 2.0 ** rng.integers(*scale_exp, n)
    u = w * rel_update * rng.standard_normal(n)
    return jnp.asarray(w, dtype), jnp.asarray(u, jnp.float32)


# ----------------------------------------------------------------------------- stochastic rounding


@pytest.mark.parametrize("dtype", DTYPES)
def test_sr_only_neighbours_and_bit_exact_update(dtype, counting_jit):
    w, u = _random_case(dtype, 5000, seed=0)
    new, out, state = _apply(budgetax.stochastic_rounding(seed=1), {"w": w}, {"w": u},
                             counting_jit=counting_jit)
    new = new["w"]
    assert new.dtype == dtype and out["w"].dtype == jnp.float32
    x = (np.asarray(w.astype(jnp.float32)) + np.asarray(u)).astype(np.float64)  # f32 sum
    lo, hi = ref.neighbours(x, _np_dtype(dtype))
    got = _f64(new)
    assert np.all((got == lo) | (got == hi))
    # both neighbours occur, so this is not nearest rounding in disguise
    assert np.mean(got == hi) > 0.1 and np.mean(got == lo) > 0.1
    # the float32 update lands exactly on the new weight: w + u' is exact and equals new
    np.testing.assert_array_equal(_f64(w) + np.asarray(out["w"], np.float64), got)


def test_sr_float16_subnormals(counting_jit):
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.standard_normal(4000) * 1e-6, jnp.float16)  # float16 subnormal range
    u = jnp.asarray(rng.standard_normal(4000) * 3e-8, jnp.float32)
    new, out, _ = _apply(budgetax.stochastic_rounding(0), {"w": w}, {"w": u},
                         counting_jit=counting_jit)
    x = (np.asarray(w.astype(jnp.float32)) + np.asarray(u)).astype(np.float64)
    lo, hi = ref.neighbours(x, np.float16)
    got = _f64(new["w"])
    assert np.all((got == lo) | (got == hi))
    assert np.mean(got != np.asarray(w, np.float64)) > 0.1  # subnormal updates are not flushed


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("w0", [1.0, -3.0, 0.0625])
@pytest.mark.parametrize("frac", [0.1, 0.5, 0.85])
def test_sr_unbiased(dtype, w0, frac):
    n = 20000
    w = np.asarray(w0, _np_dtype(dtype))
    gap = float(ref.ulp(w0, _np_dtype(dtype)))  # spacing above |w0|
    u = np.sign(w0) * frac * gap
    x = w0 + u
    new, _, _ = _apply(budgetax.stochastic_rounding(seed=7), {"w": jnp.full(n, w0, dtype)},
                       {"w": jnp.full(n, u, jnp.float32)})
    got = _f64(new["w"])
    lo, hi = ref.neighbours(np.float64(x), _np_dtype(dtype))
    assert set(np.unique(got)) <= {float(lo), float(hi)}
    sigma = gap * np.sqrt(frac * (1 - frac) / n)
    assert abs(got.mean() - x) < 5 * sigma, (got.mean(), x, sigma)
    del w


def test_sr_keys_differ_same_seed_reproducible():
    w = jnp.full(2000, 1.0, jnp.bfloat16)
    u = jnp.full(2000, 0.5 * 2.0**-7, jnp.float32)
    a, _, sa = _apply(budgetax.stochastic_rounding(seed=0), {"w": w}, {"w": u})
    b, _, _ = _apply(budgetax.stochastic_rounding(seed=0), {"w": w}, {"w": u})
    c, _, _ = _apply(budgetax.stochastic_rounding(seed=1), {"w": w}, {"w": u})
    np.testing.assert_array_equal(_f64(a["w"]), _f64(b["w"]))
    assert np.any(_f64(a["w"]) != _f64(c["w"]))
    # the key advances: the next update from the returned state rounds differently
    d, _, _ = _apply(budgetax.stochastic_rounding(seed=0), {"w": w}, {"w": u}, state=sa)
    assert np.any(_f64(a["w"]) != _f64(d["w"]))
    assert isinstance(sa, StochasticRoundingState)


def test_sr_vmap_each_run_has_its_own_key():
    params = {"w": jnp.full(500, 1.0, jnp.bfloat16)}
    tx = budgetax.stochastic_rounding(0)
    states = jax.vmap(lambda s: budgetax.stochastic_rounding(s).init(params))(jnp.arange(4))
    assert states.key.shape == (4, 2)
    assert len({tuple(np.asarray(k)) for k in states.key}) == 4
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (4, *x.shape)), params)
    updates = {"w": jnp.full((4, 500), 0.5 * 2.0**-7, jnp.float32)}
    out, new_states = jax.jit(jax.vmap(tx.update))(updates, states, batched)
    new = optax.apply_updates(batched, out)["w"]
    rows = [tuple(np.asarray(r.astype(jnp.float32))) for r in new]
    assert len(set(rows)) == 4
    assert new_states.key.shape == (4, 2)


def test_stochastically_round_function():
    y = stochastically_round(jnp.full(1000, 1.0 + 2.0**-9), jax.random.PRNGKey(0), jnp.bfloat16)
    assert y.dtype == jnp.bfloat16
    assert set(np.unique(_f64(y))) == {1.0, 1.0078125}
    with pytest.raises(TypeError, match="dtype"):
        stochastically_round(jnp.ones(3), jax.random.PRNGKey(0), jnp.float32)


# ----------------------------------------------------------------------------- kahan summation


def _run(tx, w0, updates, counting_jit):
    """Applies a sequence of updates with a jitted step; returns final weights, state, traces."""
    params = {"w": w0}
    state = tx.init(params)

    def step(params, state, u):
        out, state = tx.update({"w": u}, state, params)
        return optax.apply_updates(params, out), state

    jitted = counting_jit(step)
    for u in updates:
        params, state = jitted(params, state, jnp.asarray(u, jnp.float32))
    return params["w"], state, jitted.traces


@pytest.mark.parametrize("dtype", DTYPES)
def test_kahan_constant_update_below_half_ulp(dtype, counting_jit):
    steps, u = 200, 1e-3  # half an ulp of 1.0 is 2**-8 (bf16) / 2**-11 (f16)
    if dtype == jnp.float16:
        u = 1e-4
    updates = [np.full(8, u, np.float32)] * steps
    w0 = jnp.ones(8, dtype)
    kahan, state, traces = _run(budgetax.kahan_summation(), w0, updates, counting_jit)
    nearest, _, _ = _run(optax.identity(), w0, updates, counting_jit)
    target = 1.0 + steps * u
    # nearest rounding stalls: every update is cancelled
    np.testing.assert_array_equal(_f64(nearest), 1.0)
    np.testing.assert_array_equal(_f64(nearest), ref.nearest_run(np.ones(8), updates,
                                                                 _np_dtype(dtype)).astype(float))
    # Kahan moves the right distance, within one ulp, bit for bit as the reference
    assert np.all(np.abs(_f64(kahan) - target) <= ref.ulp(target, _np_dtype(dtype)))
    w_ref, c_ref = ref.kahan_run(np.ones(8), updates, _np_dtype(dtype))
    np.testing.assert_array_equal(_f64(kahan), w_ref.astype(np.float64))
    np.testing.assert_array_equal(_f64(state.compensation["w"]), c_ref.astype(np.float64))
    assert traces == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_kahan_tracks_float64_running_sum(dtype, counting_jit):
    rng = np.random.default_rng(11)
    n, steps = 128, 3000
    w0 = rng.uniform(0.5, 2.0, n).astype(_np_dtype(dtype))
    updates = (rng.normal(1e-4, 4e-4, (steps, n))).astype(np.float32)
    exact = w0.astype(np.float64) + updates.astype(np.float64).sum(0)
    kahan, _, traces = _run(budgetax.kahan_summation(), jnp.asarray(w0), updates, counting_jit)
    nearest, _, _ = _run(optax.identity(), jnp.asarray(w0), updates, counting_jit)
    unit = ref.ulp(exact, _np_dtype(dtype))
    kahan_err = np.abs(_f64(kahan) - exact) / unit
    nearest_err = np.abs(_f64(nearest) - exact) / unit
    assert kahan_err.max() <= 1.0, kahan_err.max()
    assert np.median(nearest_err) > 10.0, np.median(nearest_err)
    w_ref, _ = ref.kahan_run(w0, updates, _np_dtype(dtype))
    np.testing.assert_array_equal(_f64(kahan), w_ref.astype(np.float64))
    assert traces == 1


def test_kahan_float16_subnormals_match_reference(counting_jit):
    rng = np.random.default_rng(5)
    w0 = (rng.standard_normal(256) * 1e-5).astype(np.float16)
    updates = (rng.standard_normal((50, 256)) * 2e-8).astype(np.float32)
    kahan, state, _ = _run(budgetax.kahan_summation(), jnp.asarray(w0), updates, counting_jit)
    w_ref, c_ref = ref.kahan_run(w0, updates, np.float16)
    np.testing.assert_array_equal(_f64(kahan), w_ref.astype(np.float64))
    np.testing.assert_array_equal(_f64(state.compensation["w"]), c_ref.astype(np.float64))


def test_kahan_compensation_nonzero_under_jit():
    # The whole step (optimizer, Kahan, apply_updates) fused in one jit: XLA must not
    # keep w + y in excess precision, which would make the compensation zero.
    params = {"w": jnp.ones(16, jnp.bfloat16)}
    tx = optax.chain(optax.sgd(1e-3), budgetax.kahan_summation())

    @jax.jit
    def train_step(params, state):
        grads = {"w": jnp.ones(16, jnp.float32)}
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    new, state = train_step(params, tx.init(params))
    comp = state[1].compensation["w"]
    assert comp.dtype == jnp.bfloat16
    np.testing.assert_array_equal(_f64(new["w"]), 1.0)
    w_ref, c_ref = ref.kahan_step(np.ones(16, ml_dtypes.bfloat16), np.full(16, -1e-3,
                                  np.float32), np.zeros(16, ml_dtypes.bfloat16),
                                  ml_dtypes.bfloat16)
    assert np.all(_f64(comp) != 0.0)
    np.testing.assert_array_equal(_f64(comp), c_ref.astype(np.float64))
    # and over many steps the weight moves although each update is below half an ulp
    for _ in range(9):
        new, state = train_step(new, state)
    assert float(new["w"][0]) == pytest.approx(0.99, abs=2.0**-8)


# ------------------------------------------------------------------------- pass-through, pytrees


@pytest.mark.parametrize("make", [lambda: budgetax.stochastic_rounding(0),
                                  budgetax.kahan_summation])
def test_float32_pass_through_and_mixed_pytrees(make, counting_jit):
    tx = make()
    params = {"bf": jnp.ones((3, 2), jnp.bfloat16), "f32": jnp.ones(5),
              "nested": (jnp.zeros(2, jnp.float16), jnp.full(4, 2.0))}
    updates = {"bf": jnp.full((3, 2), 2.0**-7, jnp.float32), "f32": jnp.full(5, 1e-7),
               "nested": (jnp.full(2, 1e-3, jnp.float32), jnp.full(4, -3e-9))}
    state = tx.init(params)
    step = counting_jit(tx.update)
    out, state = step(updates, state, params)
    out, state = step(updates, state, params)
    assert step.traces == 1
    np.testing.assert_array_equal(np.asarray(out["f32"]), np.asarray(updates["f32"]))
    np.testing.assert_array_equal(np.asarray(out["nested"][1]), np.asarray(updates["nested"][1]))
    assert out["f32"].dtype == jnp.float32
    new = optax.apply_updates(params, out)
    assert jax.tree.map(lambda x: x.dtype, new) == jax.tree.map(lambda x: x.dtype, params)
    # 2**-7 on 1.0 is exactly one bfloat16 ulp: representable, so no rounding at all
    np.testing.assert_array_equal(_f64(new["bf"]), 1.0 + 2.0**-7)


def test_float32_leaves_cost_no_state():
    params = {"a": jnp.ones((100, 10)), "b": jnp.ones(10)}
    assert jax.tree.leaves(budgetax.kahan_summation().init(params)) == []
    comp = budgetax.kahan_summation().init({"a": jnp.ones(3), "b": jnp.ones(3, jnp.bfloat16)})
    assert isinstance(comp, KahanSummationState)
    assert isinstance(comp.compensation["a"], optax.MaskedNode)
    assert comp.compensation["b"].dtype == jnp.bfloat16
    sr_leaves = jax.tree.leaves(budgetax.stochastic_rounding(0).init(params))
    assert sum(x.size for x in sr_leaves) == 2  # just the key


@pytest.mark.parametrize("make", [lambda: budgetax.stochastic_rounding(0),
                                  budgetax.kahan_summation])
def test_empty_pytrees(make):
    tx = make()
    for params in ({}, [], ()):
        out, _ = jax.jit(tx.update)(params, tx.init(params), params)
        assert out == params


def test_nnx_optimizer_lands_on_kahan_weights():
    model = nnx.Linear(4, 3, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    tx = optax.chain(optax.sgd(1e-3), budgetax.kahan_summation())
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.ones((2, 4), jnp.bfloat16)
    grads = nnx.grad(lambda m: (m(x).astype(jnp.float32) ** 2).mean())(model)
    k0 = np.asarray(model.kernel[...])
    g = np.asarray(grads["kernel"][...].astype(jnp.float32))
    opt.update(model, grads)
    w_ref, _ = ref.kahan_step(k0, -1e-3 * g, np.zeros_like(k0), ml_dtypes.bfloat16)
    np.testing.assert_array_equal(_f64(model.kernel[...]), w_ref.astype(np.float64))


# ----------------------------------------------------------------------------- chain, bytes, errors


def test_precision_chain():
    base = optax.adam(1e-3, mu_dtype=jnp.bfloat16)
    assert budgetax.precision_chain(base, "nearest") is base
    params = {"w": jnp.ones(4, jnp.bfloat16)}
    sr = budgetax.precision_chain(base, "stochastic", seed=3).init(params)
    kahan = budgetax.precision_chain(base, "kahan").init(params)
    assert isinstance(sr[-1], StochasticRoundingState)
    assert isinstance(kahan[-1], KahanSummationState)


def test_persistent_bytes_per_param():
    n = 10_000
    p32 = {"w": jnp.zeros((n - 100,)), "b": jnp.zeros(100)}
    p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), p32)
    adamw32 = optax.adamw(1e-3)
    adamw16 = optax.adamw(1e-3, mu_dtype=jnp.bfloat16)
    cases = [
        (p32, adamw32, 12.0),
        (p16, adamw16, 6.0),
        (p16, budgetax.precision_chain(adamw16, "stochastic"), 6.0),
        (p16, budgetax.precision_chain(adamw16, "kahan"), 8.0),
        (p32, budgetax.precision_chain(adamw32, "kahan"), 12.0),  # f32: no buffer
    ]
    for params, tx, expected in cases:
        got = budgetax.persistent_bytes_per_param(params, tx.init(params))
        # counters and keys add a few bytes in total, not per parameter
        assert expected <= got < expected + 2e-3, (expected, got)
    with pytest.raises(ValueError, match="params"):
        budgetax.persistent_bytes_per_param({}, ())


@pytest.mark.parametrize("seed", ["0", 1.5, True, None, jnp.array([1, 2]), jnp.array(1.0)])
def test_bad_seed(seed):
    with pytest.raises(TypeError, match="seed"):
        budgetax.stochastic_rounding(seed)
    with pytest.raises(TypeError, match="seed"):
        budgetax.precision_chain(optax.sgd(0.1), "stochastic", seed=seed)


def test_bad_input():
    with pytest.raises(ValueError, match="rounding"):
        budgetax.precision_chain(optax.sgd(0.1), "truncate")
    with pytest.raises(TypeError, match="tx"):
        budgetax.precision_chain(0.1, "kahan")
    for tx in (budgetax.stochastic_rounding(0), budgetax.kahan_summation()):
        params = {"w": jnp.ones(2, jnp.bfloat16)}
        with pytest.raises(ValueError, match="params"):
            tx.update(params, tx.init(params))


@pytest.mark.parametrize("dtype, works, stalls", [(jnp.bfloat16, 16, 18), (jnp.float16, 22, 24)])
def test_kahan_stalls_below_the_documented_limit(dtype, works, stalls):
    """The compensation buffer is 16-bit: updates below ~2**-17 |w| (bf16) are never applied."""
    tx = budgetax.kahan_summation()
    w = jnp.asarray([1.0, 1.5], dtype)
    ulp = float(ref.ulp(1.0, _np_dtype(dtype)))

    def fraction_moved(log2_r):
        u = jnp.asarray([1.0, 1.5], jnp.float32) * 2.0**-log2_r
        steps = int(7 * ulp / 2.0**-log2_r)

        def body(carry, _):
            params, state = carry
            upd, state = tx.update({"w": u}, state, params)
            return (optax.apply_updates(params, upd), state), None

        (params, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))(
            ({"w": w}, tx.init({"w": w})))
        return (_f64(params["w"]) - _f64(w)) / (steps * np.asarray(u, np.float64))

    assert np.all(fraction_moved(works) > 0.85)
    np.testing.assert_array_equal(fraction_moved(stalls), 0.0)


def test_sr_unbiased_over_many_steps_and_uniform_bits(counting_jit):
    """Small updates accumulated by SR over many steps track the exact sum (no drift from
    the hash's bits), and the bits a step draws are uniform (chi-square over 64 bins)."""
    n, steps, frac = 256, 400, 0.3
    gap = 2.0**-7  # bfloat16 spacing above 1.0
    tx = budgetax.stochastic_rounding(seed=3)

    def body(carry, _):
        params, state = carry
        upd, state = tx.update({"w": jnp.full(n, frac * gap, jnp.float32)}, state, params)
        return (optax.apply_updates(params, upd), state), None

    w0 = {"w": jnp.ones(n, jnp.bfloat16)}
    (params, _), _ = counting_jit(lambda c: jax.lax.scan(body, c, None, length=steps))(
        (w0, tx.init(w0)))
    moved = _f64(params["w"]) - 1.0
    exact = steps * frac * gap
    # each step is a Bernoulli(frac) ulp while w stays in [1, 2): sd of the mean drift
    sigma = gap * np.sqrt(steps * frac * (1 - frac) / n)
    assert abs(moved.mean() - exact) < 5 * sigma, (moved.mean(), exact, sigma)
    from budgetax.transforms.precision import _random_words
    top = np.asarray(_random_words(jax.random.PRNGKey(5), (1 << 16,)) >> 26)
    counts = np.bincount(top, minlength=64)
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert chi2 < 120.0, chi2  # 63 degrees of freedom: p < 1e-5 beyond ~120


def test_precision_chain_of_a_list_puts_the_rounding_last():
    params = {"w": jnp.full((8,), 0.5, jnp.bfloat16)}
    grads = {"w": jnp.full((8,), 1e-3, jnp.float32)}
    parts = [optax.scale_by_adam(), budgetax.rex(100), optax.scale(-1e-2)]
    listed = budgetax.precision_chain(parts, "stochastic", seed=1)
    by_hand = optax.chain(*parts, budgetax.stochastic_rounding(1))
    a, _ = listed.update(grads, listed.init(params), params)
    b, _ = by_hand.update(grads, by_hand.init(params), params)
    np.testing.assert_array_equal(a["w"], b["w"])
    with pytest.raises(TypeError, match="list of them"):
        budgetax.precision_chain([], "stochastic")
