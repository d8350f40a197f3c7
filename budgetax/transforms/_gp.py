r"""A fixed-shape Gaussian process on masked points: cheap enough for a compiled training step.

The GP of AutoWU's test (:mod:`budgetax.transforms.autowu`): observations ``y_i`` at
inputs ``x_i`` (steps normalised to ``[0, 1]``) with relative noise variances
``d_i``, of which only the points with ``valid`` set count (masked points are
ignored exactly, so every array keeps its shape under ``jit`` and ``vmap``). The
model is

.. math::

   y_i = f(x_i) + \varepsilon_i,\quad f \sim \mathcal{GP}\big(\mu,\ \sigma^2 k\big),\quad
   k(x, x') = e^{-(x - x')^2 / (2\cdot 0.2^2)},\quad
   \varepsilon_i \sim \mathcal N(0, \sigma^2 r\, d_i)

with the noise ratio ``r`` chosen on a log grid (:data:`NOISE_RATIOS`) by maximum
marginal likelihood, ``σ²`` and ``μ`` at their closed-form maxima given ``r``
(:func:`gp_fit`), and the posterior of ``f`` at the inputs (:func:`gp_posterior`,
:func:`posterior_mean_and_factor`). Only vector triangular solves and plain XLA
ops: a matrix right-hand side would start BLAS threads that compete with the
training step for the CPU.

References:
  Rasmussen, Williams. Gaussian Processes for Machine Learning. MIT Press 2006.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

__all__ = ["LENGTHSCALE", "NOISE_RATIOS", "gp_fit", "gp_posterior", "posterior_mean_and_factor",
           "rbf"]

LENGTHSCALE = 0.2  # RBF lengthscale on the step axis normalised to [0, 1]
NOISE_RATIOS = tuple(10.0 ** (k / 2.0) for k in range(-6, 3))  # r: 1e-3 .. 1e1
_JITTER = 1e-5


def rbf(xa, xb):
    """The unit-scale RBF kernel matrix ``k(xa_i, xb_j)`` with lengthscale :data:`LENGTHSCALE`."""
    d = xa[:, None] - xb[None, :]
    return jnp.exp(-0.5 * (d / LENGTHSCALE) ** 2)


def _factor(x, noise, valid, ratio):
    """Cholesky of ``R + ratio*diag(noise) + jitter`` on valid points, identity elsewhere."""
    n = x.shape[0]
    both = valid[:, None] & valid[None, :]
    a = jnp.where(both, rbf(x, x), 0.0)
    diag = jnp.where(valid, 1.0 + ratio * noise + _JITTER, 1.0)
    a = a.at[jnp.arange(n), jnp.arange(n)].set(diag)
    return jnp.linalg.cholesky(a)


def _solve(chol, b):
    z = solve_triangular(chol, b, lower=True)
    return solve_triangular(chol.T, z, lower=False)


def _gls(chol, y, valid):
    """Generalised least-squares constant mean and ``resid^T A^{-1} resid``."""
    ones = valid.astype(y.dtype)
    a_inv_y = _solve(chol, y)
    a_inv_1 = _solve(chol, ones)
    mu = jnp.dot(ones, a_inv_y) / jnp.maximum(jnp.dot(ones, a_inv_1), 1e-30)
    resid = jnp.where(valid, y - mu, 0.0)
    return mu, resid, jnp.dot(resid, _solve(chol, resid))


def gp_fit(x, y, noise, valid):
    r"""Fits the noise ratio, output scale and constant mean by maximum marginal likelihood.

    For each ``r`` in :data:`NOISE_RATIOS`, with ``A = K + r\,\mathrm{diag}(d)``
    (``K`` the unit-scale RBF kernel with lengthscale 0.2) the likelihood is
    maximised in closed form over ``μ`` (GLS) and ``σ²``:

    .. math::

       \hat\sigma^2 = \tfrac1n (y - \hat\mu)^\top A^{-1} (y - \hat\mu),\qquad
       \ell(r) = -\tfrac n2 \log \hat\sigma^2 - \tfrac12 \log|A| - \tfrac n2 (1 + \log 2\pi)

    and the ``r`` with the largest ``ℓ`` wins. Masked (``valid=False``) points are
    ignored exactly.

    Args:
      x: ``[n]`` inputs (normalised steps).
      y: ``[n]`` observations.
      noise: ``[n]`` relative noise variances ``d_i > 0``.
      valid: ``[n]`` bool mask.

    Returns:
      ``(ratio, scale2, mean, log_likelihoods)``: the chosen ``r``, ``σ²``, ``μ``
      and ``ℓ`` over the grid.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0, 1, 20); y = (x - 0.6) ** 2
      >>> r, s2, mu, ll = gp_fit(x, y, jnp.ones(20), jnp.ones(20, bool))
      >>> ll.shape
      (9,)
    """
    x, y, noise = (jnp.asarray(v, jnp.float32) for v in (x, y, noise))
    valid = jnp.asarray(valid, bool)
    y = jnp.where(valid, y, 0.0)
    n = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
    ratios = jnp.asarray(NOISE_RATIOS, jnp.float32)

    def one(ratio):
        chol = _factor(x, noise, valid, ratio)
        mu, _, quad = _gls(chol, y, valid)
        scale2 = jnp.maximum(quad / n, 1e-30)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
        ll = -0.5 * n * jnp.log(scale2) - 0.5 * logdet - 0.5 * n * (1.0 + jnp.log(2 * jnp.pi))
        return ll, scale2, mu

    lls, scales, mus = jax.vmap(one)(ratios)
    lls = jnp.where(jnp.isfinite(lls), lls, -jnp.inf)
    best = jnp.argmax(lls)
    return ratios[best], scales[best], mus[best], lls


def gp_posterior(x, y, noise, valid, ratio, scale2):
    r"""Posterior of the latent ``f`` at the observed inputs, constant mean by GLS.

    .. math::

       m = \hat\mu + K A^{-1}(y - \hat\mu),\qquad
       C = \sigma^2 (K - K A^{-1} K),\qquad A = K + r\,\mathrm{diag}(d)

    Args:
      x, y, noise, valid: as in :func:`gp_fit`.
      ratio: the noise ratio ``r``.
      scale2: the output scale ``σ²``.

    Returns:
      ``(mean, cov)``: ``[n]`` and ``[n, n]`` (entries of masked points are
      meaningless).

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0, 1, 8)
      >>> m, c = gp_posterior(x, x, jnp.ones(8), jnp.ones(8, bool), 0.1, 1.0)
      >>> m.shape, c.shape
      ((8,), (8, 8))
    """
    x, y, noise = (jnp.asarray(v, jnp.float32) for v in (x, y, noise))
    valid = jnp.asarray(valid, bool)
    mean, v = posterior_mean_and_factor(x, y, noise, valid, ratio)
    cov = scale2 * (rbf(x, x) - v.T @ v)
    return mean, cov


def _solve_columns(chol, b):
    """``L^{-1} b`` by forward substitution over the rows, in plain XLA ops.

    LAPACK's ``trsm`` with a matrix right-hand side (or a ``vmap`` over columns, which
    becomes one) starts BLAS threads that keep spinning and compete with the training
    step for the CPU (8 ms for 125 x 125 on 2 cores); one vector solve per column stays
    on the calling thread but pays a custom call each (0.46 ms); the rows in a loop of
    matrix-vector products take 0.17 ms.
    """

    def body(i, v):  # rows >= i of v are still 0
        row = (lax.dynamic_index_in_dim(b, i, keepdims=False)
               - lax.dynamic_index_in_dim(chol, i, keepdims=False) @ v) / chol[i, i]
        return lax.dynamic_update_index_in_dim(v, row, i, axis=0)

    return lax.fori_loop(0, b.shape[0], body, jnp.zeros_like(b))


def posterior_mean_and_factor(x, y, noise, valid, ratio):
    """Posterior mean and ``V = L^{-1} K`` (so that ``C = σ² (K - V^T V)``)."""
    y = jnp.where(valid, y, 0.0)
    chol = _factor(x, noise, valid, ratio)
    mu, resid, _ = _gls(chol, y, valid)
    k = jnp.where(valid[:, None] & valid[None, :], rbf(x, x), 0.0)
    mean = mu + k @ _solve(chol, resid)
    return mean, _solve_columns(chol, k)
