"""AutoWU: GP and scheduler loop against references, synthetic warmups, NaNs, jit and vmap."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import budgetax
from budgetax.transforms import autowu as aw
from tests.reference import autowu_kakaobrain as ref_kb
from tests.reference import gp as ref_gp
from tests.reference import schedules as ref_sched

# ------------------------------------------------------------------ GP vs reference


def _gp_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 1, n))
    counts = rng.integers(1, 6, n).astype(np.float64)
    y = (x - 0.6) ** 2 * 4 + rng.normal(size=n) * 0.2 / np.sqrt(counts)
    y = (y - y.mean()) / y.std()
    d = (1 / counts) / np.mean(1 / counts)
    valid = np.ones(n, bool)
    valid[[3, 17, 30]] = False
    return x, y, d, valid


@pytest.mark.parametrize("seed", [0, 1])
def test_gp_fit_and_posterior_match_reference(seed):
    x, y, d, valid = _gp_data(seed=seed)
    # invalid entries get garbage values: they must be ignored
    y_in = np.where(valid, y, 1e3)
    ratio, s2, mu, lls = jax.jit(aw.gp_fit)(x, y_in, d, valid)
    r_ref, s2_ref, mu_ref, lls_ref = ref_gp.fit(x[valid], y[valid], d[valid])
    np.testing.assert_allclose(np.asarray(lls), lls_ref, rtol=1e-4, atol=2e-3)
    assert float(ratio) == pytest.approx(r_ref, rel=1e-6)
    assert float(s2) == pytest.approx(s2_ref, rel=1e-3)
    assert float(mu) == pytest.approx(mu_ref, abs=1e-3)

    mean, cov = jax.jit(aw.gp_posterior)(x, y_in, d, valid, ratio, s2)
    m_ref, c_ref = ref_gp.posterior(x[valid], y[valid], d[valid], r_ref, s2_ref)
    np.testing.assert_allclose(np.asarray(mean)[valid], m_ref, atol=2e-3)
    np.testing.assert_allclose(np.asarray(cov)[np.ix_(valid, valid)], c_ref, atol=2e-3)


def test_reference_profile_likelihood_is_the_maximum():
    """The closed-form mu, s2 of the reference maximise the likelihood (sanity of both)."""
    from scipy import stats

    x, y, d, valid = _gp_data()
    x, y, d = x[valid], y[valid], d[valid]
    ll, s2, mu = ref_gp.profile(x, y, d, 0.1)
    a = ref_gp.kernel(x, x) + np.diag(0.1 * d + ref_gp.JITTER)
    for dm, ds in [(0.05, 1.0), (0.0, 1.1), (0.0, 0.9), (-0.05, 1.0)]:
        other = stats.multivariate_normal(np.full(len(y), mu + dm), s2 * ds * a).logpdf(y)
        assert other < ll


# ------------------------------------------------------------------ against kakaobrain/autowu


def _reference_test(total_steps, max_warmup_fraction=0.5, cooldown_fraction=0.2, seed=0,
                    confidence=0.95):
    """budgetax's GP test in float64, as the ``test`` plugged into the reference loop.

    The bins follow the documented layout (B bins of equal width over the losses of the
    warmup window), the fit subsample is drawn as budgetax draws it (the key folded
    with the number of losses).
    """
    limit = int(max_warmup_fraction * total_steps)
    end = min(limit, max(1, math.ceil((1 - cooldown_fraction) * total_steps)))
    n_rec = max(end - 1, 1)
    width = math.ceil(n_rec / aw.BUFFER_SIZE)
    n_bins = math.ceil(n_rec / width)

    def test(losses):
        k = len(losses)
        ok = np.isfinite(np.asarray(losses))
        valid = np.zeros(n_bins, bool)
        valid[np.minimum(np.arange(k)[ok] // width, n_bins - 1)] = True
        key = jax.random.fold_in(jax.random.key(seed), k)
        score = np.where(valid, np.asarray(jax.random.uniform(key, (n_bins,))), -1.0)
        sub = np.argsort(-score, kind="stable")[: min(aw.FIT_SUBSAMPLE, n_bins)]
        prob, x_min, enough = ref_gp.autowu_test(losses, width, n_bins, sub)
        return enough and prob > confidence, [x_min]

    return test


@functools.cache
def _jax_run(losses, total_steps, kw):
    """budgetax under jit over a loss sequence: the lr each update applied, final state."""
    tx = aw.autowu(total_steps, **dict(kw))
    ones = {"w": jnp.ones(())}

    @jax.jit
    def run(losses):
        def body(state, loss):
            u, state = tx.update(ones, state, value=loss)
            return state, u["w"]

        return jax.lax.scan(body, tx.init(ones), losses)

    state, lrs = run(jnp.asarray(losses, jnp.float32))
    return state, np.asarray(lrs, np.float64)


def _compare(losses, total_steps, *, test_every, decay="cosine", **kw):
    """Runs both on the same (float32) losses; returns (reference scheduler, jax state, lrs)."""
    losses = np.asarray(np.asarray(losses, np.float32), np.float64)
    frac = kw.get("max_warmup_fraction", 0.5)
    cool = kw.get("cooldown_fraction", 0.2)
    ref_lrs, ref = ref_kb.run(
        losses, test_every, min_lr=kw.get("min_lr", 1e-5), max_lr=kw.get("max_lr", 1.0),
        max_warmup_fraction=frac, cooldown_fraction=cool,
        immediate_cooldown=decay != "constant_then_cosine",
        patience=kw.get("patience", 3),
        test=_reference_test(total_steps, frac, cool, confidence=kw.get("confidence", 0.95)))
    state, lrs = _jax_run(tuple(losses.tolist()), total_steps,
                          tuple(dict(kw, test_every=test_every, decay=decay).items()))
    assert int(state.switch_step) == ref.switch_step
    assert float(state.peak_lr) == pytest.approx(ref.peak_lr, rel=2e-5)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=2e-5, atol=1e-9)
    return ref, state, lrs


def _losses(kind, total_steps=1000, seed=0):
    t = np.arange(total_steps, dtype=np.float64)
    noise = np.random.default_rng(seed).normal(size=total_steps)
    if kind == "bowl":  # falls to a minimum at t=250, then rises
        return 1.0 + 0.3 * ((t - 250) / 150) ** 2 + 0.05 * noise
    if kind == "fall_then_noisy":  # falls, then flat with one-sided noise from t=250
        return 1.0 + 2.0 * np.exp(-t / 60) + np.where(t > 250, 0.5 * np.abs(noise), 0.05 * noise)
    if kind == "falling":  # never rises
        return 1.0 / (1.0 + 0.01 * t)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["bowl", "fall_then_noisy"])
def test_matches_reference_loop_1000_steps(kind):
    ref, state, lrs = _compare(_losses(kind), 1000, test_every=10)
    s = ref.switch_step
    assert s < 500  # the test fired before the warmup limit
    # the reference's cosine is stepped once at the switch and reaches 0 at the last update
    assert lrs[s] == pytest.approx(ref.peak_lr * 0.5 * (1 + math.cos(math.pi / (1000 - s))),
                                   rel=2e-5)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)


def test_matches_reference_with_nonfinite_losses():
    losses = _losses("bowl", seed=1)
    losses[3::10] = np.nan
    losses[7::25] = np.inf
    ref, _, _ = _compare(losses, 1000, test_every=10)
    assert ref.switch_step < 500


def test_monotonically_falling_loss_peaks_at_the_current_warmup_lr():
    ref, state, lrs = _compare(_losses("falling"), 1000, test_every=10)
    assert ref.switch_step == int(state.switch_step) == 500
    # the reference keeps the warmup lr of the last warmup update (499) as the peak
    assert float(state.peak_lr) == pytest.approx(1e-5 * 1e5 ** (499 / 500), rel=2e-5)
    assert float(state.peak_lr) == pytest.approx(0.977, abs=5e-4)
    assert lrs[499] == pytest.approx(float(state.peak_lr), rel=1e-6)


@pytest.mark.parametrize("kind", ["bowl", "falling"])
def test_constant_then_cosine_cools_down_at_the_last_fraction_of_the_budget(kind):
    ref, state, lrs = _compare(_losses(kind), 1000, test_every=10, decay="constant_then_cosine")
    peak = float(state.peak_lr)
    s = ref.switch_step
    np.testing.assert_allclose(lrs[s:800], peak, rtol=1e-6)  # constant until (1 - 0.2) T
    assert lrs[800] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi / 200)), rel=2e-5)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "kind, kw",
    [
        ("bowl", dict(max_warmup_fraction=1.0)),  # the cooldown time cuts the warmup: E = c
        ("falling", dict(max_warmup_fraction=1.0, cooldown_fraction=0.4,
                         decay="constant_then_cosine")),
        ("bowl", dict(max_warmup_fraction=0.3, patience=1, confidence=0.9)),
        ("bowl", dict(max_warmup_fraction=0.01)),  # L = int(2.0) = 2
        ("falling", dict(max_warmup_fraction=0.004)),  # L = 0: starts in the decay at max_lr
        ("falling", dict(max_warmup_fraction=0.004, decay="constant_then_cosine")),
        ("bowl", dict(min_lr=1e-3, max_lr=10.0, cooldown_fraction=1.0)),  # c = 0 -> 1
    ],
)
def test_matches_reference_loop_edge_cases(kind, kw):
    t = np.arange(200)
    losses = _losses(kind, 1000)[::5] if kind == "falling" else (
        1.0 + 0.3 * ((t - 50) / 30) ** 2 + 0.05 * np.random.default_rng(2).normal(size=200))
    _compare(losses, 200, test_every=2, **kw)


def test_linear_decay_uses_the_reference_stepping():
    """``linear`` (not in the reference): 1 - q with the cosine's q = (t - s + 1) / (T - s)."""
    ref, _, _ = _compare(_losses("bowl"), 1000, test_every=10)
    state, lrs = _jax_run(tuple(np.float32(_losses("bowl")).astype(np.float64).tolist()), 1000,
                          (("test_every", 10), ("decay", "linear")))
    s, peak = ref.switch_step, ref.peak_lr
    assert int(state.switch_step) == s
    q = (np.arange(s, 1000) - s + 1) / (1000 - s)
    np.testing.assert_allclose(lrs[s:], peak * (1 - q), rtol=2e-5, atol=1e-9)


