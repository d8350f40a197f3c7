"""Plain NumPy/SciPy float64 reference for ``budgetax.ranking``.

Written from the formulas in the docstrings (TSE: Ru et al., arXiv:2006.04492;
LCGA and elasticity: Zhao et al., IPDPSW 2022; curve families: Domhan et al.,
IJCAI 2015), one curve at a time with Python loops, the fits done by
``scipy.optimize.least_squares`` with box constraints from several starting
points, and the rank correlations computed from scratch (no ``scipy.stats``).
Nothing is shared with ``budgetax``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

# ----------------------------------------------------------------------------- TSE


def epoch_means(curve, steps_per_epoch):
    curve = [float(v) for v in curve]
    n_epochs = len(curve) // steps_per_epoch
    means = []
    for e in range(n_epochs):
        chunk = curve[e * steps_per_epoch:(e + 1) * steps_per_epoch]
        means.append(sum(chunk) / steps_per_epoch)
    return means


def tse(curve, steps_per_epoch):
    return sum(epoch_means(curve, steps_per_epoch))


def tse_e(curve, steps_per_epoch, last_epochs=1):
    return sum(epoch_means(curve, steps_per_epoch)[-last_epochs:])


def tse_ema(curve, steps_per_epoch, gamma=0.999):
    means = epoch_means(curve, steps_per_epoch)
    n_epochs = len(means)
    total = 0.0
    for e, m in enumerate(means, start=1):
        total += gamma ** (n_epochs - e) * m
    return total


# ----------------------------------------------------------------------------- fits


def _best_fit(fun, starts, lower, upper):
    best = None
    for x0 in starts:
        x0 = np.clip(np.asarray(x0, np.float64), lower, upper)
        try:
            res = least_squares(fun, x0, bounds=(lower, upper), method="trf",
                                xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=5000)
        except ValueError:
            continue
        if np.isfinite(res.cost) and (best is None or res.cost < best.cost):
            best = res
    return best


def lcga(curve, steps_per_epoch, burn_in_epochs=1, variant="ratio"):
    """(score, (b1, b2, b3)) of L(k) = 1/(b1 + b2 k) + b3 fitted to the normalised window."""
    curve = np.asarray(curve, np.float64)
    n_epochs = len(curve) // steps_per_epoch
    start, stop = burn_in_epochs * steps_per_epoch, n_epochs * steps_per_epoch
    y = curve[start:stop]
    k = np.array([(i + 1) / steps_per_epoch for i in range(start, stop)])
    scale = y[:steps_per_epoch].mean()
    y = y / scale

    def resid(b):
        return 1.0 / (b[0] + b[1] * k) + b[2] - y

    starts = [(b1, b2, b3) for b1 in (0.3, 1.0, 3.0) for b2 in (0.1, 1.0, 10.0)
              for b3 in (0.0, 0.5 * y.min())]
    res = _best_fit(resid, starts, [1e-12, 1e-12, 0.0], [np.inf, np.inf, np.inf])
    b1, b2, b3 = res.x
    ratios, slopes = [], []
    for kk in k:
        d1 = -b2 / (b1 + b2 * kk) ** 2
        d2 = 2.0 * b2 ** 2 / (b1 + b2 * kk) ** 3
        ratios.append(d1 / math.sqrt(d2))
        slopes.append(d1)
    score = float(np.mean(ratios if variant == "ratio" else slopes))
    return score, (b1 / scale, b2 / scale, b3 * scale)


def curve_model(family, params, k):
    k = np.asarray(k, np.float64)
    if family == "pow3":
        c, a, alpha = params
        return c + a * k ** (-alpha)
    if family == "exp4":
        c, a, alpha, b = params
        return c + np.exp(-a * k ** alpha + b)
    a, b, c = params
    return a / (1.0 + (k / np.exp(b)) ** c)


def extrapolate(curve, target_step, family="pow3"):
    """(prediction, params) of the least-squares fit of ``family`` to the curve (k = 1..n)."""
    y = np.asarray(curve, np.float64)
    n = len(y)
    k = np.arange(1, n + 1, dtype=np.float64)

    def resid(p):
        return curve_model(family, p, k) - y

    if family == "pow3":
        starts = [(c, a, al) for c in (0.0, y.min()) for a in (y[0] - y[-1], 1.0)
                  for al in (0.1, 0.5, 1.0)]
        lower, upper = [-np.inf, 0.0, 1e-6], [np.inf, np.inf, 10.0]
    elif family == "exp4":
        starts = [(y.min(), a, al, math.log(max(y[0] - y.min(), 1e-3)))
                  for a in (1e-3, 1e-2, 1e-1) for al in (0.5, 1.0)]
        lower, upper = [-np.inf, 0.0, 1e-6, -np.inf], [np.inf, np.inf, 5.0, np.inf]
    else:
        starts = [(y[0], b, c) for b in (0.0, math.log(n / 10), math.log(n))
                  for c in (0.5, 1.0, 2.0)]
        lower, upper = [0.0, -np.inf, 1e-6], [np.inf, np.inf, 10.0]
    res = _best_fit(resid, starts, lower, upper)
    return float(curve_model(family, res.x, target_step)), tuple(res.x)


# ----------------------------------------------------------------------------- elasticity


def elasticity(curve, steps_per_epoch, smoothing=0.5):
    means = epoch_means(curve, steps_per_epoch)
    out = [math.nan]
    num = den = 0.0
    for e in range(2, len(means) + 1):
        raw = (math.log(means[e - 1]) - math.log(means[e - 2])) / (math.log(e) - math.log(e - 1))
        num = smoothing * num + raw
        den = smoothing * den + 1.0
        out.append(num / den)
    return out


def early_stop(curve, steps_per_epoch, threshold=0.05, patience=3, smoothing=0.5):
    """(stop_epoch, compute_saved, loss_given_up) by replaying the rule epoch by epoch."""
    eps = elasticity(curve, steps_per_epoch, smoothing)
    means = epoch_means(curve, steps_per_epoch)
    n_epochs = len(means)
    stop = n_epochs
    run = 0
    for e in range(1, n_epochs + 1):
        value = eps[e - 1]
        run = run + 1 if (not math.isnan(value) and abs(value) < threshold) else 0
        if run >= patience:
            stop = e
            break
    return stop, (n_epochs - stop) / n_epochs, means[stop - 1] - means[-1]


# ----------------------------------------------------------------------------- rank agreement


def _ranks(values, higher_is_better):
    """Average ranks 1..n (n = best); non-finite values tie for the worst ranks."""
    vals = [float(v) for v in values]
    good = [(v if higher_is_better else -v) if math.isfinite(v) else -math.inf for v in vals]
    n = len(good)
    ranks = [0.0] * n
    for i in range(n):
        below = sum(1 for j in range(n) if good[j] < good[i])
        ties = sum(1 for j in range(n) if good[j] == good[i])
        ranks[i] = below + (ties + 1) / 2.0
    return ranks


def spearman(scores, truth):
    a = np.array(_ranks(scores, False))
    b = np.array(_ranks(truth, True))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def kendall(scores, truth):
    """Kendall's tau-b from the pair counts."""
    a = _ranks(scores, False)
    b = _ranks(truth, True)
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da * db > 0:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / math.sqrt(
        (concordant + discordant + ties_a) * (concordant + discordant + ties_b))


