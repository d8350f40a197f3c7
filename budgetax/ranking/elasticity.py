r"""Training elasticity: how much the loss still responds to more training time.

Borrowing the price elasticity of demand, Zhao et al. (2022) measure the
relative change of the loss per relative change of training time,

.. math::

   \varepsilon = \frac{dL / L}{dt / t} = \frac{d \log L}{d \log t},

and stop training once it is small: more time no longer buys a worthwhile
relative improvement. On the epoch means :math:`\bar L_e` (``t = e`` epochs)
we use the log-log difference

.. math::

   \varepsilon_e = \frac{\log \bar L_e - \log \bar L_{e-1}}{\log e - \log(e - 1)},
   \qquad e = 2, \dots, E,

which is exact for a power law :math:`\bar L_e = a e^{-\alpha}`
(:math:`\varepsilon_e = -\alpha`); :math:`\varepsilon_1` is undefined (NaN).
It is then smoothed over epochs by a debiased exponential moving average with
coefficient ``smoothing`` (which leaves a constant elasticity unchanged and
uses only past epochs, so a stopping rule built on it is causal).

References:
  Zhao, Frey, Gadepally, Samsi. Loss Curve Approximations for Fast Neural
  Architecture Ranking & Training Elasticity Estimation. IPDPS Workshops 2022.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from budgetax import _validate
from budgetax.ranking._common import check_hyper, epoch_means

__all__ = ["EarlyStop", "early_stop", "elasticity", "should_stop"]


def _ema_last_axis(x: jax.Array, beta) -> jax.Array:
    """Debiased EMA along the last axis, ``sum_i b^(j-i) x_i / sum_i b^(j-i)`` over ``i <= j``.

    Written as a (lower-triangular) matrix product rather than a scan, so that
    eager calls on growing curves stay cheap; a NaN makes every later entry NaN.
    """
    n = x.shape[-1]
    beta = jnp.asarray(beta, x.dtype)
    lag = jnp.arange(n)[:, None] - jnp.arange(n)[None, :]
    weights = jnp.where(lag >= 0, beta ** jnp.maximum(lag, 0).astype(x.dtype), 0.0)
    bad = jnp.cumsum(jnp.isnan(x), axis=-1) > 0
    num = jnp.einsum("ji,...i->...j", weights, jnp.where(jnp.isnan(x), 0.0, x))
    return jnp.where(bad, jnp.nan, num / weights.sum(axis=-1))


def elasticity(losses: Any, steps_per_epoch: int, *, smoothing: float = 0.5) -> jax.Array:
    r"""Per-epoch elasticity of the loss with respect to training time, smoothed.

    .. math::

       \varepsilon_e = \frac{\log \bar L_e - \log \bar L_{e-1}}{\log e - \log(e-1)}
       \ (e \ge 2), \qquad
       \tilde\varepsilon_e = \frac{\sum_{j=2}^{e} \beta^{e-j} \varepsilon_j}
                                 {\sum_{j=2}^{e} \beta^{e-j}}

    with :math:`\beta` = ``smoothing`` (0: no smoothing). Usually negative
    while the loss falls; :math:`|\tilde\varepsilon_e| \to 0` as it flattens.

    Args:
      losses: per-step training losses, shape ``[..., steps]``, positive.
      steps_per_epoch: steps in one epoch, a positive Python int ``<= steps``.
      smoothing: EMA coefficient ``0 <= smoothing < 1`` (a Python float or a
        JAX scalar).

    Returns:
      Shape ``[..., E]``, one value per complete epoch; the first is NaN (no
      earlier epoch), and a curve with NaN/inf or non-positive epoch means gives
      NaN from that epoch on.

    Example:
      >>> import jax.numpy as jnp
      >>> from budgetax import ranking
      >>> t = jnp.arange(1.0, 6.0)
      >>> [round(float(v), 3) for v in ranking.elasticity(2.0 * t ** -0.5, 1)]
      [nan, -0.5, -0.5, -0.5, -0.5]

    References:
      Zhao, Frey, Gadepally, Samsi. Loss Curve Approximations for Fast Neural
      Architecture Ranking & Training Elasticity Estimation. IPDPSW 2022.
    """
    smoothing = check_hyper("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    return _elasticity(epoch_means(losses, steps_per_epoch), smoothing)


@jax.jit
def _elasticity(means, smoothing):
    n_epochs = means.shape[-1]
    nan = jnp.full(means.shape[:-1] + (1,), jnp.nan, means.dtype)
    if n_epochs == 1:
        return nan
    log_m = jnp.log(jnp.where((means > 0) & jnp.isfinite(means), means, jnp.nan))
    log_t = jnp.log(jnp.arange(1, n_epochs + 1, dtype=means.dtype))
    raw = jnp.diff(log_m, axis=-1) / jnp.diff(log_t)
    return jnp.concatenate([nan, _ema_last_axis(raw, smoothing)], axis=-1)


@functools.partial(jax.jit, static_argnames=("patience", "min_epochs"))
def _stop_rule(means, smoothing, threshold, *, patience, min_epochs=0):
    """``hit [..., E]``: epoch ``j >= min_epochs`` completes ``patience`` epochs with
    ``|eps| < threshold``."""
    eps = _elasticity(means, smoothing)
    n_epochs = means.shape[-1]
    below = jnp.abs(eps) < jnp.asarray(threshold, eps.dtype)  # NaN -> False
    count = jnp.cumsum(below.astype(jnp.int32), axis=-1)
    lagged = jnp.pad(count, [(0, 0)] * (count.ndim - 1) + [(patience, 0)])[..., :n_epochs]
    return (count - lagged >= patience) & (jnp.arange(1, n_epochs + 1) >= min_epochs)


class EarlyStop(NamedTuple):
    """Result of :func:`early_stop`.

    Attributes:
      stop_epoch: ``[...]`` int32, epochs actually trained (``E`` if never stopped).
      compute_saved: ``[...]``, ``(E - stop_epoch) / E``, the fraction of the
        complete-epoch steps not trained, in ``[0, 1)``.
      loss_given_up: ``[...]``, mean loss of epoch ``stop_epoch`` minus the mean
        loss of the last epoch ``E`` of the full curve (``>= 0`` when the loss
        kept falling; NaN for a curve with NaN/inf).
    """

    stop_epoch: jax.Array
    compute_saved: jax.Array
    loss_given_up: jax.Array


def early_stop(losses: Any, steps_per_epoch: int, *, threshold: float = 0.05,
               patience: int = 3, smoothing: float = 0.5, min_epochs: int = 0) -> EarlyStop:
    r"""Elasticity stopping rule, replayed on full curves: when would it have stopped?

    Training stops at the end of the first epoch ``e`` at which
    :math:`|\tilde\varepsilon_j| <` ``threshold`` has held for ``patience``
    consecutive epochs ``j = e - patience + 1, ..., e`` (see :func:`elasticity`;
    the rule only looks at epochs ``<= e``, so it can run online). Reports what
    that saves and costs against training to the end of the curve.

    Args:
      losses: per-step training losses of the full run, ``[..., steps]``, positive.
      steps_per_epoch: steps in one epoch, a positive Python int ``<= steps``.
      threshold: elasticity magnitude below which training counts as saturated,
        ``> 0`` (Python float or JAX scalar).
      patience: consecutive saturated epochs required, a positive Python int.
      smoothing: EMA coefficient of :func:`elasticity`.
      min_epochs: never stop before the end of this epoch (a non-negative Python
        int): slow starters sit on an early plateau of small elasticity, where
        the rule alone stops them.

    Returns:
      An :class:`EarlyStop` ``(stop_epoch, compute_saved, loss_given_up)``, each ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from budgetax import ranking
      >>> t = jnp.arange(1.0, 21.0)
      >>> loss = 1.0 + 2.0 * jnp.exp(-t)  # saturates quickly
      >>> out = ranking.early_stop(loss, 1, threshold=0.01, patience=2, smoothing=0.0)
      >>> int(out.stop_epoch), round(float(out.compute_saved), 6)
      (9, 0.55)

    References:
      Zhao, Frey, Gadepally, Samsi. Loss Curve Approximations for Fast Neural
      Architecture Ranking & Training Elasticity Estimation. IPDPSW 2022.
    """
    smoothing = check_hyper("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    threshold = check_hyper("threshold", threshold, low=0.0, low_open=True)
    patience = _validate.positive_int("patience", patience)
    min_epochs = _validate.nonnegative_int("min_epochs", min_epochs)
    means = epoch_means(losses, steps_per_epoch)
    return _early_stop(means, smoothing, threshold, patience=patience, min_epochs=min_epochs)


@functools.partial(jax.jit, static_argnames=("patience", "min_epochs"))
def _early_stop(means, smoothing, threshold, *, patience, min_epochs=0):
    n_epochs = means.shape[-1]
    hit = _stop_rule(means, smoothing, threshold, patience=patience, min_epochs=min_epochs)
    first = jnp.argmax(hit, axis=-1).astype(jnp.int32) + 1
    stop_epoch = jnp.where(jnp.any(hit, axis=-1), first, jnp.int32(n_epochs))
    compute_saved = (n_epochs - stop_epoch).astype(means.dtype) / n_epochs
    at_stop = jnp.take_along_axis(means, (stop_epoch - 1)[..., None], axis=-1)[..., 0]
    finite = jnp.all(jnp.isfinite(means), axis=-1)
    loss_given_up = jnp.where(finite, at_stop - means[..., -1], jnp.nan)
    return EarlyStop(stop_epoch=stop_epoch, compute_saved=compute_saved,
                     loss_given_up=loss_given_up)


def should_stop(losses: Any, steps_per_epoch: int, *, threshold: float = 0.05,
                patience: int = 3, smoothing: float = 0.5, min_epochs: int = 0) -> jax.Array:
    """Online form of :func:`early_stop`: has the rule fired on the losses seen so far?

    Args:
      losses: the per-step losses observed so far, ``[..., steps]``.
      steps_per_epoch, threshold, patience, smoothing, min_epochs: as in :func:`early_stop`.

    Returns:
      ``[...]`` bool, True once ``patience`` consecutive complete epochs had
      ``|elasticity| < threshold`` (a training loop stops there; a sweep engine
      can mask finished runs with it).

    Example:
      >>> import jax.numpy as jnp
      >>> from budgetax import ranking
      >>> flat = jnp.ones(10)
      >>> bool(ranking.should_stop(flat, 2, patience=2))
      True
    """
    smoothing = check_hyper("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    threshold = check_hyper("threshold", threshold, low=0.0, low_open=True)
    patience = _validate.positive_int("patience", patience)
    min_epochs = _validate.nonnegative_int("min_epochs", min_epochs)
    means = epoch_means(losses, steps_per_epoch)
    return jnp.any(_stop_rule(means, smoothing, threshold, patience=patience,
                              min_epochs=min_epochs), axis=-1)