def test_reference_past_minimum_prob():
    """The port's probability against a direct computation on a 3-point example."""
    loc = np.array([1.0, 0.2, 0.8])
    cov = np.array([[0.1, 0.02, 0.0], [0.02, 0.1, 0.01], [0.0, 0.01, 0.2]])
    from scipy import stats

    expected = max(stats.norm.cdf(-(loc[i] - loc[2]) / math.sqrt(
        cov[i, i] + cov[2, 2] - 2 * cov[i, 2] + 1e-4)) for i in range(2))
    assert ref_kb.past_minimum_prob(loc, cov) == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------ synthetic runs

T = 600


def _run(lr_star, *, total_steps=T, noise=0.05, nan_every=0, kind="bowl", run_ids=None, **kw):
    """Scans AutoWU over a synthetic loss of the current lr. vmaps over ``lr_star``."""
    tx = aw.autowu(total_steps, min_lr=1e-4, max_lr=10.0, **kw)
    lr_star = jnp.atleast_1d(jnp.asarray(lr_star, jnp.float32))
    run_ids = range(lr_star.shape[0]) if run_ids is None else run_ids
    noises = noise * jnp.stack(
        [jax.random.normal(jax.random.key(i), (total_steps,)) for i in run_ids], axis=1)

    def one(state, eps, star, t):
        if kind == "bowl":  # minimum at lr = star, rises after
            loss = 1.0 + 0.1 * jnp.log(state.lr / star) ** 2 + eps  # lr of this update
        else:  # never rises
            loss = 1.0 / (1.0 + 0.01 * t.astype(jnp.float32)) + eps
        if nan_every:
            loss = jnp.where(t % nan_every == 3, jnp.nan, loss)
            loss = jnp.where(t % nan_every == 5, jnp.inf, loss)
        lr_before = state.lr
        u, state = tx.update({"w": jnp.ones(())}, state, value=loss)
        return state, (lr_before, u["w"])

    def body(state, inputs):
        eps, t = inputs
        return jax.vmap(one, in_axes=(0, 0, 0, None))(state, eps, lr_star, t)

    @jax.jit
    def run():
        state = jax.vmap(tx.init)({"w": jnp.zeros(lr_star.shape)})
        return jax.lax.scan(body, state, (noises, jnp.arange(total_steps)))

    state, (lrs, updates) = run()
    return state, np.asarray(lrs), np.asarray(updates)


