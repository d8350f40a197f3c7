r"""Loss Curve Gradient Approximation (LCGA): rank models by the shape of a fitted loss curve.

Zhao et al. (2022) approximate the training-loss curve by

.. math::

   L(k) = \frac{1}{b_1 + b_2 k} + b_3, \qquad b_1, b_2, b_3 \ge 0,

and rank models by a score built from its derivatives

.. math::

   L'(k) = -\frac{b_2}{(b_1 + b_2 k)^2} \le 0, \qquad
   L''(k) = \frac{2 b_2^2}{(b_1 + b_2 k)^3} \ge 0 .

**Our reading of the paper** (only its abstract was available to us, so this
is stated explicitly): the curve is fitted to the per-step training losses of
the complete epochs observed after a burn-in of ``burn_in_epochs`` epochs,
normalised by the mean loss of the first fitted epoch (so the score does not
depend on the scale of the loss); ``k`` is training time in epochs, the loss
of step ``i`` (0-based) sitting at :math:`k = (i + 1)/s` with ``s =
steps_per_epoch``. The score is the mean over the fitted steps of

* ``variant="ratio"`` (LCGA): :math:`L'(k)/\sqrt{L''(k)}
  = -1/\sqrt{2 (b_1 + b_2 k)} = -\sqrt{(L(k) - b_3)/2}`;
* ``variant="slope"``: :math:`L'(k)`, the plain fitted slope.

Both raw values are :math:`\le 0`. We read the paper's gradient score as
"a steeper normalised descent = a better model", so the raw value is already
oriented the budgetax way and is returned **as is: lower (more negative) =
predicted better**, i.e. for ``"ratio"`` a larger fitted remaining
improvement :math:`L(k) - b_3` relative to the starting loss ranks a model
higher; a curve that has stopped improving scores 0 (worst). A curve whose
fitted drop over the window is below ``1e-6`` (relative) is declared flat
and scores exactly 0, because :math:`b_3` and hence the ratio are not
identified for a flat curve.

``"ratio"`` puts the slowest runs first (their fitted drop is largest relative to
its own scale), so it ranks runs by their final result poorly; ``"slope"`` ranks
them by how fast the fitted curve still falls. ``"ratio"`` stays the default because
it is the score the paper defines; prefer ``"slope"`` for ranking.

The fit is done for all curves at once in JAX (see
:mod:`budgetax.ranking._fit`) by variable projection: for a given
:math:`c = b_1/b_2` the curve is linear in :math:`1/b_2` and :math:`b_3`, which
are solved in closed form, so the fit is a 1-D search over :math:`c` (a grid,
then safeguarded Newton steps); where the best :math:`b_3` would be negative
the curve is fitted again with :math:`b_3 = 0`. A flat fit (no descent, e.g. a
flat or rising curve) is the constant mean loss, reported as
:math:`(b_1, b_2, b_3) = (1/\bar L, 0, 0)`.

References:
  Zhao, Frey, Gadepally, Samsi. Loss Curve Approximations for Fast Neural
  Architecture Ranking & Training Elasticity Estimation. IPDPS Workshops
  (IPDPSW) 2022.
  Ru, Lyle, Schut, Fil, van der Wilk, Gal. Speedy Performance Estimation for
  Neural Architecture Search. NeurIPS 2021. arXiv:2006.04492.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from budgetax import _validate
from budgetax.ranking import _fit
from budgetax.ranking._common import as_losses, check_steps_per_epoch

__all__ = ["LCGA_VARIANTS", "LCGAFit", "lcga", "lcga_curve"]

LCGA_VARIANTS = ("ratio", "slope")
_FLAT = 1e-6


class LCGAFit(NamedTuple):
    """Result of :func:`lcga`.

    Attributes:
      score: ``[...]``, lower = predicted better; NaN for a curve with NaN/inf
        (or a non-positive first fitted epoch).
      params: ``[..., 3]``, ``(b1, b2, b3) >= 0`` of
        ``L(k) = 1/(b1 + b2 k) + b3`` in the units of the *raw* losses and with
        ``k`` in epochs (see :func:`lcga_curve`); NaN where the score is NaN. A
        flat fit (score 0) is the constant mean loss ``1/b1``, ``b2 = b3 = 0``.
      converged: ``[...]`` bool, False when the fit stalled away from a minimum
        or the curve was not finite.
    """

    score: jax.Array
    params: jax.Array
    converged: jax.Array


def lcga_curve(params: Any, k: Any) -> jax.Array:
    r"""Evaluates :math:`L(k) = 1/(b_1 + b_2 k) + b_3` for ``params [..., 3]`` at times ``k``.

    Args:
      params: ``(b1, b2, b3)`` in the last axis, e.g. ``lcga(...).params``.
      k: training time(s) in epochs, any shape ``K``.

    Returns:
      ``L(k)`` of shape ``[..., *K]``: every curve evaluated at every ``k``.

    Example:
      >>> from budgetax import ranking
      >>> ranking.lcga_curve([1.0, 1.0, 0.5], [0.0, 1.0, 3.0]).tolist()
      [1.5, 1.0, 0.75]
    """
    p = jnp.asarray(params)
    p = p.astype(jnp.result_type(p.dtype, jnp.float32))
    k = jnp.asarray(k, p.dtype)
    b = [jnp.expand_dims(p[..., i], tuple(range(p.ndim - 1, p.ndim - 1 + k.ndim)))
         for i in range(3)]
    return 1.0 / (b[0] + b[1] * k) + b[2]


_C_RANGE = (1e-6, 1e3)  # b1 / b2 relative to the last fitted time: the search range
_GRID = 64


def _basis(kn, *, offset):
    """``theta = log c -> (g, g', g'')`` for ``1 / (c + kn)``.

    With an offset, ``g = 1/(c + kn) - 1/(c + kn[0])`` (the same span with the
    constant), written as a product so it keeps its precision when ``c >> kn``.
    """
    k0 = kn[0]

    def basis(theta):
        c = jnp.exp(theta)
        phi = 1.0 / (c + kn)
        if not offset:
            g1 = -c * phi * phi
            return phi, g1, g1 + 2.0 * c * c * phi * phi * phi
        phi0 = 1.0 / (c + k0)
        d = (k0 - kn) * phi * phi0
        g1 = -c * d * (phi + phi0)
        return d, g1, g1 + 2.0 * c * c * d * (phi * phi + phi * phi0 + phi0 * phi0)

    return basis


def _fit_all(yn, kn):
    """``(theta = log c, amp, b3, converged)`` of ``amp / (c + kn) + b3``, all ``>= 0``.

    The offset fit is done for every curve; where its ``b3`` comes out negative,
    the constrained optimum has ``b3 = 0``, and those curves (gathered first, so
    that blocks without any are skipped) are fitted again without the offset.
    """
    grid = jnp.linspace(jnp.log(_C_RANGE[0]), jnp.log(_C_RANGE[1]), _GRID, dtype=yn.dtype)
    theta, amp, off, converged, _ = _fit.varpro_1d_blocks(yn, _basis(kn, offset=True), grid)
    b3 = off - amp / (jnp.exp(theta) + kn[0])
    infeasible = b3 < 0
    th0, amp0, _, conv0, _ = _fit.varpro_1d_blocks(yn, _basis(kn, offset=False), grid,
                                                   offset=False, active=infeasible)
    return (jnp.where(infeasible, th0, theta), jnp.where(infeasible, amp0, amp),
            jnp.where(infeasible, 0.0, b3), jnp.where(infeasible, conv0, converged))


def lcga(losses: Any, steps_per_epoch: int, *, burn_in_epochs: int = 1,
         variant: str = "ratio") -> LCGAFit:
    r"""LCGA score of every loss curve: fit ``1/(b1 + b2 k) + b3``, score its derivatives.

    Fits :math:`L(k) = 1/(b_1 + b_2 k) + b_3` (:math:`b_i \ge 0`, ``k`` in
    epochs, the loss of step ``i`` at :math:`k = (i+1)/s`) by least squares to
    the per-step losses of complete epochs ``burn_in_epochs + 1 .. E``, divided
    by the mean loss of the first of these epochs, then returns the mean over
    the fitted steps of

    .. math::

       \text{ratio:}\ \frac{L'(k)}{\sqrt{L''(k)}} = -\frac{1}{\sqrt{2(b_1 + b_2 k)}}
       \qquad\text{or}\qquad
       \text{slope:}\ L'(k) = -\frac{b_2}{(b_1 + b_2 k)^2}.

    Both are :math:`\le 0` and returned as is: **lower (more negative) =
    predicted better** (a steeper normalised descent; see the module docstring
    for our reading of the paper). A flat curve scores 0.

    Args:
      losses: per-step training losses, shape ``[..., steps]``, positive.
      steps_per_epoch: steps in one epoch, a positive Python int ``<= steps``.
      burn_in_epochs: complete epochs skipped before the fit, a non-negative
        Python int leaving at least one complete epoch (and 3 steps) to fit.
      variant: ``"ratio"`` (LCGA, the default) or ``"slope"``.

    Returns:
      An :class:`LCGAFit` ``(score [...], params [..., 3], converged [...])``;
      ``params`` describe the raw (unnormalised) losses. A curve with NaN/inf
      gives a NaN score and ``converged=False`` without affecting the others.

    Example:
      >>> import jax.numpy as jnp
      >>> from budgetax import ranking
      >>> k = (jnp.arange(40) + 1) / 4  # 10 epochs of 4 steps
      >>> fast, slow = 1 / (1 + 2.0 * k) + 0.1, 1 / (1 + 0.5 * k) + 0.1
      >>> fit = ranking.lcga(jnp.stack([fast, slow]), 4, burn_in_epochs=0)
      >>> [round(float(b), 3) for b in fit.params[0]]
      [1.0, 2.0, 0.1]
      >>> bool(fit.converged.all())
      True

    References:
      Zhao, Frey, Gadepally, Samsi. Loss Curve Approximations for Fast Neural
      Architecture Ranking & Training Elasticity Estimation. IPDPSW 2022.
    """
    x = as_losses(losses)
    spe = check_steps_per_epoch(steps_per_epoch, x.shape[-1])
    n_epochs = x.shape[-1] // spe
    burn = _validate.nonnegative_int("burn_in_epochs", burn_in_epochs)
    if burn >= n_epochs:
        raise ValueError(
            f"burn_in_epochs must leave at least one complete epoch to fit "
            f"(there are {n_epochs}), got {burn_in_epochs!r}")
    variant = _validate.one_of("variant", variant, LCGA_VARIANTS)
    start, stop = burn * spe, n_epochs * spe
    if stop - start < 3:
        raise ValueError(
            f"lcga needs at least 3 steps after the burn-in to fit 3 parameters, got "
            f"{stop - start} (steps_per_epoch={spe}, burn_in_epochs={burn})")
    return _lcga(x, spe=spe, start=start, stop=stop, variant=variant)


@functools.partial(jax.jit, static_argnames=("spe", "start", "stop", "variant"))
def _lcga(x, *, spe, start, stop, variant):
    dtype = x.dtype
    y = x[..., start:stop]
    batch = y.shape[:-1]
    y = y.reshape(-1, y.shape[-1])
    k = (jnp.arange(start, stop, dtype=dtype) + 1.0) / spe  # training time in epochs
    kn = k / k[-1]  # the fit runs in kn: b1 / b2 = c * k_last, 1 / b2 = amp * k_last

    def normalise(y):
        scale = jnp.mean(y[:, :spe], axis=-1)
        finite = jnp.all(jnp.isfinite(y), axis=-1) & jnp.isfinite(scale) & (scale > 0)
        scale = jnp.where(finite, scale, 1.0)
        yn = jnp.where(finite[:, None], y / scale[:, None], 1.0)
        return yn, jnp.mean(yn, axis=-1), scale, finite

    def finish(theta, amp, b3, converged, yn_mean, scale, finite):
        c = jnp.exp(theta)[:, None]
        amp_ = amp[:, None]
        if variant == "ratio":  # L'/sqrt(L'') = -1/sqrt(2 (b1 + b2 k)) = -sqrt(amp/(2 (c + kn)))
            score = jnp.mean(-jnp.sqrt(amp_ / (2.0 * (c + kn))), axis=-1)
        else:  # L' = -b2 / (b1 + b2 k)^2 = -amp / (k_last (c + kn)^2)
            score = jnp.mean(-amp_ / (c + kn) ** 2, axis=-1) / k[-1]
        drop = amp * (1.0 / (c[:, 0] + kn[0]) - 1.0 / (c[:, 0] + kn[-1]))
        flat = drop < _FLAT
        score = jnp.where(flat, jnp.zeros_like(score), score)
        # a flat fit is reported as the constant 1/b1 (b2 = b3 = 0) at the mean normalised loss
        inv_amp = 1.0 / jnp.where(flat, 1.0, amp)
        b1 = jnp.where(flat, 1.0 / yn_mean, c[:, 0] * inv_amp)
        b2 = jnp.where(flat, 0.0, inv_amp / k[-1])
        b3 = jnp.where(flat, 0.0, b3)
        # normalised -> raw losses: L_raw = scale * L
        params = jnp.stack([b1 / scale, b2 / scale, b3 * scale], axis=-1)
        ok = finite & jnp.isfinite(score) & jnp.all(jnp.isfinite(params), axis=-1)
        score = jnp.where(finite, score, jnp.nan)
        params = jnp.where(ok[:, None], params, jnp.nan)
        return score, params, converged & ok

    # in blocks throughout, so that a curve gets the same float32 rounding in any batch
    # (the blocks of the fit's first pass: small blocks ran fastest on CPU); padded once
    # here to whole blocks (copies of the first curve), not again at every step
    block = _fit.VARPRO_BLOCK
    n = y.shape[0]
    if n % block:
        y = jnp.concatenate([y, jnp.broadcast_to(y[:1], (block - n % block, y.shape[1]))])
    yn, yn_mean, scale, finite = _fit.map_blocks(normalise, y, block=block)
    score, params, converged = _fit.map_blocks(finish, *_fit_all(yn, kn), yn_mean, scale,
                                               finite, block=block)
    return LCGAFit(score=score[:n].reshape(batch), params=params[:n].reshape(*batch, 3),
                   converged=converged[:n].reshape(batch))
