r"""Batched nonlinear least squares for the curve models of :mod:`budgetax.ranking`.

One curve is fitted by a fixed number of Levenberg-Marquardt iterations on
unconstrained parameters :math:`\theta` (positivity comes from an ``exp``
reparametrisation in the model); :func:`jax.vmap` fits all curves of a batch at
once, and everything is jittable (``lax.fori_loop``).

Each iteration solves :math:`(J^\top J + \lambda\,\mathrm{diag}(J^\top J))\,\delta
= -J^\top r` (Marquardt's scaling), accepts the step if it lowers the cost
:math:`\tfrac12\lVert r\rVert^2` and then divides :math:`\lambda` by 3, else
multiplies it by 4. A step with a NaN/inf cost is rejected, so a bad step can
not poison the fit; a curve containing NaN/inf has a NaN cost from the start and
is reported as not converged.

The starting point comes from a grid over the nonlinear parameters with the
linear ones (an amplitude and an offset) solved in closed form for each grid
point (variable projection), so the iterations only refine.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

N_ITER = 200  # Levenberg-Marquardt iterations
_STALL_WINDOW = 10  # converged: cost fell by < RTOL relative over the last iterations
_RTOL = 1e-4


def _spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solves ``a x = b`` for a small symmetric positive definite ``a`` (Cholesky, unrolled).

    ``P <= 4`` here, so unrolling in Python gives a much smaller XLA graph (and a
    faster compile) than ``jnp.linalg.solve``. A non-positive pivot gives NaN,
    which the caller rejects.
    """
    p = a.shape[0]
    chol = [[None] * p for _ in range(p)]
    for i in range(p):
        for j in range(i + 1):
            acc = a[i, j] - sum((chol[i][m] * chol[j][m] for m in range(j)), 0.0)
            if i == j:
                chol[i][i] = jnp.sqrt(jnp.where(acc > 0, acc, jnp.nan))
            else:
                chol[i][j] = acc / chol[j][j]
    z = [None] * p
    for i in range(p):
        z[i] = (b[i] - sum((chol[i][m] * z[m] for m in range(i)), 0.0)) / chol[i][i]
    x = [None] * p
    for i in reversed(range(p)):
        x[i] = (z[i] - sum((chol[m][i] * x[m] for m in range(i + 1, p)), 0.0)) / chol[i][i]
    return jnp.stack(x)


def levenberg_marquardt(residual: Callable[[jax.Array], jax.Array], theta0: jax.Array,
                        n_iter: int = N_ITER) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Minimises ``0.5 * sum(residual(theta)**2)`` for ONE curve (vmap it).

    Args:
      residual: ``theta [P] -> r [n]``.
      theta0: the starting point ``[P]``.
      n_iter: number of iterations (static).

    Returns:
      ``(theta, cost, converged)``: converged is True when theta and the cost are
      finite and the cost fell by less than ``1e-4`` relative (or a tiny
      absolute amount) over the last 10 iterations.
    """
    dtype = theta0.dtype

    def cost_of(theta):
        r = residual(theta)
        return 0.5 * jnp.sum(r * r)

    jac = jax.jacfwd(residual)

    def body(i, carry):
        theta, cost, lam, marked = carry
        r = residual(theta)
        j = jac(theta)
        g = j.T @ r
        h = j.T @ j
        d = jnp.diag(h)
        d = jnp.maximum(d, 1e-9 * jnp.max(d)) + jnp.asarray(1e-30, dtype)
        step = -_spd_solve(h + lam * jnp.diag(d), g)
        new_theta = theta + step
        new_cost = cost_of(new_theta)
        ok = (new_cost < cost) & jnp.all(jnp.isfinite(new_theta))
        theta = jnp.where(ok, new_theta, theta)
        cost = jnp.where(ok, new_cost, cost)
        lam = jnp.clip(jnp.where(ok, lam / 3.0, lam * 4.0), 1e-12, 1e12)
        marked = jnp.where(i == n_iter - _STALL_WINDOW, cost, marked)
        return theta, cost, lam, marked

    cost0 = cost_of(theta0)
    init = (theta0, cost0, jnp.asarray(1e-3, dtype), cost0)
    theta, cost, _, marked = jax.lax.fori_loop(0, n_iter, body, init)
    n_points = residual(theta0).shape[0]
    tiny = jnp.asarray(1e-10 * n_points, dtype)
    converged = (jnp.all(jnp.isfinite(theta)) & jnp.isfinite(cost)
                 & (marked - cost <= _RTOL * cost + tiny))
    return theta, cost, converged


def linear_fit(basis: jax.Array, y: jax.Array, *, offset: bool,
               offset_nonnegative: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Least squares ``y ~ offset + amp * basis`` for every row of ``basis``, ``amp >= 0``.

    Args:
      basis: ``[G, n]``, one candidate basis function per grid point.
      y: ``[n]``.
      offset: fit an offset (else it is 0).
      offset_nonnegative: constrain the offset to ``>= 0`` as well.

    Returns:
      ``(amp [G], off [G], sse [G])``, the exact constrained minimiser for each row.
    """
    f = basis
    ff = jnp.sum(f * f, axis=-1)
    fy = jnp.sum(f * y, axis=-1)
    tiny = jnp.asarray(1e-30, y.dtype)
    amp0 = jnp.maximum(fy / (ff + tiny), 0.0)  # no offset
    if not offset:
        off = jnp.zeros_like(amp0)
        amp = amp0
    else:
        fm = f.mean(axis=-1)
        ym = y.mean()
        var = jnp.mean((f - fm[:, None]) ** 2, axis=-1)
        cov = jnp.mean((f - fm[:, None]) * (y - ym), axis=-1)
        amp = cov / (var + tiny)
        off = ym - amp * fm
        # amp < 0: the best nonnegative amplitude is 0 and the offset is the mean
        neg_amp = amp < 0
        amp = jnp.where(neg_amp, 0.0, amp)
        off = jnp.where(neg_amp, ym, off)
        if offset_nonnegative:
            neg_off = off < 0
            amp = jnp.where(neg_off, amp0, amp)
            off = jnp.where(neg_off, 0.0, off)
    res = off[:, None] + amp[:, None] * f - y
    sse = jnp.sum(res * res, axis=-1)
    sse = jnp.where(jnp.isnan(sse), jnp.inf, sse)
    return amp, off, sse
