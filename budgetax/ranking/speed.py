r"""Training-speed estimators (TSE) of final performance.

Ru et al. (2021) rank architectures by how fast they train: the sum of the
training losses seen so far. With per-step training losses :math:`\ell_i`,
``s`` steps per epoch, :math:`E = \lfloor \text{steps} / s \rfloor` complete
epochs and the epoch means :math:`\bar L_e` (see :func:`epoch_means`):

.. math::

   \mathrm{TSE} = \sum_{e=1}^{E} \bar L_e, \qquad
   \mathrm{TSE\text{-}E} = \sum_{e=E-m+1}^{E} \bar L_e, \qquad
   \mathrm{TSE\text{-}EMA} = \sum_{e=1}^{E} \gamma^{E-e} \bar L_e .

Lower = predicted better (a model that reaches low training loss quickly).
The steps of an incomplete final epoch are ignored. The paper sums the
per-minibatch losses of each epoch; we use the epoch *mean* (the sum divided by
``s``), which ranks identically for a fixed ``s`` and keeps the value on the
scale of the loss.

References:
  Ru, Lyle, Schut, Fil, van der Wilk, Gal. Speedy Performance Estimation for
  Neural Architecture Search. NeurIPS 2021. arXiv:2006.04492.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from budgetax import _validate
from budgetax.ranking._common import check_hyper, epoch_means

__all__ = ["tse", "tse_e", "tse_ema"]


def tse(losses: Any, steps_per_epoch: int) -> jax.Array:
    r"""Training speed estimate: the sum over epochs of the mean epoch loss.

    .. math::

       \mathrm{TSE} = \sum_{e=1}^{E} \bar L_e

    Args:
      losses: per-step training losses, shape ``[..., steps]``.
      steps_per_epoch: steps in one epoch, a positive Python int ``<= steps``
        (static under ``jax.jit``).

    Returns:
      Shape ``[...]``, lower = predicted better. A curve containing NaN/inf
      gives NaN/inf.

    Example:
      >>> from budgetax import ranking
      >>> float(ranking.tse([4.0, 2.0, 3.0, 1.0, 9.0], steps_per_epoch=2))
      5.0

    References:
      Ru, Lyle, Schut, Fil, van der Wilk, Gal. Speedy Performance Estimation for
      Neural Architecture Search. NeurIPS 2021. arXiv:2006.04492.
    """
    return epoch_means(losses, steps_per_epoch).sum(axis=-1)


def tse_e(losses: Any, steps_per_epoch: int, last_epochs: int = 1) -> jax.Array:
    r"""TSE-E: the sum of the mean losses of the last ``last_epochs`` complete epochs.

    .. math::

       \mathrm{TSE\text{-}E} = \sum_{e=E-m+1}^{E} \bar L_e, \qquad m = \texttt{last\_epochs}

    Args:
      losses: per-step training losses, shape ``[..., steps]``.
      steps_per_epoch: steps in one epoch, a positive Python int ``<= steps``.
      last_epochs: ``m``, a positive Python int ``<= E`` (static under ``jax.jit``).

    Returns:
      Shape ``[...]``, lower = predicted better.

    Example:
      >>> from budgetax import ranking
      >>> float(ranking.tse_e([5.0, 3.0, 2.0, 1.0, 0.5], 1, last_epochs=2))
      1.5

    References:
      Ru, Lyle, Schut, Fil, van der Wilk, Gal. Speedy Performance Estimation for
      Neural Architecture Search. NeurIPS 2021. arXiv:2006.04492.
    """
    means = epoch_means(losses, steps_per_epoch)
    m = _validate.positive_int("last_epochs", last_epochs)
    if m > means.shape[-1]:
        raise ValueError(
            f"last_epochs must be <= the number of complete epochs ({means.shape[-1]}), "
            f"got {last_epochs!r}")
    return means[..., -m:].sum(axis=-1)


def tse_ema(losses: Any, steps_per_epoch: int, gamma: float = 0.999) -> jax.Array:
    r"""TSE-EMA: exponentially weighted sum of the epoch means, recent epochs weighted most.

    .. math::

       \mathrm{TSE\text{-}EMA} = \sum_{e=1}^{E} \gamma^{E-e}\, \bar L_e

    Args:
      losses: per-step training losses, shape ``[..., steps]``.
      steps_per_epoch: steps in one epoch, a positive Python int ``<= steps``.
      gamma: the decay, ``0 < gamma <= 1`` (a Python float, or a JAX scalar that
        may be traced); ``gamma = 1`` is :func:`tse`.

    Returns:
      Shape ``[...]``, lower = predicted better.

    Example:
      >>> from budgetax import ranking
      >>> float(ranking.tse_ema([4.0, 2.0, 3.0, 1.0], 2, gamma=0.5))
      3.5

    References:
      Ru, Lyle, Schut, Fil, van der Wilk, Gal. Speedy Performance Estimation for
      Neural Architecture Search. NeurIPS 2021. arXiv:2006.04492.
    """
    gamma = check_hyper("gamma", gamma, low=0.0, high=1.0, low_open=True)
    means = epoch_means(losses, steps_per_epoch)
    n_epochs = means.shape[-1]
    powers = jnp.arange(n_epochs - 1, -1, -1, dtype=means.dtype)
    weights = jnp.asarray(gamma, means.dtype) ** powers
    return (means * weights).sum(axis=-1)
