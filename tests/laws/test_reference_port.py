"""Checks of the NumPy port of the Multi-Power Law reference code.

The port is tests/reference/multipower_law.py.

The port must reproduce the upstream README's test-set averages from upstream's fitted
parameters, its hand-written gradients must match finite differences, and its law must
match the paper's formula written as a direct double loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.reference import multipower_law as ref

DATA = Path(__file__).resolve().parents[2] / "experiments" / "laws" / "data"

_CURVES = {}


def curves(size):
    if size not in _CURVES:
        _CURVES[size] = ref.load_curves(DATA / f"csv_{size}")
    return _CURVES[size]


def thinned(size, every=6):
    """The training curves with every ``every``-th logged point: cheap objectives."""
    return {f: {"step": c["step"][::every], "loss": c["loss"][::every], "lrs": c["lrs"]}
            for f, c in curves(size).items() if f in ref.TRAIN_SET}


# --------------------------------------------------------------------- data


def test_load_curves_truncates_and_rebuilds_lrs():
    c = curves("25")
    assert list(c) == ref.TRAIN_SET + ref.TEST_SET
    for name in ("cosine_24000.csv", "constant_24000.csv", "wsd_20000_24000.csv"):
        assert c[name]["step"].max() < 24000
    assert c["constant_72000.csv"]["step"].max() > 24000
    lengths = {"cosine_72000.csv": 72000, "constant_72000.csv": 72000, "wsdcon_3.csv": 16000,
               "wsdld_20000_24000.csv": 24000, "wsd_20000_24000.csv": 24000}
    for name, n in lengths.items():
        assert len(c[name]["lrs"]) == n
    for curve in c.values():
        lrs = curve["lrs"]
        assert lrs[0] == 0.0 and lrs[2159] == pytest.approx(3e-4, rel=1e-15)
        assert curve["step"].dtype.kind == "i" and curve["step"].max() < len(lrs)
    assert c["wsdcon_18.csv"]["lrs"][8000] == pytest.approx(18e-5)
    assert c["wsd_20000_24000.csv"]["lrs"][-1] == pytest.approx(3e-5, rel=1e-3)


# ----------------------------------------------------------- README numbers

# upstream README, test set averages: PredE and WorstE in %, R^2, MAE, RMSE
README = {
    "25": {"prede": 0.110, "worste": 0.409, "r2": 0.9988, "mae": 0.00376, "rmse": 0.00465},
    "100": {"prede": 0.142, "worste": 0.583, "r2": 0.9983, "mae": 0.00435, "rmse": 0.00592},
}


@pytest.mark.parametrize("size", ["25", "100"])
def test_upstream_params_give_readme_averages(size):
    avg = ref.evaluate(ref.PARAMS[size], curves(size), ref.TEST_SET)["average"]
    want = README[size]
    assert round(100 * avg["prede"], 3) == want["prede"]
    assert round(100 * avg["worste"], 3) == want["worste"]
    assert round(avg["r2"], 4) == want["r2"]
    assert round(avg["mae"], 5) == want["mae"]
    assert round(avg["rmse"], 5) == want["rmse"]


def test_evaluate_metrics_of_one_curve():
    c = curves("25")
    name = "wsdcon_3.csv"
    out = ref.evaluate(ref.PARAMS["25"], c, [name])
    m = out["curves"][name]
    loss, pred = c[name]["loss"], m["pred"]
    rel = np.abs(loss - pred) / loss
    assert m["prede"] == pytest.approx(rel.mean(), rel=1e-14)
    assert m["worste"] == pytest.approx(rel.max(), rel=1e-14)
    assert m["rmse"] ** 2 == pytest.approx(m["mse"], rel=1e-12)
    r2 = 1 - np.sum((loss - pred) ** 2) / np.sum((loss - loss.mean()) ** 2)
    assert m["r2"] == pytest.approx(r2, rel=1e-14)
    assert out["average"]["prede"] == m["prede"]


# ---------------------------------------------------------------- gradients


def central_differences(f, x, rel=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in range(len(x)):
        h = rel * max(abs(x[i]), 1e-3)
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


PERTURBED = [3.0, 0.6, 0.45, 300.0, 1.5, 0.7, 0.55]


@pytest.mark.parametrize("params", [ref.PARAMS["25"], PERTURBED], ids=["upstream", "perturbed"])
def test_objective_gradient_matches_finite_differences(params):
    c = thinned("25")
    g = ref.mpl_objective_grad(params, c, ref.TRAIN_SET)
    fd = central_differences(lambda p: ref.mpl_objective(p, c, ref.TRAIN_SET), params)
    np.testing.assert_allclose(g, fd, rtol=2e-5, atol=1e-6 * np.abs(fd).max())


def test_objective_is_huber_of_float32_log_loss():
    c = thinned("100")
    params = ref.PARAMS["100"]
    total = 0.0
    for f in ref.TRAIN_SET:
        pred = ref.mpl_predict(params, c[f]["lrs"], c[f]["step"])
        r = np.log(c[f]["loss"].astype(np.float32)).astype(np.float64) - np.log(pred)
        total += np.sum(np.where(np.abs(r) < 1e-3, 0.5 * r**2, 1e-3 * (np.abs(r) - 5e-4)))
    assert ref.mpl_objective(params, c, ref.TRAIN_SET) == pytest.approx(total, rel=1e-5)
    # the float32 rounding of the loss is visible in the objective
    total64 = 0.0
    for f in ref.TRAIN_SET:
        pred = ref.mpl_predict(params, c[f]["lrs"], c[f]["step"])
        r = np.log(c[f]["loss"]) - np.log(pred)
        total64 += np.sum(np.where(np.abs(r) < 1e-3, 0.5 * r**2, 1e-3 * (np.abs(r) - 5e-4)))
    assert abs(ref.mpl_objective(params, c, ref.TRAIN_SET) - total64) > 1e-9 * total64


def test_lr_schedule_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    n, warmup, peak = 40, 10, 3e-4
    delta = rng.uniform(0.5, 1.5, n) * 5e-6
    pred, g = ref.lr_schedule_objective(ref.PARAMS["25"], delta, peak, 1e-10, warmup)
    fd = np.zeros(n)
    h = 1e-10
    for i in range(n):
        dp, dm = delta.copy(), delta.copy()
        dp[i] += h
        dm[i] -= h
        fp = ref.lr_schedule_objective(ref.PARAMS["25"], dp, peak, 1e-10, warmup)[0]
        fm = ref.lr_schedule_objective(ref.PARAMS["25"], dm, peak, 1e-10, warmup)[0]
        fd[i] = (fp - fm) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-4 * np.abs(fd).max())


# ------------------------------------------------------- the paper's formula


def paper_law(params, eta, t, s1_from_zero=False):
    """L(t) = L0 + A S1(t)^-alpha - B sum_{k=1}^t (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)),
    G(x) = 1 - (C x + 1)^-beta, S_k(t) = sum_{j=k}^t eta_j, S1(t) = sum_{j=1}^t eta_j
    (from j = 0 if ``s1_from_zero``), one scalar at a time."""
    L0, A, alpha, B, C, beta, gamma = params
    s1 = sum(eta[j] for j in range(0 if s1_from_zero else 1, t + 1))
    drop = 0.0
    for k in range(1, t + 1):
        s_k = sum(eta[j] for j in range(k, t + 1))
        x = eta[k] ** (-gamma) * s_k
        drop += (eta[k - 1] - eta[k]) * (1 - (C * x + 1) ** (-beta))
    return L0 + A * s1 ** (-alpha) - B * drop


def test_mpl_predict_matches_paper_double_loop():
    rng = np.random.default_rng(1)
    params = [3.0, 0.5, 0.5, 400.0, 2.0, 0.6, 0.6]
    n = 14
    eta = rng.uniform(1e-5, 3e-4, n)
    steps = np.arange(1, n)
    # upstream's S1 = cumsum(lrs)[s] also counts lrs[0]: the paper's S1 plus eta_0
    got = ref.mpl_predict(params, eta, steps)
    want = [paper_law(params, eta, int(t), s1_from_zero=True) for t in steps]
    np.testing.assert_allclose(got, want, rtol=1e-13)
    assert not np.allclose(got, [paper_law(params, eta, int(t)) for t in steps], rtol=1e-6)
    # with eta_0 = 0 (the rebuilt schedules' linear warmup starts at 0) they are the paper's
    eta[0] = 0.0
    got = ref.mpl_predict(params, eta, steps)
    np.testing.assert_allclose(got, [paper_law(params, eta, int(t)) for t in steps], rtol=1e-13)


def test_lr_drop_lowers_the_prediction():
    c = curves("25")
    step = c["wsd_20000_24000.csv"]["step"]
    wsd = ref.mpl_predict(ref.PARAMS["25"], c["wsd_20000_24000.csv"]["lrs"], step)
    const = ref.mpl_predict(ref.PARAMS["25"], c["constant_24000.csv"]["lrs"], step)
    late = step > 20000
    assert np.all(wsd[late] < const[late]) and wsd[-1] < const[-1] - 0.05
    np.testing.assert_array_equal(wsd[step <= 20000], const[step <= 20000])


# ----------------------------------------------------------------- the fitter


def test_generate_init_params():
    assert ref.generate_init_params([3.0, 0.5, 0.4, 200.0]) == [
        (3.0, 0.5, 0.4, 200.0, 1.0, 0.5, 0.5)]


def test_first_adamw_step():
    """Step 1 of torch's AdamW: p * (1 - lr wd) - lr g / (|g| + eps) per parameter."""
    c = thinned("25", every=12)
    p0 = np.array(PERTURBED)
    g = ref.mpl_objective_grad(p0, c, ref.TRAIN_SET)
    hist = []
    params, best = ref.mpl_adam_fit(c, ref.TRAIN_SET, [tuple(p0)], max_steps=1, history=hist)
    lr = np.array([5e-2, 5e-2, 5e-3, 5e-2, 5e-2, 5e-3, 5e-3])
    want = p0 * (1 - lr * 0.01) - lr * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(params, want, rtol=1e-12)
    assert best == hist[0] == pytest.approx(ref.mpl_objective(p0, c, ref.TRAIN_SET), rel=1e-12)


