"""budgetax.laws: the laws against the reference code, fitting, prediction, optimisation, errors."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from budgetax import laws, schedules
from tests.reference import multipower_law as ref

TRUE = laws.MultiPowerParams(2.0, 0.5, 0.5, 300.0, 2.0, 0.6, 0.6)
T = 1000
STEPS = np.arange(49, T, 50)


def _random_schedule(rng, total, *, warmup=True):
    """Warmup from 0, then random drops and a random smooth decay (a mix of shapes)."""
    peak = 10 ** rng.uniform(-4, -1)
    t = np.arange(total)
    lrs = np.full(total, peak)
    w = int(rng.integers(0, total // 5)) if warmup else 0
    if w:
        lrs[:w] = np.linspace(0, peak, w)
    for _ in range(int(rng.integers(0, 3))):
        at = int(rng.integers(w + 1, total))
        lrs[at:] *= rng.uniform(0.1, 0.9)
    if rng.uniform() < 0.5:
        frac = np.clip((t - w) / (total - w), 0, 1)
        lrs = lrs * (1 - 0.9 * frac ** rng.uniform(0.5, 3))
    return lrs


def _la_double_loop(params, lrs, steps, decay):
    """The LR-annealing law from the paper's formula, as a direct double loop (float64);
    only decreases of the learning rate are annealing (budgetax.laws.forms)."""
    L0, A, alpha, C = params
    out = []
    for s in steps:
        s1 = sum(lrs[: s + 1])
        s2 = 0.0
        for i in range(1, s + 1):
            s2 += sum(max(lrs[k - 1] - lrs[k], 0.0) * decay ** (i - k) for k in range(1, i + 1))
        out.append(L0 + A * s1 ** -alpha - C * s2)
    return np.asarray(out)


def _curve(lrs, name="", params=TRUE, steps=STEPS):
    with jax.enable_x64(True):
        loss = np.asarray(laws.multi_power(params, lrs, steps))
    return laws.Curve(lrs=lrs, steps=steps, loss=loss, name=name)


def _anchors():
    t = np.arange(T)
    const = np.full(T, 1e-3)
    drop = np.where(t < T // 2, 1e-3, 3e-4)
    cosine = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + np.cos(np.pi * t / T))
    return [_curve(const, "constant"), _curve(drop, "drop"), _curve(cosine, "cosine")]


@pytest.fixture(scope="module")
def synthetic_fit():
    return laws.fit(_anchors())


# ---------------------------------------------------------------- the laws themselves


@pytest.mark.parametrize("seed", range(6))
def test_multi_power_equals_reference_code_on_random_schedules(seed):
    rng = np.random.default_rng(seed)
    lrs = _random_schedule(rng, 700)
    steps = np.sort(rng.choice(np.arange(1, 700), size=37, replace=False))
    params = (rng.uniform(1, 3), rng.uniform(0.1, 1), rng.uniform(0.2, 0.8),
              rng.uniform(10, 500), rng.uniform(0.1, 5), rng.uniform(0.2, 0.9),
              rng.uniform(0.2, 0.9))
    want = ref.mpl_predict(params, lrs, steps)
    with jax.enable_x64(True):
        got = jax.jit(laws.multi_power)(jnp.asarray(params), jnp.asarray(lrs), steps)
        eager = laws.multi_power(params, lrs, steps)  # concrete lrs: only the changes
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(eager), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_lr_annealing_equals_the_papers_double_loop(seed):
    rng = np.random.default_rng(100 + seed)
    lrs = _random_schedule(rng, 120)
    steps = np.array([3, 17, 60, 119])
    params = (2.0, 0.5, 0.4, 50.0)
    with jax.enable_x64(True):
        got = jax.jit(laws.lr_annealing, static_argnames=())(params, lrs, steps, decay=0.99)
    np.testing.assert_allclose(np.asarray(got), _la_double_loop(params, lrs, steps, 0.99),
                               rtol=1e-12)


def test_laws_compile_once_and_vmap_over_parameters():
    lrs = jnp.asarray(_random_schedule(np.random.default_rng(7), 300), jnp.float32)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def batch(params, lrs):
        return jax.vmap(lambda p: laws.multi_power(p, lrs, jnp.arange(10, 300, 10)))(params)

    params = jnp.tile(jnp.asarray([2.0, 0.5, 0.5, 300.0, 2.0, 0.6, 0.6]), (4, 1))
    first = batch(params, lrs)
    second = batch(params * 1.01, lrs)
    assert first.shape == (4, 29) and first.dtype == jnp.float32
    assert not np.allclose(first, second)


# ---------------------------------------------------------------- fitting and prediction


def test_fit_recovers_the_parameters_that_generated_the_curves(synthetic_fit):
    got = np.asarray(synthetic_fit.params)
    np.testing.assert_allclose(got, np.asarray(TRUE), rtol=2e-3)
    for q in synthetic_fit.quality:
        assert q.worst_rel_error < 1e-5 and q.r2 > 0.999999


def test_fit_predicts_other_schedules_and_longer_budgets(synthetic_fit):
    t = np.arange(3 * T)
    wsd = np.where(t < 2.4 * T, 1e-3, 1e-3 * (1 - (t - 2.4 * T) / (0.6 * T)) + 1e-5)
    steps = np.arange(99, 3 * T, 100)
    truth = _curve(wsd, steps=steps).loss
    np.testing.assert_allclose(synthetic_fit.predict(wsd, steps), truth, rtol=1e-4)


def test_the_fused_jacobian_is_the_laws_derivative():
    from budgetax.laws import fitting

    lrs = _random_schedule(np.random.default_rng(3), 300)
    lrs[150:170] = 0.0  # a drop to zero and back: derivatives stay finite
    c = laws.Curve(lrs, np.arange(20, 300, 7), np.ones(40))
    p = np.asarray(TRUE, np.float64) * 1.1
    with jax.enable_x64(True):
        data = jax.tree.map(jnp.asarray, fitting._curve_data("multi_power", c, None, None))
        pred, jac = fitting._mpl_pred_jac(jnp.asarray(p), data)
        want = jax.jacfwd(lambda q: laws.multi_power(q, lrs, c.steps))(jnp.asarray(p))
        value = laws.multi_power(p, lrs, c.steps)
    n = c.steps.shape[0]
    assert np.all(np.isfinite(np.asarray(want)))
    np.testing.assert_allclose(np.asarray(pred)[:n], np.asarray(value), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(jac)[:n], np.asarray(want), rtol=1e-10, atol=1e-12)


def test_the_interval_covers_the_fitted_points_at_its_level():
    """Independent 1% log-noise on the law's curves: a 95% interval covers about 95%."""
    rng = np.random.default_rng(11)
    curves = []
    for c in _anchors():
        noisy = c.loss * np.exp(0.01 * rng.standard_normal(c.loss.shape))
        curves.append(laws.Curve(c.lrs, c.steps, noisy))
    f = laws.fit(curves)
    inside = total = 0
    for c in curves:
        lo, hi = f.interval(c.lrs, c.steps)
        inside += int(np.sum((c.loss >= lo) & (c.loss <= hi)))
        total += c.loss.shape[0]
    assert 0.85 <= inside / total <= 1.0


