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


# ------------------------------------------------------------------------------ exact end values
# (factory, knobs, multiplier of the profile at p = 1 in float64)
END_CASES = [
    ("linear", {}, 0.0),
    ("rex", {}, 0.0),
    ("rex", {"beta": 0.9}, 0.0),
    ("cosine", {}, 0.0),
    ("polynomial", {"power": 0.5}, 0.0),
    ("polynomial", {"power": 3.0}, 0.0),
    ("wsd", {"decay": "linear"}, 0.0),
    ("wsd", {"decay": "sqrt"}, 0.0),
    ("wsd", {"decay": "cosine"}, 0.0),
    ("wsd", {"decay": "sqrt", "decay_fraction": 0.1}, 0.0),
    ("wsd", {"decay": "linear", "decay_fraction": 1.0}, 0.0),
    ("exponential", {"final": 0.01}, 0.01),
    ("step", {}, 1e-3),
    ("step", {"milestones": (0.5,), "factor": 0.5}, 0.5),
    ("one_cycle", {}, 1.0 / (25.0 * 1e4)),
    ("constant", {}, 1.0),
]
END_IDS = [f"{n}-{k}" for n, k, _ in END_CASES]


@pytest.mark.parametrize(("name", "knobs", "prof_end"), END_CASES, ids=END_IDS)
@pytest.mark.parametrize("total", [1, 7, 1000, 123457, 2**31 - 1])
def test_every_schedule_ends_exactly_from_the_budget_on(name, knobs, prof_end, total):
    peak = 0.7
    ts = np.array(sorted({total, total + 1, min(2 * total, 2**31 - 1), 2**31 - 1}))
    ts = ts[ts <= 2**31 - 1]
    ends = (0.0, 0.0, 0.3, 0.3)
    scheds = [getattr(schedules, name)(total, peak, end_value=end, warmup_steps=warmup,
                                       sample_every=k, **knobs)
              for end, (warmup, k) in zip(ends, ((0, 1), (total // 3, 3)) * 2, strict=True)]
    # under jit, the four schedules in one program
    jitted = np.asarray(jax.jit(lambda ts: jnp.stack([jax.vmap(s)(ts) for s in scheds]))(
        jnp.asarray(ts, jnp.int32)))
    for sched, end, got in zip(scheds, ends, jitted, strict=True):
        eager = np.array([np.asarray(sched(int(t))) for t in ts])
        np.testing.assert_array_equal(eager, got)
        if prof_end == 0.0:
            # exactly the end value, not an ulp off
            np.testing.assert_array_equal(got, np.full(ts.shape, np.float32(end)))
        else:
            assert np.all(got == got[0]), f"{name} is not held after the budget: {got}"
            want = end + (peak - end) * prof_end
            np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)


def test_wsd_end_is_exact_at_the_issue_budget():
    # wsd(1000, 1.0)(1000) was 5.96e-8 for the linear and sqrt decays
    for decay in ("linear", "sqrt", "cosine"):
        assert float(schedules.wsd(1000, 1.0, decay=decay)(1000)) == 0.0
        assert float(jax.jit(schedules.wsd(1000, 1.0, decay=decay))(1000)) == 0.0


# ------------------------------------------------------------------- reference implementations
WSD_HF = [
    # (total, warmup, decay_fraction, decay, peak, end): decay_fraction * (T - w) is an int,
    # so the decay phase has the integer length HF takes
    (1000, 0, 0.2, "linear", 1.0, 0.0),
    (1000, 0, 0.2, "sqrt", 0.5, 0.05),
    (1000, 0, 0.2, "cosine", 0.5, 0.05),
    (220, 20, 0.25, "sqrt", 0.3, 0.0),
    (220, 20, 0.25, "cosine", 0.3, 0.0),
    (60, 10, 1.0, "linear", 2.0, 0.0),
    (4000, 0, 0.5, "sqrt", 1.0, 0.1),
]


@pytest.mark.parametrize(("total", "warmup", "frac", "decay", "peak", "end"), WSD_HF)
def test_wsd_matches_hf_transformers_step_by_step(total, warmup, frac, decay, peak, end):
    num_decay = round(frac * (total - warmup))
    sched = schedules.wsd(total, peak, end_value=end, warmup_steps=warmup,
                          decay_fraction=frac, decay=decay)
    ts = np.arange(0, total + 25)
    got = values(sched, ts)  # every step, under jit
    hf_decay = {"linear": "linear", "cosine": "cosine", "sqrt": "1-sqrt"}[decay]
    want = np.array([peak * ref.hf_wsd_lambda(
        int(t), num_warmup_steps=warmup, num_stable_steps=total - warmup - num_decay,
        num_decay_steps=num_decay, warmup_type="linear", decay_type=hf_decay,
        min_lr_ratio=end / peak) for t in ts])
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7)
    # HF returns min_lr_ratio exactly from the budget on; so do we
    np.testing.assert_array_equal(got[ts >= total], np.float32(end))


def _milestone_step(m, span):
    # smallest integer s with s >= m * span, m the decimal it prints as (exact rationals)
    from fractions import Fraction

    return -(-Fraction(repr(m)) * span // 1)


@pytest.mark.parametrize("total", [10, 200, 1001, 5_000_000, 123_456_789, 2**31 - 1])
@pytest.mark.parametrize("warmup", [0, 7])
def test_step_milestones_integer_exact_vs_torch_multistep(total, warmup):
    ms, factor, peak = (0.3, 0.6, 0.9), 0.1, 0.4
    sched = schedules.step(total, peak, warmup_steps=warmup, milestones=ms, factor=factor)
    span = total - warmup
    steps = [warmup + int(_milestone_step(m, span)) for m in ms]
    # 12 steps around each milestone (>= 20 in all), every step, under jit
    ts = np.unique(np.clip(np.concatenate([np.arange(s - 6, s + 6) for s in steps]),
                           warmup, total))
    got = values(sched, ts)
    want = np.array([ref.torch_multistep_lr(int(t), base_lr=peak, milestones=steps,
                                            gamma=factor) for t in ts])
    np.testing.assert_allclose(got, want, rtol=3e-7)
    for s in steps:  # fires exactly at the milestone step, not before
        before, at = values(sched, np.array([s - 1, s]))
        assert before > at


def test_30_60_90_fires_on_time_at_the_largest_budget():
    total = 2**31 - 1
    sched = jax.jit(schedules.step(total, 1.0))
    first = 644_245_095  # ceil(0.3 * (2**31 - 1))
    assert float(sched(first - 1)) == 1.0
    assert float(sched(first - 7)) == 1.0
    assert float(sched(first)) == pytest.approx(0.1)


def test_step_milestone_reads_decimal_milestones():
    # 0.1 is read as 1/10 (its double is slightly above): fires at t = 1 of 10, like
    # torch MultiStepLR(milestones=[1])
    sched = schedules.step(10, 1.0, milestones=(0.1,), factor=0.5)
    assert values(sched, [0, 1]).tolist() == [1.0, 0.5]


def test_budgeted_step_profile_uses_integer_milestones():
    total = 2**31 - 1
    first = 644_245_095
    for prof in ("step", profiles.step, functools.partial(profiles.step, factor=0.1)):
        sched = schedules.budgeted(prof, total, 1.0)
        assert values(sched, [first - 1, first]).tolist() == [1.0, np.float32(0.1)]


# --------------------------------------------------------------------------------- one_cycle
def test_one_cycle_convention_optax_not_torch():
    total, peak = 1000, 0.5
    ts = np.arange(total + 1)
    ours = values(schedules.one_cycle(total, peak), ts)
    torch = np.array([ref.torch_one_cycle_lr(int(t), max_lr=peak, total_steps=total)
                      for t in ts])
    # optax (and budgetax): peak at t = 0.3 T, minimum at t = T;
    # torch OneCycleLR(total_steps=T): peak at 0.3 T - 1, minimum at T - 1
    assert int(np.argmax(ours)) == 300 and int(np.argmax(torch)) == 299
    assert ours[300] == np.float32(peak)
    assert ours[total] == np.float32(peak / 25.0 / 1e4)
    assert torch[total - 1] == pytest.approx(peak / 25.0 / 1e4)
    assert ours[total - 1] > ours[total]
    # same start, same shape one step apart in the rise
    assert ours[0] == np.float32(peak / 25.0) and torch[0] == pytest.approx(peak / 25.0)


@pytest.mark.parametrize("name", sorted(SHORTCUTS))
def test_warmup_leads_into_the_profile_start_without_a_jump(name):
    total, warmup, peak, end = 1000, 100, 0.8, 0.01
    knobs = SHORTCUTS[name]
    sched = getattr(schedules, name)(total, peak, end_value=end, warmup_steps=warmup, **knobs)
    v = values(sched, np.arange(0, warmup + 5))
    start = end + (peak - end) * ref.PROFILES[name](0.0, **knobs)
    assert v[0] == 0.0
    assert v[warmup] == pytest.approx(start, rel=1e-6)
    np.testing.assert_allclose(v[:warmup + 1], start * np.arange(warmup + 1) / warmup,
                               rtol=1e-5, atol=1e-7)
    assert np.all(np.diff(v[:warmup + 1]) > 0)
    # no sawtooth where the warmup hands over to the profile
    assert abs(v[warmup + 1] - v[warmup]) <= 1.5 * max(start, peak) / warmup


def test_one_cycle_with_warmup_is_no_sawtooth():
    # was 0.99 at t = 99 then 0.04 at t = 100
    sched = schedules.one_cycle(1000, 1.0, warmup_steps=100)
    v = values(sched, np.arange(1001))
    assert v[99] == pytest.approx(0.04 * 99 / 100, rel=1e-5)
    assert v[100] == pytest.approx(0.04, rel=1e-6)
    assert int(np.argmax(v)) == 100 + 270  # the cycle spans the 900 steps after warmup
    assert v[1000] == np.float32(1.0 / 25.0 / 1e4)


# ----------------------------------------------------------------------------- eager vs traced
EAGER_CASES = [
    ("cosine", {}, {}),
    ("rex", {"beta": 0.7}, {"warmup_steps": 13, "sample_every": 5}),
    ("step", {}, {"end_value": 0.001}),
    ("wsd", {"decay": "sqrt"}, {"warmup_steps": 50}),
    ("one_cycle", {}, {"warmup_steps": 20, "end_value": 0.01}),
    ("exponential", {"final": 0.05}, {"sample_every": 7}),
    ("polynomial", {"power": 1.5}, {}),
    ("linear", {}, {"end_value": 0.02}),
    ("constant", {}, {"warmup_steps": 9}),
]


@pytest.mark.parametrize(("name", "knobs", "kw"), EAGER_CASES,
                         ids=[c[0] for c in EAGER_CASES])
def test_eager_calls_equal_traced_values(name, knobs, kw):
    total = 997
    sched = getattr(schedules, name)(total, 0.3, **kw, **knobs)
    ts = np.concatenate([np.arange(0, total + 10, 3), [2**31 - 1]]).astype(np.int32)
    traced_vmap = values(sched, ts)
    traced_scalar = np.array([np.asarray(jax.jit(sched)(jnp.int32(t))) for t in ts[:40]])
    eager_int = np.array([np.asarray(sched(int(t))) for t in ts])
    eager_arr = np.asarray(sched(ts))  # a NumPy batch of counts, eagerly
    eager_jnp = np.array([np.asarray(sched(jnp.int32(t))) for t in ts[:40]])
    for got in (eager_int, eager_arr):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, traced_vmap)
    np.testing.assert_array_equal(eager_jnp, traced_scalar)
    np.testing.assert_array_equal(traced_scalar, traced_vmap[:40])
    # the eager path gives the reference values too
    want = [ref.budgeted(ref.PROFILES[name], total, 0.3, int(t), end=kw.get("end_value", 0.0),
                         warmup=kw.get("warmup_steps", 0), sample_every=kw.get("sample_every", 1),
                         **knobs) for t in ts]
    np.testing.assert_allclose(eager_int, want, rtol=5e-5, atol=5e-7)


def test_eager_calls_compile_once_per_configuration():
    compiled = schedules._compiled
    sched = schedules.cosine(1234, 0.1, warmup_steps=10)
    sched(0)
    size = compiled._cache_size()
    for t in (1, 5, 600, 1234, 10_000):
        sched(t)
    # a new schedule object with the same structure and other peak/end values: no new compile
    schedules.cosine(1234, 0.5, end_value=0.01, warmup_steps=10)(3)
    schedules.cosine(1234, np.float32(0.2), end_value=0, warmup_steps=10)(np.int64(7))
    assert compiled._cache_size() == size
    # a knob given as an array is an argument too; a Python-number knob is static
    schedules.rex(1234, 0.5, warmup_steps=10, beta=jnp.float32(0.3))(3)
    schedules.rex(1234, 0.2, warmup_steps=10, beta=jnp.float32(0.9))(3)
    assert compiled._cache_size() == size + 1
    schedules.rex(1234, 0.2, warmup_steps=10, beta=0.9)(3)
    schedules.rex(1234, 0.7, warmup_steps=10, beta=0.9)(5)
    assert compiled._cache_size() == size + 2


def test_schedule_under_jit_does_not_recompile(counting_jit):
    sched = schedules.wsd(100, 0.1, warmup_steps=5, decay="cosine")
    f = counting_jit(sched)
    a = f(jnp.int32(3))
    b = f(jnp.int32(97))
    assert f.traces == 1
    assert float(a) == pytest.approx(0.1 * 3 / 5) and float(b) == pytest.approx(
        ref.budgeted(ref.wsd, 100, 0.1, 97, warmup=5, decay="cosine"), rel=1e-5)


# ------------------------------------------------------------------------------- JAX knobs
KNOB_SWEEPS = [
    ("linear", "peak_value", [0.01, 0.1, 1.0], {}),
    ("cosine", "end_value", [0.0, 0.01, 0.05], {}),
    ("rex", "beta", [0.0, 0.5, 0.9], {}),
    ("exponential", "final", [0.01, 0.1, 0.5], {}),
    ("step", "factor", [0.1, 0.5, 0.9], {}),
    ("polynomial", "power", [0.5, 1.0, 2.0], {}),
    ("wsd", "decay_fraction", [0.1, 0.2, 0.5], {"decay": "sqrt"}),
    ("one_cycle", "pct_start", [0.2, 0.3, 0.5], {}),
    ("one_cycle", "div_factor", [5.0, 25.0, 100.0], {}),
    ("one_cycle", "final_div_factor", [10.0, 1e4], {}),
]


@pytest.mark.parametrize(("name", "knob", "vals", "extra"), KNOB_SWEEPS,
                         ids=[f"{n}-{k}" for n, k, _, _ in KNOB_SWEEPS])
def test_numeric_hyperparameters_vmap_as_traced_arrays(name, knob, vals, extra):
    total, ts = 120, jnp.arange(0, 130, 3)
    factory = getattr(schedules, name)

    def kwargs(v):
        kw = {"peak_value": 0.5, "warmup_steps": 6, **extra}
        kw[knob] = v
        return kw

    @jax.jit
    def curve(v):
        return jax.vmap(factory(total, **kwargs(v)))(ts)

    got = np.asarray(jax.vmap(curve)(jnp.asarray(vals, jnp.float32)))
    for row, v in zip(got, vals, strict=True):
        want = values(factory(total, **kwargs(v)), ts)
        np.testing.assert_allclose(row, want, rtol=2e-6, atol=1e-7)
        # and the float64 reference
        kw = kwargs(v)
        prof_knobs = {k: x for k, x in kw.items()
                      if k not in ("peak_value", "end_value", "warmup_steps")}
        want64 = [ref.budgeted(ref.PROFILES[name], total, kw["peak_value"], int(t),
                               end=kw.get("end_value", 0.0), warmup=6, **prof_knobs)
                  for t in np.asarray(ts)]
        np.testing.assert_allclose(row, want64, rtol=5e-5, atol=5e-7)


def test_inject_hyperparams_over_a_schedule_and_a_transform():
    import budgetax

    params = {"w": jnp.array([1.0, -2.0])}
    g = {"w": jnp.array([0.5, 0.25])}
    # a schedule as optax's learning rate
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedules.rex(10, 0.1))
    state = tx.init(params)
    upd = jax.jit(tx.update)
    for t in range(3):
        u, state = upd(g, state)
        np.testing.assert_allclose(u["w"], -0.1 * ref.rex(t / 10) * g["w"], rtol=1e-6)
    # a budgetax transform with its knobs injected (total_steps etc. are static)
    tx = optax.inject_hyperparams(
        budgetax.rex, static_args=("total_steps", "warmup_steps", "sample_every"))(
        total_steps=10, beta=0.7)
    state = tx.init(params)
    upd = jax.jit(tx.update)
    for t in range(3):
        u, state = upd(g, state)
        np.testing.assert_allclose(u["w"], ref.rex(t / 10, 0.7) * g["w"], rtol=1e-6)
    state.hyperparams["beta"] = jnp.asarray(0.2)
    u, _ = upd(g, state)
    np.testing.assert_allclose(u["w"], ref.rex(3 / 10, 0.2) * g["w"], rtol=1e-6)
    # without static_args the budget is traced in update: a clear error
    tx = optax.inject_hyperparams(budgetax.rex)(total_steps=10)
    state = tx.init(params)
    with pytest.raises(TypeError, match="total_steps.*static"):
        jax.jit(tx.update)(g, state)


# ------------------------------------------------------------------------------- validation
def _traced_total():
    return jax.jit(lambda n: schedules.linear(n, 1.0)(0))(jnp.int32(10))


BAD_STATIC = [
    (lambda: schedules.linear(12.0), TypeError, r"total_steps must be a positive int, got 12\.0"),
    (lambda: schedules.linear(float("nan")), TypeError, "total_steps.*nan"),
    (lambda: schedules.linear(2**31), ValueError, r"total_steps.*2\*\*31 - 1.*2147483648"),
    (lambda: schedules.linear(jnp.array(10.0)), TypeError, "total_steps"),
    (lambda: schedules.linear(np.array([10, 20])), TypeError, "total_steps"),
    (_traced_total, TypeError, "total_steps.*traced.*static"),
    (lambda: schedules.linear(10, warmup_steps=1.5), TypeError, r"warmup_steps.*1\.5"),
    (lambda: schedules.linear(10, warmup_steps=True), TypeError, "warmup_steps.*True"),
    (lambda: schedules.linear(10, sample_every=2**40), ValueError,
     r"sample_every.*2\*\*31 - 1.*1099511627776"),
    (lambda: schedules.linear(10, sample_every=2.0), TypeError, r"sample_every.*2\.0"),
    (lambda: schedules.step(10, milestones=()), ValueError, r"milestones.*non-empty.*\(\)"),
    (lambda: schedules.step(10, milestones=(0.0, 0.5)), ValueError, r"milestones.*\(0, 1\)"),
    (lambda: schedules.step(10, milestones=(0.5, 1.0)), ValueError, r"milestones.*\(0, 1\)"),
    (lambda: schedules.step(10, milestones=("a",)), TypeError, "milestones"),
    (lambda: schedules.step(10, milestones=[0.5, 0.5]), ValueError, "increasing"),
    (lambda: schedules.linear(10, peak_value=jnp.array(jnp.nan)), ValueError, "peak_value"),
    (lambda: schedules.linear(10, end_value=np.float32(np.inf)), ValueError, "end_value"),
    (lambda: schedules.rex(10, beta=jnp.array(1.0)), ValueError, "beta"),
    (lambda: schedules.wsd(10, decay_fraction=jnp.array([0.5, 0.0])), ValueError,
     "decay_fraction"),
    (lambda: schedules.step(10, factor=jnp.array(True)), TypeError, "factor"),
    (lambda: schedules.progress(3, 0), ValueError, "total_steps"),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD_STATIC)
def test_bad_static_arguments_raise_naming_them(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_concrete_integer_arrays_are_accepted_as_static_ints():
    a = schedules.linear(np.int64(100), 1.0, warmup_steps=jnp.array(10), sample_every=np.int32(2))
    b = schedules.linear(100, 1.0, warmup_steps=10, sample_every=2)
    np.testing.assert_array_equal(values(a, TS), values(b, TS))


@pytest.mark.parametrize("count", [1.5, float("nan"), 3.0, np.float32(3), np.array([1.0, 2.0]),
                                   jnp.float32(3), True])
def test_float_or_bool_counts_are_refused(count):
    sched = schedules.cosine(10, 1.0)
    with pytest.raises(TypeError, match="count"):
        sched(count)
    with pytest.raises(TypeError, match="count"):
        schedules.progress(count, 10)


def test_float_count_is_refused_under_jit_too():
    sched = schedules.cosine(10, 1.0)
    with pytest.raises(TypeError, match="count.*float32"):
        jax.jit(sched)(jnp.float32(3.0))


def test_integer_counts_of_any_width_and_out_of_range_python_ints():
    sched = schedules.linear(100, 1.0, end_value=0.1)
    assert float(sched(2**40)) == np.float32(0.1)  # a Python int past int32: the end value
    assert float(sched(-5)) == float(sched(0)) == 1.0
    np.testing.assert_array_equal(sched(np.array([0, 50, 2**40], np.int64)),
                                  values(sched, [0, 50, 100]))
    assert float(sched(np.uint8(50))) == float(sched(50))


def test_vmap_over_traced_end_value_and_knob_together():
    ends = jnp.array([0.0, 0.1])
    betas = jnp.array([0.3, 0.9])
    out = jax.vmap(lambda e, b: schedules.rex(50, 1.0, end_value=e, beta=b)(25))(ends, betas)
    want = [ref.budgeted(ref.rex, 50, 1.0, 25, end=e, beta=b) for e, b in ((0.0, 0.3), (0.1, 0.9))]
    np.testing.assert_allclose(out, want, rtol=1e-6)


class _UnhashableProfile:
    """A user profile object that defines __eq__ (so it is not hashable)."""

    def __init__(self, power):
        self.power = power

    def __eq__(self, other):
        return isinstance(other, _UnhashableProfile) and other.power == self.power

    def __call__(self, p):
        return (1.0 - jnp.clip(p, 0.0, 1.0)) ** self.power


@pytest.mark.parametrize("prof", [_UnhashableProfile(1.5), lambda p: jnp.cos(p) ** 2])
def test_user_profiles_eager_equals_traced(prof):
    sched = schedules.budgeted(prof, 50, 0.2, end_value=0.01, warmup_steps=5, sample_every=2)
    ts = np.arange(0, 60)
    eager = np.array([np.asarray(sched(int(t))) for t in ts])
    np.testing.assert_array_equal(eager, values(sched, ts))
    want = [ref.budgeted(lambda p: float(np.asarray(prof(np.float32(p)))), 50, 0.2, int(t),
                         end=0.01, warmup=5, sample_every=2) for t in ts]
    np.testing.assert_allclose(eager, want, rtol=1e-5, atol=1e-7)


def test_user_profile_closing_over_a_traced_knob():
    @jax.jit
    def curve(power):
        sched = schedules.budgeted(lambda p: (1.0 - p) ** power, 40, 1.0)
        return jax.vmap(sched)(jnp.arange(41)), sched(20)  # a concrete count, traced knob

    got, mid = curve(2.0)
    np.testing.assert_allclose(got, [(1 - t / 40) ** 2 for t in range(41)], rtol=1e-6,
                               atol=1e-7)
    assert float(mid) == pytest.approx(0.25)


@pytest.mark.parametrize("name", ["linear", "rex", "cosine", "exponential", "step", "polynomial",
                                  "constant", "wsd", "one_cycle"])
def test_a_schedule_without_peak_value_warns_that_it_peaks_at_one(name):
    import warnings

    with pytest.warns(schedules.PeakValueWarning, match=rf"schedules\.{name}\(T\) was given no "
                      r"peak_value \(T = 10\), so it peaks at 1\.0") as record:
        sched = getattr(schedules, name)(10)
    assert record[0].filename == __file__  # points at the caller
    assert float(sched(0)) == pytest.approx(float(getattr(schedules, name)(10, 1.0)(0)))
    with pytest.warns(schedules.PeakValueWarning, match=r"budgeted\(profile, T, 1e-3\)"):
        schedules.budgeted(name, 10)
    import budgetax

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(schedules, name)(10, 1.0)  # given, even 1.0: silent
        getattr(schedules, name)(10, peak_value=0.1)
        schedules.budgeted(name, 10, 1.0)
        getattr(budgetax, name)(10)  # the transforms are multipliers by design
        budgetax.scale_by_profile(name, 10)
        with pytest.raises(ValueError, match="total_steps"):  # an error first, no warning
            getattr(schedules, name)(0)


def test_optax_order_is_told_the_arguments_look_swapped():
    with pytest.raises(TypeError, match=r"look swapped.*wsd\(total_steps, peak_value\).*"
                                        r"wsd\(1000, 0\.003\)"):
        schedules.wsd(3e-3, 1000)
    with pytest.raises(TypeError, match=r"reverse of optax's \(value, steps\) order"):
        schedules.budgeted("linear", 3e-3)
    sched = schedules.wsd(1000, 3e-3)  # the right order, unchanged
    assert float(sched(0)) == pytest.approx(3e-3)


def test_wsd_accepts_the_literature_name_1_sqrt():
    named = schedules.wsd(100, 1.0, decay="1-sqrt", decay_fraction=0.5)
    short = schedules.wsd(100, 1.0, decay="sqrt", decay_fraction=0.5)
    counts = np.arange(101)
    np.testing.assert_array_equal(named(counts), short(counts))
    assert float(named(75)) == pytest.approx(1 - np.sqrt(0.5), abs=1e-6)
    with pytest.raises(ValueError, match="1-sqrt"):
        schedules.wsd(100, 1.0, decay="sqrt1")


# ------------------------------------------------------------------ the budget as data
DATA_CASES = list({n: (n, k) for n, k, _ in END_CASES}.values()) + [("step", {})]


@pytest.mark.parametrize(("name", "knobs"), DATA_CASES,
                         ids=[f"{n}-{k}" for n, k in DATA_CASES])
def test_a_budget_as_data_gives_the_static_schedules_bits_with_one_compilation(name, knobs):
    """``budgeted(profile, budget_steps(profile, T, w))``: every budget's values, bit for bit,
    from one compiled function whose budget is an argument."""
    prof = functools.partial(profiles.get(name), **knobs)

    @functools.partial(jax.jit, static_argnames=("k",))
    def data(ts, steps, k):
        return jax.vmap(schedules.budgeted(prof, steps, 0.3, end_value=0.001, sample_every=k))(ts)

    for total, warmup, k in [(1, 0, 1), (7, 3, 1), (997, 13, 5), (3000, 0, 1),
                             (2**31 - 1, 12345, 1)]:
        ts = np.resize(np.unique(np.concatenate([  # one shape for every budget
            np.arange(-2, min(total, 3000) + 3), np.linspace(0, total, 500).astype(np.int64),
            [total - 1, total, 2**31 - 1]])), 4000).astype(np.int32)
        static = schedules.budgeted(prof, total, 0.3, end_value=0.001, warmup_steps=warmup,
                                    sample_every=k)
        steps = schedules.budget_steps(prof, total, warmup)
        want = values(static, ts)
        got = np.asarray(data(jnp.asarray(ts), steps, k=k))
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        eager = schedules.budgeted(prof, steps, 0.3, end_value=0.001, sample_every=k)
        np.testing.assert_array_equal(np.asarray(eager(ts)).view(np.uint32),
                                      want.view(np.uint32))
    # one compilation per sampling rate and warmup-or-not, whatever the budget
    assert data._cache_size() == 3


def test_budget_steps_are_the_schedules_integers():
    steps = schedules.budget_steps(profiles.step, 1000, 100)
    assert (int(steps.total), int(steps.warmup)) == (1000, 100)
    assert steps.milestones.tolist() == [270, 540, 810]  # ceil(m * 900)
    plain = schedules.budget_steps("cosine", 77)
    assert (int(plain.total), plain.warmup, plain.milestones) == (77, None, None)


BAD_DATA = [
    (lambda: schedules.budget_steps("linear", 0), ValueError, "total_steps"),
    (lambda: schedules.budget_steps("linear", 10, 10), ValueError, "warmup_steps"),
    (lambda: schedules.budgeted("linear", schedules.budget_steps("linear", 10), 0.1,
                                warmup_steps=2), ValueError, "warmup_steps must be 0"),
    (lambda: schedules.budgeted("step", schedules.budget_steps("linear", 10), 0.1),
     ValueError, "BudgetSteps.milestones"),
    (lambda: schedules.budgeted("linear", schedules.budget_steps(profiles.step, 10), 0.1),
     ValueError, "BudgetSteps.milestones"),
    (lambda: schedules.budgeted("linear", schedules.BudgetSteps(np.float32(10), None, None),
                                0.1), TypeError, "BudgetSteps.total"),
    (lambda: schedules.budgeted("linear", schedules.BudgetSteps(np.int32(10), np.int32(10),
                                                                None), 0.1),
     ValueError, "warmup_steps must be < total_steps=10"),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD_DATA)
def test_bad_budget_data_is_refused_naming_it(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