def _step_of_lr(lr, total_steps=T, frac=0.5):
    return math.log(lr / 1e-4) / math.log(10.0 / 1e-4) * frac * total_steps


STARS = (3e-3, 0.05, 0.5)


@functools.cache
def _cached(stars, run_ids=None, nan_every=0):
    return _run(np.asarray(stars, np.float32), run_ids=run_ids, nan_every=nan_every)


def test_switch_after_the_minimum_and_peak_near_it():
    stars = np.array(STARS, np.float32)
    state, lrs, _ = _cached(STARS)
    switch = np.asarray(state.switch_step)
    peak = np.asarray(state.peak_lr)
    assert (np.asarray(state.phase) == 1).all()
    for i, star in enumerate(stars):
        assert switch[i] > _step_of_lr(star), (switch[i], _step_of_lr(star))
        assert switch[i] < T // 2  # before the warmup limit
        assert star / 1.5 < peak[i] < star * 1.5, (peak[i], star)
        # the lr drops from the peak by one cosine step at the switch
        step = 0.5 * (1 + math.cos(math.pi / (T - switch[i])))
        assert lrs[switch[i], i] == pytest.approx(peak[i] * step, rel=1e-5)


def test_vmapped_runs_equal_single_runs():
    state_v, lrs_v, _ = _cached(STARS)
    state_1, lrs_1, _ = _cached((STARS[1],), run_ids=(1,))
    assert int(state_1.switch_step[0]) == int(state_v.switch_step[1])
    np.testing.assert_allclose(lrs_1[:, 0], lrs_v[:, 1], rtol=1e-5)


