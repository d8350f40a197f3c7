"""Learning-curve extrapolation (pow3, exp4, log_power) against scipy least_squares."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from budgetax import ranking
from tests.reference import ranking as ref

STEPS = 200
TARGET = 1000
KS = np.arange(1, STEPS + 1, dtype=np.float64)

# Four curves of each family's own form (params in step units), fitted with noise below.
TRUE = {
    "pow3": np.array([(0.5, 3.0, 0.7), (0.2, 2.0, 0.3), (0.05, 1.0, 0.5), (1.0, 4.0, 1.2)]),
    "exp4": np.array([(0.3, 0.02, 0.8, 1.0), (0.1, 0.05, 0.7, 0.5), (0.5, 0.3, 0.5, 0.0),
                      (0.2, 0.001, 1.3, 1.5)]),
    "log_power": np.array([(2.0, 3.0, 0.9), (1.0, 4.0, 1.5), (3.0, 2.0, 0.6), (1.5, 5.0, 2.0)]),
}


def _family_curves(family, noise=0.0, seed=0):
    clean = ref.curve_model(family, TRUE[family].T[:, :, None], KS[None, :])
    rng = np.random.default_rng(seed)
    return (clean * (1 + noise * rng.standard_normal(clean.shape))).astype(np.float32)


@pytest.mark.parametrize("family", ranking.CURVE_FAMILIES)
def test_against_reference_and_recovery(family):
    # noisy curves: the JAX fit finds the same least-squares solution as scipy
    noisy = _family_curves(family, noise=0.01, seed=1)
    fit = ranking.extrapolate(noisy, TARGET, family=family)
    n_params = ranking.curves.N_PARAMS[family]
    assert fit.prediction.shape == (4,) and fit.params.shape == (4, n_params)
    assert fit.prediction.dtype == jnp.float32 and bool(fit.converged.all())
    for j, curve in enumerate(noisy):
        want, params = ref.extrapolate(curve.astype(np.float64), TARGET, family)
        np.testing.assert_allclose(float(fit.prediction[j]), want, rtol=2e-3,
                                   err_msg=f"{family} curve {j}")
        # the fitted curves agree where they were fitted
        np.testing.assert_allclose(ranking.curve(fit.params[j], KS, family=family),
                                   ref.curve_model(family, params, KS), rtol=2e-3, atol=1e-4)
    # noiseless curves of the family's own form: parameters recovered
    clean = _family_curves(family)
    fit = ranking.extrapolate(clean, TARGET, family=family)
    assert bool(fit.converged.all())
    np.testing.assert_allclose(np.asarray(fit.params), TRUE[family], rtol=2e-2, atol=1e-3)
    truth = ref.curve_model(family, TRUE[family].T, TARGET)
    np.testing.assert_allclose(fit.prediction, truth, rtol=5e-3)


@pytest.mark.parametrize("family", ranking.CURVE_FAMILIES)
def test_known_order_and_edge_cases(family):
    base = _family_curves(family, noise=0.005, seed=2)[0]
    curves = np.stack([base + 0.3, base, base + 0.1, base])
    curves[3] = 0.8  # constant
    fit = ranking.extrapolate(curves, TARGET, family=family)
    assert np.argsort(np.asarray(fit.prediction[:3])).tolist() == [1, 2, 0]
    assert np.isfinite(fit.prediction).all()
    np.testing.assert_allclose(fit.prediction[3], 0.8, rtol=2e-3)
    # NaN / inf: NaN and flagged, without touching the other curves
    bad = curves.copy()
    bad[1, 7] = np.nan
    bad[2, 100] = -np.inf
    out = ranking.extrapolate(bad, TARGET, family=family)
    assert np.isnan(out.prediction[1]) and np.isnan(out.prediction[2])
    assert np.all(np.isnan(out.params[1:3])) and not out.converged[1:3].any()
    np.testing.assert_allclose(np.asarray(out.prediction)[[0, 3]],
                               np.asarray(fit.prediction)[[0, 3]], rtol=1e-6)


def test_shapes_traced_target_and_no_recompile(counting_jit):
    noisy = _family_curves("pow3", noise=0.01, seed=1)
    f = counting_jit(ranking.extrapolate, static_argnames=("family",))
    batched = jnp.asarray(noisy.reshape(2, 2, STEPS))
    out = f(batched, jnp.float32(TARGET), family="pow3")
    assert out.prediction.shape == (2, 2) and out.params.shape == (2, 2, 3)
    out2 = f(batched[::-1], jnp.float32(2 * TARGET), family="pow3")  # traced target: no retrace
    assert f.traces == 1
    flat = ranking.extrapolate(noisy, TARGET, family="pow3")
    np.testing.assert_allclose(out.prediction.ravel(), flat.prediction, rtol=1e-5)
    assert np.all(np.asarray(out2.prediction[::-1]) < np.asarray(out.prediction))  # still falling
    single = ranking.extrapolate(noisy[0], TARGET, family="pow3")
    assert single.prediction.shape == () and single.params.shape == (3,)
    np.testing.assert_allclose(single.prediction, flat.prediction[0], rtol=1e-5)


def test_bad_arguments():
    c = _family_curves("pow3")
    with pytest.raises(ValueError, match="family.*'pow4'"):
        ranking.extrapolate(c, TARGET, family="pow4")
    with pytest.raises(ValueError, match="target_step.*0"):
        ranking.extrapolate(c, 0)
    with pytest.raises(TypeError, match="target_step"):
        ranking.extrapolate(c, "1000")
    with pytest.raises(ValueError, match="at least 5 steps"):
        ranking.extrapolate(c[:, :4], TARGET)
    with pytest.raises(ValueError, match="params of family 'exp4'"):
        ranking.curve([1.0, 2.0, 3.0], 1.0, family="exp4")
