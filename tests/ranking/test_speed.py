"""TSE, TSE-E and TSE-EMA against the float64 reference, under jit, on every batch shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from budgetax import ranking
from tests.reference import ranking as ref

SPE = 7
STEPS = 7 * 6 + 3  # six complete epochs and an incomplete one


def _curves(shape, seed=0):
    rng = np.random.default_rng(seed)
    k = np.arange(1, STEPS + 1)
    level = rng.uniform(0.2, 1.0, shape + (1,))
    amp = rng.uniform(0.5, 2.0, shape + (1,))
    noise = 0.05 * rng.standard_normal(shape + (STEPS,))
    return (level + amp * k ** -0.5 + noise).astype(np.float32)


ESTIMATORS = [
    ("tse", lambda x: ranking.tse(x, SPE), lambda c: ref.tse(c, SPE)),
    ("tse_e", lambda x: ranking.tse_e(x, SPE), lambda c: ref.tse_e(c, SPE)),
    ("tse_e3", lambda x: ranking.tse_e(x, SPE, last_epochs=3),
     lambda c: ref.tse_e(c, SPE, last_epochs=3)),
    ("tse_ema", lambda x: ranking.tse_ema(x, SPE), lambda c: ref.tse_ema(c, SPE)),
    ("tse_ema_half", lambda x: ranking.tse_ema(x, SPE, gamma=0.5),
     lambda c: ref.tse_ema(c, SPE, gamma=0.5)),
]


@pytest.mark.parametrize("name, fn, reference", ESTIMATORS, ids=[e[0] for e in ESTIMATORS])
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_against_reference_all_shapes(name, fn, reference, shape):
    curves = _curves(shape, seed=len(shape))
    got = np.asarray(jax.jit(fn)(jnp.asarray(curves)))
    assert got.shape == shape and got.dtype == np.float32
    flat = curves.reshape(-1, STEPS)
    want = np.array([reference(c) for c in flat]).reshape(shape)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_hand_computed_values_and_incomplete_epoch_ignored():
    losses = [4.0, 2.0, 3.0, 1.0, 100.0]  # the last step is an incomplete epoch
    assert float(ranking.tse(losses, 2)) == 5.0
    assert float(ranking.tse_e(losses, 2, last_epochs=1)) == 2.0
    assert float(ranking.tse_ema(losses, 2, gamma=0.5)) == 0.5 * 3.0 + 2.0
    assert ranking.epoch_means(losses, 2).tolist() == [3.0, 2.0]
    # gamma = 1 is TSE
    c = _curves((4,))
    np.testing.assert_allclose(ranking.tse_ema(c, SPE, gamma=1.0), ranking.tse(c, SPE), rtol=1e-6)


@pytest.mark.parametrize("fn", [lambda x: ranking.tse(x, SPE),
                                lambda x: ranking.tse_e(x, SPE, last_epochs=2),
                                lambda x: ranking.tse_ema(x, SPE, gamma=0.9)])
def test_known_order_shifted_and_scaled(fn):
    base = _curves((), seed=3)
    shifted = np.stack([base + d for d in (0.3, 0.0, 0.1, 0.2)])
    assert np.argsort(np.asarray(fn(shifted))).tolist() == [1, 2, 3, 0]
    scaled = np.stack([base * s for s in (1.5, 1.0, 2.0, 0.5)])
    assert np.argsort(np.asarray(fn(scaled))).tolist() == [3, 1, 0, 2]


def test_nan_inf_isolated_and_constant_finite():
    curves = _curves((4,), seed=5)
    curves[1, 40] = np.nan  # in the last complete epoch, which every estimator sees
    curves[2, 36] = np.inf
    curves[3] = 0.7  # constant
    clean = _curves((4,), seed=5)
    for fn in (ranking.tse, ranking.tse_e, ranking.tse_ema):
        out = np.asarray(fn(curves, SPE))
        assert np.isnan(out[1])
        assert np.isinf(out[2]) or np.isnan(out[2])
        assert np.isfinite(out[3])
        np.testing.assert_allclose(out[0], np.asarray(fn(clean, SPE))[0], rtol=1e-6)
    np.testing.assert_allclose(ranking.tse(curves[3], SPE), 0.7 * 6, rtol=1e-6)


def test_int_and_bfloat16_inputs_compute_in_float32():
    assert ranking.tse(jnp.arange(6), 2).dtype == jnp.float32
    assert ranking.tse(jnp.ones(6, jnp.bfloat16), 2).dtype == jnp.float32


def test_jit_does_not_recompile(counting_jit):
    f = counting_jit(ranking.tse_ema, static_argnames=("steps_per_epoch",))
    g = counting_jit(ranking.tse_e, static_argnames=("steps_per_epoch", "last_epochs"))
    for seed in range(3):
        c = jnp.asarray(_curves((3,), seed=seed))
        got = f(c, steps_per_epoch=SPE, gamma=0.9)
        np.testing.assert_allclose(got, ranking.tse_ema(c, SPE, 0.9), rtol=1e-6)
        g(c, steps_per_epoch=SPE, last_epochs=2)
    assert f.traces == 1 and g.traces == 1
    # a NaN early in the curve is ignored by TSE-E (only the last epochs count)
    early_nan = _curves(()).copy()
    early_nan[3] = np.nan
    assert np.isfinite(ranking.tse_e(early_nan, SPE)) and np.isnan(ranking.tse(early_nan, SPE))
    # gamma may be traced (a sweep over gamma)
    h = jax.jit(jax.vmap(lambda gm: ranking.tse_ema(_curves(()), SPE, gamma=gm)))
    out = h(jnp.array([0.5, 1.0]))
    np.testing.assert_allclose(out[1], ranking.tse(_curves(()), SPE), rtol=1e-6)


@pytest.mark.parametrize("spe, exc", [(0, ValueError), (-2, ValueError), (STEPS + 1, ValueError),
                                      (2.0, TypeError), (True, TypeError), (None, TypeError)])
def test_bad_steps_per_epoch(spe, exc):
    for fn in (ranking.tse, ranking.tse_e, ranking.tse_ema, ranking.epoch_means):
        with pytest.raises(exc, match=f"steps_per_epoch.*{spe!r}"):
            fn(_curves(()), spe)


def test_bad_other_arguments():
    c = _curves(())
    with pytest.raises(ValueError, match="last_epochs.*7"):
        ranking.tse_e(c, SPE, last_epochs=7)  # only 6 complete epochs
    with pytest.raises(ValueError, match="last_epochs.*0"):
        ranking.tse_e(c, SPE, last_epochs=0)
    with pytest.raises(ValueError, match="gamma.*1.5"):
        ranking.tse_ema(c, SPE, gamma=1.5)
    with pytest.raises(ValueError, match="gamma.*0.0"):
        ranking.tse_ema(c, SPE, gamma=0.0)
    with pytest.raises(ValueError, match="losses"):
        ranking.tse(1.0, 1)