def test_never_rising_loss_switches_at_the_warmup_limit():
    state, lrs, _ = _run(1.0, kind="falling", max_warmup_fraction=0.4)
    limit = int(0.4 * T)
    assert int(state.switch_step[0]) == limit
    # the peak is the warmup lr of the last warmup update
    assert float(state.peak_lr[0]) == pytest.approx(1e-4 * 1e5 ** ((limit - 1) / limit), rel=1e-5)
    assert float(state.peak_lr[0]) == pytest.approx(float(lrs[limit - 1, 0]), rel=1e-6)
    assert np.all(np.diff(lrs[:limit, 0]) > 0)  # warmup kept rising to the limit


def test_nonfinite_losses_are_ignored():
    clean, lrs_clean, _ = _cached((STARS[1],), run_ids=(1,))
    dirty, lrs_dirty, upd = _cached((STARS[1],), run_ids=(1,), nan_every=10)
    assert np.all(np.isfinite(lrs_dirty)) and np.all(np.isfinite(upd))
    for leaf in (dirty.loss_sum, dirty.loss_count, dirty.step_sum, dirty.prob):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(dirty.loss_count.sum()) == pytest.approx(float(clean.loss_count.sum()) * 0.8,
                                                          abs=2)
    assert abs(int(dirty.switch_step[0]) - int(clean.switch_step[0])) <= 3 * (T // 100)
    assert 0.05 / 1.5 < float(dirty.peak_lr[0]) < 0.05 * 1.5


def test_all_nan_losses_never_pass_the_test_and_warm_up_to_the_limit():
    state, lrs, upd = _run(0.05, nan_every=1, noise=jnp.nan)
    assert int(state.switch_step[0]) == T // 2
    assert float(np.asarray(state.loss_count).sum()) == 0
    assert float(state.peak_lr[0]) == pytest.approx(float(lrs[T // 2 - 1, 0]), rel=1e-6)
    assert np.all(np.isfinite(lrs)) and np.all(np.isfinite(upd))


@pytest.mark.parametrize("decay", ["cosine", "linear", "constant_then_cosine"])
def test_warmup_and_decay_shapes(decay):
    total, frac = 200, 0.25
    state, lrs, upd = _run(1.0, total_steps=total, kind="falling", max_warmup_fraction=frac,
                           decay=decay, cooldown_fraction=0.4)
    lrs = lrs[:, 0].astype(np.float64)
    s = int(state.switch_step[0])
    peak = float(state.peak_lr[0])
    assert s == 50
    for t in range(s):
        assert lrs[t] == pytest.approx(1e-4 * 1e5 ** (t / (frac * total)), rel=1e-4)
    assert peak == pytest.approx(1e-4 * 1e5 ** (49 / 50), rel=1e-5)
    for t in range(s, total):
        p = (t - s + 1) / (total - s)
        if decay == "cosine":
            mult = ref_sched.cosine(p)
        elif decay == "linear":
            mult = 1 - p
        else:  # cosine from c = ceil(0.6 T) = 120 over the last 40% of the budget
            q = min(max((t - 120 + 1) / 80, 0.0), 1.0)
            mult = 0.5 * (1 + math.cos(math.pi * q))
        assert lrs[t] == pytest.approx(peak * mult, rel=1e-4, abs=1e-7)
    np.testing.assert_allclose(upd[:, 0], lrs, rtol=1e-6)  # updates of ones = lr


# ------------------------------------------------------------------ jit, vmap, aliases


def test_no_recompilation_across_phases(counting_jit):
    tx = budgetax.autowu(100, test_every=2)
    params = {"w": jnp.ones((3,))}

    def step(state, loss):
        return tx.update(params, state, params, value=loss)

    jitted = counting_jit(step)
    state = tx.init(params)
    for t in range(100):
        _, state = jitted(state, jnp.float32(1.0 / (t + 1)))
    assert int(state.phase) == 1
    assert jitted.traces == 1


def _walk(jaxpr, inside_cond=False, found=None):
    """(primitive, inside a cond branch?) pairs over all nested jaxprs."""
    from jax.extend.core import jaxprs_in_params

    found = set() if found is None else found
    for eqn in jaxpr.eqns:
        found.add((eqn.primitive.name, inside_cond))
        for sub in jaxprs_in_params(eqn.params):
            _walk(sub, inside_cond or eqn.primitive.name == "cond", found)
    return found


def test_gp_stays_behind_a_conditional_under_vmap():
    """vmap must not turn the GP's cond into a select that runs it at every step."""
    tx = budgetax.autowu(1000)
    params = {"w": jnp.ones((4,))}

    def step(state, loss):
        return tx.update(params, state, params, value=loss)[1]

    for batch in ((), (8,), (2, 3)):
        fn = step
        for _ in batch:
            fn = jax.vmap(fn)
        state = tx.init(params)
        for n in reversed(batch):
            state = jax.tree.map(lambda x, n=n: jnp.broadcast_to(x, (n,) + x.shape), state)
        found = _walk(jax.make_jaxpr(fn)(state, jnp.ones(batch)).jaxpr)
        assert ("cholesky", True) in found, batch
        assert ("cholesky", False) not in found, batch


def test_aliases_are_complete_optimizers():
    params = {"w": jnp.arange(6.0).reshape(2, 3) + 1.0, "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: jnp.sin(p) + 0.5, params)
    loss = jnp.float32(2.0)
    for alias, plain in [
        (budgetax.autowu_lamb(100, min_lr=1e-3, weight_decay=0.01),
         optax.lamb(1e-3, weight_decay=0.01)),
        (budgetax.autowu_adamp(100, min_lr=1e-3, weight_decay=0.01),
         budgetax.adamp(1e-3, weight_decay=0.01)),
    ]:
        u_alias, state = jax.jit(alias.update)(grads, alias.init(params), params, value=loss)
        u_plain, _ = plain.update(grads, plain.init(params), params)
        for k in params:
            np.testing.assert_allclose(u_alias[k], u_plain[k], rtol=1e-5, atol=1e-8)
        # the state holds the lr of the next update: one warmup step further
        assert float(state[-1].lr) == pytest.approx(1e-3 * 1e3 ** (1 / 50), rel=1e-5)


def test_value_is_required():
    tx = budgetax.autowu(10)
    with pytest.raises(TypeError, match="value"):
        tx.update({"w": jnp.ones(())}, tx.init({"w": jnp.ones(())}))


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(total_steps=0), ValueError, "total_steps"),
        (dict(total_steps=10.0), TypeError, "total_steps"),
        (dict(min_lr=1.0, max_lr=1.0), ValueError, "min_lr"),
        (dict(min_lr=2.0, max_lr=1.0), ValueError, "min_lr"),
        (dict(min_lr=0.0), ValueError, "min_lr"),
        (dict(max_warmup_fraction=0.0), ValueError, "max_warmup_fraction"),
        (dict(max_warmup_fraction=1.5), ValueError, "max_warmup_fraction"),
        (dict(cooldown_fraction=0.0), ValueError, "cooldown_fraction"),
        (dict(cooldown_fraction=1.2), ValueError, "cooldown_fraction"),
        (dict(confidence=1.0), ValueError, "confidence"),
        (dict(patience=0), ValueError, "patience"),
        (dict(test_every=0), ValueError, "test_every"),
        (dict(decay="step"), ValueError, "decay"),
        (dict(seed=1.5), TypeError, "seed"),
    ],
)
def test_bad_arguments(kwargs, exc, name):
    kwargs = {"total_steps": 100, **kwargs}
    total = kwargs.pop("total_steps")
    with pytest.raises(exc, match=name):
        budgetax.autowu(total, **kwargs)


def test_traced_max_lr_in_a_vmapped_sweep():
    def lrs(max_lr):
        tx = aw.autowu(40, min_lr=1e-3, max_lr=max_lr)
        state = tx.init({"w": jnp.ones(())})
        out = []
        for _ in range(3):
            _, state = tx.update({"w": jnp.ones(())}, state, value=jnp.float32(1.0))
            out.append(state.lr)
        return jnp.stack(out)

    swept = jax.jit(jax.vmap(lrs))(jnp.asarray([0.1, 1.0]))
    np.testing.assert_allclose(swept[1], jax.jit(lambda: lrs(1.0))(), rtol=1e-6)
    assert float(swept[0, -1]) == pytest.approx(1e-3 * 100 ** (3 / 20), rel=1e-5)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(total_steps=2**40), ValueError, "total_steps"),
        (dict(total_steps=True), TypeError, "total_steps"),
        (dict(test_every=2**40), ValueError, "test_every"),
        (dict(patience=2**40), ValueError, "patience"),
        (dict(patience=True), TypeError, "patience"),
        (dict(seed=2**40), ValueError, "seed"),
        (dict(min_lr=jnp.float32(0.0)), ValueError, "min_lr"),
        (dict(min_lr=jnp.asarray([1e-5, 1e-4])), ValueError, "min_lr"),
        (dict(min_lr=jnp.asarray(True)), TypeError, "min_lr"),
        (dict(min_lr=jnp.float32(2.0), max_lr=jnp.float32(1.0)), ValueError, "min_lr"),
        (dict(confidence=jnp.float32(1.0)), ValueError, "confidence"),
        (dict(max_warmup_fraction=np.float64(1.5)), ValueError, "max_warmup_fraction"),
        (dict(cooldown_fraction=jnp.float32(0.0)), ValueError, "cooldown_fraction"),
    ],
)
def test_bad_arguments_more(kwargs, exc, name):
    kwargs = {"total_steps": 100, **kwargs}
    total = kwargs.pop("total_steps")
    with pytest.raises(exc, match=name):
        budgetax.autowu(total, **kwargs)


