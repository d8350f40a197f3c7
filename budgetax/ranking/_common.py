"""Shared helpers of :mod:`budgetax.ranking`: argument checks, dtypes, epoch means."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from budgetax import _validate


def as_losses(losses: Any) -> jax.Array:
    """``losses`` as a float array of shape ``[..., steps]`` (float32, or wider if given)."""
    x = jnp.asarray(losses)
    if x.ndim < 1:
        raise ValueError(f"losses must have shape [..., steps], got a scalar of shape {x.shape}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"losses must be a real array, got dtype {x.dtype}")
    if x.shape[-1] < 1:
        raise ValueError(f"losses must have at least one step, got shape {x.shape}")
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


def check_steps_per_epoch(steps_per_epoch: Any, steps: int) -> int:
    """A positive Python int no larger than ``steps`` (there must be one complete epoch)."""
    return _validate.positive_int_at_most("steps_per_epoch", steps_per_epoch, steps,
                                          "the number of steps in losses")


def epoch_means(losses: Any, steps_per_epoch: int) -> jax.Array:
    r"""Mean loss of every complete epoch, ``[..., steps] -> [..., epochs]``.

    With ``s = steps_per_epoch`` and ``E = steps // s`` complete epochs,

    .. math::

       \bar L_e = \frac{1}{s} \sum_{i=(e-1)s}^{es - 1} \ell_i, \qquad e = 1, \dots, E;

    the steps of an incomplete final epoch are ignored.

    Args:
      losses: per-step training losses, shape ``[..., steps]``.
      steps_per_epoch: steps in one epoch, a positive Python int ``<= steps``.

    Returns:
      The epoch means, shape ``[..., E]``, float32 (or wider).

    Example:
      >>> from budgetax import ranking
      >>> ranking.epoch_means([4.0, 2.0, 3.0, 1.0, 9.0], steps_per_epoch=2).tolist()
      [3.0, 2.0]
    """
    x = as_losses(losses)
    spe = check_steps_per_epoch(steps_per_epoch, x.shape[-1])
    n_epochs = x.shape[-1] // spe
    x = x[..., : n_epochs * spe]
    return x.reshape(*x.shape[:-1], n_epochs, spe).mean(axis=-1)


def check_hyper(name: str, value: Any, **bounds) -> Any:
    """``_validate.hyperparam`` (Python numbers checked, JAX arrays passed through)."""
    return _validate.hyperparam(name, value, **bounds)
