r"""Batched nonlinear least squares for the curve models of :mod:`budgetax.ranking`.

Two solvers, both written for a whole batch of curves ``[B, n]`` at once (not
``vmap`` of a one-curve solver) and run on blocks of :data:`BLOCK` curves
(:func:`map_blocks`), so that the per-iteration arrays stay in cache and a
block stops iterating as soon as every curve in it has converged.
:func:`varpro_1d_blocks` runs the 1-D search in two passes (blocks of
:data:`VARPRO_BLOCK` curves, then the few unconverged curves gathered into blocks of
:data:`LATE_BLOCK`), so that a handful of slow curves do not keep whole blocks
iterating.

**Variable projection with one nonlinear parameter** (:func:`varpro_1d`, used
by ``pow3`` and LCGA). The model is ``off + amp * g(theta, k)`` with
``amp >= 0``. For a fixed :math:`\theta` the best linear parameters are in
closed form, and the fit reduces to maximising

.. math::

   Q(\theta) = \frac{\max(C, 0)^2}{V}, \qquad
   C = \sum_k \tilde y_k\, g_k, \quad V = \sum_k (g_k - \bar g)^2

(:math:`\tilde y = y - \bar y`; without the offset, :math:`\tilde y = y` and
:math:`V = \sum_k g_k^2`), since the residual sum of squares is
:math:`\sum_k \tilde y_k^2 - Q(\theta)`. A grid over :math:`\theta` (one matrix
product for the whole batch) brackets the best maximum, and safeguarded Newton
steps on :math:`Q` (bisection of the bracket when a Newton step leaves it)
locate it, typically in 3-8 iterations. The first derivative is taken from the
residual, :math:`Q' = -2\,\mathrm{amp}\sum_k r_k\,\partial g_k/\partial\theta`
(the envelope theorem), not from the formula for :math:`Q'`, which cancels to
float32 rounding at the optimum; the second from
:math:`\partial g/\partial\theta` and :math:`\partial^2 g/\partial\theta^2`.
A curve stops when a Newton step would move :math:`\theta` by less than
``5e-7 (1 + |theta|)``, or gain less than ``1e-7`` of its SSE plus ``1e-9`` of
:math:`\sum\tilde y^2` (below float32's resolution), or when the best fit is
at an end of the range.

**Levenberg-Marquardt with variable projection** (:func:`varpro_lm`, used by
``exp4`` and ``log_power``): the model is ``off + amp * h(theta, k)`` with a
few nonlinear ``theta``, the linear ``(off, amp)`` are solved in closed form at
every ``theta``, and the Jacobian is Kaufman's (the columns of
:math:`\mathrm{amp}\,\partial h/\partial\theta` projected off
:math:`\mathrm{span}\{1, h\}`). Each iteration solves
:math:`(J^\top J + \lambda\,\mathrm{diag}(J^\top J))\,\delta = -J^\top r`
(Marquardt's scaling), clipped to bounds on ``theta``; the trial point's
residual and Jacobian are computed in one pass and kept when the step lowers
the cost (then :math:`\lambda` is divided by 3, else multiplied by 4). A step
with a NaN/inf cost is rejected. A curve stops once a step's predicted cost
reduction falls below ``1e-6`` of the cost (plus ``1e-9`` of the cost of a
constant fit); a block stops when all its curves have, or after ``n_iter``
iterations; two Gauss-Newton steps polish the result.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

N_ITER = 200  # Levenberg-Marquardt iterations at most
N_NEWTON = 40  # safeguarded Newton iterations at most (bisection alone needs ~20)
N_FIRST = 3  # varpro_1d_blocks: Newton iterations of the first pass (most curves need 2-3)
BLOCK = 64  # curves per block (on CPU, 64 took 1.3-2.6x less time than 512, on one thread)
VARPRO_BLOCK = BLOCK  # varpro_1d_blocks: curves per block of the first pass
LATE_BLOCK = 64  # varpro_1d_blocks: curves per block after the first pass
_THETA_RTOL = 5e-7  # varpro_1d: converged once a Newton step moves theta by less (x (1 + |theta|))
_GAIN_RTOL = 1e-9  # varpro_1d: converged once a Newton step would gain less (x the SSE)
_GAIN_FLOOR = 1e-9  # ... plus this fraction of sum((y - mean y)^2)
_N_POLISH = 2  # varpro_lm: Gauss-Newton steps after the damped iterations
_PRED_RTOL = 1e-6  # LM: converged once the predicted cost reduction is below this (relative)


def map_blocks(fn: Callable, *arrays: jax.Array, block: int = BLOCK):
    """Applies ``fn`` (arrays ``[B, ...]`` -> pytree of ``[B, ...]``) to blocks of rows.

    The rows are padded (with copies of the first row) to a whole number of
    blocks, the blocks run one after another (``lax.map``), and the padding is
    dropped from the result. A single curve is padded to a block too: every
    curve then runs through the same compiled code, and fits the same (to the
    bit) in any batch, whatever float32 rounding XLA picks for a shape.
    """
    n = arrays[0].shape[0]
    n_blocks = -(-n // block)
    pad = n_blocks * block - n

    def split(a):
        if pad:
            a = jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad, *a.shape[1:]))])
        return a.reshape(n_blocks, block, *a.shape[1:])

    if n_blocks == 1:
        out = fn(*(split(a)[0] for a in arrays))
        return jax.tree.map(lambda a: a[:n], out)
    out = jax.lax.map(lambda xs: fn(*xs), tuple(split(a) for a in arrays))
    return jax.tree.map(lambda a: a.reshape(n_blocks * block, *a.shape[2:])[:n], out)


# ----------------------------------------------------------------------------- varpro


def _reduced_derivatives(y, g, g1, g2, offset):
    """``(C, V)`` and their first two derivatives in theta, and the mean of g, each ``[B]``."""
    n = y.shape[-1]

    def s(a):
        return jnp.sum(a, axis=-1)

    c0, c1, c2 = s(y * g), s(y * g1), s(y * g2)
    v0, v1, v2 = s(g * g), 2.0 * s(g * g1), 2.0 * s(g1 * g1 + g * g2)
    a0 = jnp.zeros_like(c0)
    if offset:
        a0, a1, a2 = s(g), s(g1), s(g2)
        v0 = v0 - a0 * a0 / n
        v1 = v1 - 2.0 * a0 * a1 / n
        v2 = v2 - 2.0 * (a1 * a1 + a0 * a2) / n
    return (c0, c1, c2), (v0, v1, v2), a0 / n


def _linear_params(y_mean, c, v, g_mean, offset):
    """``(amp, off)`` of the closed-form fit for the basis with statistics ``c, v, g_mean``."""
    amp = jnp.where(c > 0, c / jnp.where(v > 0, v, 1.0), 0.0)
    off = y_mean - amp * g_mean if offset else jnp.zeros_like(amp)
    return amp, off


def _centred(y, offset):
    """``(y_mean, y~, sum(y~^2))`` of a block: the curves the reduced problem is posed on."""
    dtype = y.dtype
    y_mean = jnp.mean(y, axis=-1) if offset else jnp.zeros(y.shape[:1], dtype)
    yc = y - y_mean[:, None] if offset else y
    if offset:  # centre twice: a constant curve must give exactly nothing to fit
        yc = yc - jnp.mean(yc, axis=-1, keepdims=True)
    return y_mean, yc, jnp.sum(yc * yc, axis=-1)


def _varpro_1d_start(y, basis, grid, offset, active):
    """The grid search: ``(theta, lo, hi, done)``, each ``[B]``, and ``flat`` (amp = 0)."""
    n = y.shape[-1]
    _, yc, _ = _centred(y, offset)
    # the grid: one matrix product for every curve and grid point
    g_grid, _, _ = basis(grid[:, None])
    g_grid = jnp.broadcast_to(g_grid, (grid.shape[0], n))
    gm = jnp.mean(g_grid, axis=-1)
    v_grid = jnp.sum(g_grid * g_grid, axis=-1) - (n * gm * gm if offset else 0.0)
    c_grid = yc @ g_grid.T
    q_grid = jnp.where(c_grid > 0, c_grid * c_grid / jnp.where(v_grid > 0, v_grid, 1.0), 0.0)
    best = jnp.argmax(q_grid, axis=-1)
    n_grid = grid.shape[0]
    i_lo, i_hi = jnp.maximum(best - 1, 0), jnp.minimum(best + 1, n_grid - 1)
    lo, theta, hi = grid[i_lo], grid[best], grid[i_hi]
    # start at the vertex of the parabola through the best grid point and its neighbours
    rows = jnp.arange(y.shape[0])
    q_lo, q_mid, q_hi = q_grid[rows, i_lo], q_grid[rows, best], q_grid[rows, i_hi]
    curv = q_lo - 2.0 * q_mid + q_hi  # < 0 at an interior maximum (uniform grid)
    vertex = theta + 0.5 * (hi - theta) * (q_lo - q_hi) / jnp.where(curv < 0, curv, -1.0)
    interior_best = (best > 0) & (best < n_grid - 1) & (curv < 0)
    theta = jnp.where(interior_best & (vertex > lo) & (vertex < hi), vertex, theta)
    flat = jnp.max(q_grid, axis=-1) <= 0  # amp = 0 everywhere: the best fit is the constant
    skip = flat | ~jnp.all(jnp.isfinite(y), axis=-1)
    if active is not None:
        skip = skip | ~active
    return (theta, lo, hi, skip), flat


def _varpro_1d_iterate(y, basis, grid, state, offset, n_iter):
    """Up to ``n_iter`` safeguarded Newton steps on ``state = (theta, lo, hi, done)``.

    Every curve's step depends on that curve alone, so a curve stopped after some
    iterations and resumed later (in another block) follows the same path.
    """
    _, yc, yy = _centred(y, offset)

    def body(carry):
        it, theta, lo, hi, done = carry
        g, g1, g2 = basis(theta[:, None])
        (c0, c1, c2), (v0, v1, v2), g_mean = _reduced_derivatives(yc, g, g1, g2, offset)
        # Q = N / V with N = C^2
        q_n, q_n1, q_n2 = c0 * c0, 2.0 * c0 * c1, 2.0 * (c1 * c1 + c0 * c2)
        v = jnp.where(v0 > 0, v0, 1.0)
        num = q_n1 * v - q_n * v1
        d2 = (q_n2 * v - q_n * v2) / (v * v) - 2.0 * v1 * num / (v * v * v)
        # Q' = -d SSE / d theta = -2 amp sum(r g') (envelope theorem), from the residual
        # itself: unlike the formula for Q', it does not cancel to rounding at the optimum
        amp = jnp.where(c0 > 0, c0 / v, 0.0)
        r = amp[:, None] * (g - g_mean[:, None]) - yc
        d1 = -2.0 * amp * jnp.sum(r * g1, axis=-1)
        up = (d1 > 0) & (c0 > 0)
        lo = jnp.where(up & ~done, theta, lo)
        hi = jnp.where(~up & ~done, theta, hi)
        newton = theta - d1 / jnp.where(d2 < 0, d2, -1.0)
        ok = (d2 < 0) & (c0 > 0) & (newton > lo) & (newton < hi) & jnp.isfinite(newton)
        new = jnp.where(ok, newton, 0.5 * (lo + hi))
        tol = _THETA_RTOL * (1.0 + jnp.abs(theta))
        # the best fit is at an end of the range: nothing left to search
        at_edge = ((theta <= grid[0]) & (d1 <= 0)) | ((theta >= grid[-1]) & (d1 >= 0))
        new = jnp.where(at_edge, theta, new)
        # or the Newton model predicts a negligible gain (Q is flat: theta hardly matters)
        gain = d1 * d1 / (2.0 * jnp.maximum(-d2, 1e-30))
        # (float32 cannot resolve Q better than a fraction of sum(y~^2) either)
        negligible = _GAIN_RTOL * jnp.sum(r * r, axis=-1) + _GAIN_FLOOR * yy
        flat_q = (((d2 < 0) & (gain <= negligible))
                  | (jnp.abs(d1) * (hi - lo) <= negligible))  # first-order, whole bracket
        new = jnp.where(flat_q & ~ok, theta, new)  # a last step only if it is Newton's
        new_done = (done | at_edge | flat_q | (jnp.abs(new - theta) <= tol)
                    | (hi - lo <= tol))
        theta = jnp.where(done, theta, new)
        return it + 1, theta, lo, hi, new_done

    def cond(carry):
        it, _, _, _, done = carry
        return (it < n_iter) & ~jnp.all(done)

    return jax.lax.while_loop(cond, body, (jnp.asarray(0), *state))[1:]


def _varpro_1d_finish(y, basis, grid, theta, flat, offset):
    """``(amp, off, interior)`` at ``theta`` (``flat``: amp = 0, off = the mean)."""
    dtype = y.dtype
    n = y.shape[-1]
    y_mean, yc, _ = _centred(y, offset)
    g, _, _ = basis(theta[:, None])
    g = jnp.broadcast_to(g, y.shape)
    g_mean = jnp.mean(g, axis=-1)
    c = jnp.sum(yc * g, axis=-1)
    v = jnp.sum(g * g, axis=-1) - (n * g_mean * g_mean if offset else 0.0)
    amp, off = _linear_params(y_mean, c, v, g_mean, offset)
    amp = jnp.where(flat, 0.0, amp)
    off = jnp.where(flat, y_mean, off)
    edge_tol = jnp.asarray(1e-6, dtype) * (1.0 + jnp.abs(grid[0]) + jnp.abs(grid[-1]))
    interior = (theta > grid[0] + edge_tol) & (theta < grid[-1] - edge_tol)
    return amp, off, interior | flat


def varpro_1d(y: jax.Array, basis: Callable, grid: jax.Array, *, offset: bool = True,
              active: jax.Array | None = None, n_iter: int = N_NEWTON):
    r"""Least squares ``y ~ off + amp * g(theta)`` with ``amp >= 0`` for a block of curves.

    Args:
      y: ``[B, n]`` finite curves.
      basis: ``theta [B, 1] -> (g, dg/dtheta, d2g/dtheta2)``, each ``[B, n]``
        (broadcasting from ``[1, n]`` is fine).
      grid: ``[G]`` increasing values of theta; its ends bound theta.
      offset: fit the offset ``off`` (else it is 0).
      active: ``[B]`` bool, the curves to search for (default all); the others
        keep their best grid point, and a block without an active curve does
        not iterate.
      n_iter: Newton iterations at most (static).

    Returns:
      ``(theta, amp, off, converged, interior)``, each ``[B]``: ``converged`` when
      theta settled to ``~1e-6`` (or ``amp = 0``: no member of the family beats a
      constant), ``interior`` when theta is not at an end of ``grid``.
    """
    state, flat = _varpro_1d_start(y, basis, grid, offset, active)
    theta, _, _, done = _varpro_1d_iterate(y, basis, grid, state, offset, n_iter)
    amp, off, interior = _varpro_1d_finish(y, basis, grid, theta, flat, offset)
    return theta, amp, off, done | flat, interior


def varpro_1d_blocks(y: jax.Array, basis: Callable, grid: jax.Array, *, offset: bool = True,
                     active: jax.Array | None = None, first: int = N_FIRST,
                     block: int = VARPRO_BLOCK, late_block: int = LATE_BLOCK,
                     n_iter: int = N_NEWTON):
    r""":func:`varpro_1d` for any number of curves ``[N, n]``, in two passes.

    Most curves settle within :data:`N_FIRST` Newton steps, a few need ten or
    more (bisection), and a block iterates until its slowest curve has. So every
    curve gets the grid and ``first`` steps in blocks of :data:`VARPRO_BLOCK`, then the
    unconverged curves are gathered first and go on in blocks of ``late_block``;
    a block without any is passed through (its curves are not even gathered).
    A curve's steps do not depend on its block, so every curve gets the fit of
    ``varpro_1d`` with ``n_iter`` steps at most, whatever the batch.

    ``active`` (``[N]`` bool, default all) selects the curves to fit: they are
    gathered first, and the blocks without any are skipped altogether. The
    outputs of an inactive curve are meaningless.

    Returns:
      ``(theta, amp, off, converged, interior)``, each ``[N]``.
    """
    dtype = y.dtype
    n_curves = y.shape[0]

    def finish(y, theta, flat):
        return _varpro_1d_finish(y, basis, grid, theta, flat, offset)

    def fit_first(y, active):
        state, flat = _varpro_1d_start(y, basis, grid, offset, active)
        theta, lo, hi, done = _varpro_1d_iterate(y, basis, grid, state, offset, first)
        if active is not None:
            done = done | ~active
        return (theta, lo, hi, done, flat, *finish(y, theta, flat))

    if active is None:
        rows = jnp.arange(n_curves)
        first_out = map_blocks(lambda y: fit_first(y, None), y, block=block)
    else:
        def first_pass(rows, active):
            def skip(_):
                zeros = jnp.zeros(rows.shape, dtype)
                false = jnp.zeros(rows.shape, bool)
                return zeros, zeros, zeros, ~false, false, zeros, zeros, false

            return jax.lax.cond(jnp.any(active), lambda _: fit_first(y[rows], active), skip,
                                None)

        rows = jnp.argsort(~active, stable=True)
        first_out = map_blocks(first_pass, rows, active[rows], block=block)

    def late_pass(rows, theta, lo, hi, done, flat, amp, off, interior):
        def run(_):
            yb = y[rows]
            new_theta, _, _, new_done = _varpro_1d_iterate(
                yb, basis, grid, (theta, lo, hi, done), offset, n_iter - first)
            new = (new_theta, new_done, *finish(yb, new_theta, flat))
            # a curve done before keeps its outputs (the same bits in a block of any shape)
            return tuple(jnp.where(done, a, b)
                         for a, b in zip((theta, done, amp, off, interior), new))

        return jax.lax.cond(jnp.all(done), lambda _: (theta, done, amp, off, interior), run,
                            None)

    # the unconverged curves first (inactive ones count as done)
    order = jnp.argsort(first_out[3], stable=True)
    rows = rows[order]
    theta, done, amp, off, interior = map_blocks(
        late_pass, rows, *(a[order] for a in first_out), block=late_block)
    flat = first_out[4][order]
    undo = jnp.zeros_like(rows).at[rows].set(jnp.arange(n_curves))
    return tuple(a[undo] for a in (theta, amp, off, done | flat, interior))


# ----------------------------------------------------------------------------- LM


def _spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solves ``a x = b`` for small symmetric positive definite ``a [..., P, P]`` (Cholesky).

    ``P <= 4`` here, so unrolling in Python gives a much smaller XLA graph (and a
    faster compile) than ``jnp.linalg.solve``. A non-positive pivot gives NaN,
    which the caller rejects.
    """
    p = a.shape[-1]
    chol = [[None] * p for _ in range(p)]
    for i in range(p):
        for j in range(i + 1):
            acc = a[..., i, j] - sum((chol[i][m] * chol[j][m] for m in range(j)), 0.0)
            if i == j:
                chol[i][i] = jnp.sqrt(jnp.where(acc > 0, acc, jnp.nan))
            else:
                chol[i][j] = acc / chol[j][j]
    z = [None] * p
    for i in range(p):
        z[i] = (b[..., i] - sum((chol[i][m] * z[m] for m in range(i)), 0.0)) / chol[i][i]
    x = [None] * p
    for i in reversed(range(p)):
        x[i] = (z[i] - sum((chol[m][i] * x[m] for m in range(i + 1, p)), 0.0)) / chol[i][i]
    return jnp.stack(x, axis=-1)


