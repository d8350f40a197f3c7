r"""Budgeted schedules: a profile, a budget, a warmup and a sampling rate -> ``optax.Schedule``.

Counting follows optax: ``count = t`` is the number of updates already applied
(0 on the first update). With budget ``T = total_steps``, warmup ``w`` and
sampling period ``k = sample_every``:

.. math::

   \tau &= k \lfloor t / k \rfloor \ \text{for } t < T, \quad \tau = T \ \text{for } t \ge T
        \quad\text{(re-sampled every } k \text{ steps)} \\
   \eta(t) &= \eta_0 \cdot \tau / w \quad\text{for } \tau < w,
        \qquad \eta_0 = \text{end} + (\text{peak} - \text{end})\,\text{profile}(0) \\
   \eta(t) &= \text{end} + (\text{peak} - \text{end})\,\text{profile}(p),\quad
   p = \mathrm{clip}\big((\tau - w) / (T - w), 0, 1\big) \quad\text{otherwise.}

**End.** From ``t = T`` on the value is exactly the one at the end of the budget,
``end + (peak - end) * profile(1)``: exactly ``end_value`` for every profile that
decays to 0 (``linear``, ``rex``, ``cosine``, ``polynomial``, ``wsd`` with any
decay), ``end + (peak - end) * final`` for ``exponential``, ``factor ** len(milestones)``
of the way for ``step``, the OneCycle minimum for ``one_cycle`` and ``peak`` for
``constant``; also when ``T`` is not a multiple of ``k``. ``p`` is computed exactly
(see :func:`progress`) and every built-in profile is exact at ``p = 1``.

**Warmup.** The linear warmup rises from 0 to the profile's own start ``eta_0``,
so it joins the profile without a jump. For every profile that starts at 1 this
is ``peak``; ``one_cycle`` starts at ``peak / div_factor`` (then rises to ``peak``
by itself), so a warmup in front of it leads into that value.

**Milestones.** :func:`step` (and ``budgeted(profiles.step, ...)``) compares the
integer step with integer milestone steps, as ``torch.optim.lr_scheduler.MultiStepLR``
and ``optax.piecewise_constant_schedule`` do: milestone ``m`` fires at the first
``t`` with ``t - w >= m (T - w)``, i.e. at ``t = w + ceil(m (T - w))``, with ``m``
read as the decimal number it prints as (``0.1`` is 1/10). This holds for every
budget up to ``2**31 - 1``.

``sample_every = steps_per_epoch`` is the per-epoch sampling rate of the REX paper;
``sample_every = 1`` (the default) re-samples at every step.

**Arguments.** Every schedule takes ``(total_steps, peak_value)``: the budget first,
the reverse of optax's ``(init_value, decay_steps)`` order (a float where the budget
belongs is refused with that said: ``wsd(3e-3, T)`` asks for ``wsd(T, 3e-3)``).
``total_steps``, ``warmup_steps`` and ``sample_every`` are static: Python ints (or
concrete integer arrays) up to ``2**31 - 1``, checked when the schedule is built.
For one compiled program that serves every budget, :func:`budgeted` also takes the
budget as data, a :class:`BudgetSteps` made by :func:`budget_steps` (the same
integers, the same values, traced arrays allowed). The numeric hyperparameters
(``peak_value``, ``end_value`` and the profile's knobs) may be JAX arrays: concrete
ones are checked, traced ones (``jax.vmap``, ``optax.inject_hyperparams``) pass. A
schedule takes an integer count (a Python int or an integer array, as optax passes);
a float count is refused (``TypeError``), negative counts count as 0. Values are
float32.

**Speed.** Called with a concrete count (logging, plotting), a schedule runs one
compiled function, cached per configuration (the budget, warmup, sampling rate
and profile; the numeric hyperparameters are arguments, so they do not
recompile). Called with a traced count (inside ``jax.jit`` / ``jax.vmap``), it is
traced inline. Both run the same code and give the same float32 values.

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
  Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import warnings
from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from budgetax import _registry, _schedule_functions, _validate, profiles

__all__ = ["BudgetSteps", "PeakValueWarning", "budget_steps", "budgeted", "progress",
           "steps_for_budget", *_registry.NAMES]


class PeakValueWarning(UserWarning):
    """A schedule was built without ``peak_value``: it peaks at 1.0."""


class _DefaultPeak(float):
    """The default ``peak_value`` (1.0), told apart from a 1.0 the caller passed."""

    def __repr__(self):
        return "1.0"


_PEAK = _DefaultPeak(1.0)


def _warn_default_peak(name: str, total_steps, stacklevel: int) -> None:
    if name == "budgeted":
        call, example = "budgeted(profile, T)", "budgeted(profile, T, 1e-3)"
        transform = "budgetax.scale_by_profile(profile, T)"
    else:
        call, example, transform = f"{name}(T)", f"{name}(T, 1e-3)", f"budgetax.{name}(T)"
    warnings.warn(
        f"budgetax.schedules.{call} was given no peak_value (T = {total_steps!r}), so it "
        f"peaks at 1.0: as a learning rate, 1; pass the peak learning rate, e.g. "
        f"schedules.{example}, or peak_value=1.0 for a multiplier ({transform} scales "
        f"updates by it without this warning)", PeakValueWarning, stacklevel=stacklevel + 1)


def _check_count(count):
    """The schedule's argument as an integer array or Python int (clipping is left to the caller).

    Returns ``(count, traced)``.
    """
    if isinstance(count, jax.core.Tracer | jax.Array):
        if not jnp.issubdtype(count.dtype, jnp.integer):
            raise TypeError(
                f"count must be an integer update count (t = 0, 1, ...), got an array of dtype "
                f"{count.dtype}; cast it with .astype(int) if it holds whole numbers")
        return count, isinstance(count, jax.core.Tracer)
    if isinstance(count, bool | np.bool_):
        raise TypeError(f"count must be an integer update count (t = 0, 1, ...), got {count!r}")
    if _validate._is_int(count) and not isinstance(count, np.generic):
        return count, False
    arr = np.asarray(count)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"count must be an integer update count (t = 0, 1, ...), got {count!r} (dtype "
            f"{arr.dtype}); cast it with .astype(int) if it holds whole numbers")
    return arr, False


# --------------------------------------------------------------------------- exact progress
_ROUND_BIT = 1 << 24  # 25 significant bits collected: 24 + a rounding bit


def _long_division_step(_, carry):
    rem, bits, n, big = carry
    active = bits < jnp.uint32(_ROUND_BIT)
    twice = rem * jnp.uint32(2)  # rem <= T < 2**31: no overflow
    bit = twice >= big
    rem = jnp.where(active, jnp.where(bit, twice - big, twice), rem)
    bits = jnp.where(active, bits * jnp.uint32(2) + bit.astype(jnp.uint32), bits)
    return rem, bits, n + active.astype(jnp.int32), big


def _exact_progress(count, total_steps) -> jax.Array:
    """``progress`` without argument checks (``count`` an integer array, ``total_steps`` valid).

    ``total_steps`` may be an int32 array (a budget as data, :class:`BudgetSteps`): the
    division then takes the rounds of the largest budget, ``31 + 25``; the rounds past a
    quotient's 25 significant bits change nothing, so the result is the same bits.
    """
    rounds = (total_steps.bit_length() if isinstance(total_steps, int) else 31) + 25
    big = jnp.asarray(total_steps).astype(jnp.uint32)
    c = jnp.clip(jnp.asarray(count), 0, total_steps).astype(jnp.uint32)
    zeros = jnp.zeros(c.shape, jnp.uint32)
    rem, bits, n, _ = jax.lax.fori_loop(
        0, rounds, _long_division_step,
        (c, zeros, jnp.zeros(c.shape, jnp.int32), big), unroll=True)
    mant = bits >> 1
    round_up = (bits & 1) & ((rem != 0) | (mant & 1)).astype(jnp.uint32)
    p = jnp.ldexp((mant + round_up).astype(jnp.float32), 1 - n)
    return jnp.where(c >= big, jnp.float32(1.0), jnp.where(c == 0, jnp.float32(0.0), p))


def progress(count, total_steps: int) -> jax.Array:
    r"""``min(count, T) / T`` as float32, correctly rounded, for any int32 ``count``.

    XLA's float32 division is not correctly rounded on every backend (on CPU it
    is often an ulp off, and ``T / T`` can come out below 1), which would leave
    a profile short of its end value. This computes the quotient by binary long
    division on unsigned integers (``T.bit_length() + 25`` shift-subtract steps,
    unrolled: straight-line integer code, no loop in the compiled program) and
    rounds to nearest even, so ``p`` is exact wherever
    float32 can be, e.g. ``progress(300, 1000) == float32(0.3)``, and
    ``progress(T, T) == 1``.

    Args:
      count: an integer array (or Python int) of update counts; negative values
        count as 0. Float counts raise ``TypeError``.
      total_steps: the budget ``T``, a positive Python int up to ``2**31 - 1``.

    Returns:
      A float32 array of the shape of ``count``, in [0, 1].

    Example:
      >>> float(progress(1, 3)) == float(jnp.float32(1) / jnp.float32(3))
      True

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
    """
    total_steps = _validate.static_int("total_steps", total_steps, low=1)
    count, traced = _check_count(count)
    if traced:
        return _exact_progress(count, total_steps)
    if not isinstance(count, jax.Array):
        count = np.clip(count, 0, total_steps).astype(np.int32)
    return _progress_compiled(count, total_steps)  # eagerly: one compiled function per T


_progress_compiled = jax.jit(_exact_progress, static_argnums=1)


# --------------------------------------------------------------------------- configuration
_BUILTIN = {fn: name for name, fn in profiles.PROFILES.items()}


@functools.cache
def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


@dataclasses.dataclass(frozen=True)
class _Config:
    """Everything static about a schedule: its compiled function is cached on this."""

    profile: Callable  # a built-in profile (knobs below) or the user's callable
    static_knobs: tuple  # ((name, value), ...): strings, numbers, milestone tuples
    knob_names: tuple  # names of the knobs given as arrays, passed as arguments
    total: int | None  # None: the budget is data (a BudgetSteps argument)
    warmup: int | None
    sample_every: int
    milestone_steps: tuple | None  # integer milestones of a step profile, else None
    # (with the budget as data: () for a step profile, the steps are in the argument)

    def bind(self, knob_values) -> Callable:
        if not self.knob_names and not self.static_knobs:
            return self.profile
        return functools.partial(self.profile, **dict(self.static_knobs),
                                 **dict(zip(self.knob_names, knob_values, strict=True)))


def _is_builtin(fn) -> bool:
    return any(fn is b for b in _BUILTIN)  # by identity: a user's callable may be unhashable


def _split_profile(fn):
    """``(base, static_knobs, {numeric knobs})`` for built-ins and their partials, else opaque."""
    if _is_builtin(fn):
        return fn, {}, {}
    if (isinstance(fn, functools.partial) and _is_builtin(fn.func) and not fn.args
            and set(fn.keywords) <= set(_defaults(fn.func))):
        static, numeric = {}, {}
        for k, v in fn.keywords.items():
            if isinstance(v, list | tuple):
                static[k] = tuple(v)
            elif isinstance(v, str | numbers.Number):  # Python values: identical on both paths
                static[k] = v
            else:  # arrays: arguments of the compiled function
                numeric[k] = v
        return fn.func, static, numeric
    return fn, None, {}


@functools.cache
def _check_builtin(base, static_knobs: tuple) -> None:
    """Calls a built-in profile once with these (hashable) knobs: it raises if one is bad."""
    with jax.ensure_compile_time_eval():
        base(np.float32(0.0), **dict(static_knobs))


def _milestone_steps(milestones, decay_steps: int) -> tuple[int, ...]:
    """``ceil(m * D)`` for each milestone, with ``m`` read as the decimal it prints as."""
    return tuple(math.ceil(Fraction(repr(float(m))) * decay_steps) for m in milestones)


def _evaluate(count, peak, end, knob_values, steps=None, *, cfg: _Config):
    """The schedule's value at ``count``: traced inline, or compiled once per ``cfg``.

    ``peak`` and ``end`` are cast to float32 first, so that Python floats
    (constants when traced inline, arguments when compiled) give the same values
    on both paths; the profile's Python-number knobs are static on both paths.
    ``steps``: the budget as data (a :class:`BudgetSteps`) when ``cfg.total`` is
    ``None``; the same integer arithmetic then gives the same values.
    """
    peak, end = jnp.asarray(peak, jnp.float32), jnp.asarray(end, jnp.float32)
    # Opaque to XLA on both paths: constants would otherwise be folded and re-associated
    # inline (not when they are arguments), moving values by an ulp between the two.
    peak, end = jax.lax.optimization_barrier((peak, end))
    if steps is None:
        total, warmup, milestone_steps = cfg.total, cfg.warmup, cfg.milestone_steps
    else:  # no warmup is a static fact here too: BudgetSteps.warmup is None
        total, warmup = steps.total, steps.warmup
        milestone_steps = None if cfg.milestone_steps is None else list(steps.milestones)
    has_warmup = warmup is not None and (steps is not None or warmup > 0)
    fn = cfg.bind(knob_values)
    c = jnp.clip(jnp.asarray(count), 0, total).astype(jnp.int32)
    if cfg.sample_every > 1:
        k = cfg.sample_every
        c = jnp.where(c >= total, total, (c // k) * k)
    span = peak - end
    decay_steps = total - warmup if has_warmup else total
    if milestone_steps is not None:
        knobs = {**_defaults(profiles.step), **dict(cfg.static_knobs),
                 **dict(zip(cfg.knob_names, knob_values, strict=True))}

        def decay(n):
            passed = [n >= m for m in milestone_steps]
            return end + span * profiles.step_multiplier(passed, knobs["factor"])
    else:
        def decay(n):
            return end + span * fn(_exact_progress(n, decay_steps))

    if has_warmup:
        start = end + span * fn(jnp.float32(0.0))  # warm up into the profile's own start

        def warmup_value(n):  # start * n / w, with n / w exact (integer long division)
            return start * _exact_progress(n, warmup)

        value = optax.join_schedules([warmup_value, decay], [warmup])(c)
    else:
        value = decay(c)
    return jnp.asarray(value, jnp.float32)


_compiled = jax.jit(_evaluate, static_argnames=("cfg",))


class BudgetSteps(NamedTuple):
    """A schedule's budget as data: the integers it takes from the budget, as int32 arrays.

    :func:`budget_steps` computes them on the host, exactly as :func:`budgeted`
    does from a Python int; passed to :func:`budgeted` in place of ``total_steps``
    they may be traced (arguments of a compiled program), so that one compiled
    program serves every budget, with the same values at every step. The sweep
    engine's programs take the budget this way.

    Attributes:
      total: the budget ``T`` (scalar).
      warmup: the warmup steps ``w``, ``0 < w < T`` (scalar); ``None`` for no warmup
        (a static fact: a program for budgets without warmup has no warmup branch).
      milestones: ``[k]``: the integer milestone steps of a ``step`` profile
        (``ceil(m (T - w))`` for each milestone ``m``); ``None`` for other profiles.
    """

    total: Any
    warmup: Any
    milestones: Any


def _milestones_of(base, static_knobs: dict, decay_steps: int) -> tuple[int, ...] | None:
    """The integer milestone steps of a ``step`` profile (``None`` for other profiles)."""
    if base is not profiles.step:
        return None
    ms = static_knobs.get("milestones", _defaults(profiles.step)["milestones"])
    return _milestone_steps(profiles.check_milestones(ms), decay_steps)


def _check_warmup(warmup_steps, total_steps: int) -> int:
    warmup_steps = _validate.static_int("warmup_steps", warmup_steps, low=0)
    if warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps must be < total_steps={total_steps}, got {warmup_steps!r}"
        )
    return warmup_steps


def budget_steps(profile, total_steps: int, warmup_steps: int = 0) -> BudgetSteps:
    """The budget of ``budgeted(profile, total_steps, warmup_steps=warmup_steps)`` as data.

    ``budgeted(profile, budget_steps(profile, T, w), peak, ...)`` gives the same
    float32 values as ``budgeted(profile, T, peak, warmup_steps=w, ...)`` at every
    count, traced or not.

    Example:
      >>> steps = budget_steps(profiles.step, 1000, 100)
      >>> steps.total.item(), steps.warmup.item(), steps.milestones.tolist()
      (1000, 100, [270, 540, 810])
      >>> float(budgeted(profiles.step, steps, 0.1)(700)) == float(
      ...     budgeted(profiles.step, 1000, 0.1, warmup_steps=100)(700))
      True
    """
    fn = _resolve_profile(profile)
    total_steps = _validate.static_int("total_steps", total_steps, low=1)
    warmup_steps = _check_warmup(warmup_steps, total_steps)
    base, static_knobs, _ = _split_profile(fn)
    ms = _milestones_of(base, static_knobs or {}, total_steps - warmup_steps)
    return BudgetSteps(np.int32(total_steps), np.int32(warmup_steps) if warmup_steps else None,
                       None if ms is None else np.asarray(ms, np.int32))


def _check_budget_steps(steps: BudgetSteps, milestones: int | None) -> BudgetSteps:
    """A :class:`BudgetSteps` of int32 arrays, with ``milestones`` milestones (``None``: none);
    concrete values are checked (``T >= 1``, ``0 < w < T``)."""
    want = {"total": (), "warmup": None if steps.warmup is None else (),
            "milestones": None if milestones is None else (milestones,)}
    for name, shape in want.items():
        v = getattr(steps, name)
        if shape is None and v is None:
            continue
        if v is not None and (not hasattr(v, "dtype")
                              or not jnp.issubdtype(v.dtype, jnp.integer)):
            raise TypeError(f"BudgetSteps.{name} must be an integer array (from "
                            f"schedules.budget_steps), got {v!r}")
        if shape is None or v is None or np.shape(v) != shape:
            raise ValueError(f"BudgetSteps.{name} must have shape {shape} for this profile, "
                             f"got {v!r}; make it with "
                             f"schedules.budget_steps(profile, total_steps, warmup_steps)")
    if not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(steps)):
        total = _validate.static_int("BudgetSteps.total", steps.total, low=1)
        if steps.warmup is not None:
            _check_warmup(_validate.static_int("BudgetSteps.warmup", steps.warmup), total)
    return steps


def _resolve_profile(profile) -> Callable[[jax.Array], jax.Array]:
    if isinstance(profile, str):
        return profiles.get(profile)
    if not callable(profile):
        raise TypeError(f"profile must be a callable p -> multiplier or a name, got {profile!r}")
    return profile


def budgeted(
    profile,
    total_steps: int,
    peak_value=_PEAK,
    *,
    end_value=0.0,
    warmup_steps: int = 0,
    sample_every: int = 1,
) -> optax.Schedule:
    r"""A schedule that follows ``profile`` over the budget, after an optional linear warmup.

    See the module docstring for the maths, the exact end, the warmup into
    profiles that do not start at 1 and the integer milestones.

    Args:
      profile: a function ``p -> multiplier`` (e.g. ``profiles.rex``, or a
        ``functools.partial`` of one with its knobs), or a profile name.
      total_steps: the budget ``T``, a positive Python int up to ``2**31 - 1``; or
        the budget as data, a :class:`BudgetSteps` from :func:`budget_steps` (its
        arrays may be traced: one compiled program for every budget, the same
        values), which carries the warmup (``warmup_steps`` stays 0).
      peak_value: the learning rate at the end of warmup (a float, or a JAX
        scalar so that sweeps can vmap over it). Give it: without it the schedule
        peaks at 1.0 and a :class:`PeakValueWarning` says so (pass ``1.0`` for a
        multiplier).
      end_value: the value the profile anneals to at the budget (float or JAX scalar).
      warmup_steps: linear warmup from 0 over the first ``warmup_steps`` steps,
        a Python int with ``0 <= warmup_steps < total_steps``.
      sample_every: re-sample the learning rate every this many steps, a Python
        int in ``[1, 2**31 - 1]``.

    Returns:
      An ``optax.Schedule``: integer ``count -> learning rate`` (float32).

    Example:
      >>> import optax
      >>> sched = budgeted(profiles.linear, total_steps=100, peak_value=0.1)
      >>> round(float(sched(50)), 6)
      0.05
      >>> float(sched(100))
      0.0
      >>> tx = optax.sgd(sched)

    References:
      Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
      Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
    """
    data = isinstance(total_steps, BudgetSteps)
    if not data:
        _check_order("budgeted", total_steps, peak_value)
    default_peak = peak_value is _PEAK
    if default_peak:
        peak_value = 1.0
    fn = _resolve_profile(profile)
    steps = None
    if data:
        if not (_validate._is_int(warmup_steps) and warmup_steps == 0):
            raise ValueError(
                f"warmup_steps must be 0 when total_steps is a BudgetSteps (its warmup is "
                f"BudgetSteps.warmup), got {warmup_steps!r}")
        steps, total_steps, warmup_steps = total_steps, None, None
    else:
        total_steps = _validate.static_int("total_steps", total_steps, low=1)
        warmup_steps = _check_warmup(warmup_steps, total_steps)
    sample_every = _validate.static_int("sample_every", sample_every, low=1)
    peak_value = _validate.real_or_array("peak_value", peak_value)
    end_value = _validate.real_or_array("end_value", end_value)
    base, static_knobs, numeric = _split_profile(fn)
    # Validates the profile's knobs now, not at trace time (a traced result means traced
    # knobs inside an opaque callable); built-ins with Python knobs are checked once.
    if static_knobs is not None and not numeric:
        _check_builtin(base, tuple(sorted(static_knobs.items())))
        probe = None
    else:
        probe = fn(jnp.float32(0.0))
    if static_knobs is None:  # an opaque callable: its knobs stay inside it
        static_knobs = {}
    if data:
        ms = _milestones_of(base, static_knobs, 1)
        steps = _check_budget_steps(steps, None if ms is None else len(ms))
        milestone_steps = None if ms is None else ()  # the steps are in the argument
    else:
        milestone_steps = _milestones_of(base, static_knobs, total_steps - warmup_steps)
    cfg = _Config(base, tuple(sorted(static_knobs.items())), tuple(numeric), total_steps,
                  warmup_steps, sample_every, milestone_steps)
    args = (peak_value, end_value, tuple(numeric.values()), steps)
    concrete = not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(args)) \
        and not isinstance(probe, jax.core.Tracer)
    if data and concrete:
        total_steps = int(np.asarray(steps.total))  # for clipping a concrete count
    fast = None
    if concrete:
        # Python numbers as float32 scalars: one compiled function whatever the peak and end
        fast_args = tuple(np.float32(a) if isinstance(a, numbers.Number) else a
                          for a in args[:2]) + args[2:]
        try:
            hash(cfg)
            fast = functools.partial(_compiled, cfg=cfg)
        except TypeError:  # an unhashable callable profile: compile per schedule
            fast = jax.jit(functools.partial(_evaluate, cfg=cfg))

    def schedule(count):
        count, traced = _check_count(count)
        if fast is None or traced:
            return _evaluate(count, *args, cfg=cfg)
        if isinstance(count, int):
            count = np.int32(min(max(count, 0), total_steps))
        elif isinstance(count, np.ndarray):
            count = np.clip(count, 0, total_steps).astype(np.int32)
        return fast(count, *fast_args)

    if default_peak:  # once the arguments are valid
        _warn_default_peak("budgeted", steps.total if total_steps is None else total_steps,
                           stacklevel=2)
    return schedule


def _check_order(name: str, total_steps, peak_value) -> None:
    """A ``total_steps`` that is not an int, said in terms of optax's argument order.

    budgetax schedules take ``(total_steps, peak_value)``, the reverse of optax's
    ``(init_value, decay_steps)``: ``wsd(3e-3, T)`` is that habit, and is told so.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, float | np.floating):
        return
    if float(total_steps).is_integer():
        return
    call = f"{name}(total_steps, peak_value)"
    if (_validate._is_int(peak_value) and not isinstance(peak_value, bool)
            and int(peak_value) > 1):
        raise TypeError(
            f"total_steps must be a positive int, got {total_steps!r}, and peak_value is the "
            f"int {peak_value!r}: the arguments look swapped. budgetax schedules take {call}, "
            f"the reverse of optax's (value, steps) order: {name}({peak_value!r}, "
            f"{total_steps!r})")
    raise TypeError(
        f"total_steps must be a positive int, got {total_steps!r}: budgetax schedules take "
        f"{call}, the reverse of optax's (value, steps) order, e.g. {name}(1000, "
        f"{total_steps!r})")


def _make(profile_fn, total_steps, peak_value, end_value, warmup_steps, sample_every, **knobs):
    _check_order(profile_fn.__name__, total_steps, peak_value)
    default_peak = peak_value is _PEAK
    prof = functools.partial(profile_fn, **knobs) if knobs else profile_fn
    schedule = budgeted(prof, total_steps, 1.0 if default_peak else peak_value,
                        end_value=end_value, warmup_steps=warmup_steps,
                        sample_every=sample_every)
    if default_peak:  # once the arguments are valid; at the caller of the shortcut
        _warn_default_peak(profile_fn.__name__, total_steps, stacklevel=3)
    return schedule


# schedules.linear, schedules.rex, ...: one per registered schedule, written out with
# explicit signatures and docstrings by budgetax._schedule_functions
globals().update({entry.name: _schedule_functions.define(entry, globals())
                  for entry in _registry.SCHEDULES})


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
