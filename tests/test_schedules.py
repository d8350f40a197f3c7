"""Budgeted schedules against optax's own schedules and a float64 reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetax import profiles, schedules
from tests.reference import schedules as ref


def values(sched, ts):
    return np.asarray(jax.jit(jax.vmap(sched))(jnp.asarray(ts, jnp.int32)))


T = 200
TS = np.arange(0, T + 40)


@pytest.mark.parametrize(("peak", "end"), [(0.1, 0.0), (1.0, 0.05)])
def test_linear_matches_optax(peak, end):
    got = values(schedules.linear(T, peak, end_value=end), TS)
    want = values(optax.linear_schedule(peak, end, T), TS)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("peak", "end"), [(0.1, 0.0), (1.0, 0.05)])
def test_cosine_matches_optax(peak, end):
    got = values(schedules.cosine(T, peak, end_value=end), TS)
    want = values(optax.cosine_decay_schedule(peak, T, alpha=end / peak), TS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_cosine_with_warmup_matches_optax():
    got = values(schedules.cosine(T, 0.3, end_value=0.01, warmup_steps=20), TS)
    want = values(optax.warmup_cosine_decay_schedule(0.0, 0.3, 20, T, end_value=0.01), TS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("final", [0.01, 0.5])
def test_exponential_matches_optax(final):
    got = values(schedules.exponential(T, 0.2, final=final), TS)
    want = values(optax.exponential_decay(0.2, T, final, end_value=0.2 * final), TS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("power", [0.5, 2.0, 3.0])
def test_polynomial_matches_optax(power):
    # Before the budget only: under jit optax's own end is an ulp off (0 ** 0.5 of
    # a rounding residue); ours is exact there (test_milestones_and_end_are_exact).
    ts = TS[TS < T]
    got = values(schedules.polynomial(T, 0.5, end_value=0.01, power=power), ts)
    want = values(optax.polynomial_schedule(0.5, 0.01, power, T), ts)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_step_matches_optax_piecewise_constant():
    got = values(schedules.step(T, 1.0), TS)
    want = values(optax.piecewise_constant_schedule(1.0, {60: 0.1, 120: 0.1, 180: 0.1}), TS)
    # both switch at count == boundary (p >= milestone)
    np.testing.assert_allclose(got, want, rtol=1e-5)


SHORTCUTS = {
    "linear": {},
    "rex": {"beta": 0.7},
    "cosine": {},
    "exponential": {"final": 0.1},
    "step": {"milestones": (0.5, 0.75), "factor": 0.3},
    "polynomial": {"power": 1.5},
    "constant": {},
    "wsd": {"decay_fraction": 0.3, "decay": "sqrt"},
    "one_cycle": {"pct_start": 0.25},
}


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(SHORTCUTS)),
    total=st.integers(1, 500),
    warm_frac=st.floats(0.0, 0.9),
    k=st.integers(1, 40),
    end=st.sampled_from([0.0, 0.01]),
)
def test_every_shortcut_matches_reference(name, total, warm_frac, k, end):
    warmup = min(int(warm_frac * total), total - 1)
    knobs = SHORTCUTS[name]
    sched = getattr(schedules, name)(total, 0.5, end_value=end, warmup_steps=warmup,
                                     sample_every=k, **knobs)
    ts = np.unique(np.linspace(0, total + 20, 60).astype(int))
    got = values(sched, ts)  # under jit
    want = np.asarray([ref.budgeted(ref.PROFILES[name], total, 0.5, int(t), end=end,
                                    warmup=warmup, sample_every=k, **knobs) for t in ts])
    np.testing.assert_allclose(got, want, rtol=5e-5, atol=5e-7)


@pytest.mark.parametrize("total", [7, 200, 1000, 4000, 123457])
def test_milestones_and_end_are_exact_under_jit(total):
    # XLA's float32 t / T can be an ulp low; milestones must still fire at
    # t = m * T exactly and the end value must be exact.
    sched = schedules.step(total, 1.0, milestones=(0.5,), factor=0.5)
    ts = np.arange(total + 1)
    got = values(sched, ts)
    want = np.where(2 * ts >= total, 0.5, 1.0)
    np.testing.assert_array_equal(got, want)
    poly = values(schedules.polynomial(total, 1.0, power=0.5), np.array([total, total + 1]))
    np.testing.assert_array_equal(poly, [0.0, 0.0])


@pytest.mark.parametrize("total", [1, 3, 7, 41, 47, 55, 200, 1000, 123457, 5_000_000, 2**31 - 1])
def test_progress_is_correctly_rounded_under_jit(total):
    rng = np.random.default_rng(total)
    ts = np.concatenate([np.arange(min(total + 3, 500)), rng.integers(0, total, 2000),
                         [total - 1, total, total + 1 if total < 2**31 - 1 else total]])
    ts = ts.astype(np.int32)
    got = np.asarray(jax.jit(lambda t: schedules.progress(t, total))(ts))
    # float64 division then one rounding to float32: the correctly rounded quotient
    want = (np.minimum(ts.astype(np.float64), total) / total).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_step_milestone_exact_for_huge_budgets():
    sched = jax.jit(schedules.step(5_000_000, 1.0))
    assert float(sched(1_499_999)) == 1.0
    assert float(sched(1_500_000)) == pytest.approx(0.1)


@pytest.mark.parametrize("k", [3, 4, 7])
def test_sample_every_reaches_end_value_at_the_budget(k):
    # T = 10 is not a multiple of k: from t = T on the value is the end value
    sched = jax.jit(schedules.linear(10, 1.0, end_value=0.05, sample_every=k))
    for t in range(10, 20):
        assert float(sched(t)) == pytest.approx(0.05)
    assert float(sched(9)) == pytest.approx(0.05 + 0.95 * (1 - k * (9 // k) / 10))


def test_sample_every_holds_value_for_k_steps():
    k = 10
    sched = jax.jit(schedules.rex(100, 1.0, sample_every=k))
    vals = np.asarray([float(sched(t)) for t in range(100)])
    blocks = vals.reshape(10, k)
    assert np.all(blocks == blocks[:, :1]), "value changes inside a sampling period"
    assert np.all(np.diff(blocks[:, 0]) < 0), "value must change between periods"
    np.testing.assert_allclose(blocks[:, 0], [ref.rex(j / 10) for j in range(10)], rtol=1e-6)


def test_warmup_then_profile_over_the_rest():
    sched = schedules.linear(110, 2.0, warmup_steps=10)
    assert float(sched(0)) == 0.0
    assert float(sched(5)) == pytest.approx(1.0)
    assert float(sched(10)) == pytest.approx(2.0)
    assert float(sched(60)) == pytest.approx(1.0)  # halfway through the 100 decay steps
    assert float(sched(110)) == 0.0
    assert float(sched(10_000)) == 0.0


def test_after_budget_stays_at_end_value_and_no_int_overflow():
    sched = jax.jit(schedules.cosine(1000, 1.0, end_value=0.1))
    for t in (1000, 1001, 2**31 - 1):
        assert float(sched(jnp.int32(t))) == pytest.approx(0.1)


def test_budgeted_accepts_names_and_partials():
    a = schedules.budgeted("rex", 50, 0.1)
    b = schedules.budgeted(functools.partial(profiles.rex, beta=0.5), 50, 0.1)
    c = schedules.rex(50, 0.1)
    for t in range(0, 60, 7):
        assert float(a(t)) == float(b(t)) == float(c(t))


def test_vmap_over_traced_peak_value():
    peaks = jnp.array([0.01, 0.1, 1.0])

    @jax.jit
    def lrs(peak):
        sched = schedules.rex(100, peak, warmup_steps=10)
        return jax.vmap(sched)(jnp.arange(100))

    out = np.asarray(jax.vmap(lrs)(peaks))
    base = np.asarray(lrs(1.0))
    np.testing.assert_allclose(out, peaks[:, None] * base[None, :], rtol=1e-6)


def test_schedule_output_is_float32():
    assert schedules.linear(10, 1.0)(3).dtype == jnp.float32


BAD = [
    (lambda: schedules.linear(0), ValueError, "total_steps must be a positive int, got 0"),
    (lambda: schedules.linear(-1), ValueError, "total_steps.*-1"),
    (lambda: schedules.linear(12.5), TypeError, "total_steps.*12.5"),
    (lambda: schedules.linear(True), TypeError, "total_steps.*True"),
    (lambda: schedules.linear(10, warmup_steps=10), ValueError, "warmup_steps"),
    (lambda: schedules.linear(10, warmup_steps=-1), ValueError, "warmup_steps"),
    (lambda: schedules.linear(10, sample_every=0), ValueError, "sample_every"),
    (lambda: schedules.rex(10, beta=1.0), ValueError, "beta"),
    (lambda: schedules.rex(10, beta=-0.5), ValueError, "beta"),
    (lambda: schedules.step(10, milestones=(0.9, 0.3)), ValueError, "milestones"),
    (lambda: schedules.exponential(10, final=0.0), ValueError, "final"),
    (lambda: schedules.exponential(10, final=-2.0), ValueError, "final"),
    (lambda: schedules.linear(10, peak_value=float("nan")), ValueError, "peak_value"),
    (lambda: schedules.budgeted("nope", 10), ValueError, "profile"),
    (lambda: schedules.budgeted(3, 10), TypeError, "profile"),
    (lambda: schedules.steps_for_budget(fraction=0.5), TypeError, "full_steps.*None"),
    (lambda: schedules.steps_for_budget(), ValueError, "either"),
    (lambda: schedules.steps_for_budget(full_steps=10, fraction=0.0), ValueError, "fraction"),
    (lambda: schedules.steps_for_budget(epochs=1, steps_per_epoch=0), ValueError,
     "steps_per_epoch"),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD)
def test_bad_input_raises_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_steps_for_budget():
    assert schedules.steps_for_budget(full_steps=1000, fraction=0.1) == 100
    assert schedules.steps_for_budget(full_steps=3, fraction=0.01) == 1
    assert schedules.steps_for_budget(epochs=3, steps_per_epoch=125) == 375
    assert schedules.steps_for_budget(epochs=0.5, steps_per_epoch=125) == 63