def _closed_form(y, h, offset):
    """``(amp, off)``: least squares ``y ~ off + amp * h`` per curve, ``amp >= 0``."""
    tiny = jnp.asarray(1e-30, y.dtype)
    if offset:
        hm, ym = jnp.mean(h, axis=-1), jnp.mean(y, axis=-1)
        hc = h - hm[:, None]
        amp = jnp.sum((y - ym[:, None]) * hc, axis=-1) / (jnp.sum(hc * hc, axis=-1) + tiny)
        amp = jnp.maximum(amp, 0.0)
        return amp, ym - amp * hm
    amp = jnp.maximum(jnp.sum(y * h, axis=-1) / (jnp.sum(h * h, axis=-1) + tiny), 0.0)
    return amp, jnp.zeros_like(amp)


def varpro_lm(basis: Callable[[jax.Array], jax.Array], theta0: jax.Array, y: jax.Array,
              lower: jax.Array, upper: jax.Array, *, offset: bool = True,
              active: jax.Array | None = None, n_iter: int = N_ITER):
    r"""Least squares ``y ~ off + amp * h(theta)``, ``amp >= 0``, for every curve of a block.

    Levenberg-Marquardt on the nonlinear ``theta`` only: at every ``theta`` the
    linear ``(off, amp)`` are solved in closed form, and the Jacobian of the
    reduced residual is Kaufman's :math:`P^\perp \partial(\mathrm{amp}\,h)/\partial\theta`
    (the columns projected off :math:`\mathrm{span}\{1, h\}`).

    Args:
      basis: ``theta [B, P] -> (h, [dh/dtheta_0, ...])``, each ``[B, n]``.
      theta0: the starting points ``[B, P]``.
      y: the curves ``[B, n]``.
      lower, upper: ``[P]`` bounds on theta; a step is clipped to them, so a fit
        drifting towards a degenerate limit of its family stops at the bound.
      offset: fit the offset (else it is 0).
      active: ``[B]`` bool, the curves to iterate on (default all); the others
        only get the final Gauss-Newton polish, and a block without an active
        curve does not iterate.
      n_iter: iterations at most (static).

    Returns:
      ``(theta [B, P], amp [B], off [B], converged [B])``: converged when the fit is
      finite, strictly inside the bounds, and the predicted reduction of a step
      fell below ``1e-6`` of the cost before the last iteration; or when
      ``amp = 0`` (no member of the family beats a constant).
    """
    dtype = theta0.dtype
    n_params = theta0.shape[-1]
    eye = jnp.eye(n_params, dtype=dtype)
    tiny = jnp.asarray(1e-30, dtype)

    def s(a):
        return jnp.sum(a, axis=-1)

    def evaluate(theta):
        h, dh = basis(theta)  # [B, n] and P x [B, n]
        amp, off = _closed_form(y, h, offset)
        r = off[:, None] + amp[:, None] * h - y
        z = [amp[:, None] * d for d in dh]
        if offset:
            h = h - jnp.mean(h, axis=-1, keepdims=True)
            z = [zi - jnp.mean(zi, axis=-1, keepdims=True) for zi in z]
        hh = s(h * h) + tiny
        j = [zi - (s(zi * h) / hh)[:, None] * h for zi in z]
        jtj = jnp.stack([jnp.stack([s(j[p] * j[q]) for q in range(n_params)], axis=-1)
                         for p in range(n_params)], axis=-2)
        jtr = jnp.stack([s(jp * r) for jp in j], axis=-1)
        return 0.5 * s(r * r), jtj, jtr, amp

    yy = 0.5 * jnp.sum((y - jnp.mean(y, axis=-1, keepdims=True)) ** 2 if offset else y * y,
                       axis=-1)  # the cost of the best constant (or of 0)

    def body(carry):
        it, theta, cost, h, g, lam, done = carry
        d = jnp.diagonal(h, axis1=-2, axis2=-1)
        d = jnp.maximum(d, 1e-9 * jnp.max(d, axis=-1, keepdims=True)) + tiny
        step = -_spd_solve(h + lam[:, None, None] * d[:, :, None] * eye, g)
        new_theta = jnp.clip(theta + step, lower, upper)
        step = new_theta - theta
        new_cost, new_h, new_g, _ = evaluate(new_theta)
        ok = (new_cost < cost) & jnp.all(jnp.isfinite(new_theta), axis=-1) & ~done
        pred = -jnp.sum(g * step, axis=-1) - 0.5 * jnp.einsum("bp,bpq,bq->b", step, h, step)
        small = jnp.isfinite(pred) & (pred <= _PRED_RTOL * cost + _GAIN_FLOOR * yy)
        theta = jnp.where(ok[:, None], new_theta, theta)
        cost = jnp.where(ok, new_cost, cost)
        h = jnp.where(ok[:, None, None], new_h, h)
        g = jnp.where(ok[:, None], new_g, g)
        lam = jnp.clip(jnp.where(ok, lam / 3.0, lam * 4.0), 1e-12, 1e12)
        done = done | small | ~jnp.isfinite(cost)
        return it + 1, theta, cost, h, g, lam, done

    def cond(carry):
        return (carry[0] < n_iter) & ~jnp.all(carry[-1])

    theta0 = jnp.clip(theta0, lower, upper)
    cost0, h0, g0, amp0 = evaluate(theta0)
    lam0 = jnp.full(cost0.shape, 1e-3, dtype)
    skip = ~jnp.isfinite(cost0) | (amp0 <= 0)
    if active is not None:
        skip = skip | ~active
    init = (jnp.asarray(0), theta0, cost0, h0, g0, lam0, skip)
    _, theta, cost, h, g, _, done = jax.lax.while_loop(cond, body, init)
    # polish: Gauss-Newton steps kept unless they raise the cost beyond its rounding; the
    # acceptance test above cannot see the last float32 digits of the cost, the gradient can
    for _ in range(_N_POLISH):
        new_theta = jnp.clip(theta - _spd_solve(h, g), lower, upper)
        new_cost, new_h, new_g, _ = evaluate(new_theta)
        ok = (jnp.all(jnp.isfinite(new_theta), axis=-1) & jnp.isfinite(new_cost)
              & (new_cost <= cost * (1.0 + 1e-6)))
        theta = jnp.where(ok[:, None], new_theta, theta)
        cost = jnp.where(ok, new_cost, cost)
        h = jnp.where(ok[:, None, None], new_h, h)
        g = jnp.where(ok[:, None], new_g, g)
    amp, off = _closed_form(y, basis(theta)[0], offset)
    interior = jnp.all((theta > lower) & (theta < upper), axis=-1)  # else: a degenerate limit
    converged = done & jnp.all(jnp.isfinite(theta), axis=-1) & jnp.isfinite(cost)
    return theta, amp, off, converged & (interior | (amp <= 0))