def test_adamw_fit_improves_and_records_post_step_params():
    c = thinned("25", every=12)
    p0 = ref.generate_init_params([3.0, 0.6, 0.45, 300.0])
    hist = []
    params, best = ref.mpl_adam_fit(c, ref.TRAIN_SET, p0, max_steps=8, history=hist)
    assert len(hist) == 8
    assert best == min(hist) < hist[0]
    # best_loss is the pre-step value: the returned params are one step further
    assert ref.mpl_objective(params, c, ref.TRAIN_SET) != best


def test_adamw_fit_stops_on_patience():
    """lr1 = 0.2 throws L0 about: the loop stops once ``step > patience`` and
    ``patience`` steps in a row have not improved on the best pre-step loss."""
    c = thinned("25", every=12)
    hist = []
    ref.mpl_adam_fit(c, ref.TRAIN_SET, [tuple(PERTURBED)], lr1=0.2, patience=3, history=hist)
    assert len(hist) == 5 and np.argmin(hist) == 0      # stops at step 4 (step > patience)
    hist = []
    _, best = ref.mpl_adam_fit(c, ref.TRAIN_SET, [tuple(PERTURBED)], lr1=0.2, patience=5,
                               history=hist)
    assert len(hist) == 12 and np.argmin(hist) == 6 and best == hist[6]


# ----------------------------------------------------------- optimization.py


def test_optimize_lr_schedule_runs_a_few_hundred_steps():
    opt_lr, losses = ref.optimize_lr_schedule(ref.PARAMS["25"], max_steps=300)
    assert len(opt_lr) == 24000 - 2160 and len(losses) == 300
    assert losses[-1] < losses[0] - 1e-3
    assert np.all(np.diff(opt_lr) <= 0) and opt_lr[0] <= 3e-4
    assert opt_lr[-1] < opt_lr[0]