def test_fit_is_deterministic(synthetic_fit):
    again = laws.fit(_anchors())
    assert again.params == synthetic_fit.params and again.objective == synthetic_fit.objective


def test_predict_takes_an_optax_schedule(synthetic_fit):
    sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000, 1e-5)
    steps = np.array([199, 599, 999])
    lrs = np.asarray(sched(np.arange(1000)), np.float64)
    np.testing.assert_allclose(synthetic_fit.predict(sched, steps),
                               synthetic_fit.predict(lrs, steps), rtol=1e-12)
    c = laws.Curve.from_schedule(sched, 1000, steps, [3.0, 2.5, 2.2])
    np.testing.assert_array_equal(c.lrs, lrs)


def test_lr_annealing_fit_recovers_its_parameters():
    true = laws.LrAnnealingParams(2.0, 0.5, 0.5, 0.3)
    t = np.arange(T)
    curves = []
    for lrs in (np.full(T, 1e-3), 1e-4 + 4.5e-4 * (1 + np.cos(np.pi * t / T))):
        with jax.enable_x64(True):
            loss = np.asarray(laws.lr_annealing(true, lrs, STEPS))
        curves.append(laws.Curve(lrs, STEPS, loss))
    f = laws.fit(curves, law="lr_annealing")
    np.testing.assert_allclose(np.asarray(f.params), np.asarray(true), rtol=1e-3)