def linear_fit(basis: jax.Array, y: jax.Array, *, offset: bool,
               offset_nonnegative: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Least squares ``y ~ offset + amp * basis`` for every curve and grid row, ``amp >= 0``.

    Args:
      basis: ``[G, n]``, one candidate basis function per grid point.
      y: ``[B, n]``.
      offset: fit an offset (else it is 0).
      offset_nonnegative: constrain the offset to ``>= 0`` as well.

    Returns:
      ``(amp [B, G], off [B, G], sse [B, G])``, the exact constrained minimiser for
      each curve and row (the curve sums are one matrix product).
    """
    f = basis
    n = f.shape[-1]
    tiny = jnp.asarray(1e-30, y.dtype)
    ff = jnp.sum(f * f, axis=-1)
    fy = y @ f.T
    yy = jnp.sum(y * y, axis=-1, keepdims=True)
    amp0 = jnp.maximum(fy / (ff + tiny), 0.0)  # no offset
    sse0 = yy - 2 * amp0 * fy + amp0 * amp0 * ff
    if not offset:
        return amp0, jnp.zeros_like(amp0), jnp.where(jnp.isnan(sse0), jnp.inf, sse0)
    fm = jnp.mean(f, axis=-1)
    ym = jnp.mean(y, axis=-1, keepdims=True)
    yc = y - ym
    var = ff / n - fm * fm
    cov = (yc @ f.T) / n
    amp = jnp.maximum(cov / (var + tiny), 0.0)  # amp < 0: amp = 0, the offset is the mean
    off = ym - amp * fm
    sse = jnp.sum(yc * yc, axis=-1, keepdims=True) - n * amp * cov
    if offset_nonnegative:
        neg = off < 0
        amp = jnp.where(neg, amp0, amp)
        off = jnp.where(neg, 0.0, off)
        sse = jnp.where(neg, sse0, sse)
    return amp, off, jnp.where(jnp.isnan(sse), jnp.inf, sse)
