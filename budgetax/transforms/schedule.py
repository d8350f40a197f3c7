"""Budget schedules as optax transforms: multiply the incoming updates by a profile.

Each factory returns ``optax.scale_by_schedule(schedule)`` for a budgeted
schedule with a peak of 1, so the state is optax's ``ScaleByScheduleState``
(a NamedTuple holding an int32 ``count``, advanced with ``optax.safe_increment``).

They scale what they receive. In front of plain SGD the result is exactly SGD
with the budgeted learning rate::

    optax.chain(budgetax.rex(T), optax.sgd(lr))      # == optax.sgd(schedules.rex(T, lr))

With an adaptive optimizer, put the transform after the adaptive direction::

    optax.chain(optax.scale_by_adam(), budgetax.rex(T), optax.scale(-lr))
    # == optax.adam(schedules.rex(T, lr))

**Trap: the order matters and cannot be checked.**
``optax.chain(budgetax.rex(T), optax.adam(lr))`` is accepted but is *not* a
schedule: Adam (like AdamW, LAMB, Adagrad, RMSprop and every optimizer that
normalises the gradient) largely divides the multiplier out again, so it trains
at about the constant ``lr`` (mid-budget, where REX is at 2/3 of the peak, Adam's
update is still within a few percent of its constant-lr size). This cannot be
detected, so budgetax does not warn: a transform does not see what
``optax.chain`` puts after it, and a chain does not expose its parts. Put the
multiplier after the normalisation, as above, or give the optimizer the schedule
(``optax.adam(budgetax.schedules.rex(T, lr))``).
"""

from __future__ import annotations

import inspect

import optax

from budgetax import _registry, schedules

__all__ = ["scale_by_profile", *_registry.NAMES]


def scale_by_profile(profile, total_steps: int, *, end_value=0.0, warmup_steps: int = 0,
                     sample_every: int = 1) -> optax.GradientTransformation:
    """Multiplies updates by ``schedules.budgeted(profile, total_steps, 1.0, ...)(count)``.

    Put it after an adaptive optimizer's normalisation (``optax.chain(
    optax.scale_by_adam(), scale_by_profile(...), optax.scale(-lr))``): in front of
    ``optax.adam`` it is largely divided out again, and that cannot be detected (see the
    module docstring).

    Args:
      profile: a profile function ``p -> multiplier`` or a profile name.
      total_steps: the budget ``T`` (a static positive Python int up to ``2**31 - 1``).
      end_value: the multiplier at the end of the budget.
      warmup_steps: linear warmup of the multiplier from 0 over these steps.
      sample_every: re-sample the multiplier every this many steps.

    Returns:
      An ``optax.GradientTransformation`` with state ``optax.ScaleByScheduleState``.

    Example:
      >>> import optax, budgetax
      >>> tx = optax.chain(budgetax.scale_by_profile("cosine", 1000), optax.sgd(0.1))

    References:
      Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
    """
    return optax.scale_by_schedule(
        schedules.budgeted(profile, total_steps, 1.0, end_value=end_value,
                           warmup_steps=warmup_steps, sample_every=sample_every))


def _as_transform(schedule_factory):
    def transform(total_steps: int, *, end_value=0.0, warmup_steps: int = 0,
                  sample_every: int = 1, **knobs) -> optax.GradientTransformation:
        return optax.scale_by_schedule(
            schedule_factory(total_steps, 1.0, end_value=end_value, warmup_steps=warmup_steps,
                             sample_every=sample_every, **knobs))

    name = schedule_factory.__name__
    transform.__name__ = transform.__qualname__ = name
    sig = inspect.signature(schedule_factory)
    transform.__signature__ = sig.replace(
        parameters=[p for p in sig.parameters.values() if p.name != "peak_value"])
    transform.__doc__ = (
        f"Multiplies updates by the {name} multiplier at the current count.\n\n"
        f"``budgetax.{name}(total_steps, *, end_value=0.0, warmup_steps=0, sample_every=1, "
        f"**knobs)`` is ``optax.scale_by_schedule(budgetax.schedules.{name}(total_steps, 1.0, "
        f"...))``: the multiplier is ``end + (1 - end) * profile(p)`` after a linear warmup "
        f"(see :mod:`budgetax.schedules`); the profile's knobs (see "
        f":func:`budgetax.profiles.{name}`) are keywords.\n\n"
        f"It scales what it receives: in front of plain SGD it is the schedule, but "
        f"``optax.chain(budgetax.{name}(T), optax.adam(lr))`` is not (Adam's "
        f"normalisation largely divides it out, and that cannot be detected); put it after the "
        f"normalisation: ``optax.chain(optax.scale_by_adam(), budgetax.{name}(T), "
        f"optax.scale(-lr))``.\n\n"
        f"Args:\n"
        f"  total_steps: the budget ``T``, a static Python int up to ``2**31 - 1``.\n"
        f"  end_value: the multiplier at the end of the budget (float or JAX scalar).\n"
        f"  warmup_steps: linear warmup of the multiplier over these steps (static int).\n"
        f"  sample_every: re-sample the multiplier every this many steps (static int).\n"
        f"  **knobs: the profile's knobs; numeric ones may be JAX arrays (with\n"
        f"    ``optax.inject_hyperparams`` list ``total_steps``, ``warmup_steps`` and\n"
        f"    ``sample_every`` in ``static_args``).\n\n"
        f"Returns:\n"
        f"  An ``optax.GradientTransformation`` with state ``optax.ScaleByScheduleState``.\n\n"
        f"Example:\n"
        f"  >>> import optax, budgetax\n"
        f"  >>> tx = optax.chain(budgetax.{name}(1000), optax.sgd(0.1))\n\n"
        f"References:\n"
        f"  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.\n"
    )
    return transform


# budgetax.linear, budgetax.rex, ...: one per registered schedule
globals().update({name: _as_transform(getattr(schedules, name)) for name in _registry.NAMES})
