r"""The schedule a fitted law predicts to be best: ``optimize_schedule``.

After an optional linear warmup, the learning rate is ``eta_w = peak`` and then
``eta_t = peak - (d_{w+1} + ... + d_t)`` with decrements ``d >= 0`` (the paper's
parametrisation), so the schedule is non-increasing by construction. The decrements are
``(peak - floor)`` times the shares of a softmax over ``T - w - 1`` free numbers (plus one
slack share when the end value is free), so they are non-negative and the schedule stays
``>= floor``; with ``end_lr`` given the shares sum to one and the last update's rate is
``end_lr`` exactly. The predicted loss after the last update (step ``T - 1``) is minimised
by L-BFGS (SciPy) on its exact gradient, in float64, from a cosine and a wsd start (the
better result is kept).

References:
  Luo, Wen, Hu, et al. A Multi-Power Law for Loss Curve Prediction Across Learning Rate
  Schedules. ICLR 2025. arXiv:2503.12811 (section 5: optimising the schedule).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from budgetax import _validate, profiles
from budgetax.laws import forms

__all__ = ["LawWarning", "OptimizedSchedule", "optimize_schedule"]


class LawWarning(UserWarning):
    """A fitted law predicts what no loss can be (a loss <= 0 at the optimum)."""


@dataclasses.dataclass(frozen=True, eq=False)
class OptimizedSchedule:
    """An optax-compatible schedule (``count -> lr``) optimised under a fitted law.

    Attributes:
      lrs: ``[T]`` float64 learning rate of each update ``0..T-1``.
      end_value: the value for every ``count >= T``.
      predicted_final_loss: the law's loss after the last update.
      baselines: the law's predicted final loss of ``cosine``, ``linear`` and ``wsd`` with
        the same peak and warmup, decaying to ``end_lr`` (to 0 when the end is free).
      converged: whether L-BFGS met its tolerance (``False``: it stopped at ``max_iter``
        or on a line-search failure; the schedule is still the best it found).
    """

    lrs: np.ndarray
    end_value: float
    predicted_final_loss: float
    baselines: dict
    converged: bool

    @functools.cached_property
    def _table(self):
        return np.concatenate([self.lrs, [self.end_value]]).astype(np.float32)

    def __call__(self, count):
        """The learning rate at ``count`` (jit-safe; an exact table lookup, float32)."""
        table = jnp.asarray(self._table)
        idx = jnp.clip(jnp.asarray(count).astype(jnp.int32), 0, table.shape[0] - 1)
        return table[idx]

    @property
    def total_steps(self) -> int:
        return int(self.lrs.shape[0])


def _final_loss(law, params, decay, lrs):
    steps = jnp.asarray([lrs.shape[0] - 1], jnp.int32)
    if law == "multi_power":
        return forms.multi_power(params, lrs, steps)[0]
    return forms.lr_annealing(params, lrs, steps, decay=decay)[0]


def _lrs_of(z, peak, floor, warm, n):
    """The schedule of the free numbers ``z``: warmup, then peak minus the decrements."""
    shares = jax.nn.softmax(z)
    drops = (peak - floor) * shares[:n]
    decay = peak - jnp.concatenate([jnp.zeros(1, z.dtype), jnp.cumsum(drops)])
    return jnp.concatenate([warm, jnp.maximum(decay, floor)])


@functools.partial(jax.jit, static_argnames=("law", "n"))
def _value_and_grad(z, params, decay, peak, floor, warm, law, n):
    return jax.value_and_grad(
        lambda z: _final_loss(law, params, decay, _lrs_of(z, peak, floor, warm, n)))(z)


def _shares(lrs_tail, floor, free, peak):
    """The free numbers whose softmax gives the decrements of ``lrs_tail`` (from the peak)."""
    drops = np.maximum(-np.diff(lrs_tail), 1e-12 * peak)
    if free:
        drops = np.concatenate([drops, [max(lrs_tail[-1] - floor, 1e-12 * peak)]])
    return np.log(drops / drops.sum())


def optimize_schedule(fit, total_steps, peak_lr, *, warmup_steps=0, end_lr=None,
                      max_iter: int = 2000) -> OptimizedSchedule:
    r"""The non-increasing schedule after warmup that minimises ``fit``'s predicted final loss.

    L-BFGS runs from two starts (cosine and wsd to the end value, or to 1 % of the peak
    when the end is free) and keeps the better result.

    Args:
      fit: a :class:`~budgetax.laws.Fit`.
      total_steps: the budget ``T`` (updates), a positive int.
      peak_lr: the learning rate at the end of warmup, ``> 0``.
      warmup_steps: a linear warmup from 0 over the first ``warmup_steps`` updates (the
        same as :func:`budgetax.schedules.budgeted`'s), ``0 <= warmup_steps < T - 1``.
      end_lr: the learning rate of the last update and after the budget, in
        ``[0, peak_lr]``; ``None`` leaves the last update's rate to the optimiser (``>= 0``)
        and keeps it after the budget.
      max_iter: L-BFGS iterations at most, per start.

    Returns:
      An :class:`OptimizedSchedule`: call it like any optax schedule; its
      ``predicted_final_loss`` and ``baselines`` compare it with cosine, linear and wsd.

    Warns:
      LawWarning: the predicted final loss of the optimum is ``<= 0`` (or not finite):
      the fit does not describe this loss there (e.g. a classification loss heading to
      0), and its optimum is not to be trusted.

    Example:
      >>> import numpy as np
      >>> from budgetax import laws
      >>> p = laws.MultiPowerParams(2.0, 0.5, 0.5, 300.0, 2.0, 0.6, 0.6)
      >>> fit = laws.Fit.from_params("multi_power", p)
      >>> sched = laws.optimize_schedule(fit, 100, 1e-3, end_lr=1e-5, max_iter=100)
      >>> bool(sched(99) == np.float32(1e-5))
      True
      >>> sched.predicted_final_loss <= min(sched.baselines.values())
      True
    """
    from budgetax import schedules
    from budgetax.laws.fitting import Fit

    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a budgetax.laws.Fit (from laws.fit), "
                        f"got {type(fit).__name__}")
    total_steps = _validate.positive_int("total_steps", total_steps)
    warmup_steps = _validate.nonnegative_int("warmup_steps", warmup_steps)
    if warmup_steps >= total_steps - 1:
        raise ValueError(f"warmup_steps must be < total_steps - 1 = {total_steps - 1}, "
                         f"got {warmup_steps!r}")
    if isinstance(peak_lr, bool) or not isinstance(peak_lr, (int, float, np.floating)) \
            or not math.isfinite(peak_lr) or peak_lr <= 0:
        raise ValueError(f"peak_lr must be a positive number, got {peak_lr!r}")
    if end_lr is not None and (isinstance(end_lr, bool)
                               or not isinstance(end_lr, (int, float, np.floating))
                               or not 0 <= end_lr <= peak_lr):
        raise ValueError(f"end_lr must be None or a number in [0, peak_lr={peak_lr}], "
                         f"got {end_lr!r}")
    max_iter = _validate.positive_int("max_iter", max_iter)
    peak = float(peak_lr)
    floor = 0.0 if end_lr is None else float(end_lr)
    w, T = warmup_steps, total_steps
    free = end_lr is None
    n = T - w - 1  # decrements d_{w+1} .. d_{T-1}
    start_end = 0.01 * peak if free else floor
    with jax.enable_x64(True):
        progress = jnp.arange(T - w, dtype=jnp.float64) / (T - w)
        starts = [_shares(start_end + (peak - start_end) * np.asarray(profile(progress)),
                          floor, free, peak) for profile in (profiles.cosine, profiles.wsd)]
        args = (jnp.asarray(np.asarray(fit.params, np.float64)), fit.decay, peak, floor,
                jnp.asarray(peak * np.arange(w) / w if w else np.zeros(0)))  # budgeted's warmup

        def fun(z):
            v, g = _value_and_grad(jnp.asarray(z), *args, law=fit.law, n=n)
            return float(v), np.asarray(g, np.float64)

        results = [optimize.minimize(fun, z0, jac=True, method="L-BFGS-B",
                                     options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-12})
                   for z0 in starts]
        res = min(results, key=lambda r: r.fun if np.isfinite(r.fun) else np.inf)
        best = np.array(_lrs_of(jnp.asarray(res.x), peak, floor, args[4], n), np.float64)
        if end_lr is not None:
            best[-1] = floor
        final = float(_final_loss(fit.law, args[0], fit.decay, jnp.asarray(best)))
        baselines = {}
        for name in ("cosine", "linear", "wsd"):
            sched = getattr(schedules, name)(T, peak, end_value=floor, warmup_steps=w)
            base = np.asarray(sched(np.arange(T, dtype=np.int32)), np.float64)
            baselines[name] = float(_final_loss(fit.law, args[0], fit.decay, jnp.asarray(base)))
    if not final > 0:
        warnings.warn(f"the fit predicts a final loss of {final:.4g} (<= 0) for its optimised "
                      f"schedule at total_steps={T}: the law does not describe this loss there "
                      f"(a loss heading to 0?), so the schedule is not to be trusted; check "
                      f"the fit's predictions on runs it was not fitted to", LawWarning,
                      stacklevel=2)
    end_value = floor if end_lr is not None else float(best[-1])
    best.setflags(write=False)
    return OptimizedSchedule(lrs=best, end_value=end_value, predicted_final_loss=final,
                             baselines=baselines, converged=bool(res.success))