def test_curve_from_training_records_averages_windows_before_their_last_update():
    lr = np.linspace(1e-3, 1e-4, 100)
    loss = np.arange(100, dtype=np.float64) + 1.0
    c = laws.Curve.from_training(lr, loss, every=30)
    assert c.steps.tolist() == [44, 74]   # windows 30..59 and 60..89 (the first one dropped)
    np.testing.assert_allclose(c.loss, [45.5, 75.5])
    np.testing.assert_array_equal(c.lrs, lr)
    with pytest.raises(ValueError, match="every must be an int in"):
        laws.Curve.from_training(lr, loss, every=1)
    with pytest.raises(ValueError, match="two windows at least"):
        laws.Curve.from_training(lr, loss, every=60)
    with pytest.raises(ValueError, match="loss must be finite"):
        laws.Curve.from_training(lr, np.where(loss > 50, np.nan, loss), every=30)


# ---------------------------------------------------------------- the optimised schedule


@pytest.mark.parametrize("end", [1e-5, 0.0, None])
def test_optimized_schedule_beats_its_baselines_and_compiles_once(end):
    from budgetax.laws import optimize

    fit = laws.Fit.from_params("multi_power", TRUE)
    first = laws.optimize_schedule(fit, 200, 1e-3, end_lr=end)
    assert first.predicted_final_loss <= min(first.baselines.values())
    assert np.all(np.diff(first.lrs) <= 0)
    size = optimize._value_and_grad._cache_size()
    laws.optimize_schedule(fit, 200, 1e-3, end_lr=end)
    assert optimize._value_and_grad._cache_size() == size


