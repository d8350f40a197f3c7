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
at once: time is rescaled to ``u = k / steps`` and the losses by their mean
absolute value, a grid over the nonlinear parameters with the linear ones in
closed form gives the start, and Levenberg-Marquardt iterations refine it (see
:mod:`budgetax.ranking._fit`). The returned parameters are converted back to
step units and raw losses, so :func:`curve` reproduces the fitted curve.

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
      converged: ``[...]`` bool, False when the fit was still moving at the end
        (typically drifting towards a degenerate limit such as ``alpha -> 0``
        when the family does not suit the curve; the prediction is then the
        best one found, usually still close to the least-squares limit),
        produced a non-finite value, or the curve was not finite.
    """

    prediction: jax.Array
    params: jax.Array
    converged: jax.Array


# ----------------------------------------------------------------------------- families
# Internal parametrisations, in u = k / n and y / s, with unconstrained theta.


def _pow3(theta, u):
    return theta[0] + jnp.exp(theta[1] - jnp.exp(theta[2]) * jnp.log(u))


def _exp4(theta, u):
    return theta[0] + jnp.exp(-jnp.exp(theta[1] + jnp.exp(theta[2]) * jnp.log(u)) + theta[3])


def _log_power(theta, u):
    return jnp.exp(theta[0]) / (1.0 + jnp.exp(jnp.exp(theta[2]) * (jnp.log(u) - theta[1])))


def _pow3_init(u, y):
    alphas = jnp.logspace(-2.0, 0.5, 24, dtype=y.dtype)
    basis = jnp.exp(-alphas[:, None] * jnp.log(u)[None, :])
    amp, off, sse = _fit.linear_fit(basis, y, offset=True)
    g = jnp.argmin(sse)
    return jnp.stack([off[g], jnp.log(jnp.maximum(amp[g], 1e-6)), jnp.log(alphas[g])])


def _exp4_init(u, y):
    rates, powers = jnp.meshgrid(jnp.logspace(-1.0, 2.0, 10, dtype=y.dtype),
                                 jnp.asarray([0.25, 0.5, 1.0, 2.0], y.dtype))
    rates, powers = rates.ravel(), powers.ravel()
    basis = jnp.exp(-rates[:, None] * jnp.exp(powers[:, None] * jnp.log(u)[None, :]))
    amp, off, sse = _fit.linear_fit(basis, y, offset=True)
    g = jnp.argmin(sse)
    return jnp.stack([off[g], jnp.log(rates[g]), jnp.log(powers[g]),
                      jnp.log(jnp.maximum(amp[g], 1e-6))])


def _log_power_init(u, y):
    shifts, powers = jnp.meshgrid(jnp.linspace(jnp.log(1e-3), jnp.log(30.0), 12, dtype=y.dtype),
                                  jnp.asarray([0.25, 0.5, 1.0, 2.0, 4.0], y.dtype))
    shifts, powers = shifts.ravel(), powers.ravel()
    basis = 1.0 / (1.0 + jnp.exp(powers[:, None] * (jnp.log(u)[None, :] - shifts[:, None])))
    amp, _, sse = _fit.linear_fit(basis, y, offset=False)
    g = jnp.argmin(sse)
    return jnp.stack([jnp.log(jnp.maximum(amp[g], 1e-6)), shifts[g], jnp.log(powers[g])])


def _to_raw(family, theta, n, s):
    """Internal theta (u = k/n, y/s) -> public params in step units and raw losses."""
    log_n = jnp.log(jnp.asarray(n, theta.dtype))
    if family == "pow3":
        alpha = jnp.exp(theta[2])
        return jnp.stack([s * theta[0], s * jnp.exp(theta[1] + alpha * log_n), alpha])
    if family == "exp4":
        alpha = jnp.exp(theta[2])
        return jnp.stack([s * theta[0], jnp.exp(theta[1] - alpha * log_n), alpha,
                          theta[3] + jnp.log(s)])
    return jnp.stack([s * jnp.exp(theta[0]), theta[1] + log_n, jnp.exp(theta[2])])


_FAMILIES = {
    "pow3": (_pow3, _pow3_init),
    "exp4": (_exp4, _exp4_init),
    "log_power": (_log_power, _log_power_init),
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


def _fit_one(y, target, *, family):
    n = y.shape[0]
    dtype = y.dtype
    model, init = _FAMILIES[family]
    u = (jnp.arange(n, dtype=dtype) + 1.0) / n
    s = jnp.mean(jnp.abs(y))
    finite = jnp.all(jnp.isfinite(y))
    s = jnp.where(finite & (s > 0), s, 1.0)
    yn = jnp.where(finite, y / s, 0.0)
    theta0 = init(u, yn)
    theta, _, converged = _fit.levenberg_marquardt(lambda th: model(th, u) - yn, theta0)
    nan = jnp.asarray(jnp.nan, dtype)
    prediction = s * model(theta, target / n)
    params = _to_raw(family, theta, n, s)
    ok = finite & jnp.isfinite(prediction) & jnp.all(jnp.isfinite(params))
    return (jnp.where(ok, prediction, nan), jnp.where(ok, params, nan), converged & ok)


@functools.partial(jax.jit, static_argnames=("family",))
def _extrapolate(x, target, *, family):
    batch = x.shape[:-1]
    target = jnp.asarray(target, x.dtype)
    fit = jax.vmap(functools.partial(_fit_one, family=family), in_axes=(0, None))
    prediction, params, converged = fit(x.reshape(-1, x.shape[-1]), target)
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
      prediction and ``converged=False`` without affecting the others.

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
