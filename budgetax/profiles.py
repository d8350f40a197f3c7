"""Learning-rate *profiles*: pure functions of training progress ``p = t / T``.

A profile maps progress ``p`` in ``[0, 1]`` to a multiplier of the peak learning
rate. Every decaying profile is 1 at ``p = 0``; ``one_cycle`` rises first. They
are elementwise on arrays, clip ``p`` to ``[0, 1]``, hold no state and know
nothing of optax: :mod:`budgetax.schedules` turns a profile plus a budget, a
warmup and a sampling rate into an ``optax.Schedule``.

The split of a schedule into a profile and a sampling rate is the one of REX
(Chen, Wolfe, Kyrillidis, 2022); writing every profile against the budget ``T``
is the lesson of *Budgeted Training* (Li, Yumer, Ramanan, 2020).

Knobs given as Python numbers are validated eagerly (``ValueError`` naming the
argument); knobs given as JAX arrays are used as they are.

References:
  Li, Yumer, Ramanan. Budgeted Training: Rethinking Deep Neural Network Training
  Under Resource Constraints. ICLR 2020. arXiv:1905.04753.
  Chen, Wolfe, Kyrillidis. REX: Revisiting Budgeted Training with an Improved
  Schedule. MLSys 2022. arXiv:2107.04197.
  Loshchilov, Hutter. SGDR: Stochastic Gradient Descent with Warm Restarts.
  ICLR 2017. arXiv:1608.03983.
  Smith, Topin. Super-Convergence. 2017. arXiv:1708.07120.
  Hu et al. MiniCPM (warmup-stable-decay). 2024. arXiv:2404.06395.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from budgetax import _validate

Profile = Callable[..., jax.Array]

__all__ = [
    "Profile",
    "PROFILES",
    "constant",
    "cosine",
    "exponential",
    "get",
    "linear",
    "one_cycle",
    "polynomial",
    "rex",
    "step",
    "wsd",
]

WSD_DECAYS = ("linear", "cosine", "sqrt")


def _progress(p) -> jax.Array:
    """``p`` as a float array (float32 unless already wider), clipped to [0, 1]."""
    p = jnp.asarray(p)
    p = p.astype(jnp.result_type(p.dtype, jnp.float32))
    return jnp.clip(p, 0.0, 1.0)


def linear(p) -> jax.Array:
    r"""Linear decay, :math:`1 - p` (Li et al., 2020: the best budget-aware profile).

    Example:
      >>> float(linear(0.25))
      0.75
    """
    return 1.0 - _progress(p)


def rex(p, beta=0.5) -> jax.Array:
    r"""REX profile, :math:`\frac{1 - p}{(1 - \beta) + \beta (1 - p)}`.

    ``beta = 0.5`` is the curve of the REX paper; ``beta = 0`` is linear decay.
    Demon's momentum rule uses the same curve with ``beta = beta_init``.

    Args:
      p: progress in [0, 1] (clipped).
      beta: curvature, ``0 <= beta < 1``.

    Example:
      >>> round(float(rex(0.5)), 6)
      0.666667

    References:
      Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
    """
    beta = _validate.hyperparam("beta", beta, low=0.0, high=1.0, high_open=True)
    q = 1.0 - _progress(p)
    return q / ((1.0 - beta) + beta * q)


def cosine(p) -> jax.Array:
    r"""Cosine decay, :math:`\tfrac12 (1 + \cos \pi p)` (Loshchilov & Hutter, 2017).

    Example:
      >>> round(float(cosine(0.5)), 6)
      0.5
    """
    return 0.5 * (1.0 + jnp.cos(jnp.pi * _progress(p)))


def exponential(p, final=1e-2) -> jax.Array:
    r"""Exponential decay, :math:`\text{final}^{\,p}`: reaches ``final`` at the budget.

    Args:
      p: progress in [0, 1] (clipped).
      final: multiplier at ``p = 1``, ``0 < final <= 1``.

    Example:
      >>> round(float(exponential(0.5, final=0.01)), 6)
      0.1
    """
    final = _validate.hyperparam("final", final, low=0.0, high=1.0, low_open=True)
    p = _progress(p)
    return jnp.exp(p * jnp.log(jnp.asarray(final, p.dtype)))


def _check_milestones(milestones) -> tuple[float, ...]:
    if isinstance(milestones, str) or not isinstance(milestones, Sequence):
        raise TypeError(f"milestones must be a sequence of floats in [0, 1], got {milestones!r}")
    ms = tuple(_validate.real("milestones", m, low=0.0, high=1.0) for m in milestones)
    if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
        raise ValueError(f"milestones must be strictly increasing, got {milestones!r}")
    return ms


def step(p, milestones=(0.3, 0.6, 0.9), factor=0.1) -> jax.Array:
    r"""Step decay, :math:`\text{factor}^{\#\{m \in \text{milestones} : m \le p\}}`.

    The defaults are the 30-60-90 schedule of ImageNet training, as fractions of
    the budget (Li et al., 2020, "step-d3").

    Args:
      p: progress in [0, 1] (clipped).
      milestones: strictly increasing fractions of the budget in [0, 1]. (Budgeted
        schedules compute ``p = t / T`` exactly, so a milestone fires on time.)
      factor: multiplier applied at each milestone, ``0 < factor <= 1``.

    Example:
      >>> [round(float(step(x)), 4) for x in (0.0, 0.3, 0.75, 1.0)]
      [1.0, 0.1, 0.01, 0.001]
    """
    ms = _check_milestones(milestones)
    factor = _validate.hyperparam("factor", factor, low=0.0, high=1.0, low_open=True)
    p = _progress(p)
    n = jnp.zeros(p.shape, p.dtype)
    for m in ms:
        n = n + (p >= m).astype(p.dtype)
    return jnp.asarray(factor, p.dtype) ** n


def polynomial(p, power=2.0) -> jax.Array:
    r"""Polynomial decay, :math:`(1 - p)^{\text{power}}`, ``power > 0``.

    Example:
      >>> float(polynomial(0.5, power=2.0))
      0.25
    """
    power = _validate.hyperparam("power", power, low=0.0, low_open=True)
    return (1.0 - _progress(p)) ** power


def constant(p) -> jax.Array:
    """Constant profile, 1 everywhere (the no-decay baseline).

    Example:
      >>> float(constant(0.7))
      1.0
    """
    p = _progress(p)
    return jnp.ones_like(p)


def wsd(p, decay_fraction=0.2, decay="linear") -> jax.Array:
    r"""Warmup-stable-decay without its warmup: 1, then a decay over the last part.

    With :math:`s = 1 - \text{decay\_fraction}` and :math:`q = (p - s) / \text{decay\_fraction}`
    clipped to [0, 1], the multiplier is 1 for :math:`p \le s`, then
    ``linear``: :math:`1 - q`; ``cosine``: :math:`\tfrac12(1 + \cos \pi q)`;
    ``sqrt``: :math:`1 - \sqrt{q}`. Warmup is added by the schedule (``warmup_steps``).

    Args:
      p: progress in [0, 1] (clipped).
      decay_fraction: fraction of the budget spent decaying, in (0, 1].
      decay: one of ``"linear"``, ``"cosine"``, ``"sqrt"``.

    Example:
      >>> [round(float(wsd(x, 0.2)), 4) for x in (0.5, 0.8, 0.9, 1.0)]
      [1.0, 1.0, 0.5, 0.0]

    References:
      Hu et al. MiniCPM. 2024. arXiv:2404.06395.
    """
    decay_fraction = _validate.hyperparam(
            "decay_fraction", decay_fraction, low=0.0, high=1.0, low_open=True
        )
    _validate.one_of("decay", decay, WSD_DECAYS)
    p = _progress(p)
    q = jnp.clip((p - (1.0 - decay_fraction)) / decay_fraction, 0.0, 1.0)
    if decay == "linear":
        return 1.0 - q
    if decay == "cosine":
        return 0.5 * (1.0 + jnp.cos(jnp.pi * q))
    return 1.0 - jnp.sqrt(q)


def one_cycle(p, pct_start=0.3, div_factor=25.0, final_div_factor=1e4) -> jax.Array:
    r"""OneCycle: cosine up from ``1/div_factor`` to 1, then cosine down.

    With :math:`a = 1/\text{div\_factor}` and :math:`z = a / \text{final\_div\_factor}`:
    for :math:`p < \text{pct\_start}`,
    :math:`a + (1 - a)\,\tfrac12(1 - \cos \pi p/\text{pct\_start})`;
    afterwards :math:`z + (1 - z)\,\tfrac12(1 + \cos \pi r)` with
    :math:`r = (p - \text{pct\_start}) / (1 - \text{pct\_start})`. This is
    ``optax.cosine_onecycle_schedule`` with a peak of 1, written against progress.
    It is the one profile that is not 1 at ``p = 0``.

    Args:
      p: progress in [0, 1] (clipped).
      pct_start: fraction of the budget spent rising, in (0, 1).
      div_factor: the start is ``1 / div_factor`` of the peak, ``>= 1``.
      final_div_factor: the end is ``1 / (div_factor * final_div_factor)``, ``>= 1``.

    Example:
      >>> float(one_cycle(0.3))
      1.0

    References:
      Smith, Topin. Super-Convergence. 2017. arXiv:1708.07120.
    """
    pct_start = _validate.hyperparam("pct_start", pct_start, low=0.0, high=1.0,
                                     low_open=True, high_open=True)
    div_factor = _validate.hyperparam("div_factor", div_factor, low=1.0)
    final_div_factor = _validate.hyperparam("final_div_factor", final_div_factor, low=1.0)
    p = _progress(p)
    a = 1.0 / div_factor
    z = a / final_div_factor
    up = a + (1.0 - a) * 0.5 * (1.0 - jnp.cos(jnp.pi * p / pct_start))
    r = jnp.clip((p - pct_start) / (1.0 - pct_start), 0.0, 1.0)
    down = z + (1.0 - z) * 0.5 * (1.0 + jnp.cos(jnp.pi * r))
    return jnp.where(p < pct_start, up, down)


PROFILES: dict[str, Profile] = {
    "constant": constant,
    "cosine": cosine,
    "exponential": exponential,
    "linear": linear,
    "one_cycle": one_cycle,
    "polynomial": polynomial,
    "rex": rex,
    "step": step,
    "wsd": wsd,
}


def get(name: str) -> Profile:
    """Returns the profile called ``name``; the error lists the valid names.

    Example:
      >>> get("rex") is rex
      True
    """
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]
