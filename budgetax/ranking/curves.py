r"""Parametric learning-curve extrapolation: predict the loss at the full budget.

Domhan et al. (2015) extrapolate partial learning curves with parametric
families; here three of them are written for a *decreasing loss* (their
accuracy forms flipped), with ``k`` the 1-based step number (the loss of the
``k``-th update, ``k = i + 1`` for ``losses[..., i]``):

* ``pow3``: :math:`L(k) = c + a\,k^{-\alpha}`, :math:`a \ge 0, \alpha > 0`;
  params ``(c, a, alpha)``.
* ``exp4``: :math:`L(k) = c + \exp(-a\,k^{\alpha} + b)`, :math:`a, \alpha > 0`;
  params ``(c, a, alpha, b)``.
* ``log_power``: :math:`L(k) = a / \big(1 + (k / e^{b})^{c}\big)`,
  :math:`a \ge 0, c > 0` (decays to 0); params ``(a, b, c)``.

Each curve is fitted by least squares to all its steps, in JAX, for all curves
at once, with the losses divided by their mean absolute value. Every family is
linear in some of its parameters (``pow3``: ``c, a``; ``exp4``: ``c, e^b``;
``log_power``: ``a``), which are solved in closed form for given nonlinear ones
(variable projection, see :mod:`budgetax.ranking._fit`): ``pow3`` is then a
1-D search over :math:`\alpha \in [10^{-3}, 10]` (a grid, then safeguarded
Newton steps), ``exp4`` and ``log_power`` 2-D Levenberg-Marquardt fits from a
grid start, within bounds (``exp4``: :math:`\alpha \in [10^{-3}, 5]`;
``log_power``: :math:`c \in [10^{-3}, 10]`, the knee :math:`e^b` within
:math:`e^{\pm 10}` of the observed steps). A curve stops iterating once it has
converged, a batch once all its curves have. The returned parameters are in
step units and raw losses, so :func:`curve` reproduces the fitted curve.

A curve that no member of the family fits better than a constant (a flat or
rising curve: every member is non-increasing) gets that constant, the mean
loss: ``a = 0`` for ``pow3`` and ``log_power``'s best is its limit of a knee
beyond the last step; ``exp4`` reports its amplitude :math:`e^b` at the
smallest positive float, so that ``b`` stays finite. This is the bounded
least-squares solution SciPy finds too.

References:
  Domhan, Springenberg, Hutter. Speeding up Automatic Hyperparameter
  Optimization of Deep Neural Networks by Extrapolation of Learning Curves.
  IJCAI 2015.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from budgetax import _validate
from budgetax.ranking import _fit
from budgetax.ranking._common import as_losses

__all__ = ["CURVE_FAMILIES", "CurveFit", "curve", "extrapolate"]

CURVE_FAMILIES = ("pow3", "exp4", "log_power")
N_PARAMS = {"pow3": 3, "exp4": 4, "log_power": 3}


class CurveFit(NamedTuple):
    """Result of :func:`extrapolate`.

    Attributes:
      prediction: ``[...]``, the fitted loss at ``target_step`` (lower = predicted
        better); NaN for a curve containing NaN/inf.
      params: ``[..., P]`` in step units and raw losses (see the module docstring
        for their order); NaN where the prediction is NaN.
      converged: ``[...]`` bool, False when the best fit lies at a bound of the
        family's range (a degenerate limit, such as ``alpha -> 0`` for a
        straight line: the prediction is that of the bound, close to the
        least-squares limit), when the fit was still moving after its last
        iteration, produced a non-finite value, or the curve was not finite.
    """

    prediction: jax.Array
    params: jax.Array
    converged: jax.Array


# ----------------------------------------------------------------------------- families
# pow3: variable projection over theta = log alpha; exp4 and log_power: Levenberg-Marquardt
# over their two nonlinear parameters (their linear ones in closed form), on y / s.

_PASSES = (10, 20, 40, 130)  # exp4, log_power: Levenberg-Marquardt iterations per pass
_LATE_BLOCK = 64  # curves per block after the first pass (128: 1.4x the CPU time of exp4)
ALPHA_MIN, ALPHA_MAX = 1e-3, 10.0  # the range of the pow3 exponent
_POW3_GRID = 48


def _pow3_basis(log_k):
    """``theta = log alpha -> (g, g', g'')``, ``g = k^-alpha - 1`` (spans 1, k^-alpha with 1)."""

    def basis(theta):
        al = jnp.exp(theta) * log_k
        e = jnp.exp(-al)
        g1 = -al * e
        return jnp.expm1(-al), g1, g1 * (1.0 - al)

    return basis


def _exp4_basis(log_u):
    """``theta [B, 2] = (log rate, log alpha) -> exp(-rate u^alpha)`` and its derivatives."""

    def basis(theta):
        alpha_log_u = jnp.exp(theta[:, 1:2]) * log_u
        e = jnp.exp(theta[:, 0:1] + alpha_log_u)
        h = jnp.exp(-e)
        q = -e * h
        return h, [q, q * alpha_log_u]

    return basis


def _log_power_basis(log_u):
    """``theta [B, 2] = (log knee, log c) -> 1 / (1 + (u / knee)^c)`` and its derivatives."""

    def basis(theta):
        c = jnp.exp(theta[:, 1:2])
        v = c * (log_u - theta[:, 0:1])
        e = jnp.exp(v)
        h = 1.0 / (1.0 + e)
        w = -e * h * h
        return h, [-c * w, w * v]

    return basis


def _exp4_grid(dtype):
    rates, powers = jnp.meshgrid(jnp.logspace(-1.0, 2.0, 10, dtype=dtype),
                                 jnp.asarray([0.25, 0.5, 1.0, 2.0], dtype))
    return jnp.stack([jnp.log(rates.ravel()), jnp.log(powers.ravel())], axis=-1)


def _log_power_grid(dtype):
    knees, powers = jnp.meshgrid(jnp.linspace(jnp.log(1e-3), jnp.log(30.0), 12, dtype=dtype),
                                 jnp.asarray([0.25, 0.5, 1.0, 2.0, 4.0], dtype))
    return jnp.stack([knees.ravel(), jnp.log(powers.ravel())], axis=-1)


def _bounds(family, n, dtype):
    """Box on the internal theta: a fit drifting to a degenerate limit stops at its edge."""
    log_n = jnp.log(jnp.asarray(n, dtype))
    if family == "exp4":  # (log rate at the mean log step, log alpha)
        lower, upper = [-20.0, jnp.log(1e-3)], [20.0, jnp.log(5.0)]
    else:  # (log knee in u, log c)
        lower, upper = [-log_n - 10.0, jnp.log(1e-3)], [10.0, jnp.log(10.0)]
    return jnp.asarray(lower, dtype), jnp.asarray(upper, dtype)


_FAMILIES = {  # basis, start grid, offset
    "exp4": (_exp4_basis, _exp4_grid, True),
    "log_power": (_log_power_basis, _log_power_grid, False),
}


def curve(params: Any, k: Any, *, family: str = "pow3") -> jax.Array:
    r"""Evaluates a fitted curve of ``family`` at 1-based steps ``k``.

    Args:
      params: ``[..., P]``, e.g. ``extrapolate(...).params``.
      k: step number(s), any shape ``K`` (``k > 0``).
      family: one of :data:`CURVE_FAMILIES` (static).

    Returns:
      Shape ``[..., *K]``: every curve evaluated at every ``k``.

    Example:
      >>> from budgetax import ranking
      >>> ranking.curve([0.5, 2.0, 1.0], [1.0, 4.0], family="pow3").tolist()
      [2.5, 1.0]
    """
    family = _validate.one_of("family", family, CURVE_FAMILIES)
    p = jnp.asarray(params)
    p = p.astype(jnp.result_type(p.dtype, jnp.float32))
    if p.shape[-1:] != (N_PARAMS[family],):
        raise ValueError(f"params of family {family!r} must have shape [..., "
                         f"{N_PARAMS[family]}], got {p.shape}")
    k = jnp.asarray(k, p.dtype)
    axes = tuple(range(p.ndim - 1, p.ndim - 1 + k.ndim))
    q = [jnp.expand_dims(p[..., i], axes) for i in range(p.shape[-1])]
    if family == "pow3":
        return q[0] + q[1] * k ** (-q[2])
    if family == "exp4":
        return q[0] + jnp.exp(-q[1] * k ** q[2] + q[3])
    return q[0] / (1.0 + (k / jnp.exp(q[1])) ** q[2])


def _normalise(y):
    """``(y / s, s, finite)`` with ``s`` the mean absolute loss of each curve (1 if unusable)."""
    s = jnp.mean(jnp.abs(y), axis=-1)
    finite = jnp.all(jnp.isfinite(y), axis=-1)
    s = jnp.where(finite & (s > 0), s, 1.0)
    return jnp.where(finite[:, None], y / s[:, None], 0.0), s, finite


def _fit_pow3(y, target):
    n = y.shape[-1]
    dtype = y.dtype
    yn, s, finite = _normalise(y)
    log_k = jnp.log(jnp.arange(1, n + 1, dtype=dtype))
    grid = jnp.linspace(jnp.log(ALPHA_MIN), jnp.log(ALPHA_MAX), _POW3_GRID, dtype=dtype)
    theta, amp, off, converged, interior = _fit.varpro_1d(yn, _pow3_basis(log_k), grid)
    alpha = jnp.exp(theta)
    # the fit is off + amp * (k^-alpha - 1): evaluated in that form, it keeps its precision
    prediction = s * (off + amp * jnp.expm1(-alpha * jnp.log(target)))
    params = jnp.stack([s * (off - amp), s * amp, alpha], axis=-1)
    return prediction, params, converged & interior, finite


def _fit_lm(y, target, family):
    n = y.shape[-1]
    dtype = y.dtype
    make_basis, make_grid, offset = _FAMILIES[family]
    log_k = jnp.log(jnp.arange(1, n + 1, dtype=dtype))
    # exp4 measures time from the mean log step: it decorrelates the rate and the power
    # (a better conditioned fit in float32); log_power in u = k / n
    centre = jnp.mean(log_k) if family == "exp4" else jnp.log(jnp.asarray(n, dtype))
    basis = make_basis(log_k - centre)
    grid = make_grid(dtype)
    if family == "exp4":  # the grid's rates are given in u = k / n
        grid = grid.at[:, 0].add(jnp.exp(grid[:, 1]) * (centre - jnp.log(jnp.asarray(n, dtype))))

    def start(y):  # in blocks, like the fits: the same rounding for a curve in any batch
        yn, s, finite = _normalise(y)
        _, _, sse = _fit.linear_fit(basis(grid)[0], yn, offset=offset)
        return yn, s, finite, grid[jnp.argmin(sse, axis=-1)]

    yn, s, finite, theta0 = _fit.map_blocks(start, y)
    lower, upper = _bounds(family, n, dtype)

    def solve(theta, y, n_iter):
        return _fit.varpro_lm(basis, theta, y, lower, upper, offset=offset, n_iter=n_iter)

    def resume(theta, amp, off, converged, y, n_iter):
        # only the unconverged curves go on; a block without any is passed through
        def run(_):
            out = _fit.varpro_lm(basis, theta, y, lower, upper, offset=offset,
                                 active=~converged, n_iter=n_iter)
            return tuple(jnp.where(converged.reshape(-1, *([1] * (new.ndim - 1))), old, new)
                         for old, new in zip((theta, amp, off, converged), out))

        return jax.lax.cond(jnp.all(converged), lambda _: (theta, amp, off, converged), run,
                            None)

    # most curves converge within a few iterations: every curve gets the first pass, then
    # the unconverged ones are gathered first and go on in smaller blocks, so that the
    # converged blocks do not iterate while a few curves drift
    fit = _fit.map_blocks(functools.partial(solve, n_iter=_PASSES[0]), theta0, yn)
    for n_iter in _PASSES[1:]:
        order = jnp.argsort(fit[3], stable=True)
        undo = jnp.argsort(order)
        fit = _fit.map_blocks(functools.partial(resume, n_iter=n_iter),
                              *(a[order] for a in fit), yn[order], block=_LATE_BLOCK)
        fit = tuple(a[undo] for a in fit)
    theta, amp, off, converged = fit
    log_target = jnp.log(target) - centre
    prediction = s * (off + amp * make_basis(log_target)(theta)[0][:, 0])
    if family == "exp4":
        alpha = jnp.exp(theta[:, 1])
        # amp = 0 (no member beats a constant): reported at a tiny floor, so b stays finite
        b = jnp.log(jnp.maximum(amp, jnp.finfo(dtype).tiny)) + jnp.log(s)
        params = jnp.stack([s * off, jnp.exp(theta[:, 0] - alpha * centre), alpha, b], axis=-1)
    else:
        params = jnp.stack([s * amp, theta[:, 0] + centre, jnp.exp(theta[:, 1])], axis=-1)
    return prediction, params, converged, finite


@functools.partial(jax.jit, static_argnames=("family",))
def _extrapolate(x, target, *, family):
    batch = x.shape[:-1]
    target = jnp.asarray(target, x.dtype)
    y = x.reshape(-1, x.shape[-1])
    if family == "pow3":
        fit = functools.partial(_fit_pow3, target=target)
        prediction, params, converged, finite = _fit.map_blocks(fit, y)
    else:
        prediction, params, converged, finite = _fit_lm(y, target, family)
    ok = finite & jnp.isfinite(prediction) & jnp.all(jnp.isfinite(params), axis=-1)
    prediction = jnp.where(ok, prediction, jnp.nan)
    params = jnp.where(ok[:, None], params, jnp.nan)
    converged = converged & ok
    return CurveFit(prediction=prediction.reshape(batch),
                    params=params.reshape(*batch, N_PARAMS[family]),
                    converged=converged.reshape(batch))


def extrapolate(losses: Any, target_step: Any, *, family: str = "pow3") -> CurveFit:
    r"""Fits a parametric learning curve to each loss curve; predicts the loss at ``target_step``.

    ``losses[..., i]`` is taken as the loss at step :math:`k = i + 1`; the
    family (see the module docstring) is fitted by least squares to all steps,
    and the prediction is :math:`L(\texttt{target\_step})`, e.g. the loss at
    the end of the full budget ``T`` from the first few hundred steps.

    Args:
      losses: per-step training losses, shape ``[..., steps]``, ``steps >= 5``.
      target_step: the step to predict, a positive number (usually the budget
        ``T >= steps``), or a JAX scalar that may be traced.
      family: ``"pow3"``, ``"exp4"`` or ``"log_power"`` (static).

    Returns:
      A :class:`CurveFit` ``(prediction [...], params [..., P], converged [...])``;
      lower prediction = predicted better. A curve with NaN/inf gives a NaN
      prediction and ``converged=False`` without affecting the others; a flat
      or rising curve gets the constant fit (its mean), finite.

    Example:
      >>> import jax.numpy as jnp
      >>> from budgetax import ranking
      >>> k = jnp.arange(1.0, 201.0)
      >>> fit = ranking.extrapolate(0.5 + 3.0 * k ** -0.7, 1000, family="pow3")
      >>> round(float(fit.prediction), 4), round(0.5 + 3.0 * 1000 ** -0.7, 4)
      (0.5238, 0.5238)

    References:
      Domhan, Springenberg, Hutter. Speeding up Automatic Hyperparameter
      Optimization of Deep Neural Networks by Extrapolation of Learning Curves.
      IJCAI 2015.
    """
    x = as_losses(losses)
    family = _validate.one_of("family", family, CURVE_FAMILIES)
    if x.shape[-1] < 5:
        raise ValueError(f"extrapolate needs at least 5 steps per curve, got shape {x.shape}")
    target_step = _validate.hyperparam("target_step", target_step, low=0.0, low_open=True)
    return _extrapolate(x, target_step, family=family)