def test_step_counts_are_static_ints():
    """A concrete integer scalar is a count like a Python int; a traced one is refused."""
    plain = budgetax.autowu(100, test_every=5, patience=2)
    concrete = budgetax.autowu(jnp.int32(100), test_every=np.int64(5), patience=jnp.int32(2))
    params = {"w": jnp.ones(())}
    a, b = plain.init(params), concrete.init(params)
    for _ in range(3):
        _, a = plain.update(params, a, value=jnp.float32(1.0))
        _, b = concrete.update(params, b, value=jnp.float32(1.0))
    np.testing.assert_array_equal(a.lr, b.lr)
    for name in ("total_steps", "test_every", "patience"):
        kwargs = {"total_steps": 100}
        with pytest.raises(TypeError, match=f"{name}.*static_args"):
            jax.jit(lambda v: budgetax.autowu(**{**kwargs, name: v}))(jnp.int32(3))


def test_largest_int32_budget_runs_under_jit():
    big = 2**31 - 1
    tx = budgetax.autowu(big, test_every=big, patience=big)
    params = {"w": jnp.ones(())}
    u, state = jax.jit(tx.update)(params, tx.init(params), value=jnp.float32(1.0))
    assert float(u["w"]) == pytest.approx(1e-5)
    assert np.isfinite(float(state.lr)) and int(state.phase) == 0 and int(state.count) == 1


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(b1=1.0), ValueError, "b1"),
        (dict(b1=-0.1), ValueError, "b1"),
        (dict(b2=1.0), ValueError, "b2"),
        (dict(eps=-1.0), ValueError, "eps"),
        (dict(eps=0.0), ValueError, "eps"),
        (dict(eps_root=-1e-8), ValueError, "eps_root"),
        (dict(weight_decay=-0.1), ValueError, "weight_decay"),
        (dict(b1="0.9"), TypeError, "b1"),
        (dict(b1=True), TypeError, "b1"),
        (dict(b1=jnp.float32(1.0)), ValueError, "b1"),
        (dict(eps=jnp.float32(-1.0)), ValueError, "eps"),
        (dict(min_lr=0.0), ValueError, "min_lr"),
        (dict(patience=2**40), ValueError, "patience"),
    ],
)
def test_autowu_lamb_validates_its_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        budgetax.autowu_lamb(100, **kwargs)


