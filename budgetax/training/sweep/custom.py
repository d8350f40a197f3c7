"""A sweep schedule of the user's own: :class:`CustomSchedule`.

A sweep's built-in schedules are the registered profiles (:mod:`budgetax.profiles`).
A :class:`CustomSchedule` adds one under its own name: a profile ``p -> multiplier``
written with ``jax.numpy`` (a 1-sqrt cooldown, a shape from a paper), or a
sequence of per-step multipliers (the law-optimised schedule of
:func:`budgetax.laws.optimize_schedule`, any shape computed elsewhere). It is
trained as the built-ins are: the same warmup, end value and sampling rate
(:func:`budgetax.schedules.budgeted`: ``lr = end + (peak - end) * multiplier(p)``,
``p`` the progress after warmup), in the same compiled programs, under every
strategy; it is resumed and reported by its name.

**Identity.** The store records each custom schedule's name and, per budget ``T``
of the sweep, a digest of its float32 multipliers at ``p = t / T``, ``t = 0..T``
(:meth:`CustomSchedule.digest`). Resuming with a schedule of the same name whose
values differ at a stored budget is refused (its runs were trained with the old
values); adding budgets, or custom schedules, extends the sweep as adding
built-in schedules does.

**Multipliers.** ``n`` values are the multipliers at ``p = k / (n - 1)``,
``k = 0..n-1``, joined linearly in between: ``T + 1`` values give a budget of ``T``
steps its values at every step (up to float32 rounding of the interpolation); at
other budgets they are resampled.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from budgetax import _validate

__all__ = ["CustomSchedule"]


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"CustomSchedule name must be a str, got {name!r}")
    if not name.isidentifier():
        raise ValueError(f"CustomSchedule name must be a Python identifier (it names runs and "
                         f"the command line's --schedules), got {name!r}")
    return name


@dataclasses.dataclass(frozen=True, eq=False)
class CustomSchedule:
    """A schedule of the user's own, swept under ``name``.

    Attributes:
      name: the schedule's name in the sweep (``SweepSpec.schedules``, run ids, the
        report); a Python identifier that is not a registered profile's name.
      profile: a function ``p -> multiplier`` of the progress ``p`` in ``[0, 1]``
        (a float32 scalar; write it with ``jax.numpy``: it is traced inside the
        training program), or a sequence of at least 2 per-step multipliers
        (see the module docstring). Multipliers must be finite and ``>= 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> one_sqrt = CustomSchedule("one_sqrt", lambda p: 1 - jnp.sqrt(p))
      >>> [round(float(m), 4) for m in one_sqrt.multipliers(4)]
      [1.0, 0.5, 0.2929, 0.134, 0.0]
    """

    name: str
    profile: Callable | Sequence[float]
    _digests: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        _check_name(self.name)
        prof = self.profile
        if callable(prof):
            return
        if isinstance(prof, str | bytes) or not hasattr(prof, "__len__"):
            raise TypeError(f"CustomSchedule {self.name!r}: profile must be a function "
                            f"p -> multiplier or a sequence of multipliers, got {prof!r}")
        try:
            values = np.asarray(prof, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"CustomSchedule {self.name!r}: profile must be a sequence of "
                            f"numbers, got {prof!r}") from None
        if values.ndim != 1 or values.size < 2:
            raise ValueError(f"CustomSchedule {self.name!r}: profile must hold at least 2 "
                             f"multipliers in one dimension, got shape {values.shape}")
        _check_values(self.name, values, "profile")
        object.__setattr__(self, "profile", tuple(float(v) for v in values))

    def __call__(self, p):
        """The multiplier at progress ``p`` (traceable)."""
        if callable(self.profile):
            return self.profile(p)
        values = jnp.asarray(self.profile, jnp.float32)
        grid = jnp.linspace(0.0, 1.0, values.shape[0], dtype=jnp.float32)
        return jnp.interp(p, grid, values)

    def __repr__(self) -> str:
        what = (getattr(self.profile, "__name__", "function") if callable(self.profile)
                else f"{len(self.profile)} multipliers")
        return f"CustomSchedule({self.name!r}, {what})"

    def multipliers(self, budget: int) -> np.ndarray:
        """The float32 multipliers at ``p = t / budget``, ``t = 0..budget`` (checked)."""
        p = (np.arange(budget + 1, dtype=np.float64) / budget).astype(np.float32)
        try:
            values = np.asarray(jax.jit(jax.vmap(self))(jnp.asarray(p)))
        except jax.errors.ConcretizationTypeError:
            raise TypeError(f"CustomSchedule {self.name!r}: its profile is traced by JAX (it "
                            f"runs inside the training program), so it cannot branch on p "
                            f"with Python's if/min/max: use jnp.where, jnp.minimum, ...") \
                from None
        except Exception as err:  # noqa: BLE001 - the user's function, with context
            raise TypeError(f"CustomSchedule {self.name!r}: its profile failed on p, a float32 "
                            f"scalar in [0, 1] ({type(err).__name__}: {err}); a profile is a "
                            f"function p -> multiplier") from None
        if values.shape != (budget + 1,):
            raise ValueError(f"CustomSchedule {self.name!r}: its profile must return one "
                             f"number per p (a scalar), got shape {values.shape[1:]}")
        _check_values(self.name, values, f"profile at budget {budget}")
        return values.astype(np.float32)

    def digest(self, budget: int) -> str:
        """The SHA-256 of the float32 multipliers at a budget, its first 16 hex digits (the
        store's identity of the schedule at that budget)."""
        if budget not in self._digests:
            values = self.multipliers(budget)
            self._digests[budget] = hashlib.sha256(values.tobytes()).hexdigest()[:16]
        return self._digests[budget]

    @classmethod
    def from_schedule(cls, name: str, schedule, total_steps: int, peak_lr: float, *,
                      warmup_steps: int = 0, end_lr: float = 0.0) -> CustomSchedule:
        """The multipliers of an lr schedule after its warmup, as a sweep schedule.

        ``schedule(t)`` for ``t = warmup_steps..total_steps`` mapped to
        ``(lr - end_lr) / (peak_lr - end_lr)``: e.g. the schedule of
        :func:`budgetax.laws.optimize_schedule` with the same ``total_steps``,
        ``peak_lr``, ``warmup_steps`` and ``end_lr``. A sweep with the same peak, end
        and warmup at that budget trains it at those values.
        """
        total_steps = _validate.positive_int("total_steps", total_steps)
        warmup_steps = _validate.nonnegative_int("warmup_steps", warmup_steps)
        if warmup_steps >= total_steps - 1:
            raise ValueError(f"warmup_steps must be < total_steps - 1 = {total_steps - 1}, "
                             f"got {warmup_steps!r}")
        end_lr = _validate.real("end_lr", end_lr)
        peak_lr = _validate.real("peak_lr", peak_lr, low=end_lr, low_open=True)
        steps = jnp.arange(warmup_steps, total_steps + 1, dtype=jnp.int32)
        lrs = np.asarray(jax.vmap(schedule)(steps), np.float64)
        return cls(name, np.clip((lrs - end_lr) / (peak_lr - end_lr), 0.0, None))


def _check_values(name, values, what) -> None:
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise ValueError(f"CustomSchedule {name!r}: {what} must be finite and >= 0, got "
                         f"{float(values[bad[0]])!r} at index {int(bad[0])}")
