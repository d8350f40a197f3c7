"""Training elasticity and the elasticity stopping rule against the float64 reference."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from budgetax import ranking
from tests.reference import ranking as ref

SPE = 5
EPOCHS = 30


def _curves(shape, seed=0):
    rng = np.random.default_rng(seed)
    t = (np.arange(EPOCHS * SPE + 2) + 1) / SPE  # plus an incomplete epoch
    level = rng.uniform(0.1, 0.5, shape + (1,))
    rate = rng.uniform(0.1, 0.5, shape + (1,))
    noise = 0.01 * rng.standard_normal(shape + (t.size,))
    return (level + 2.0 * np.exp(-rate * t) + noise).astype(np.float32)


@pytest.mark.parametrize("smoothing", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3)])
def test_elasticity_against_reference(smoothing, shape):
    curves = _curves(shape, seed=len(shape))
    got = np.asarray(ranking.elasticity(curves, SPE, smoothing=smoothing))
    assert got.shape == shape + (EPOCHS,) and got.dtype == np.float32
    flat = curves.reshape(-1, curves.shape[-1])
    want = np.array([ref.elasticity(c, SPE, smoothing) for c in flat])
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=2e-4, atol=2e-5)
    assert np.all(np.isnan(got[..., 0])) and np.all(np.isfinite(got[..., 1:]))


def test_power_law_elasticity_is_exact_and_smoothing_keeps_it():
    t = np.arange(1, 21, dtype=np.float32)
    for alpha in (0.2, 1.0):
        for smoothing in (0.0, 0.7):
            eps = np.asarray(ranking.elasticity(3.0 * t ** -alpha, 1, smoothing=smoothing))
            np.testing.assert_allclose(eps[1:], -alpha, rtol=1e-4)
    # smoothing really smooths: a jump in the elasticity is spread over later epochs
    jump = np.concatenate([t[:10] ** -1.0, t[9] ** -1.0 * np.ones(10)]).astype(np.float32)
    raw = np.asarray(ranking.elasticity(jump, 1, smoothing=0.0))
    smooth = np.asarray(ranking.elasticity(jump, 1, smoothing=0.5))
    assert raw[12] == 0.0 and smooth[12] < -0.05


@pytest.mark.parametrize("threshold, patience, smoothing", [(0.05, 3, 0.5), (0.2, 1, 0.0),
                                                            (0.01, 5, 0.8), (1e-6, 2, 0.5)])
def test_early_stop_against_reference(threshold, patience, smoothing):
    curves = _curves((6,), seed=4)
    out = ranking.early_stop(curves, SPE, threshold=threshold, patience=patience,
                             smoothing=smoothing)
    assert out.stop_epoch.dtype == jnp.int32 and out.stop_epoch.shape == (6,)
    for j, c in enumerate(curves):
        stop, saved, given_up = ref.early_stop(c, SPE, threshold, patience, smoothing)
        assert int(out.stop_epoch[j]) == stop, (j, threshold, patience)
        np.testing.assert_allclose(float(out.compute_saved[j]), saved, atol=1e-7)
        np.testing.assert_allclose(float(out.loss_given_up[j]), given_up, rtol=1e-4, atol=1e-6)
    assert np.all((np.asarray(out.compute_saved) >= 0) & (np.asarray(out.compute_saved) < 1))


def test_early_stop_semantics():
    curves = _curves((3,), seed=7)
    # a fast-saturating curve stops earlier than a slowly decaying one
    t = (np.arange(EPOCHS * SPE) + 1) / SPE
    fast_slow = np.stack([0.2 + np.exp(-2.0 * t), 0.2 + np.exp(-0.1 * t)]).astype(np.float32)
    out = ranking.early_stop(fast_slow, SPE, threshold=0.02, patience=2)
    assert out.stop_epoch.tolist() == [10, EPOCHS]  # the slow one never saturates
    assert out.compute_saved.tolist() == pytest.approx([2 / 3, 0.0])
    # stopping a still-falling curve gives up loss
    falling = ranking.early_stop(fast_slow[1], SPE, threshold=0.9, patience=2)
    want = ref.early_stop(fast_slow[1], SPE, 0.9, 2, 0.5)
    assert int(falling.stop_epoch) == want[0] < EPOCHS
    assert float(falling.loss_given_up) == pytest.approx(want[2], rel=1e-4) and want[2] > 0.01
    # never triggered: trains to the end, saves nothing, gives up nothing
    never = ranking.early_stop(curves, SPE, threshold=1e-9, patience=3)
    assert never.stop_epoch.tolist() == [EPOCHS] * 3
    assert np.all(np.asarray(never.compute_saved) == 0) and np.all(never.loss_given_up == 0)
    # a constant curve stops as soon as the patience allows (epoch 1 has no elasticity)
    const = ranking.early_stop(jnp.ones(EPOCHS * SPE), SPE, patience=3)
    assert int(const.stop_epoch) == 4 and float(const.compute_saved) == pytest.approx(26 / 30)
    assert float(const.loss_given_up) == 0.0


def test_should_stop_online():
    t = (np.arange(EPOCHS * SPE) + 1) / SPE
    curve = (0.2 + np.exp(-1.0 * t)).astype(np.float32)
    stop = int(ranking.early_stop(curve, SPE, threshold=0.02, patience=2).stop_epoch)
    assert 2 < stop < EPOCHS
    for seen in (1, 2, stop - 1, stop, stop + 1, EPOCHS):
        fired = bool(ranking.should_stop(curve[: seen * SPE + 1], SPE, threshold=0.02,
                                         patience=2))
        assert fired == (seen >= stop), seen


def test_nan_inf_isolated_and_shapes():
    curves = _curves((2, 3), seed=2)
    curves[0, 1, 40] = np.nan
    curves[1, 2, 3] = np.inf
    eps = np.asarray(ranking.elasticity(curves, SPE))
    assert np.all(np.isnan(eps[0, 1, 8:])) and np.all(np.isnan(eps[1, 2, 1:]))
    clean = np.asarray(ranking.elasticity(_curves((2, 3), seed=2), SPE))
    np.testing.assert_allclose(eps[1, 0], clean[1, 0], rtol=1e-6)
    out = ranking.early_stop(curves, SPE)
    assert np.isnan(out.loss_given_up[1, 2]) and out.stop_epoch.shape == (2, 3)
    assert np.isfinite(out.loss_given_up[1, 0])


def test_jit_does_not_recompile(counting_jit):
    f = counting_jit(ranking.early_stop, static_argnames=("steps_per_epoch", "patience"))
    g = counting_jit(ranking.elasticity, static_argnames=("steps_per_epoch",))
    for seed in range(3):
        c = jnp.asarray(_curves((4,), seed=seed))
        out = f(c, steps_per_epoch=SPE, threshold=0.05, patience=3, smoothing=0.5)
        want = ranking.early_stop(c, SPE, threshold=0.05, patience=3)
        np.testing.assert_array_equal(out.stop_epoch, want.stop_epoch)
        g(c, steps_per_epoch=SPE, smoothing=jnp.float32(0.3))
    assert f.traces == 1 and g.traces == 1


def test_bad_arguments():
    c = _curves(())
    with pytest.raises(ValueError, match="steps_per_epoch.*0"):
        ranking.elasticity(c, 0)
    with pytest.raises(ValueError, match="steps_per_epoch.*1000"):
        ranking.early_stop(c, 1000)
    with pytest.raises(ValueError, match="smoothing.*1.0"):
        ranking.elasticity(c, SPE, smoothing=1.0)
    with pytest.raises(ValueError, match="threshold.*-0.1"):
        ranking.early_stop(c, SPE, threshold=-0.1)
    with pytest.raises(ValueError, match="patience.*0"):
        ranking.early_stop(c, SPE, patience=0)
    # a single complete epoch: no elasticity yet
    assert np.isnan(ranking.elasticity(c[:SPE], SPE)).all()


def test_min_epochs_delays_the_stop_by_hand():
    # loss 1 + 2 exp(-t), t = 1..20, smoothing 0: |elasticity| < 0.01 from epoch 8 on (by hand:
    # -0.0187 at 7, -0.0081 at 8), so patience 2 fires after epoch 9; with min_epochs=12 the
    # first allowed stop is epoch 12 (8 of 20 epochs saved); past the curve it never stops.
    t = jnp.arange(1.0, 21.0)
    loss = 1.0 + 2.0 * jnp.exp(-t)
    kw = dict(threshold=0.01, patience=2, smoothing=0.0)
    assert int(ranking.early_stop(loss, 1, **kw).stop_epoch) == 9
    late = ranking.early_stop(loss, 1, min_epochs=12, **kw)
    assert int(late.stop_epoch) == 12 and float(late.compute_saved) == pytest.approx(0.4)
    assert int(ranking.early_stop(loss, 1, min_epochs=25, **kw).stop_epoch) == 20
    assert bool(ranking.should_stop(loss[:11], 1, **kw))
    assert not bool(ranking.should_stop(loss[:11], 1, min_epochs=12, **kw))
    assert bool(ranking.should_stop(loss[:12], 1, min_epochs=12, **kw))
    with pytest.raises(ValueError, match="min_epochs must be a non-negative int, got -1"):
        ranking.early_stop(loss, 1, min_epochs=-1)