def test_autowu_lamb_message_shows_the_value():
    with pytest.raises(ValueError, match=r"b1 must be in \[0.0, 1.0\), got 1.0"):
        budgetax.autowu_lamb(100, b1=1.0)
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, inf\], got -1"):
        budgetax.autowu_lamb(100, eps=-1)


def _updates_over(tx, steps=4):
    params = {"w": jnp.arange(6.0).reshape(2, 3) + 1.0}
    state = tx.init(params)
    out = []
    step = jax.jit(tx.update)
    for t in range(steps):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p + t) + 0.5, params)
        u, state = step(grads, state, params, value=jnp.float32(1.0 / (t + 1)))
        params = optax.apply_updates(params, u)
        out.append(u["w"])
    return np.stack(out), state


_STATIC = ("total_steps", "test_every", "patience", "decay", "seed")


def test_autowu_lamb_under_inject_hyperparams():
    injected = optax.inject_hyperparams(budgetax.autowu_lamb, static_args=_STATIC)(
        50, b1=0.8, weight_decay=0.01, min_lr=1e-3)
    plain = budgetax.autowu_lamb(50, b1=0.8, weight_decay=0.01, min_lr=1e-3)
    u_inj, state = _updates_over(injected)
    u_plain, _ = _updates_over(plain)
    np.testing.assert_allclose(u_inj, u_plain, rtol=1e-5)
    assert set(state.hyperparams) >= {"b1", "b2", "eps", "min_lr", "max_lr", "confidence"}
    # a hyperparameter changed in the state acts like the factory argument
    params = {"w": jnp.ones((2, 3))}
    s = injected.init(params)
    s.hyperparams["b1"] = jnp.asarray(0.5)
    other = budgetax.autowu_lamb(50, b1=0.5, weight_decay=0.01, min_lr=1e-3)
    g = {"w": jnp.full((2, 3), 0.3)}
    u1, _ = jax.jit(injected.update)(g, s, params, value=jnp.float32(1.0))
    u2, _ = other.update(g, other.init(params), params, value=jnp.float32(1.0))
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-5)


