"""``laws.fit(method="paper")``: the paper's fitting algorithm, against its NumPy port."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from budgetax import laws
from budgetax.laws import _paper
from tests.reference import multipower_law as ref

PEAK, WARMUP, T, EVERY = 3e-4, 80, 800, 30   # the paper's peak; a short run
TRUE = (3.0, 0.5, 0.5, 400.0, 2.0, 0.6, 0.6)


def _schedules():
    t = np.arange(T)
    base = np.full(T, PEAK)
    base[:WARMUP] = np.linspace(0, PEAK, WARMUP)
    cosine = base.copy()
    cosine[WARMUP:] = 3e-5 + 0.5 * (PEAK - 3e-5) * (
        1 + np.cos(np.pi * (t[WARMUP:] - WARMUP) / (T - WARMUP)))
    two_stage = base.copy()
    two_stage[T // 2:] = 9e-5
    return {"cosine": cosine, "constant": base, "two_stage": two_stage}


@pytest.fixture(scope="module")
def both():
    """The same noisy curves as ``laws.Curve``s and as the port's dict."""
    rng = np.random.default_rng(0)
    steps = np.arange(WARMUP + EVERY - 1, T, EVERY)
    curves, data = [], {}
    for name, lrs in _schedules().items():
        loss = ref.mpl_predict(TRUE, lrs, steps) * (1 + 2e-3 * rng.standard_normal(steps.shape))
        curves.append(laws.Curve(lrs, steps, loss, name=name))
        data[name] = {"step": steps, "lrs": lrs, "loss": loss}
    return curves, data


@pytest.fixture(scope="module")
def paper_fit(both):
    return laws.fit(both[0], method="paper")


@pytest.fixture(scope="module")
def port_stage1(both):
    """The port's stage 1 as it calls L-BFGS-B: its objective and its 135 starts."""
    calls = []

    def record(fun, x0, **kwargs):
        calls.append((fun, np.array(x0, np.float64), kwargs))
        return optimize.OptimizeResult(x=np.asarray(x0), fun=1.0)

    mp = pytest.MonkeyPatch()
    mp.setattr(ref, "minimize", record)
    try:
        ref.initialize_params(both[1], list(both[1]))
    finally:
        mp.undo()
    return calls


@pytest.mark.slow
def test_paper_method_fits_as_the_port_does(both, paper_fit):
    """End to end, against the port. Stage 1's L-BFGS-B runs on forward differences (step
    1e-8) and stops on an absolute gain of 1e-9, so it halts wherever rounding leads it along
    the objective's flat directions: the two agree on parameters to 1e-3 (relative) and on
    the fitted curve and objective far closer."""
    curves, data = both
    fit = paper_fit
    with _paper._one_blas_thread():  # the port's 135 L-BFGS-B runs take most of this test
        upstream, _, _ = ref.fit_upstream(data, train_set=list(data))
    np.testing.assert_allclose(np.asarray(fit.params), upstream, rtol=1e-3)
    for c in curves:
        np.testing.assert_allclose(fit.predict(c.lrs, c.steps),
                                   ref.mpl_predict(upstream, c.lrs, c.steps), rtol=2e-5)
    assert ref.mpl_objective(np.asarray(fit.params), data, list(data)) == pytest.approx(
        ref.mpl_objective(upstream, data, list(data)), rel=1e-3)
    assert 20 < fit.iterations <= 200


def test_first_stage_has_the_ports_starts_and_objective(both, port_stage1):
    curves = both[0]
    starts, arrays = _paper.stage1_data(curves)
    np.testing.assert_array_equal(starts, np.stack([x0 for _, x0, _ in port_stage1]))
    fun, _, kwargs = port_stage1[0]
    assert kwargs["method"] == "L-BFGS-B" and kwargs["options"]["eps"] == _paper._FD_STEP
    xs = starts[::9]
    with jax.enable_x64(True):
        f, g = _paper._stage1_value_fd(jnp.asarray(xs), *map(jnp.asarray, arrays), 1e-3)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.array([fun(x) for x in xs])
        np.testing.assert_allclose(np.asarray(f), want, rtol=1e-12)
        for x, f0, gx in zip(xs, want, np.asarray(g)):
            for j in range(4):  # SciPy's forward difference, step 1e-8
                shifted = x.copy()
                shifted[j] = x[j] + 1e-8
                fd = (fun(shifted) - f0) / ((x[j] + 1e-8) - x[j])
                # a difference of two values, each rounded: 1e-12 of f over the step
                assert gx[j] == pytest.approx(fd, abs=1e-12 * abs(f0) / 1e-8, nan_ok=True)


