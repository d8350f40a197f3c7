"""The batched fits on curves that suit no family: finite fits, no worse than scipy's curve_fit."""

from __future__ import annotations

import numpy as np
import pytest

from budgetax import ranking
from budgetax.ranking import _fit
from tests.reference import ranking as ref

STEPS = 200
SPE = 10
KS = np.arange(1, STEPS + 1, dtype=np.float64)


def _stress_curves():
    rng = np.random.default_rng(3)
    return {
        "flat": np.full(STEPS, 0.8),
        "rising": 0.5 + 0.002 * KS,
        "linear": 2.0 - 0.008 * KS,
        "cliff": np.where(KS < 100, 2.0, 0.5),
        "noisy": (0.5 + 2 * KS ** -0.5) * np.exp(0.3 * rng.standard_normal(STEPS)),
        "oscillating": 0.5 + 2 * KS ** -0.5 + 0.2 * np.sin(KS / 5),
    }


STRESS = _stress_curves()
NAMES = list(STRESS)
CURVES = np.stack([STRESS[n] for n in NAMES]).astype(np.float32)


def _no_worse(ours, scipy_sse, y):
    """Our SSE is at most SciPy's, up to 1e-3 relative and float32's resolution of the curve."""
    return ours <= scipy_sse * (1 + 1e-3) + 1e-9 * float(np.sum(np.asarray(y) ** 2))


@pytest.mark.parametrize("family", ranking.CURVE_FAMILIES)
def test_extrapolate_stress_curves_finite_and_no_worse_than_curve_fit(family):
    fit = ranking.extrapolate(CURVES, 1000, family=family)
    assert np.isfinite(fit.prediction).all() and np.isfinite(fit.params).all(), NAMES
    for j, name in enumerate(NAMES):
        y = CURVES[j].astype(np.float64)
        ours = float(np.sum((ref.curve_model(family, np.asarray(fit.params[j], np.float64), KS)
                             - y) ** 2))
        theirs = ref.curve_fit_sse(family, KS, y)
        assert _no_worse(ours, theirs, y), (family, name, ours, theirs)
    # no member of a family beats a constant on a rising curve: the fit is the mean
    rising = NAMES.index("rising")
    np.testing.assert_allclose(fit.prediction[rising], STRESS["rising"].mean(), rtol=1e-3)
    np.testing.assert_allclose(ranking.curve(fit.params[rising], KS, family=family),
                               STRESS["rising"].mean(), rtol=1e-3)


def test_lcga_stress_curves_finite_and_no_worse_than_curve_fit():
    k = (np.arange(SPE, STEPS) + 1) / SPE  # burn-in of one epoch
    for variant in ranking.LCGA_VARIANTS:
        fit = ranking.lcga(CURVES, SPE, variant=variant)
        assert np.isfinite(fit.score).all() and np.isfinite(fit.params).all(), variant
        assert bool(fit.converged.all())
        for j, name in enumerate(NAMES):
            y = CURVES[j, SPE:].astype(np.float64)
            s = y[:SPE].mean()
            ours = float(np.sum((ref.lcga_model(np.asarray(fit.params[j], np.float64), k) - y)
                                ** 2)) / s ** 2  # SSE of the normalised window, as SciPy's
            theirs = ref.curve_fit_sse("lcga", k, y / s)
            assert _no_worse(ours, theirs, y / s), (variant, name, ours, theirs)


def test_lcga_flat_and_rising_curves_have_finite_parameters():
    # a flat fit scores 0 and its parameters (documented) are the constant 1/b1, b2 = b3 = 0
    k = (np.arange(STEPS) + 1) / SPE
    for name in ("flat", "rising"):
        j = NAMES.index(name)
        fit = ranking.lcga(CURVES[j], SPE, variant="slope")
        assert float(fit.score) == 0.0 and bool(fit.converged)
        b1, b2, b3 = np.asarray(fit.params, np.float64)
        assert b1 > 0 and b2 == 0.0 and b3 == 0.0, (name, fit.params)
        level = CURVES[j, SPE:].astype(np.float64).mean()
        np.testing.assert_allclose(ranking.lcga_curve(fit.params, k), level, rtol=1e-5)


@pytest.mark.parametrize("family", ["pow3", "exp4"])
def test_a_curve_fits_the_same_in_any_batch(family):
    # more curves than a block: padding, the passes over unconverged curves and their
    # gathering do not change any curve's fit, not even by float32 rounding
    rng = np.random.default_rng(0)
    n = 2 * _fit.BLOCK + 3
    base = (0.3 + 2.0 * KS ** -rng.uniform(0.2, 1.2, (n, 1))
            * np.exp(0.05 * rng.standard_normal((n, STEPS))))
    batch = np.concatenate([base, CURVES]).astype(np.float32)
    big = ranking.extrapolate(batch, 1000, family=family)
    small = ranking.extrapolate(batch[-8:], 1000, family=family)
    for a, b in zip(big, small):
        np.testing.assert_array_equal(a[-8:], b)
    one = ranking.extrapolate(batch[-3], 1000, family=family)
    for a, b in zip(big, one):
        np.testing.assert_array_equal(a[-3], b)


def test_an_lcga_curve_fits_the_same_in_any_batch():
    # many blocks, curves that need the late pass and curves refitted without the offset;
    # the same score and fitted curve up to float32 rounding (XLA may fuse a batch's
    # arithmetic differently; the parameters themselves can move along a flat valley)
    rng = np.random.default_rng(1)
    n = 3 * _fit.VARPRO_BLOCK + 5
    base = (rng.uniform(0.0, 0.5, (n, 1)) + 1.0 / (rng.uniform(0.5, 2.0, (n, 1))
                                                   + rng.uniform(0.01, 0.5, (n, 1)) * KS)
            * np.exp(0.05 * rng.standard_normal((n, STEPS))))
    batch = np.concatenate([base, CURVES]).astype(np.float32)
    k = np.arange(SPE, (STEPS // SPE) * SPE) / SPE + 1.0 / SPE  # the fitted window, in epochs
    big = ranking.lcga(batch, SPE, variant="slope")
    assert np.all(np.isfinite(big.score))
    for sub, fit in ((slice(-10, None), ranking.lcga(batch[-10:], SPE, variant="slope")),
                     (-4, ranking.lcga(batch[-4], SPE, variant="slope"))):
        np.testing.assert_allclose(big.score[sub], fit.score, rtol=2e-5, atol=1e-8)
        np.testing.assert_array_equal(big.converged[sub], fit.converged)
        np.testing.assert_allclose(ranking.lcga_curve(big.params[sub], k),
                                   ranking.lcga_curve(fit.params, k), rtol=2e-5)


def test_vmap_over_curves_and_target_step():
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(CURVES[4:])  # noisy, oscillating
    for family in ranking.CURVE_FAMILIES:
        want = ranking.extrapolate(x, 1000.0, family=family).prediction
        got = jax.vmap(lambda c, f=family: ranking.extrapolate(c, 1000.0, family=f).prediction)(x)
        np.testing.assert_array_equal(got, want)
    targets = jnp.asarray([500.0, 1000.0])
    got = jax.vmap(lambda t: ranking.extrapolate(x, t).prediction)(targets)
    for i, t in enumerate([500.0, 1000.0]):
        np.testing.assert_array_equal(got[i], ranking.extrapolate(x, t).prediction)
    got = jax.vmap(lambda c: ranking.lcga(c, SPE).score)(x)
    np.testing.assert_array_equal(got, ranking.lcga(x, SPE).score)
