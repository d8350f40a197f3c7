r"""Budgeted schedules: a profile, a budget, a warmup and a sampling rate -> ``optax.Schedule``.

Counting follows optax: ``count = t`` is the number of updates already applied
(0 on the first update). With budget ``T = total_steps``, warmup ``w`` and
sampling period ``k = sample_every``:

.. math::

   \tau &= k \lfloor t / k \rfloor \quad\text{(re-sampled every } k \text{ steps)} \\
   \eta(t) &= \text{peak} \cdot \tau / w \quad\text{for } \tau < w \\
   \eta(t) &= \text{end} + (\text{peak} - \text{end})\,\text{profile}(p),\quad
   p = \mathrm{clip}\big((\tau - w) / (T - w), 0, 1\big) \quad\text{otherwise.}

From ``t = T`` on the value is the one at the end of the budget, ``end +
(peak - end) * profile(1)`` (``end`` for every profile that decays to 0), also
when ``T`` is not a multiple of ``k``. ``p`` is computed exactly (see
:func:`progress`), so a step milestone ``m`` fires exactly at the first ``t``
with ``t - w >= m (T - w)``.
``sample_every = steps_per_epoch`` is the per-epoch sampling rate of the REX paper;
``sample_every = 1`` (the default) re-samples at every step.

Every factory validates its arguments eagerly and computes in float32.

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
  Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from budgetax import _validate, profiles

__all__ = [
    "budgeted",
    "progress",
    "constant",
    "cosine",
    "exponential",
    "linear",
    "one_cycle",
    "polynomial",
    "rex",
    "step",
    "steps_for_budget",
    "wsd",
]


def progress(count, total_steps: int) -> jax.Array:
    r"""``min(count, T) / T`` as float32, correctly rounded, for any int32 ``count``.

    XLA's float32 division is not correctly rounded on every backend (on CPU it
    is often an ulp off, and ``T / T`` can come out below 1), which would move
    a step milestone by one update or leave a profile short of its end value.
    This computes the quotient by binary long division on unsigned integers
    (``T.bit_length() + 25`` shift-subtract steps in a ``fori_loop``) and
    rounds to nearest even, so ``p`` is exact wherever float32 can be, e.g.
    ``progress(300, 1000) == float32(0.3)``.

    Args:
      count: int array of update counts (negative values count as 0).
      total_steps: the budget ``T``, a positive Python int below 2**31.

    Returns:
      A float32 array of the shape of ``count``, in [0, 1].

    Example:
      >>> float(progress(1, 3)) == float(jnp.float32(1) / jnp.float32(3))
      True
    """
    total_steps = _validate.positive_int("total_steps", total_steps)
    if total_steps >= 2**31:
        raise ValueError(f"total_steps must be < 2**31, got {total_steps!r}")
    big = jnp.uint32(total_steps)
    c = jnp.clip(jnp.asarray(count), 0, total_steps).astype(jnp.uint32)
    full = jnp.uint32(1 << 24)  # 25 significant bits collected: 24 + a rounding bit

    def body(_, carry):
        rem, bits, n = carry
        active = bits < full
        twice = rem * jnp.uint32(2)  # rem <= T < 2**31: no overflow
        bit = twice >= big
        rem = jnp.where(active, jnp.where(bit, twice - big, twice), rem)
        bits = jnp.where(active, bits * jnp.uint32(2) + bit.astype(jnp.uint32), bits)
        return rem, bits, n + active.astype(jnp.int32)

    zeros = jnp.zeros(c.shape, jnp.uint32)
    rem, bits, n = jax.lax.fori_loop(0, total_steps.bit_length() + 25, body,
                                     (c, zeros, jnp.zeros(c.shape, jnp.int32)))
    mant = bits >> 1
    round_up = (bits & 1) & ((rem != 0) | (mant & 1)).astype(jnp.uint32)
    p = jnp.ldexp((mant + round_up).astype(jnp.float32), 1 - n)
    return jnp.where(c >= big, jnp.float32(1.0), jnp.where(c == 0, jnp.float32(0.0), p))


def _resolve_profile(profile) -> Callable[[jax.Array], jax.Array]:
    if isinstance(profile, str):
        return profiles.get(profile)
    if not callable(profile):
        raise TypeError(f"profile must be a callable p -> multiplier or a name, got {profile!r}")
    return profile


def budgeted(
    profile,
    total_steps: int,
    peak_value=1.0,
    *,
    end_value=0.0,
    warmup_steps: int = 0,
    sample_every: int = 1,
) -> optax.Schedule:
    r"""A schedule that follows ``profile`` over the budget, after an optional linear warmup.

    See the module docstring for the maths.

    Args:
      profile: a function ``p -> multiplier`` (e.g. ``profiles.rex``, or a
        ``functools.partial`` of one with its knobs), or a profile name.
      total_steps: the budget ``T``, a positive Python int.
      peak_value: the learning rate at the end of warmup (a float, or a JAX
        scalar so that sweeps can vmap over it).
      end_value: the value the profile anneals to at the budget.
      warmup_steps: linear warmup from 0 over the first ``warmup_steps`` steps,
        ``0 <= warmup_steps < total_steps``.
      sample_every: re-sample the learning rate every this many steps (``>= 1``).

    Returns:
      An ``optax.Schedule``: ``count -> learning rate`` (float32).

    Example:
      >>> import optax
      >>> sched = budgeted(profiles.linear, total_steps=100, peak_value=0.1)
      >>> round(float(sched(50)), 6)
      0.05
      >>> tx = optax.sgd(sched)

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
      Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
    """
    fn = _resolve_profile(profile)
    total_steps = _validate.positive_int("total_steps", total_steps)
    warmup_steps = _validate.nonnegative_int("warmup_steps", warmup_steps)
    if warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps must be < total_steps={total_steps}, got {warmup_steps!r}"
        )
    sample_every = _validate.positive_int("sample_every", sample_every)
    peak_value = _validate.hyperparam("peak_value", peak_value)
    end_value = _validate.hyperparam("end_value", end_value)
    fn(jnp.float32(0.0))  # validates the profile's knobs now, not at trace time
    decay_steps = total_steps - warmup_steps

    def decay(count):
        return end_value + (peak_value - end_value) * fn(progress(count, decay_steps))

    if warmup_steps:
        warmup = optax.linear_schedule(0.0, peak_value, warmup_steps)
        base = optax.join_schedules([warmup, decay], [warmup_steps])
    else:
        base = decay

    def schedule(count):
        count = jnp.asarray(count)
        if sample_every > 1:
            # re-sampled inside the budget; from T on the value is the end value
            count = jnp.where(count >= total_steps, total_steps,
                              (count // sample_every) * sample_every)
        return jnp.asarray(base(count), jnp.float32)

    return schedule


def _make(profile_fn, total_steps, peak_value, end_value, warmup_steps, sample_every, **knobs):
    prof = functools.partial(profile_fn, **knobs) if knobs else profile_fn
    return budgeted(prof, total_steps, peak_value, end_value=end_value,
                    warmup_steps=warmup_steps, sample_every=sample_every)


def linear(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1):
    """Linear decay to ``end_value`` at the budget: ``budgeted(profiles.linear, ...)``.

    Example:
      >>> round(float(linear(100, 0.1)(25)), 6)
      0.075
    """
    return _make(profiles.linear, total_steps, peak_value, end_value, warmup_steps, sample_every)


def rex(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1,
        beta=0.5):
    """REX decay: ``budgeted(partial(profiles.rex, beta=beta), ...)``.

    Example:
      >>> round(float(rex(100, 1.0)(50)), 6)
      0.666667
    """
    return _make(profiles.rex, total_steps, peak_value, end_value, warmup_steps, sample_every,
                 beta=beta)


def cosine(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1):
    """Cosine decay over the budget: ``budgeted(profiles.cosine, ...)``.

    Example:
      >>> round(float(cosine(100, 1.0)(50)), 6)
      0.5
    """
    return _make(profiles.cosine, total_steps, peak_value, end_value, warmup_steps, sample_every)


def exponential(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1,
                final=1e-2):
    """Exponential decay reaching ``final`` of the way to ``end_value`` at the budget.

    Example:
      >>> round(float(exponential(100, 1.0)(50)), 6)
      0.1
    """
    return _make(profiles.exponential, total_steps, peak_value, end_value, warmup_steps,
                 sample_every, final=final)


def step(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1,
         milestones=(0.3, 0.6, 0.9), factor=0.1):
    """Step decay at fractions of the budget (30-60-90 by default).

    Example:
      >>> round(float(step(100, 1.0)(30)), 6)
      0.1
    """
    return _make(profiles.step, total_steps, peak_value, end_value, warmup_steps, sample_every,
                 milestones=milestones, factor=factor)


def polynomial(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1,
               power=2.0):
    """Polynomial decay ``(1 - p) ** power``.

    Example:
      >>> round(float(polynomial(100, 1.0)(50)), 6)
      0.25
    """
    return _make(profiles.polynomial, total_steps, peak_value, end_value, warmup_steps,
                 sample_every, power=power)


def constant(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1):
    """Constant learning rate after the warmup (the no-decay baseline).

    Example:
      >>> round(float(constant(100, 0.1)(99)), 6)
      0.1
    """
    return _make(profiles.constant, total_steps, peak_value, end_value, warmup_steps,
                 sample_every)


def wsd(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1,
        decay_fraction=0.2, decay="linear"):
    """Warmup-stable-decay: hold the peak, then decay over the last ``decay_fraction``.

    Example:
      >>> round(float(wsd(100, 1.0)(90)), 6)
      0.5
    """
    return _make(profiles.wsd, total_steps, peak_value, end_value, warmup_steps, sample_every,
                 decay_fraction=decay_fraction, decay=decay)


def one_cycle(total_steps, peak_value=1.0, *, end_value=0.0, warmup_steps=0, sample_every=1,
              pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """OneCycle (cosine up, cosine down) over the budget.

    Example:
      >>> round(float(one_cycle(100, 1.0)(30)), 6)
      1.0
    """
    return _make(profiles.one_cycle, total_steps, peak_value, end_value, warmup_steps,
                 sample_every, pct_start=pct_start, div_factor=div_factor,
                 final_div_factor=final_div_factor)


def steps_for_budget(
    *,
    full_steps: int | None = None,
    fraction: float | None = None,
    epochs: float | None = None,
    steps_per_epoch: int | None = None,
) -> int:
    """Turns a budget given as a fraction of a full run, or as epochs, into ``total_steps``.

    Give either ``full_steps`` and ``fraction`` (Li et al.'s "x% of the full
    budget"), or ``epochs`` and ``steps_per_epoch``. The result is rounded to the
    nearest int and is at least 1. The same ``steps_per_epoch`` passed as
    ``sample_every`` gives the REX paper's per-epoch sampling rate.

    Example:
      >>> steps_for_budget(full_steps=10_000, fraction=0.25)
      2500
      >>> steps_for_budget(epochs=2.5, steps_per_epoch=100)
      250
    """
    by_fraction = full_steps is not None or fraction is not None
    by_epochs = epochs is not None or steps_per_epoch is not None
    if by_fraction == by_epochs:
        raise ValueError(
            "give either (full_steps, fraction) or (epochs, steps_per_epoch), got "
            f"full_steps={full_steps!r}, fraction={fraction!r}, epochs={epochs!r}, "
            f"steps_per_epoch={steps_per_epoch!r}"
        )
    if by_fraction:
        full = _validate.positive_int("full_steps", full_steps)
        frac = _validate.real("fraction", fraction, low=0.0, low_open=True)
        steps = full * frac
    else:
        spe = _validate.positive_int("steps_per_epoch", steps_per_epoch)
        ep = _validate.real("epochs", epochs, low=0.0, low_open=True)
        steps = spe * ep
    return max(1, int(math.floor(steps + 0.5)))
