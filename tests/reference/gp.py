"""NumPy/SciPy float64 reference for the AutoWU Gaussian process.

Model: constant mean ``mu``, kernel ``s2 * exp(-(x - x')^2 / (2 * 0.2^2))``, noise
``s2 * r * d_i``. ``r`` maximises the marginal likelihood over a grid, ``mu`` and
``s2`` are its closed-form maximisers. Written with dense solves and
``scipy.stats.multivariate_normal`` (no Cholesky tricks, no code shared with budgetax).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

LENGTHSCALE = 0.2
NOISE_RATIOS = [10.0 ** (k / 2.0) for k in range(-6, 3)]
JITTER = 1e-5


def kernel(xa, xb):
    xa = np.asarray(xa, np.float64)
    xb = np.asarray(xb, np.float64)
    return np.exp(-((xa[:, None] - xb[None, :]) ** 2) / (2 * LENGTHSCALE**2))


def _a(x, d, r):
    return kernel(x, x) + np.diag(r * np.asarray(d, np.float64) + JITTER)


def gls_mean(x, y, d, r):
    a = _a(x, d, r)
    ones = np.ones(len(x))
    return ones @ np.linalg.solve(a, y) / (ones @ np.linalg.solve(a, ones))


def profile(x, y, d, r):
    """(log-likelihood, s2, mu) at the closed-form maximisers for noise ratio r."""
    y = np.asarray(y, np.float64)
    a = _a(x, d, r)
    mu = gls_mean(x, y, d, r)
    resid = y - mu
    s2 = resid @ np.linalg.solve(a, resid) / len(y)
    ll = stats.multivariate_normal(mean=np.full(len(y), mu), cov=s2 * a).logpdf(y)
    return float(ll), float(s2), float(mu)


def fit(x, y, d):
    """Returns (ratio, s2, mu, lls over the grid) for the valid points given."""
    rows = [profile(x, y, d, r) for r in NOISE_RATIOS]
    lls = np.array([row[0] for row in rows])
    best = int(np.argmax(lls))
    return NOISE_RATIOS[best], rows[best][1], rows[best][2], lls


def posterior(x, y, d, r, s2):
    """Posterior mean and covariance of the latent f at the training inputs."""
    y = np.asarray(y, np.float64)
    k = kernel(x, x)
    a = _a(x, d, r)
    mu = gls_mean(x, y, d, r)
    mean = mu + k @ np.linalg.solve(a, y - mu)
    cov = s2 * (k - k @ np.linalg.solve(a, k))
    return mean, cov


def autowu_test(losses, bin_width, n_bins, subsample, min_points=5):
    """budgetax's AutoWU test on the losses so far, in float64 (written from its docstring).

    ``losses``: every warmup loss so far (non-finite ones are skipped), ``k = len(losses)``.
    They are averaged into ``n_bins`` bins of ``bin_width`` consecutive steps; the bin
    means are standardised, the noise ratio is fitted on the bins ``subsample`` (indices;
    empty ones are left out), and the posterior at all non-empty bins gives
    ``max_i P(f_last > f_i)``. Returns ``(prob, x of the smallest posterior mean, enough)``
    with ``x = mean step / k``.
    """
    losses = np.asarray(losses, np.float64)
    k = len(losses)
    steps = np.arange(k)
    ok = np.isfinite(losses)
    slot = np.minimum(steps // bin_width, n_bins - 1)
    cnt = np.bincount(slot[ok], minlength=n_bins).astype(np.float64)
    y_sum = np.bincount(slot[ok], weights=losses[ok], minlength=n_bins)
    s_sum = np.bincount(slot[ok], weights=steps[ok].astype(np.float64), minlength=n_bins)
    valid = cnt > 0
    if valid.sum() < 2:
        return 0.0, 0.0, False
    y = y_sum[valid] / cnt[valid]
    x = s_sum[valid] / cnt[valid] / k
    y = (y - y.mean()) / max(y.std(), 1e-12)
    d = (1 / cnt[valid]) / np.mean(1 / cnt[valid])
    pos = np.cumsum(valid) - 1  # index among the valid bins
    sub = np.array(sorted(pos[i] for i in subsample if valid[i]))
    r, s2, _, _ = fit(x[sub], y[sub], d[sub])
    mean, cov = posterior(x, y, d, r, s2)
    var = np.diag(cov)
    diff_sd = np.sqrt(np.maximum(var[-1] + var[:-1] - 2 * cov[-1, :-1], 1e-12))
    prob = float(np.max(stats.norm.cdf((mean[-1] - mean[:-1]) / diff_sd)))
    return prob, float(x[np.argmin(mean)]), bool(valid.sum() >= min_points)