@pytest.mark.parametrize("lockstep", [True, False], ids=["lockstep", "minimize"])
def test_lockstep_lbfgsb_is_scipys_minimize(port_stage1, lockstep, monkeypatch):
    """The runs stepped together (or, without SciPy's ``setulb``, one by one through
    ``minimize``) take exactly SciPy's L-BFGS-B path on the same objective."""
    fun, _, kwargs = port_stage1[0]
    starts = np.stack([x0 for _, x0, _ in port_stage1])[::27]
    if not lockstep:
        monkeypatch.setattr(_paper, "_setulb", lambda: None)
    h = kwargs["options"]["eps"]

    def evaluate(xs):  # the port's objective and SciPy's forward differences, row by row
        f = np.array([fun(x) for x in xs])
        g = np.empty_like(xs)
        for j in range(xs.shape[1]):
            shifted = xs.copy()
            shifted[:, j] = xs[:, j] + h
            g[:, j] = (np.array([fun(x) for x in shifted]) - f) / ((xs[:, j] + h) - xs[:, j])
        return f, g

    with np.errstate(invalid="ignore", divide="ignore"), _paper._one_blas_thread():
        fs, xs = _paper._lockstep(starts, evaluate)
        for x0, f, x in zip(starts, fs, xs):
            res = optimize.minimize(fun, x0, **kwargs)
            np.testing.assert_array_equal(x, res.x)
            assert f == res.fun


def test_adamw_loop_is_the_ports_from_any_start(both):
    """Stage 2 alone from one start: the loop, its stopping rules and its best-step rule."""
    curves, data = both
    start = (2.9, 0.6, 0.45, 300.0, 1.0, 0.5, 0.5)
    for max_steps in (7, 200):
        hist = []
        want, want_loss = ref.mpl_adam_fit(data, list(data), [start], max_steps=max_steps,
                                           history=hist)
        with jax.enable_x64(True):
            p, loss, steps = _paper._adamw(jnp.asarray(start), _paper.stage2_data(curves),
                                           1e-3, max_steps)
        assert int(steps) == len(hist)
        np.testing.assert_allclose(np.asarray(p), want, rtol=1e-9)
        assert float(loss) == pytest.approx(want_loss, rel=1e-9)


def test_second_fit_does_not_recompile(both, paper_fit, caplog):
    curves, fit = both[0], paper_fit
    with jax.log_compiles(), caplog.at_level(logging.DEBUG):
        again = laws.fit(curves, method="paper")
    compiled = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
    assert not compiled, compiled[:3]
    assert again.params == fit.params


def test_bad_method_names_the_argument(both):
    curves = both[0]
    with pytest.raises(ValueError, match=r"method must be one of \['lm', 'paper'\], got 'adam'"):
        laws.fit(curves, method="adam")
    with pytest.raises(ValueError, match="method='paper' applies to law='multi_power' only"):
        laws.fit(curves, law="lr_annealing", method="paper")
    with pytest.raises(ValueError, match="coarse_terms applies to method='lm' only"):
        laws.fit(curves, method="paper", coarse_terms=10)
    with pytest.raises(ValueError, match="starts applies to method='lm' only"):
        laws.fit(curves, method="paper", starts=[TRUE])


def test_a_non_positive_parameter_predicts_without_an_interval(both, monkeypatch):
    """The paper's AdamW is unconstrained: a Fit ending at L0 < 0 predicts, has no interval."""
    curves = both[0]
    p = np.array([-0.1, 0.5, 0.5, 400.0, 2.0, 0.6, 0.6])
    monkeypatch.setattr(_paper, "fit_paper", lambda *a: (p, 0.0, 30))
    fit = laws.fit(curves, method="paper")
    assert fit.params.L0 == -0.1 and fit.iterations == 30
    c = curves[0]
    np.testing.assert_allclose(fit.predict(c.lrs, c.steps), ref.mpl_predict(p, c.lrs, c.steps),
                               rtol=1e-12)
    q = fit.quality[0]
    pred = ref.mpl_predict(p, c.lrs, c.steps)
    assert q.mean_rel_error == pytest.approx(np.mean(np.abs(pred - c.loss) / c.loss), rel=1e-9)
    with pytest.raises(ValueError, match="no interval"):
        fit.interval(c.lrs, c.steps)
