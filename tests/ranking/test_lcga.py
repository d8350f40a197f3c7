"""LCGA: the batched JAX fit against scipy least_squares, parameter recovery, order, edge cases."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from budgetax import ranking
from tests.reference import ranking as ref

SPE = 10
STEPS = 200
K = (np.arange(STEPS) + 1) / SPE  # training time in epochs of each step


def _noisy_curves():
    """Four fixed noisy curves of different shapes (only the first is of LCGA's own form)."""
    rng = np.random.default_rng(1)
    i = np.arange(STEPS)
    noise = lambda s: s * rng.standard_normal(STEPS)
    return np.stack([
        1 / (0.5 + 0.8 * K) + 0.2 + noise(0.01),
        2.0 * (1 + i) ** -0.3 + noise(0.02),
        0.3 + np.exp(-0.05 * (i + 1) ** 0.8 + 0.5) + noise(0.01),
        3 / (1 + ((i + 1) / 40) ** 1.2) + 0.1 + noise(0.01),
    ]).astype(np.float32)


CURVES = _noisy_curves()


# All calls below use batches of shape [4, STEPS] so that the fit compiles once per
# (variant, burn-in) and the module stays fast.


@pytest.mark.parametrize("variant", ranking.LCGA_VARIANTS)
def test_against_reference(variant):
    fit = ranking.lcga(jnp.asarray(CURVES), SPE, variant=variant)
    assert fit.score.shape == (4,) and fit.params.shape == (4, 3) and fit.converged.shape == (4,)
    assert fit.score.dtype == jnp.float32 and fit.converged.dtype == jnp.bool_
    assert bool(fit.converged.all())
    for j, curve in enumerate(CURVES):
        score, params = ref.lcga(curve.astype(np.float64), SPE, burn_in_epochs=1, variant=variant)
        np.testing.assert_allclose(float(fit.score[j]), score, rtol=2e-4, err_msg=f"curve {j}")
        np.testing.assert_allclose(np.asarray(fit.params[j]), params, rtol=2e-3, atol=1e-5,
                                   err_msg=f"curve {j}")
    assert np.all(np.asarray(fit.params) >= 0)


def test_burn_in_changes_the_window():
    a = ranking.lcga(CURVES, SPE, burn_in_epochs=1)
    b = ranking.lcga(CURVES, SPE, burn_in_epochs=5)
    for j in range(2):
        want, _ = ref.lcga(CURVES[j].astype(np.float64), SPE, burn_in_epochs=5)
        np.testing.assert_allclose(float(b.score[j]), want, rtol=2e-4)
    assert np.all(np.abs(np.asarray(a.score) - np.asarray(b.score)) > 1e-3)


TRUE_PARAMS = np.array([(0.5, 2.0, 0.1), (1.0, 0.3, 0.5), (0.2, 5.0, 0.0), (3.0, 1.0, 2.0)])


def test_recovers_noiseless_parameters():
    b = TRUE_PARAMS
    curves = 1.0 / (b[:, :1] + b[:, 1:2] * K) + b[:, 2:]
    fit = ranking.lcga(curves.astype(np.float32), SPE)
    assert bool(fit.converged.all())
    np.testing.assert_allclose(np.asarray(fit.params), b, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(ranking.lcga_curve(fit.params, K), curves, rtol=1e-4, atol=1e-5)
    # the score is the closed-form mean of L'/sqrt(L'') of the normalised curve
    window = slice(SPE, STEPS)
    s = curves[:, window][:, :SPE].mean(axis=1, keepdims=True)
    u = (b[:, :1] + b[:, 1:2] * K[window]) * s
    np.testing.assert_allclose(fit.score, np.mean(-1 / np.sqrt(2 * u), axis=1), rtol=1e-3)


def test_order_of_shifted_curves_and_scale_invariance():
    base = CURVES[0]
    # shifted up = worse final loss = smaller relative descent = score closer to 0
    shifted = np.stack([base + d for d in (0.4, 0.0, 0.2, 0.1)])
    for variant in ranking.LCGA_VARIANTS:
        scores = np.asarray(ranking.lcga(shifted, SPE, variant=variant).score)
        assert np.argsort(scores).tolist() == [1, 3, 2, 0], variant
    # the score is computed on normalised losses: scaling a curve does not change it
    factors = np.array([0.5, 1.0, 4.0, 10.0])
    fit = ranking.lcga(np.stack([base * f for f in factors]), SPE)
    np.testing.assert_allclose(fit.score, fit.score[1], rtol=1e-3)
    np.testing.assert_allclose(fit.params[:, 2], factors * fit.params[1, 2], rtol=2e-3)


def test_nan_inf_and_constant_curves():
    curves = CURVES.copy()
    curves[1, 50] = np.nan
    curves[2, 150] = np.inf
    curves[3] = 0.8  # constant: no descent, scores 0 (the worst possible)
    fit = ranking.lcga(curves, SPE)
    clean = ranking.lcga(CURVES, SPE)
    assert np.isnan(fit.score[1]) and np.isnan(fit.score[2])
    assert np.all(np.isnan(fit.params[1:3]))
    assert fit.converged.tolist() == [True, False, False, True]
    np.testing.assert_allclose(fit.score[0], clean.score[0], rtol=1e-6)
    assert float(fit.score[3]) == 0.0
    np.testing.assert_allclose(ranking.lcga_curve(fit.params[3], K), 0.8, rtol=1e-5)
    # non-positive losses cannot be normalised: NaN, flagged
    neg = ranking.lcga(-CURVES, SPE)
    assert np.all(np.isnan(neg.score)) and not bool(neg.converged.any())


def test_shapes_and_no_recompile(counting_jit):
    f = counting_jit(ranking.lcga, static_argnames=("steps_per_epoch", "burn_in_epochs",
                                                    "variant"))
    batched = np.stack([CURVES[:3], CURVES[1:]])  # [2, 3, steps]
    out = f(jnp.asarray(batched), steps_per_epoch=SPE)
    assert out.score.shape == (2, 3) and out.params.shape == (2, 3, 3)
    out2 = f(jnp.asarray(batched[::-1]), steps_per_epoch=SPE)
    assert f.traces == 1
    np.testing.assert_allclose(out2.score[1], out.score[0], rtol=1e-6)
    single = ranking.lcga(CURVES[1], SPE)
    assert single.score.shape == () and single.params.shape == (3,)
    np.testing.assert_allclose(single.score, out.score[0, 1], rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps_per_epoch.*0"):
        ranking.lcga(CURVES, 0)
    with pytest.raises(ValueError, match=f"steps_per_epoch.*{STEPS + 1}"):
        ranking.lcga(CURVES, STEPS + 1)
    with pytest.raises(TypeError, match="steps_per_epoch.*2.5"):
        ranking.lcga(CURVES, 2.5)
    with pytest.raises(ValueError, match="burn_in_epochs.*20"):
        ranking.lcga(CURVES, SPE, burn_in_epochs=20)  # 20 complete epochs: nothing left
    with pytest.raises(ValueError, match="burn_in_epochs.*-1"):
        ranking.lcga(CURVES, SPE, burn_in_epochs=-1)
    with pytest.raises(ValueError, match="variant.*'sqrt'"):
        ranking.lcga(CURVES, SPE, variant="sqrt")
    with pytest.raises(ValueError, match="3 steps"):
        ranking.lcga(CURVES[:, :4], 2, burn_in_epochs=1)
