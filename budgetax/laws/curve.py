"""``Curve``: one run as a loss law sees it (per-update learning rates and logged losses)."""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

__all__ = ["Curve"]


def _array(name, value, ndim=1):
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"{name} must be an array, got {type(value).__name__}: {err}") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype} ({value!r:.80})")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class Curve:
    """A run's per-update learning rates and its logged ``(step, loss)`` points.

    ``lrs[t]`` is the learning rate of update ``t`` (an optax schedule evaluated on
    ``0..T-1`` gives it); ``steps[i]`` indexes ``lrs`` and ``loss[i]`` is the loss logged
    there, modelled by the laws from ``lrs[0..steps[i]]`` (the convention of the
    Multi-Power Law's reference code). A training loss measured on the minibatch of update
    ``t`` (before that update is applied) sits at step ``t - 1``: see :meth:`from_schedule`.

    Args:
      lrs: ``[T]`` non-negative, finite learning rates.
      steps: ``[n]`` strictly increasing integer indices into ``lrs``.
      loss: ``[n]`` positive, finite losses (the laws fit their logarithm).
      name: an optional label, used in fit reports.

    Raises:
      TypeError, ValueError: naming the argument, for non-numeric or non-finite values,
        lengths that disagree, ``steps`` out of ``[0, len(lrs))`` or not increasing, and
        non-positive losses.

    Example:
      >>> import numpy as np
      >>> from budgetax import laws
      >>> c = laws.Curve(lrs=np.full(100, 0.1), steps=[9, 49, 99], loss=[2.0, 1.5, 1.2])
      >>> c.total_steps
      100
    """

    lrs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    name: str = ""

    def __post_init__(self):
        lrs = _array("lrs", self.lrs).astype(np.float64)
        steps = _array("steps", self.steps)
        loss = _array("loss", self.loss).astype(np.float64)
        if steps.dtype.kind == "f":
            if not np.all(np.isfinite(steps)) or np.any(steps != np.round(steps)):
                raise ValueError(f"steps must be integer step indices, got {self.steps!r:.80}")
        steps = steps.astype(np.int64)
        if lrs.shape[0] == 0:
            raise ValueError("lrs must hold at least one learning rate, got an empty array")
        if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
            bad = np.flatnonzero(~np.isfinite(lrs) | (lrs < 0))[0]
            raise ValueError(f"lrs must be finite and >= 0, got lrs[{bad}] = {lrs[bad]!r}")
        if steps.shape != loss.shape:
            raise ValueError(f"steps and loss must have the same length, got {steps.shape[0]} "
                             f"steps and {loss.shape[0]} losses")
        if steps.shape[0] == 0:
            raise ValueError("steps must hold at least one logged step, got none")
        if np.any(np.diff(steps) <= 0):
            raise ValueError(f"steps must be strictly increasing, got {steps.tolist()!r:.80}")
        if steps[0] < 0 or steps[-1] >= lrs.shape[0]:
            raise ValueError(
                f"steps must index lrs (0 <= step < len(lrs) = {lrs.shape[0]}), got steps from "
                f"{steps[0]} to {steps[-1]}: lrs is shorter than the logged steps")
        if not np.all(np.isfinite(loss)) or np.any(loss <= 0):
            bad = np.flatnonzero(~np.isfinite(loss) | (loss <= 0))[0]
            raise ValueError(f"loss must be finite and > 0, got loss[{bad}] = {loss[bad]!r} "
                             f"(at step {steps[bad]})")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {self.name!r}")
        if np.cumsum(lrs)[steps[0]] <= 0:
            raise ValueError(f"the learning rates up to the first logged step ({steps[0]}) sum "
                             "to 0: the laws need some training before the first logged loss")
        for field, value in (("lrs", lrs), ("steps", steps), ("loss", loss)):
            value.setflags(write=False)
            object.__setattr__(self, field, value)

    @property
    def total_steps(self) -> int:
        """The number of updates ``T`` the learning rates cover."""
        return int(self.lrs.shape[0])

    @classmethod
    def from_schedule(cls, schedule, total_steps, steps, loss, *, name: str = "",
                      measured_before_update: bool = False) -> Curve:
        """A curve whose learning rates are ``schedule(0..total_steps-1)`` (any optax schedule).

        Args:
          schedule: an ``optax.Schedule`` (``count -> value``), or a number for a constant rate.
          total_steps: ``T``, the number of updates.
          steps: the logged steps (indices into the learning rates, see the class docstring).
          loss: the losses logged at ``steps``.
          name: an optional label.
          measured_before_update: the losses are minibatch losses measured by update
            ``steps[i]`` before it was applied (a training loop's logged loss): they are
            placed at ``steps[i] - 1``.

        Example:
          >>> import optax
          >>> from budgetax import laws
          >>> c = laws.Curve.from_schedule(optax.cosine_decay_schedule(0.1, 100), 100,
          ...                              steps=[9, 99], loss=[2.0, 1.0])
          >>> round(float(c.lrs[0]), 6)
          0.1
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) \
                or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        lrs = schedule_values(schedule, int(total_steps))
        steps = _array("steps", steps)
        if measured_before_update:
            steps = steps - 1
        return cls(lrs=lrs, steps=steps, loss=loss, name=name)


    @classmethod
    def from_training(cls, lr, loss, *, every: int = 50, name: str = "") -> Curve:
        """A curve from a training run's per-update records (as a sweep stores them).

        ``lr[t]`` is the learning rate update ``t`` used and ``loss[t]`` the minibatch loss
        it measured before it was applied (the ``lr`` and ``loss`` training curves of
        :func:`budgetax.training.train` and of a sweep's store). Minibatch losses are noisy:
        they are averaged over windows of ``every`` updates, and the window of updates
        ``a..a+every-1`` is placed at step :func:`window_step` ``= a + every // 2 - 1``
        (its middle update measured the parameters after updates ``0..a + every // 2 - 1``).
        The first window (it holds the loss before any training) and a trailing partial
        window are dropped.

        Args:
          lr: ``[T]`` learning rates.
          loss: ``[T]`` minibatch losses (finite: a diverged run cannot be a curve).
          every: updates per window, an int in ``[2, T]``.
          name: an optional label.

        Example:
          >>> import numpy as np
          >>> from budgetax import laws
          >>> c = laws.Curve.from_training(np.full(100, 0.1), np.linspace(2, 1, 100), every=25)
          >>> c.steps.tolist()
          [36, 61, 86]
        """
        lr = _array("lr", lr).astype(np.float64)
        loss = _array("loss", loss).astype(np.float64)
        if lr.shape != loss.shape:
            raise ValueError(f"lr and loss must have the same length, got {lr.shape[0]} and "
                             f"{loss.shape[0]}")
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) \
                or not 2 <= every <= lr.shape[0] // 2:
            raise ValueError(f"every must be an int in [2, len(lr) // 2 = {lr.shape[0] // 2}] "
                             f"(two windows at least), got {every!r}")
        windows = lr.shape[0] // every
        means = loss[: windows * every].reshape(windows, every).mean(axis=1)[1:]
        starts = np.arange(1, windows) * every
        return cls(lrs=lr, steps=window_step(starts, every), loss=means, name=name)


def window_step(start, every):
    """The step a window of ``every`` minibatch losses from update ``start`` stands for."""
    return start + every // 2 - 1


def schedule_values(schedule, total_steps: int) -> np.ndarray:
    """``schedule(0..total_steps-1)`` as float64 (a number is a constant rate)."""
    if isinstance(schedule, numbers.Real) and not isinstance(schedule, bool):
        return np.full(total_steps, float(schedule))
    if not callable(schedule):
        raise TypeError(f"schedule must be an optax schedule (count -> value) or a number, "
                        f"got {schedule!r}")
    import jax.numpy as jnp

    values = np.asarray(schedule(jnp.arange(total_steps, dtype=jnp.int32)), dtype=np.float64)
    if values.shape != (total_steps,):
        values = np.broadcast_to(values, (total_steps,)).copy()
    return values
