r"""A declarative, hashable optimizer spec -> an ``optax`` transformation.

:class:`OptimizerSpec` names a base optimizer, a budget-aware schedule (any
:mod:`budgetax.profiles` name, or ``"autowu"``), its knobs, the peak learning
rate, warmup, sampling rate, momentum (or Demon momentum decay), weight decay and
a precision mode. :meth:`OptimizerSpec.build` turns it into an
``optax.GradientTransformationExtraArgs`` for a budget ``T``; the result always
accepts ``update(grads, state, params, value=loss)`` (AutoWU needs the loss).

The learning rate at step ``t`` is ``schedules.budgeted(profile, T, peak_lr, ...)(t)``:
a linear warmup to ``peak_lr`` over ``warmup_steps``, then
``end_lr + (peak_lr - end_lr) * profile(p)``.

Weight decay ``wd`` has one meaning per optimizer name, with or without Demon:

- ``"sgd"`` / ``"momentum"`` / ``"adam"``: coupled L2, ``g <- g + wd * theta``
  before the optimizer (``optax.add_decayed_weights`` first in the chain; for
  Demon SGD it is ``demon_sgd``'s own ``weight_decay``, which is the same thing);
- ``"adamw"``, ``"lamb"``, ``"adamp"``, ``"sgdp"``: decoupled,
  ``theta <- theta - lr * (u + wd * theta)``.

``demon=True`` replaces the momentum and nothing else: ``"sgd"``/``"momentum"``
-> :func:`budgetax.transforms.demon.demon_sgd` (``nesterov`` kept), ``"adam"`` ->
Demon Adam with coupled L2, ``"adamw"`` -> Demon AdamW (decoupled).

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
  Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
  Chen et al. Demon: Improved Neural Network Training with Momentum Decay.
  ICASSP 2022. arXiv:1910.04952.
  Zamirai et al. Revisiting BFloat16 Training. 2020. arXiv:2010.06192.
  Kim et al. Automated Learning Rate Scheduler for Large-batch Training (AutoWU).
  2021. arXiv:2107.05855.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from budgetax import _registry, _validate, profiles, schedules
from budgetax.transforms.adamp import adamp, sgdp
from budgetax.transforms.autowu import autowu
from budgetax.transforms.demon import demon_adam, demon_sgd
from budgetax.transforms.precision import kahan_summation, stochastic_rounding

__all__ = ["OPTIMIZERS", "PRECISIONS", "SCHEDULES", "OptimizerSpec"]

OPTIMIZERS = ("adam", "adamp", "adamw", "lamb", "momentum", "sgd", "sgdp")
PRECISIONS = ("bf16", "bf16_kahan", "bf16_sr", "float32")
AUTOWU = "autowu"  # the one schedule that is no profile: AutoWU picks its own warmup
# every registered schedule (budgetax/_registry.py), then AutoWU
SCHEDULES = tuple(sorted(_registry.NAMES)) + (AUTOWU,)



@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A hashable description of an optimizer and its budget-aware schedule.

    Attributes:
      optimizer: ``"sgd"`` (with ``momentum``; 0 = plain SGD), ``"momentum"``
        (alias), ``"adam"``, ``"adamw"``, ``"lamb"``, ``"adamp"``, ``"sgdp"``.
      schedule: the name of a registered schedule (a :mod:`budgetax.profiles` name:
        ``"constant"``, ``"linear"``, ``"cosine"``, ``"rex"``, ...) or ``"autowu"``;
        :data:`SCHEDULES` lists them all.
      peak_lr: the learning rate after warmup (for ``"autowu"``: its ``max_lr``
        unless given in ``schedule_kwargs``).
      end_lr: the value the schedule anneals to at the budget.
      warmup_steps: linear warmup steps (``< budget``).
      warmup_fraction: alternatively, warmup as a fraction of the budget (used when > 0).
      sample_every: re-sample the learning rate every this many steps.
      schedule_kwargs: the profile's knobs as a tuple of ``(name, value)`` pairs
        (hashable), e.g. ``(("beta", 0.9),)``; a dict is accepted and converted.
      momentum: SGD momentum / Adam ``b1`` / Demon's ``beta_init``.
      nesterov: Nesterov momentum (SGD-type optimizers, Demon SGD included; ``adamp``).
      b2: second-moment decay (Adam-type).
      eps: Adam epsilon.
      demon: decay the momentum with Demon (``"sgd"``/``"momentum"`` ->
        ``demon_sgd(..., nesterov=nesterov, weight_decay=weight_decay)``;
        ``"adam"`` -> Demon Adam with coupled L2; ``"adamw"`` -> Demon AdamW,
        ``demon_adam(..., weight_decay=weight_decay)``). Only the momentum changes:
        weight decay keeps the meaning it has without Demon.
      weight_decay: L2 added to the gradient (coupled) for ``sgd``, ``momentum``
        and ``adam``; decoupled weight decay for ``adamw``, ``lamb``, ``adamp``,
        ``sgdp`` (in both cases with or without ``demon``).
      precision: ``"float32"``; ``"bf16"`` (bfloat16 params/activations, updates
        rounded to nearest); ``"bf16_sr"`` (stochastic rounding); ``"bf16_kahan"``
        (Kahan-compensated updates).
      seed: seed of the stochastic-rounding transform when the spec is built
        directly with :meth:`build`. The training loop (``train``,
        ``train_many``, ``sweep``) ignores it: each run derives its rounding
        stream from its own key (the run's ``seed``), so every vmapped run has its
        own stream and the seed is never compiled in.

    Example:
      >>> spec = OptimizerSpec("sgd", "linear", peak_lr=0.1, momentum=0.9)
      >>> tx = spec.build(total_steps=1000)
      >>> hash(spec) == hash(OptimizerSpec("sgd", "linear", peak_lr=0.1, momentum=0.9))
      True
    """

    optimizer: str = "adam"
    schedule: str = "linear"  # a literal: `budgetax train --help` reads it from this source
    peak_lr: float = 1e-2
    end_lr: float = 0.0
    warmup_steps: int = 0
    warmup_fraction: float = 0.0
    sample_every: int = 1
    schedule_kwargs: tuple[tuple[str, Any], ...] = ()
    momentum: float = 0.9
    nesterov: bool = False
    b2: float = 0.999
    eps: float = 1e-8
    demon: bool = False
    weight_decay: float = 0.0
    precision: str = "float32"
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.schedule_kwargs, dict):
            object.__setattr__(self, "schedule_kwargs",
                               tuple(sorted(self.schedule_kwargs.items())))
        _validate.one_of("optimizer", self.optimizer, OPTIMIZERS)
        _validate.one_of("schedule", self.schedule, SCHEDULES)
        _validate.one_of("precision", self.precision, PRECISIONS)
        if not isinstance(self.peak_lr, jax.Array | jax.core.Tracer):
            _validate.real("peak_lr", self.peak_lr, low=0.0)
        _validate.real("end_lr", self.end_lr, low=0.0)
        _validate.nonnegative_int("warmup_steps", self.warmup_steps)
        _validate.real("warmup_fraction", self.warmup_fraction, low=0.0, high=1.0,
                       high_open=True)
        _validate.positive_int("sample_every", self.sample_every)
        _validate.real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _validate.real("b2", self.b2, low=0.0, high=1.0, high_open=True)
        _validate.real("eps", self.eps, low=0.0)
        _validate.real("weight_decay", self.weight_decay, low=0.0)
        _validate.seed("seed", self.seed)
        _validate.boolean("nesterov", self.nesterov)
        _validate.boolean("demon", self.demon)
        if self.demon and self.optimizer not in ("sgd", "momentum", "adam", "adamw"):
            raise ValueError(f"demon=True needs optimizer 'sgd' or 'adam'/'adamw', "
                             f"got optimizer={self.optimizer!r}")
        if self.schedule != AUTOWU:
            profiles.get(self.schedule)(jnp.float32(0.0), **dict(self.schedule_kwargs))

    # ----------------------------------------------------------------- pieces
    @property
    def param_dtype(self):
        """Parameter / activation dtype implied by ``precision``."""
        return jnp.float32 if self.precision == "float32" else jnp.bfloat16

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps for a budget (``warmup_fraction`` wins when > 0, kept ``< total_steps``)."""
        if self.warmup_fraction > 0:
            return min(int(round(self.warmup_fraction * total_steps)), total_steps - 1)
        return self.warmup_steps

    def _profile(self, profile):
        if profile is None and self.schedule != AUTOWU:
            return functools.partial(profiles.get(self.schedule), **dict(self.schedule_kwargs))
        return profile

    def budget_steps(self, total_steps: int, profile=None) -> schedules.BudgetSteps:
        """The budget ``total_steps`` as data (:class:`budgetax.schedules.BudgetSteps`).

        Passed to :meth:`build` or :meth:`learning_rate` in place of ``total_steps``
        (possibly traced, an argument of a compiled program), it gives the same
        optimizer at every step, so one compiled program serves every budget.
        ``profile`` as in :meth:`learning_rate`; not for ``"autowu"``.
        """
        total_steps = _validate.positive_int("total_steps", total_steps)
        profile = self._profile(profile)
        if profile is None:
            raise ValueError("schedule='autowu' takes its budget as a Python int: AutoWU "
                             "sizes its own state from it")
        return schedules.budget_steps(profile, total_steps, self.warmup_for(total_steps))

    def learning_rate(self, total_steps, peak_lr=None, *, profile=None):
        """The ``optax.Schedule`` of the learning rate (``None`` for ``"autowu"``).

        ``total_steps``: the budget, a Python int, or the :class:`BudgetSteps` of
        :meth:`budget_steps` (the budget as data; the same profile).
        ``peak_lr`` overrides the spec's (a float or a traced scalar for vmapped sweeps).
        ``profile`` (a ``p -> multiplier`` function) overrides the spec's schedule
        and its knobs: the sweep engine passes a ``lax.switch`` over several
        profiles, selected per run by a traced index.
        """
        profile = self._profile(profile)
        if profile is None:
            return None
        peak = self.peak_lr if peak_lr is None else peak_lr
        if isinstance(total_steps, schedules.BudgetSteps):
            return schedules.budgeted(profile, total_steps, peak, end_value=self.end_lr,
                                      sample_every=self.sample_every)
        total_steps = _validate.positive_int("total_steps", total_steps)
        return schedules.budgeted(
            profile,
            total_steps, peak, end_value=self.end_lr,
            warmup_steps=self.warmup_for(total_steps), sample_every=self.sample_every)

    def _base(self, lr, total_steps):
        o, wd = self.optimizer, self.weight_decay
        coupled = lambda tx: optax.chain(optax.add_decayed_weights(wd), tx) if wd else tx
        if o in ("sgd", "momentum"):
            if self.demon:
                return demon_sgd(lr, total_steps, beta_init=self.momentum,
                                 nesterov=self.nesterov, weight_decay=wd)
            return coupled(optax.sgd(lr, momentum=self.momentum or None,
                                     nesterov=self.nesterov))
        if o == "adam":
            if self.demon:
                return coupled(demon_adam(lr, total_steps, beta_init=self.momentum, b2=self.b2,
                                          eps=self.eps))
            return coupled(optax.adam(lr, b1=self.momentum, b2=self.b2, eps=self.eps))
        if o == "adamw":
            if self.demon:
                return demon_adam(lr, total_steps, beta_init=self.momentum, b2=self.b2,
                                  eps=self.eps, weight_decay=wd)
            return optax.adamw(lr, b1=self.momentum, b2=self.b2, eps=self.eps, weight_decay=wd)
        if o == "lamb":
            return optax.lamb(lr, b1=self.momentum, b2=self.b2, eps=self.eps, weight_decay=wd)
        if o == "adamp":
            return adamp(lr, b1=self.momentum, b2=self.b2, eps=self.eps, weight_decay=wd,
                         nesterov=self.nesterov)
        return sgdp(lr, momentum=self.momentum, weight_decay=wd, nesterov=self.nesterov)

    def build(self, total_steps: int, peak_lr=None, *, sr_seed=None,
              profile=None) -> optax.GradientTransformationExtraArgs:
        """The optimizer for a budget of ``total_steps`` updates.

        Args:
          total_steps: the budget ``T`` (positive Python int), or the
            :class:`~budgetax.schedules.BudgetSteps` of :meth:`budget_steps` (the
            budget as data, possibly traced; not for ``"autowu"``).
          peak_lr: overrides ``self.peak_lr`` (float or traced scalar).
          sr_seed: overrides ``self.seed`` for ``precision="bf16_sr"``: an int or a
            traced integer scalar (the training loop passes one derived from each
            run's key). It only seeds ``init``; ``update`` does not depend on it.
          profile: a ``p -> multiplier`` function replacing the spec's schedule
            (see :meth:`learning_rate`); not with ``"autowu"``.

        Returns:
          ``optax.with_extra_args_support(tx)``: call ``update(g, s, params, value=loss)``.
        """
        data = isinstance(total_steps, schedules.BudgetSteps)
        if data and self.schedule == AUTOWU and profile is None:
            raise TypeError("schedule='autowu' takes total_steps as a Python int (AutoWU "
                            f"sizes its own state from it), got {total_steps!r}")
        if not data:
            total_steps = _validate.positive_int("total_steps", total_steps)
        peak = self.peak_lr if peak_lr is None else peak_lr
        if self.schedule == AUTOWU and profile is None:
            kw = dict(self.schedule_kwargs)
            kw.setdefault("max_lr", float(peak) if not isinstance(peak, jax.Array) else peak)
            # base direction at lr 1 (negative), then AutoWU multiplies by its lr (positive)
            tx = optax.chain(self._base(1.0, total_steps),
                             autowu(total_steps, **kw))
        else:
            tx = self._base(self.learning_rate(total_steps, peak, profile=profile),
                            total_steps.total if data else total_steps)
        if self.precision == "bf16_sr":
            tx = optax.chain(tx, stochastic_rounding(
                seed=self.seed if sr_seed is None else sr_seed))
        elif self.precision == "bf16_kahan":
            tx = optax.chain(tx, kahan_summation())
        return optax.with_extra_args_support(tx)

    def to_dict(self) -> dict:
        """A JSON-friendly dict of the fields."""
        d = dataclasses.asdict(self)
        d["schedule_kwargs"] = dict(self.schedule_kwargs)
        return d
