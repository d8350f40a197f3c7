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
