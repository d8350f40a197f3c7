"""Profiles against their formulas (float64 reference), endpoints, monotonicity, jit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetax import profiles
from tests.reference import schedules as ref

# (name, knobs) covering every profile and each knob's interesting values.
CASES = [
    ("linear", {}),
    ("rex", {}),
    ("rex", {"beta": 0.0}),
    ("rex", {"beta": 0.9}),
    ("cosine", {}),
    ("exponential", {}),
    ("exponential", {"final": 0.5}),
    ("step", {}),
    ("step", {"milestones": (0.5,), "factor": 0.5}),
    ("polynomial", {}),
    ("polynomial", {"power": 0.5}),
    ("constant", {}),
    ("wsd", {}),
    ("wsd", {"decay_fraction": 0.5, "decay": "cosine"}),
    ("wsd", {"decay_fraction": 1.0, "decay": "sqrt"}),
    ("one_cycle", {}),
    ("one_cycle", {"pct_start": 0.5, "div_factor": 10.0, "final_div_factor": 100.0}),
]
IDS = [f"{n}-{k}" for n, k in CASES]

DECAYING = [(n, k) for n, k in CASES if n != "one_cycle"]

_jitted = {}


def jitted(name, knobs):
    key = (name, tuple(sorted(knobs.items())))
    if key not in _jitted:
        _jitted[key] = jax.jit(functools.partial(profiles.get(name), **knobs))
    return _jitted[key]


P_GRID = np.linspace(0.0, 1.0, 1001)


@pytest.mark.parametrize(("name", "knobs"), CASES, ids=IDS)
def test_profile_matches_reference_on_grid(name, knobs):
    got = np.asarray(jitted(name, knobs)(jnp.asarray(P_GRID, jnp.float32)))
    # The reference gets the exact grid value: rounding p and a milestone to
    # float32 is monotone, so a grid point on a milestone stays on it.
    want = np.array([ref.PROFILES[name](float(p), **knobs) for p in P_GRID])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@settings(max_examples=60, deadline=None)
@given(p=st.floats(0.0, 1.0, allow_nan=False), i=st.integers(0, len(CASES) - 1))
def test_profile_matches_reference_hypothesis(p, i):
    name, knobs = CASES[i]
    p32 = float(np.float32(p))
    milestones = knobs.get("milestones", (0.3, 0.6, 0.9))
    if name == "step" and any(abs(p32 - m) < 1e-6 for m in milestones):
        return  # the exact milestone is covered by test_step_milestones_are_inclusive
    got = float(jitted(name, knobs)(jnp.float32(p32)))
    want = ref.PROFILES[name](p32, **knobs)
    assert got == pytest.approx(want, rel=2e-5, abs=2e-6)


@pytest.mark.parametrize(("name", "knobs"), DECAYING, ids=[f"{n}-{k}" for n, k in DECAYING])
def test_decaying_profiles_start_at_one_and_never_increase(name, knobs):
    f = jitted(name, knobs)
    vals = np.asarray(f(jnp.linspace(0.0, 1.0, 4097)))
    assert vals[0] == pytest.approx(1.0)
    assert np.all(np.diff(vals) <= 1e-7), f"{name} increases somewhere"


@pytest.mark.parametrize(
    ("name", "knobs", "end"),
    [
        ("linear", {}, 0.0),
        ("rex", {}, 0.0),
        ("cosine", {}, 0.0),
        ("exponential", {"final": 0.01}, 0.01),
        ("step", {}, 1e-3),
        ("polynomial", {}, 0.0),
        ("constant", {}, 1.0),
        ("wsd", {}, 0.0),
        ("one_cycle", {}, 1.0 / 25.0 / 1e4),
    ],
)
def test_profile_end_values(name, knobs, end):
    assert float(jitted(name, knobs)(1.0)) == pytest.approx(end, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_progress_is_clipped(name):
    f = jitted(name, {})
    assert float(f(-0.5)) == pytest.approx(float(f(0.0)))
    assert float(f(3.0)) == pytest.approx(float(f(1.0)))


def test_step_milestones_are_inclusive():
    # DESIGN: factor ** (number of milestones <= p)
    f = jitted("step", {"milestones": (0.25, 0.5), "factor": 0.5})
    assert float(f(0.25)) == 0.5
    assert float(f(0.2499)) == 1.0
    assert float(f(0.25 - 1e-6)) == 1.0
    assert float(f(0.5)) == 0.25


def test_rex_beta_zero_is_linear_and_paper_point():
    p = jnp.linspace(0, 1, 101)
    np.testing.assert_allclose(profiles.rex(p, beta=0.0), profiles.linear(p), atol=1e-7)
    # REX paper curve at p = 1/2: (1/2) / (1/2 + 1/4) = 2/3
    assert float(profiles.rex(0.5)) == pytest.approx(2.0 / 3.0, rel=1e-6)


def test_one_cycle_matches_optax():
    import optax

    total = 1000
    sched = optax.cosine_onecycle_schedule(total, 1.0, pct_start=0.3, div_factor=25.0,
                                           final_div_factor=1e4)
    t = np.arange(0, total + 1, 7)
    got = np.asarray(profiles.one_cycle(jnp.asarray(t / total, jnp.float32)))
    want = np.asarray(jax.vmap(sched)(jnp.asarray(t)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_profiles_are_elementwise_and_keep_shape():
    p = jnp.linspace(0, 1, 12).reshape(3, 4)
    for name, fn in profiles.PROFILES.items():
        out = fn(p)
        assert out.shape == (3, 4), name
        np.testing.assert_allclose(out.reshape(-1), jax.vmap(fn)(p.reshape(-1)), rtol=1e-6,
                                   err_msg=name)


def test_profiles_accept_traced_knobs():
    betas = jnp.array([0.0, 0.5, 0.9])
    out = jax.jit(jax.vmap(lambda b: profiles.rex(0.5, beta=b)))(betas)
    np.testing.assert_allclose(out, [ref.rex(0.5, b) for b in (0.0, 0.5, 0.9)], rtol=1e-6)
    fracs = jnp.array([0.2, 0.5])
    out = jax.jit(jax.vmap(lambda f: profiles.wsd(0.9, decay_fraction=f)))(fracs)
    np.testing.assert_allclose(out, [ref.wsd(0.9, 0.2), ref.wsd(0.9, 0.5)], rtol=1e-6)
    pcts = jnp.array([0.2, 0.4])
    out = jax.jit(jax.vmap(lambda q: profiles.one_cycle(0.3, pct_start=q)))(pcts)
    np.testing.assert_allclose(out, [ref.one_cycle(0.3, 0.2), ref.one_cycle(0.3, 0.4)],
                               rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: profiles.rex(0.5, beta=1.0), ValueError, "beta"),
        (lambda: profiles.rex(0.5, beta=-0.1), ValueError, "beta"),
        (lambda: profiles.rex(0.5, beta="x"), TypeError, "beta"),
        (lambda: profiles.exponential(0.5, final=0.0), ValueError, "final"),
        (lambda: profiles.exponential(0.5, final=-1.0), ValueError, "final"),
        (lambda: profiles.step(0.5, milestones=(0.6, 0.3)), ValueError, "milestones"),
        (lambda: profiles.step(0.5, milestones=(0.3, 0.3)), ValueError, "milestones"),
        (lambda: profiles.step(0.5, milestones=(0.3, 1.5)), ValueError, "milestones"),
        (lambda: profiles.step(0.5, milestones=0.3), TypeError, "milestones"),
        (lambda: profiles.step(0.5, factor=0.0), ValueError, "factor"),
        (lambda: profiles.polynomial(0.5, power=0.0), ValueError, "power"),
        (lambda: profiles.wsd(0.5, decay_fraction=0.0), ValueError, "decay_fraction"),
        (lambda: profiles.wsd(0.5, decay="exp"), ValueError, "decay"),
        (lambda: profiles.one_cycle(0.5, pct_start=1.0), ValueError, "pct_start"),
        (lambda: profiles.one_cycle(0.5, div_factor=0.5), ValueError, "div_factor"),
        (lambda: profiles.get("nope"), ValueError, "linear"),
    ],
)
def test_bad_knobs_raise_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


ZERO_END = [(n, k) for n, k in CASES if n not in ("exponential", "step", "constant", "one_cycle")]


@pytest.mark.parametrize(("name", "knobs"), ZERO_END, ids=[f"{n}-{k}" for n, k in ZERO_END])
def test_decaying_profiles_are_exactly_zero_at_the_end_and_one_at_the_start(name, knobs):
    f = jitted(name, knobs)
    eager = functools.partial(profiles.get(name), **knobs)
    for g in (f, eager):
        assert float(g(1.0)) == 0.0
        assert float(g(jnp.float32(1.5))) == 0.0
        assert float(g(0.0)) == 1.0


@pytest.mark.parametrize(
    ("name", "knobs", "end"),
    [
        ("exponential", {"final": 0.01}, 0.01),
        ("exponential", {"final": 0.3}, 0.3),
        ("one_cycle", {}, 1.0 / (25.0 * 1e4)),
        ("one_cycle", {"div_factor": 10.0, "final_div_factor": 100.0}, 1e-3),
        ("step", {"milestones": (0.5,), "factor": 0.5}, 0.5),
    ],
)
def test_non_zero_ends_are_the_float32_of_the_formula(name, knobs, end):
    assert float(jitted(name, knobs)(1.0)) == float(np.float32(end))


@pytest.mark.parametrize("decay", ["linear", "cosine", "sqrt"])
@pytest.mark.parametrize("frac", [0.2, 0.25, 0.1, 0.5])
def test_wsd_is_exactly_one_where_the_decay_starts(decay, frac):
    # the sqrt decay is steep there: an ulp of progress would cost 2e-4
    start = np.float32(1.0 - frac)
    f = jitted("wsd", {"decay_fraction": frac, "decay": decay})
    assert float(f(start)) == 1.0
    nxt = np.nextafter(start, np.float32(1.0))
    assert float(f(nxt)) == pytest.approx(ref.wsd(float(nxt), frac, decay), rel=1e-3)


def test_a_profile_is_not_a_schedule():
    import optax

    params = {"w": jnp.ones(2)}
    tx = optax.sgd(profiles.rex)  # a profile passed where a schedule is expected
    state = tx.init(params)
    with pytest.raises(TypeError, match="schedules.rex"):
        tx.update(params, state)
    with pytest.raises(TypeError, match="int32"):
        jax.jit(tx.update)(params, state)
    with pytest.raises(ValueError, match=r"p must be a float.*got the int 5"):
        profiles.cosine(5)
    with pytest.raises(TypeError, match="p must be a float"):
        profiles.linear(True)
    with pytest.raises(TypeError, match="schedules.step"):
        profiles.step(jnp.arange(3))
    assert float(profiles.linear(0)) == 1.0 and float(profiles.linear(1)) == 0.0


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: profiles.step(0.5, milestones=()), ValueError, "non-empty"),
        (lambda: profiles.step(0.5, milestones=(0.0, 0.5)), ValueError, r"\(0, 1\)"),
        (lambda: profiles.step(0.5, milestones=(0.5, 1.0)), ValueError, r"\(0, 1\)"),
        (lambda: profiles.step(0.5, milestones=(None,)), TypeError, "milestones"),
        (lambda: profiles.rex(0.5, beta=jnp.array(1.0)), ValueError, "beta"),
        (lambda: profiles.exponential(0.5, final=np.float32(np.nan)), ValueError, "final"),
        (lambda: profiles.polynomial(0.5, power=jnp.array([1.0, -1.0])), ValueError, "power"),
        (lambda: profiles.one_cycle(0.5, pct_start=jnp.array(0.0)), ValueError, "pct_start"),
        (lambda: profiles.step(0.5, factor=jnp.array(1 + 0j)), TypeError, "factor"),
    ],
)
def test_concrete_knobs_and_milestones_are_validated(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_traced_knobs_pass_and_match_concrete_ones():
    knobs = {"exponential": ("final", [0.01, 0.5]), "polynomial": ("power", [0.5, 3.0]),
             "step": ("factor", [0.1, 0.5]), "one_cycle": ("div_factor", [5.0, 25.0])}
    p = jnp.linspace(0.0, 1.0, 33)
    for name, (knob, vals) in knobs.items():
        fn = profiles.get(name)
        out = jax.jit(jax.vmap(lambda v, fn=fn, knob=knob: fn(p, **{knob: v})))(
            jnp.asarray(vals))
        for row, v in zip(out, vals, strict=True):
            want = [ref.PROFILES[name](float(x), **{knob: v}) for x in np.asarray(p)]
            np.testing.assert_allclose(row, want, rtol=2e-5, atol=2e-6, err_msg=name)
