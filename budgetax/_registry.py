"""The one list of budgetax's schedules: every name is written here and nowhere else.

A schedule is declared by its name in :data:`DEFAULT_SWEEP` (the schedules a sweep
trains when none are given, in that order) or :data:`OTHERS`, and by the profile
function of that name in :mod:`budgetax.profiles`, whose signature holds the
knobs' defaults and whose docstring's ``Schedule:`` section says what the
schedule equals elsewhere. :data:`SCHEDULES` holds one :class:`Schedule` per name.
From them derive:

- ``profiles.PROFILES``, ``profiles.get`` and ``profiles.__all__``;
- the schedule functions ``budgetax.schedules.<name>(total_steps, peak_value, ...)``,
  generated with explicit signatures (the profile's knobs as keywords, with the
  profile's defaults) and docstrings, and ``schedules.__all__``;
- the transforms ``budgetax.transforms.schedule.<name>`` / ``budgetax.<name>`` and
  their exports in ``budgetax.__all__``;
- the choices of ``OptimizerSpec.schedule`` / ``budgetax train --schedule``
  (``training.optim.SCHEDULES``: these names and ``"autowu"``) and the default
  schedules of a sweep (``training.sweep.spec.DEFAULT_SCHEDULES``).

The two tuples are literals, and this module imports nothing heavy: ``import
budgetax`` reads it to list its exports without importing JAX, and ``budgetax
sweep --help`` reads the default schedules from its source.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Callable

__all__ = ["DEFAULT_SWEEP", "NAMES", "OTHERS", "SCHEDULES", "Schedule"]

DEFAULT_SWEEP = ("linear", "rex", "cosine", "step", "exponential", "constant", "wsd",
                 "one_cycle")
OTHERS = ("polynomial",)  # registered, but not trained by a sweep unless named
NAMES = DEFAULT_SWEEP + OTHERS


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One registered schedule; everything but its name is read off its profile.

    Attributes:
      name: the name of the profile function in :mod:`budgetax.profiles`, of the
        schedule in :mod:`budgetax.schedules` and of the transform ``budgetax.<name>``.
      default_sweep: whether a sweep trains it when no schedules are given.
    """

    name: str
    default_sweep: bool

    @property
    def profile(self) -> Callable:
        """The profile function ``budgetax.profiles.<name>``."""
        from budgetax import profiles  # imports JAX: only when asked

        return getattr(profiles, self.name)

    @property
    def knobs(self) -> dict:
        """The profile's knobs and their defaults, in the order of its signature."""
        return {k: p.default for k, p in inspect.signature(self.profile).parameters.items()
                if p.default is not inspect.Parameter.empty}

    @property
    def branch_knobs(self) -> tuple[str, ...]:
        """The knobs that choose a code path (``wsd``'s ``decay``, ``step``'s ``milestones``).

        Their defaults are not numbers; they must be Python values (never arrays) and
        are static wherever the schedule is compiled. The other knobs may be JAX
        arrays (traced under ``jax.vmap`` or ``optax.inject_hyperparams``).
        """
        return tuple(k for k, v in self.knobs.items()
                     if not isinstance(v, numbers.Number) or isinstance(v, bool))

    @property
    def note(self) -> str:
        """The ``Schedule:`` section of the profile's docstring, on one line."""
        lines = inspect.cleandoc(self.profile.__doc__).splitlines()
        start = lines.index("Schedule:") + 1
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" ")),
                   len(lines))
        return " ".join(line.strip() for line in lines[start:end] if line.strip())


SCHEDULES: tuple[Schedule, ...] = tuple(Schedule(name, name in DEFAULT_SWEEP) for name in NAMES)