def test_autowu_lamb_vmapped_over_b1_and_eps():
    b1s = jnp.asarray([0.5, 0.9])
    epss = jnp.asarray([1e-6, 1e-3])
    swept = jax.jit(jax.vmap(_traced_updates))(b1s, epss)
    for i in range(2):
        plain = budgetax.autowu_lamb(50, b1=float(b1s[i]), eps=float(epss[i]), min_lr=1e-3)
        np.testing.assert_allclose(swept[i], _updates_over(plain)[0], rtol=1e-5)


def _traced_updates(b1, eps, steps=4):
    tx = budgetax.autowu_lamb(50, b1=b1, eps=eps, min_lr=1e-3)
    params = {"w": jnp.arange(6.0).reshape(2, 3) + 1.0}
    state = tx.init(params)
    out = []
    for t in range(steps):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p + t) + 0.5, params)
        u, state = tx.update(grads, state, params, value=jnp.float32(1.0 / (t + 1)))
        params = optax.apply_updates(params, u)
        out.append(u["w"])
    return jnp.stack(out)


def test_traced_fractions_and_confidence_match_static_ones():
    """max_warmup_fraction, cooldown_fraction and confidence may be traced (vmapped)."""
    losses = jnp.asarray(1.0 + 0.3 * ((np.arange(200) - 50) / 30) ** 2
                         + 0.05 * np.random.default_rng(3).normal(size=200), jnp.float32)
    ones = {"w": jnp.ones(())}

    def lrs(frac, cool, conf, decay):
        tx = aw.autowu(200, max_warmup_fraction=frac, cooldown_fraction=cool, confidence=conf,
                       test_every=2, decay=decay)

        def body(state, loss):
            u, state = tx.update(ones, state, value=loss)
            return state, u["w"]

        state, out = jax.lax.scan(body, tx.init(ones), losses)
        return out, state.switch_step

    grid = [(0.3, 0.5, 0.9), (0.02, 0.2, 0.95), (1.0, 0.3, 0.99)]
    for decay in ("cosine", "constant_then_cosine"):
        fr, co, cf = (jnp.asarray(v, jnp.float32) for v in zip(*grid))
        swept, switches = jax.jit(jax.vmap(functools.partial(lrs, decay=decay)))(fr, co, cf)
        for i, (f, c, conf) in enumerate(grid):
            ref, sw = jax.jit(functools.partial(lrs, f, c, conf, decay))()
            assert int(switches[i]) == int(sw), (decay, grid[i])
            np.testing.assert_allclose(swept[i], ref, rtol=1e-5, atol=1e-7 * float(ref.max()))


