"""Learning-rate *profiles*: pure functions of training progress ``p = t / T``.

A profile maps progress ``p`` in ``[0, 1]`` to a multiplier of the peak learning
rate. Every decaying profile is 1 at ``p = 0``; ``one_cycle`` rises first. They
are elementwise on arrays, clip ``p`` to ``[0, 1]``, hold no state and know
nothing of optax: :mod:`budgetax.schedules` turns a profile plus a budget, a
warmup and a sampling rate into an ``optax.Schedule``.

The split of a schedule into a profile and a sampling rate is the one of REX
(Chen, Wolfe, Kyrillidis, 2022); writing every profile against the budget ``T``
is the lesson of *Budgeted Training* (Li, Yumer, Ramanan, 2020).

Knobs are validated eagerly by ``budgetax._validate.real_or_array`` (``ValueError``
naming the argument and showing the value): Python numbers and concrete arrays
(elementwise); traced arrays (``jax.vmap``, ``optax.inject_hyperparams``) are used
as they are. Every profile here is a schedule of the registry
(``budgetax/_registry.py``), which names them. Likewise a NaN
progress given as a Python float is refused, while arrays (often traced, inside a
schedule) are not checked: a NaN in an array gives a NaN out.

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

import math
import numbers
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from budgetax import _registry, _validate

Profile = Callable[..., jax.Array]

__all__ = ["Profile", "PROFILES", "get", *_registry.NAMES]

WSD_DECAYS = ("linear", "cosine", "sqrt", "1-sqrt")  # "1-sqrt" is "sqrt" by its usual name


def _progress(p, profile: Callable) -> jax.Array:
    """``p`` as a float array (float32 unless already wider), clipped to [0, 1].

    A profile takes progress, a float in [0, 1]; an integer array (an update
    count, as optax passes to a schedule) or a Python int other than 0 and 1 is
    refused, naming the schedule to use instead. A NaN Python float is refused;
    arrays are not checked for NaN (they may be traced, inside a schedule or a
    ``jax.jit``, where no value is known): a NaN in an array gives a NaN out.
    """
    profile = profile.__name__
    hint = (f"a profile maps progress p = t / T in [0, 1] to a multiplier; for a learning "
            f"rate as a function of the update count use "
            f"budgetax.schedules.{profile}(total_steps, peak_value) "
            f"(or budgetax.{profile}(total_steps) to scale updates)")
    if isinstance(p, bool | np.bool_):
        raise TypeError(f"p must be a float progress in [0, 1], got {p!r}; {hint}")
    if isinstance(p, numbers.Integral) and not isinstance(p, np.generic):
        if p not in (0, 1):
            raise ValueError(f"p must be a float progress in [0, 1], got the int {p!r}; {hint}")
        p = float(p)
    if isinstance(p, float) and math.isnan(p):  # only a concrete Python float is checked
        raise ValueError(f"p must be a float progress in [0, 1], got {p!r}")
    p = jnp.asarray(p)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        raise TypeError(f"p must be a float progress in [0, 1], got an array of dtype "
                        f"{p.dtype}; {hint}")
    p = p.astype(jnp.result_type(p.dtype, jnp.float32))
    return jnp.clip(p, 0.0, 1.0)


def _cos_ramp(x) -> jax.Array:
    r""":math:`\tfrac12 (1 + \cos \pi x)` for ``x`` in [0, 1], exactly 1 at 0 and exactly 0 at 1.

    The upper half is written as :math:`\tfrac12 (1 - \cos \pi (1 - x))` (``1 - x``
    is exact there), so the end does not depend on ``cos(float32(pi))`` rounding
    to -1 on the backend.
    """
    lower = 0.5 * (1.0 + jnp.cos(jnp.pi * x))
    upper = 0.5 * (1.0 - jnp.cos(jnp.pi * (1.0 - x)))
    return jnp.where(x <= 0.5, lower, upper)


def linear(p) -> jax.Array:
    r"""Linear decay, :math:`1 - p` (Li et al., 2020: the best budget-aware profile).

    Args:
      p: progress in [0, 1] (a float or float array; clipped).

    Returns:
      The multiplier, of the shape of ``p``: 1 at ``p = 0``, exactly 0 at ``p = 1``.

    Example:
      >>> float(linear(0.25))
      0.75

    Schedule:
      ``schedules.linear(T, peak, end_value=end)`` equals ``optax.linear_schedule(peak, end,
      T)``.

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
    """
    return 1.0 - _progress(p, linear)


def rex(p, beta=0.5) -> jax.Array:
    r"""REX profile, :math:`\frac{1 - p}{(1 - \beta) + \beta (1 - p)} = \frac{1 - p}{1 - \beta p}`.

    ``beta = 0.5`` is the curve of the REX paper; ``beta = 0`` is linear decay.
    Demon's momentum rule uses the same curve with ``beta = beta_init``. It is
    computed as :math:`(1 - p) / (1 - \beta p)`, which is exactly 1 at ``p = 0``
    and exactly 0 at ``p = 1``.

    Args:
      p: progress in [0, 1] (clipped).
      beta: curvature, ``0 <= beta < 1`` (a float or a JAX scalar).

    Returns:
      The multiplier, of the shape of ``p``.

    Example:
      >>> round(float(rex(0.5)), 6)
      0.666667

    Schedule:
      ``schedules.rex(T, peak)`` follows the REX paper's curve (``beta = 0.5``), sampled
      every ``sample_every`` steps.

    References:
      Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
    """
    beta = _validate.real_or_array("beta", beta, low=0.0, high=1.0, high_open=True)
    p = _progress(p, rex)
    return (1.0 - p) / (1.0 - beta * p)


def cosine(p) -> jax.Array:
    r"""Cosine decay, :math:`\tfrac12 (1 + \cos \pi p)` (Loshchilov & Hutter, 2017).

    Args:
      p: progress in [0, 1] (clipped).

    Returns:
      The multiplier, of the shape of ``p``: exactly 1 at ``p = 0`` and 0 at ``p = 1``.

    Example:
      >>> round(float(cosine(0.5)), 6)
      0.5

    Schedule:
      ``schedules.cosine(T, peak, end_value=end)`` equals
      ``optax.cosine_decay_schedule(peak, T, alpha=end / peak)`` (with a warmup:
      ``optax.warmup_cosine_decay_schedule(0, peak, w, T, end)``).

    References:
      Loshchilov, Hutter. SGDR. ICLR 2017. arXiv:1608.03983.
    """
    return _cos_ramp(_progress(p, cosine))


def exponential(p, final=1e-2) -> jax.Array:
    r"""Exponential decay, :math:`\text{final}^{\,p}`: reaches ``final`` at the budget.

    Args:
      p: progress in [0, 1] (clipped).
      final: multiplier at ``p = 1``, ``0 < final <= 1``; returned exactly there.

    Returns:
      The multiplier, of the shape of ``p``.

    Example:
      >>> round(float(exponential(0.5, final=0.01)), 6)
      0.1

    Schedule:
      ``schedules.exponential(T, peak, end_value=end)`` reaches ``final`` of the way from
      ``end`` to the peak at the budget.

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
    """
    final = _validate.real_or_array("final", final, low=0.0, high=1.0, low_open=True)
    p = _progress(p, exponential)
    fin = jnp.asarray(final, p.dtype)
    return jnp.where(p >= 1.0, fin, jnp.exp(p * jnp.log(fin)))


def check_milestones(milestones) -> tuple[float, ...]:
    """Validates step milestones: a non-empty, strictly increasing sequence in (0, 1)."""
    if isinstance(milestones, str) or not isinstance(milestones, Sequence):
        raise TypeError(
            f"milestones must be a non-empty sequence of floats in (0, 1), got {milestones!r}")
    if not milestones:
        raise ValueError(
            f"milestones must be a non-empty sequence of floats in (0, 1), got {milestones!r}")
    for m in milestones:
        if not _validate._is_real(m):
            raise TypeError(f"milestones must be floats in (0, 1), got {milestones!r}")
        v = float(m)
        if not 0.0 < v < 1.0:
            raise ValueError(f"milestones must be in (0, 1), got {milestones!r}")
    ms = tuple(float(m) for m in milestones)
    if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
        raise ValueError(f"milestones must be strictly increasing, got {milestones!r}")
    return ms


def step_multiplier(passed, factor, dtype=jnp.float32) -> jax.Array:
    """``factor ** k`` where ``k`` counts the true entries of the list ``passed``.

    Written as a running product (one multiply per passed milestone) so that the
    profile and the integer-milestone path of the schedules agree bit for bit.
    """
    f = jnp.asarray(factor, dtype)
    mult = jnp.ones(jnp.shape(passed[0]), dtype)
    for hit in passed:
        mult = jnp.where(hit, mult * f, mult)
    return mult


def step(p, milestones=(0.3, 0.6, 0.9), factor=0.1) -> jax.Array:
    r"""Step decay, :math:`\text{factor}^{\#\{m \in \text{milestones} : m \le p\}}`.

    The defaults are the 30-60-90 schedule of ImageNet training, as fractions of
    the budget (Li et al., 2020, "step-d3"). Here the comparison ``m <= p`` is
    done in float32; the schedules (:func:`budgetax.schedules.step`,
    ``schedules.budgeted(profiles.step, ...)``) instead compare the integer step
    with the integer milestone step, so a milestone fires on time for every
    budget up to ``2**31 - 1``.

    Args:
      p: progress in [0, 1] (clipped).
      milestones: a non-empty, strictly increasing sequence of fractions of the
        budget in (0, 1).
      factor: multiplier applied at each milestone, ``0 < factor <= 1``.

    Returns:
      The multiplier, of the shape of ``p``.

    Example:
      >>> [round(float(step(x)), 4) for x in (0.0, 0.3, 0.75, 1.0)]
      [1.0, 0.1, 0.01, 0.001]

    Schedule:
      ``schedules.step`` fires milestone ``m`` at the integer step ``w + ceil(m (T - w))``,
      with ``m`` read as the decimal it prints as (0.1 is 1/10), compared as integers (as
      ``torch.optim.lr_scheduler.MultiStepLR`` and ``optax.piecewise_constant_schedule``):
      on time for every budget up to ``2**31 - 1``.

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
    """
    ms = check_milestones(milestones)
    factor = _validate.real_or_array("factor", factor, low=0.0, high=1.0, low_open=True)
    p = _progress(p, step)
    return step_multiplier([p >= jnp.asarray(m, p.dtype) for m in ms], factor, p.dtype)


def polynomial(p, power=2.0) -> jax.Array:
    r"""Polynomial decay, :math:`(1 - p)^{\text{power}}`, ``power > 0``.

    Args:
      p: progress in [0, 1] (clipped).
      power: the exponent, ``> 0``.

    Returns:
      The multiplier, of the shape of ``p``: exactly 0 at ``p = 1``.

    Example:
      >>> float(polynomial(0.5, power=2.0))
      0.25

    Schedule:
      ``schedules.polynomial(T, peak, end_value=end, power=power)`` equals
      ``optax.polynomial_schedule(peak, end, power, T)``.

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
    """
    power = _validate.real_or_array("power", power, low=0.0, low_open=True)
    return (1.0 - _progress(p, polynomial)) ** power


def constant(p) -> jax.Array:
    """Constant profile, 1 everywhere (the no-decay baseline).

    Args:
      p: progress in [0, 1] (only its shape is used).

    Returns:
      Ones of the shape of ``p``.

    Example:
      >>> float(constant(0.7))
      1.0

    Schedule:
      ``schedules.constant(T, peak)`` is the peak (to float32 rounding) after the warmup.

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
    """
    return jnp.ones_like(_progress(p, constant))


def wsd(p, decay_fraction=0.2, decay="linear") -> jax.Array:
    r"""Warmup-stable-decay without its warmup: 1, then a decay over the last part.

    With :math:`d = \text{decay\_fraction}` and the elapsed fraction of the decay
    :math:`q = \mathrm{clip}((p - (1 - d)) / d, 0, 1)`, the multiplier is 1 for
    :math:`p \le 1 - d`, then ``linear``: :math:`1 - q`; ``cosine``:
    :math:`\tfrac12(1 + \cos \pi q)`; ``sqrt`` (also named ``"1-sqrt"``, as in HF
    transformers' ``get_wsd_schedule`` and pytorch-optimizer): :math:`1 - \sqrt{q}`:
    the decays "linear", "cosine" and "1-sqrt" of HF transformers' ``get_wsd_schedule``.
    The first half of the decay is computed from :math:`q` (exactly 1 where the
    decay starts, which matters for the steep ``sqrt``), the second half from the
    remaining fraction :math:`u = \mathrm{clip}((1 - p) / d, 0, 1) = 1 - q`
    (e.g. ``1 - sqrt(q) = u / (1 + sqrt(1 - u))``), so every decay is exactly 0 at
    ``p = 1``. Warmup is added by the schedule (``warmup_steps``).

    Args:
      p: progress in [0, 1] (clipped).
      decay_fraction: fraction of the budget spent decaying, in (0, 1].
      decay: one of ``"linear"``, ``"cosine"``, ``"sqrt"`` or its other name ``"1-sqrt"``.

    Returns:
      The multiplier, of the shape of ``p``.

    Example:
      >>> [round(float(wsd(x, 0.2)), 4) for x in (0.5, 0.8, 0.9, 1.0)]
      [1.0, 1.0, 0.5, 0.0]

    Schedule:
      When ``decay_fraction * (T - w)`` is an integer, ``schedules.wsd`` is HF transformers'
      ``get_wsd_schedule`` with ``num_decay_steps = decay_fraction * (T - w)``,
      ``min_lr_ratio = end / peak`` (from ``end = 0`` warmups agree too) and ``decay_type``
      "linear", "cosine" or "1-sqrt" (``decay="1-sqrt"``, also named ``"sqrt"``).

    References:
      Hu et al. MiniCPM. 2024. arXiv:2404.06395.
      Hägele et al. Scaling Laws and Compute-Optimal Training Beyond Fixed
      Training Durations. 2024. arXiv:2405.18392.
    """
    decay_fraction = _validate.real_or_array("decay_fraction", decay_fraction, low=0.0, high=1.0,
                                low_open=True)
    _validate.one_of("decay", decay, WSD_DECAYS)
    p = _progress(p, wsd)
    if isinstance(decay_fraction, float):
        start = float(np.float32(1.0 - decay_fraction))  # rounded once, as p = t / T is
    else:
        start = 1.0 - decay_fraction
    # elapsed fraction of the decay, exactly 0 where it starts (sqrt is steep there) ...
    q = jnp.clip((p - start) / decay_fraction, 0.0, 1.0)
    # ... and remaining fraction, exactly 0 at p = 1: each is used on its own half
    u = jnp.clip((1.0 - p) / decay_fraction, 0.0, 1.0)
    first_half = q <= 0.5
    if decay == "linear":
        return jnp.where(first_half, 1.0 - q, u)
    if decay == "cosine":
        return _cos_ramp(jnp.where(first_half, q, 1.0 - u))
    return jnp.where(first_half, 1.0 - jnp.sqrt(q), u / (1.0 + jnp.sqrt(1.0 - u)))


def one_cycle(p, pct_start=0.3, div_factor=25.0, final_div_factor=1e4) -> jax.Array:
    r"""OneCycle: cosine up from ``1/div_factor`` to 1, then cosine down to the minimum.

    With :math:`a = 1/\text{div\_factor}` and :math:`z = a / \text{final\_div\_factor}`:
    for :math:`p < \text{pct\_start}`,
    :math:`a + (1 - a)\,\tfrac12(1 - \cos \pi p/\text{pct\_start})`;
    afterwards :math:`z + (1 - z)\,\tfrac12(1 + \cos \pi r)` with
    :math:`r = (p - \text{pct\_start}) / (1 - \text{pct\_start})`. It is the one
    built-in profile that is not 1 at ``p = 0`` (a schedule's warmup leads into
    ``a``, see :func:`budgetax.schedules.budgeted`); it is exactly ``z`` at ``p = 1``.

    Convention: this follows optax. ``optax.cosine_onecycle_schedule(T, peak)``
    (equal to ``schedules.one_cycle(T, peak)`` when ``pct_start * T`` is an
    integer) peaks at ``t = pct_start * T`` and reaches its minimum at ``t = T``,
    i.e. just after the last update of a ``T``-step budget. PyTorch's
    ``OneCycleLR(total_steps=T)`` counts phases to ``pct_start * T - 1`` and
    ``T - 1``: it peaks one step earlier and the last update (``t = T - 1``)
    runs at the minimum. The shapes agree; the step index is offset by one.

    Args:
      p: progress in [0, 1] (clipped).
      pct_start: fraction of the budget spent rising, in (0, 1).
      div_factor: the start is ``1 / div_factor`` of the peak, ``>= 1``.
      final_div_factor: the end is ``1 / (div_factor * final_div_factor)``, ``>= 1``.

    Returns:
      The multiplier, of the shape of ``p``.

    Example:
      >>> float(one_cycle(0.3))
      1.0

    Schedule:
      ``schedules.one_cycle(T, peak)`` peaks at ``t = pct_start * T`` and reaches the
      minimum ``peak / (div_factor * final_div_factor)`` at ``t = T``, as optax's
      ``cosine_onecycle_schedule(T, peak)`` (which it equals when ``pct_start * T`` is an
      integer). With ``warmup_steps = w`` the linear warmup rises to ``peak / div_factor``
      (OneCycle's own start) and the cycle spans the ``T - w`` steps after it.

    References:
      Smith, Topin. Super-Convergence. 2017. arXiv:1708.07120.
    """
    pct_start = _validate.real_or_array("pct_start", pct_start, low=0.0, high=1.0, low_open=True,
                           high_open=True)
    div_factor = _validate.real_or_array("div_factor", div_factor, low=1.0)
    final_div_factor = _validate.real_or_array("final_div_factor", final_div_factor, low=1.0)
    p = _progress(p, one_cycle)
    if isinstance(div_factor, float) and isinstance(final_div_factor, float):
        a, z = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)  # rounded once
    else:
        a = 1.0 / jnp.asarray(div_factor, p.dtype)
        z = a / final_div_factor
    up = a + (1.0 - a) * (1.0 - _cos_ramp(jnp.clip(p / pct_start, 0.0, 1.0)))
    # remaining fraction of the way down: exactly 0 at p = 1
    v = jnp.clip((1.0 - p) / (1.0 - pct_start), 0.0, 1.0)
    down = z + (1.0 - z) * _cos_ramp(1.0 - v)
    return jnp.where(p < pct_start, up, down)


# The profiles of the registry's schedules, by name (sorted): each is the function of
# that name above; tests/test_profiles.py checks that every one is there.
PROFILES: dict[str, Profile] = {name: globals()[name] for name in sorted(_registry.NAMES)}


def __getattr__(name: str):
    if name == "hyperparam":  # its checks live in budgetax._validate now
        warnings.warn("budgetax.profiles.hyperparam is deprecated: use "
                      "budgetax._validate.real_or_array (the same checks)",
                      DeprecationWarning, stacklevel=2)
        return _validate.real_or_array
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get(name: str) -> Profile:
    """Returns the profile called ``name``; the error lists the valid names.

    Example:
      >>> get("rex") is rex
      True
    """
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]