# ----------------------------------------------------------------------------- curve_fit baseline
# One scipy.optimize.curve_fit per curve from a data-driven start, within the family's bounds
# (method "trf"): the per-curve loop that the batched fits of budgetax replace.

CURVE_FIT_BOUNDS = {
    "pow3": ([-np.inf, 0.0, 1e-6], [np.inf, np.inf, 10.0]),
    "exp4": ([-np.inf, 0.0, 1e-6, -np.inf], [np.inf, np.inf, 5.0, np.inf]),
    "log_power": ([0.0, -np.inf, 1e-6], [np.inf, np.inf, 10.0]),
    "lcga": ([1e-12, 1e-12, 0.0], [np.inf, np.inf, np.inf]),
}


def _curve_fit_start(family, y):
    if family == "pow3":
        return (0.0, max(y[0] - y[-1], 1e-3), 0.5)
    if family == "exp4":
        return (y.min(), 1e-2, 0.5, math.log(max(y[0] - y.min(), 1e-3)))
    if family == "log_power":
        return (y[0], math.log(len(y) / 10), 1.0)
    return (0.3, 0.1, 0.0)


def lcga_model(params, k):
    b1, b2, b3 = params
    return 1.0 / (b1 + b2 * np.asarray(k, np.float64)) + b3


def curve_fit_sse(family, k, y):
    """SSE of ``scipy.optimize.curve_fit`` of ``family`` ("lcga" included) to ``y`` at ``k``."""
    from scipy.optimize import curve_fit

    y = np.asarray(y, np.float64)
    k = np.asarray(k, np.float64)
    lower, upper = CURVE_FIT_BOUNDS[family]
    model = lcga_model if family == "lcga" else (lambda p, kk: curve_model(family, p, kk))
    p0 = np.clip(_curve_fit_start(family, y), lower, upper)
    try:
        p, _ = curve_fit(lambda kk, *p: model(p, kk), k, y, p0=p0, bounds=(lower, upper))
    except (RuntimeError, ValueError):
        return math.inf
    return float(np.sum((model(p, k) - y) ** 2))