# ------------------------------------------------------------------ passing the loss


def test_value_missing_or_malformed_gives_a_clear_error():
    tx = budgetax.autowu(10)
    params = {"w": jnp.ones(())}
    state = tx.init(params)
    with pytest.raises(TypeError, match=r"value=loss"):
        tx.update(params, state)
    with pytest.raises(ValueError, match=r"value must be .* scalar.*shape \(3,\)"):
        tx.update(params, state, value=jnp.ones(3))
    with pytest.raises(TypeError, match="value"):
        tx.update(params, state, value="1.0")
    with pytest.raises(TypeError, match="value"):
        tx.update(params, state, value=jnp.asarray(True))
    # inside a chain and under jit too
    chained = budgetax.autowu_adamp(10)
    with pytest.raises(TypeError, match=r"value=loss"):
        jax.jit(chained.update)(params, chained.init(params), params)
    u, _ = tx.update(params, state, value=jnp.ones((1,)))  # one element is a scalar
    assert float(u["w"]) == pytest.approx(1e-5)


def _linen_setup():
    from flax.training import train_state

    params = {"w": jnp.asarray([1.0, -2.0, 0.5])}

    def loss_fn(p):
        return jnp.sum((p["w"] - 1.0) ** 2)

    tx = budgetax.autowu_adamp(40, min_lr=1e-3, max_lr=0.5, test_every=2)
    return train_state.TrainState.create(apply_fn=None, params=params, tx=tx), loss_fn


def test_flax_linen_train_state_apply_gradients_explains_how_to_pass_the_loss():
    state, loss_fn = _linen_setup()
    grads = jax.grad(loss_fn)(state.params)
    with pytest.raises(TypeError, match="TrainState"):
        state.apply_gradients(grads=grads)


def test_flax_linen_train_state_custom_step(counting_jit):
    """The documented linen step: tx.update with value=loss, then state.replace."""
    state, loss_fn = _linen_setup()

    def train_step(state):
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params, value=loss)
        return state.replace(step=state.step + 1, opt_state=opt_state,
                             params=optax.apply_updates(state.params, updates)), loss

    step = counting_jit(train_step)
    tx, params, opt_state = state.tx, state.params, state.tx.init(state.params)
    for _ in range(40):
        state, _ = step(state)
        loss, grads = jax.value_and_grad(loss_fn)(params)
        u, opt_state = tx.update(grads, opt_state, params, value=loss)
        params = optax.apply_updates(params, u)
    assert step.traces == 1
    assert int(state.step) == 40
    np.testing.assert_allclose(state.params["w"], params["w"], rtol=1e-5)
    assert int(state.opt_state[-1].phase) == 1  # it switched to the decay


def test_flax_nnx_optimizer_forwards_value():
    from flax import nnx

    model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    tx = budgetax.autowu_adamp(20, min_lr=1e-3, test_every=2)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.ones((4, 3))

    def loss_fn(m):
        return jnp.mean(m(x) ** 2)

    k0, b0 = np.array(model.kernel[...]), np.array(model.bias[...])
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads, value=loss)
    # the same update computed with the transform directly
    params = {"kernel": jnp.asarray(k0), "bias": jnp.asarray(b0)}
    g = {"kernel": grads["kernel"][...], "bias": grads["bias"][...]}
    u, _ = tx.update(g, tx.init(params), params, value=loss)
    np.testing.assert_allclose(model.kernel[...], k0 + np.asarray(u["kernel"]), rtol=1e-6)
    np.testing.assert_allclose(model.bias[...], b0 + np.asarray(u["bias"]), rtol=1e-6)
    assert not np.allclose(model.kernel[...], k0)