def test_an_optimum_the_law_predicts_below_zero_is_warned_about():
    import warnings

    good = laws.Fit.from_params("multi_power", TRUE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", laws.LawWarning)
        laws.optimize_schedule(good, 200, 1e-3, end_lr=1e-5, max_iter=3)
    bad = laws.Fit.from_params("multi_power", (0.05,) + tuple(TRUE)[1:3] + (5000.0,)
                               + tuple(TRUE)[4:])
    with pytest.warns(laws.LawWarning, match=r"predicts a final loss of -[0-9.e+-]+ \(<= 0\)"):
        opt = laws.optimize_schedule(bad, 200, 1e-3, end_lr=1e-5, max_iter=3)
    assert opt.predicted_final_loss <= 0


def test_optimized_schedule_beats_every_built_in_under_the_same_fit(synthetic_fit):
    total, peak, end, warm = 300, 1e-3, 1e-5, 30
    opt = laws.optimize_schedule(synthetic_fit, total, peak, warmup_steps=warm, end_lr=end,
                                 max_iter=300)
    counts = np.arange(total + 3)
    values = np.asarray(jax.jit(opt)(counts))
    assert np.all(np.diff(values[warm:total]) <= 0)  # non-increasing after warmup
    assert values[total - 1] == np.float32(end) and np.all(values[total:] == np.float32(end))
    np.testing.assert_array_equal(values[:total], opt.lrs.astype(np.float32))
    final = synthetic_fit.predict(opt.lrs, [total - 1])[0]
    assert final == pytest.approx(opt.predicted_final_loss, rel=1e-12)
    for name in ("linear", "cosine", "rex", "wsd", "step", "exponential", "polynomial"):
        kw = {} if name == "exponential" else {"end_value": end}
        base = getattr(schedules, name)(total, peak, warmup_steps=warm, **kw)
        lrs = np.asarray(base(np.arange(total)), np.float64)
        assert final <= synthetic_fit.predict(lrs, [total - 1])[0], name


# ---------------------------------------------------------------- errors that name the argument


@pytest.mark.parametrize("kwargs, match", [
    (dict(lrs=np.full(10, 0.1), steps=[1, 2], loss=[1.0]), "same length"),
    (dict(lrs=np.full(10, 0.1), steps=[1, 2], loss=[1.0, np.nan]), "loss must be finite"),
    (dict(lrs=np.full(10, 0.1), steps=[1, 12], loss=[1.0, 0.9]), "lrs is shorter"),
    (dict(lrs=np.full(10, np.nan), steps=[1], loss=[1.0]), "lrs must be finite"),
    (dict(lrs=np.full(10, 0.1), steps=[3, 2], loss=[1.0, 0.9]), "strictly increasing"),
    (dict(lrs="0.1", steps=[1], loss=[1.0]), "lrs must be a numeric array"),
    (dict(lrs=np.full(10, 0.1), steps=[1.5], loss=[1.0]), "steps must be integer"),
])
def test_bad_curves_name_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        laws.Curve(**kwargs)


def test_bad_fit_arguments_name_the_argument(synthetic_fit):
    c = _anchors()[0]
    with pytest.raises(ValueError, match="law must be one of .*'multi_powr'"):
        laws.fit([c], law="multi_powr")
    with pytest.raises(ValueError, match="curves must hold"):
        laws.fit([])
    with pytest.raises(TypeError, match=r"curves\[0\] must be a budgetax.laws.Curve"):
        laws.fit([(c.lrs, c.steps, c.loss)])
    with pytest.raises(ValueError, match="lrs is|steps must index"):
        synthetic_fit.predict(np.full(10, 1e-3), np.array([20]))
    with pytest.raises(ValueError, match="end_lr"):
        laws.optimize_schedule(synthetic_fit, 100, 1e-3, end_lr=2e-3)
    with pytest.raises(TypeError, match="fit must be"):
        laws.optimize_schedule(synthetic_fit.params, 100, 1e-3)
    given = laws.Fit.from_params("multi_power", TRUE._asdict())
    np.testing.assert_allclose(given.predict(c.lrs, c.steps), c.loss, rtol=1e-12)
    with pytest.raises(ValueError, match="no interval"):
        given.interval(c.lrs, c.steps)
    with pytest.raises(ValueError, match="params must be finite and > 0"):
        laws.Fit.from_params("multi_power", (1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="decay applies to law='lr_annealing' only"):
        laws.fit([c], decay=0.99)
    with pytest.raises(ValueError, match="coarse_terms applies to law='multi_power' only"):
        laws.fit([c], law="lr_annealing", coarse_terms=10)
    with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\), got 7.0"):
        laws.Fit.from_params("lr_annealing", (1.0, 1.0, 1.0, 1.0), decay=7.0)
    with pytest.raises(ValueError, match="more logged points than the law has parameters"):
        laws.fit([laws.Curve(c.lrs, c.steps[:3], c.loss[:3])])
    with pytest.raises(ValueError, match="steps must index lrs .* got steps from -1 to 99"):
        laws.multi_power(TRUE, c.lrs[:100], np.array([-1, 99]))
    with pytest.raises(ValueError, match="sum to 0"):
        given.predict(np.linspace(0, 1e-3, 10), np.array([0, 5]))


def test_the_public_interface():
    """The call a user (or a checker) makes, spelled exactly as documented."""
    from budgetax import laws as L

    curves = [L.Curve(lrs=c.lrs, steps=c.steps, loss=c.loss) for c in _anchors()]
    fit = L.fit(curves, law="multi_power")
    pred = fit.predict(curves[0].lrs, curves[0].steps)
    assert isinstance(pred, np.ndarray) and pred.shape == curves[0].steps.shape
    assert math.isfinite(float(pred.sum()))
