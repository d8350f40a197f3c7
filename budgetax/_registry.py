"""The one list of budgetax's schedules: every name is written here and nowhere else.

Each schedule is one :class:`Schedule` in :data:`SCHEDULES`, in the order a sweep
trains them. From this list (and the profile functions of :mod:`budgetax.profiles`,
whose signatures hold the knobs' defaults) derive:

- ``profiles.PROFILES``, ``profiles.get`` and ``profiles.__all__``;
- the schedule functions ``budgetax.schedules.<name>(total_steps, peak_value, ...)``,
  generated with explicit signatures (the profile's knobs as keywords, with the
  profile's defaults) and docstrings, and ``schedules.__all__``;
- the transforms ``budgetax.transforms.schedule.<name>`` / ``budgetax.<name>`` and
  their exports in ``budgetax.__all__``;
- the choices of ``OptimizerSpec.schedule`` / ``budgetax train --schedule``
  (``training.optim.SCHEDULES``, these names and ``"autowu"``) and the default
  schedules of a sweep (``training.sweep.spec.DEFAULT_SCHEDULES``).

This module imports nothing heavy: ``import budgetax`` reads it to list its
exports without importing JAX.
"""

from __future__ import annotations

import dataclasses

__all__ = ["DEFAULT_SWEEP", "NAMES", "SCHEDULES", "Schedule"]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One schedule: its name and what is said about it beyond its profile.

    Attributes:
      name: the name of the profile function in :mod:`budgetax.profiles`, of the
        schedule in :mod:`budgetax.schedules` and of the transform ``budgetax.<name>``.
      default_sweep: whether a sweep trains it when no schedules are given.
      note: what the schedule equals elsewhere (optax, HF transformers, PyTorch)
        and its conventions, for the schedule's docstring (reStructuredText).

    The rest is read off the profile function of that name: its knobs and their
    defaults from its signature (written there once); the knobs whose default is
    not a number (``wsd``'s ``decay``, ``step``'s ``milestones``) choose a code
    path, so they are Python values, never arrays.
    """

    name: str
    default_sweep: bool = True
    note: str = ""


SCHEDULES: tuple[Schedule, ...] = (
    Schedule("linear", note="Equals ``optax.linear_schedule(peak, end, T)``."),
    Schedule("rex", note="``beta = 0.5`` is the REX paper's curve; ``beta = 0`` is linear."),
    Schedule("cosine", note=(
        "Equals ``optax.cosine_decay_schedule(peak, T, alpha=end / peak)`` (with a warmup: "
        "``optax.warmup_cosine_decay_schedule(0, peak, w, T, end)``).")),
    Schedule("step", note=(
        "Milestone ``m`` fires at the integer step ``w + ceil(m (T - w))``, with ``m`` read "
        "as the decimal it prints as (0.1 is 1/10), compared as integers (as "
        "``torch.optim.lr_scheduler.MultiStepLR`` and "
        "``optax.piecewise_constant_schedule``): on time for every budget up to "
        "``2**31 - 1``.")),
    Schedule("exponential", note=(
        "It reaches ``final`` of the way from ``end_value`` to the peak at the budget.")),
    Schedule("constant", note="The peak (to float32 rounding) after the warmup."),
    Schedule("wsd", note=(
        "When ``decay_fraction * (T - w)`` is an integer this is HF transformers' "
        "``get_wsd_schedule`` with ``num_decay_steps = decay_fraction * (T - w)``, "
        "``min_lr_ratio = end / peak`` (from ``end = 0`` warmups agree too) and "
        "``decay_type`` \"linear\", \"cosine\" or \"1-sqrt\" (``decay=\"1-sqrt\"``, also "
        "named ``\"sqrt\"``).")),
    Schedule("one_cycle", note=(
        "As optax's ``cosine_onecycle_schedule(T, peak)`` (which this equals when "
        "``pct_start * T`` is an integer), the peak is at ``t = pct_start * T`` and the "
        "minimum ``peak / (div_factor * final_div_factor)`` at ``t = T``; PyTorch's "
        "``OneCycleLR(total_steps=T)`` peaks at ``t = pct_start * T - 1`` and reaches its "
        "minimum at ``t = T - 1``. With ``warmup_steps = w`` the linear warmup rises to "
        "``peak / div_factor`` (OneCycle's own start) and the cycle spans the ``T - w`` "
        "steps after it.")),
    Schedule("polynomial", default_sweep=False, note=(
        "Equals ``optax.polynomial_schedule(peak, end, power, T)``.")),
)

NAMES: tuple[str, ...] = tuple(s.name for s in SCHEDULES)
DEFAULT_SWEEP: tuple[str, ...] = tuple(s.name for s in SCHEDULES if s.default_sweep)
