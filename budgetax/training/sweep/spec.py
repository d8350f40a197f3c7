"""What a sweep trains: :class:`SweepSpec` (how its runs are split into programs:
:mod:`budgetax.training.sweep.plan`).

The defaults of a sweep (budgets, schedules, learning rates, seeds, batch size,
evaluations) live here and only here; the ``budgetax sweep`` command reads them
from :class:`SweepSpec`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json

from budgetax import _validate, profiles, schedules
from budgetax._registry import DEFAULT_SWEEP as DEFAULT_SCHEDULES
from budgetax.training.core import DIVERGENCE_FACTOR, check_diagnostics, make_program
from budgetax.training.optim import OptimizerSpec
from budgetax.training.sweep.custom import CustomSchedule
from budgetax.training.sweep.plan import grid_groups, plan_groups, plan_trunks
from budgetax.training.sweep.strategies import ESTIMATORS, STRATEGIES

__all__ = ["DEFAULT_SCHEDULES", "SWEEP_SCHEDULES", "CustomSchedule", "SweepSpec",
           "SweepSpecMismatchError", "grid_groups", "plan_groups", "plan_trunks"]

SWEEP_SCHEDULES = tuple(sorted(profiles.PROFILES))

# The sweep's diagnostics: the train_* metrics on a fixed random subset of this many
# training examples (the whole set when it is smaller), the same for every run.
DEFAULT_DIAGNOSTICS = 1000


class SweepSpecMismatchError(ValueError):
    """The output directory holds a sweep with a different spec or task."""


def _tuple(name, values, check):
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence, got {values!r}")
    values = tuple(check(name, v) for v in values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence, got ()")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates, got {values!r}")
    return values


def _schedule_name(name, value, custom=()):
    known = SWEEP_SCHEDULES + tuple(custom)
    if value not in known:
        close = difflib.get_close_matches(str(value), known, n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "")
        raise ValueError(f"{name} must name profiles from {list(SWEEP_SCHEDULES)}"
                         + (f" or the custom schedules {list(custom)}" if custom else "")
                         + f", got {value!r} ({hint}a schedule of your own is a "
                         f"budgetax.training.sweep.CustomSchedule; AutoWU has no peak lr to "
                         f"sweep and its own state: train it with budgetax.training.train)")
    return value


def _custom(spec) -> dict:
    """``{name: CustomSchedule}``: those given in ``schedules`` and ``custom_schedules``."""
    given = [s for s in spec.schedules if isinstance(s, CustomSchedule)]
    extra = spec.custom_schedules
    if isinstance(extra, str | bytes | CustomSchedule) or not hasattr(extra, "__iter__"):
        raise TypeError(f"custom_schedules must be a sequence of CustomSchedule, got {extra!r}")
    out: dict = {}
    for c in [*given, *extra]:
        if not isinstance(c, CustomSchedule):
            raise TypeError(f"custom_schedules must hold budgetax.training.sweep.CustomSchedule "
                            f"objects, got {c!r}")
        if c.name in SWEEP_SCHEDULES:
            raise ValueError(f"CustomSchedule name {c.name!r} is a built-in profile's name: "
                             f"give your schedule another name")
        if out.get(c.name, c) is not c:
            raise ValueError(f"two custom schedules are named {c.name!r}: {out[c.name]!r} and "
                             f"{c!r}")
        out[c.name] = c
    return out


def _fraction(name, value):
    return _validate.real(name, value, low=0.0, high=1.0, low_open=True)


def _lr(name, value):
    return _validate.real(name, value, low=0.0, low_open=True)


def _check_collisions(spec) -> None:
    """Grid values that name the same run (``lr 0.01`` twice, two fractions of one budget)."""
    steps: dict = {}
    for f in spec.budgets:
        steps.setdefault(schedules.steps_for_budget(full_steps=spec.full_budget, fraction=f),
                         []).append(f)
    same = {k: v for k, v in steps.items() if len(v) > 1}
    if same:
        k, v = next(iter(same.items()))
        raise ValueError(f"budgets {v!r} are all {k} steps of full_budget={spec.full_budget}: "
                         f"give budgets that differ in steps")
    names: dict = {}
    for lr in spec.peak_lrs:
        names.setdefault(f"{lr:g}", []).append(lr)
    same = {k: v for k, v in names.items() if len(v) > 1}
    if same:
        k, v = next(iter(same.items()))
        raise ValueError(f"peak_lrs {v!r} all print as {k} (run names use 6 significant "
                         f"digits): give learning rates that differ in them")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains on a task (the part that defines its results).

    Attributes:
      optimizer: the base :class:`OptimizerSpec` (optimizer, momentum, Demon,
        precision, warmup, ...); its ``schedule`` and ``peak_lr`` are replaced per run.
      full_budget: steps of the full budget; ``budgets`` are fractions of it
        (``steps_for_budget(full_steps=full_budget, fraction=f)``).
      schedules: profile names (:data:`SWEEP_SCHEDULES`, default knobs) and
        :class:`~budgetax.training.sweep.custom.CustomSchedule` objects (or their
        names, with the objects in ``custom_schedules``).
      custom_schedules: the user's own schedules named in ``schedules``; each must be
        swept. After construction ``schedules`` holds names only and
        ``custom_schedules`` every custom schedule, in the order of ``schedules``.
      peak_lrs: peak learning rates; ``seeds``: run seeds (model init, batch order).
      batch_size, num_evals, eval_batch_size, divergence_factor: as in
        :func:`budgetax.training.train`.
      diagnostics: the ``train_*`` metrics and gradient norm at every evaluation, whose
        final ``train_loss`` picks each (budget, schedule)'s lr
        (:func:`~budgetax.training.sweep.selection.default_select`): an int ``N``
        computes them on a fixed random subset of ``N`` training examples, the same for
        every run (the whole set when it is smaller); ``True`` on the whole training set;
        ``False`` not at all (the lr is then picked on each run's last-epoch minibatch
        losses). The default, ``DEFAULT_DIAGNOSTICS`` (1000) examples, keeps the lr
        choice on training data at a cost that does not grow with the training set:
        on the whole set the diagnostics cost a pass over it (loss and gradient) per
        evaluation and run, as much as the training itself on a small dataset's CNN
        and more on a larger dataset.
      strategy: how the runs are trained (:mod:`budgetax.training.sweep.strategies`):
        ``"grid"`` (every run from scratch), ``"branch"`` (schedules with a
        budget-independent prefix, e.g. ``constant`` and ``wsd``, train it once and
        branch each budget's decay from it: the same results for fewer steps),
        ``"halving"`` (successive halving over each schedule's peak lrs),
        ``"branch+halving"`` or ``"law"`` (anchors, a loss law, the best predicted
        cells verified).
      prune_rate, prune_at, prune_estimator: halving keeps the best
        ``1/prune_rate`` of each schedule's lrs at each rung ``prune_at``
        (fractions of the budget), scored by ``prune_estimator``
        (:data:`~budgetax.training.sweep.strategies.ESTIMATORS`) on the training
        loss so far.
      law_anchors, law_verify, law_tolerance: the ``"law"`` strategy
        (:mod:`budgetax.training.sweep.law`) fits its law on the runs of
        ``law_anchors`` (at least 2 of ``schedules``) at the longest budget, trains
        the ``law_verify`` best predicted cells of each budget with every seed, and
        trains every other cell when its predictions miss the verified cells by a
        median relative error above ``law_tolerance``.

    Example:
      >>> spec = SweepSpec(full_budget=1000, budgets=(0.1, 1.0), schedules=("linear", "rex"))
      >>> spec.budget_steps()
      [100, 1000]
      >>> len(spec.runs())    # 2 budgets x 2 schedules x 3 lrs x 3 seeds
      36
    """

    optimizer: OptimizerSpec = dataclasses.field(default_factory=OptimizerSpec)
    full_budget: int = 3000
    budgets: tuple = (0.05, 0.1, 0.25, 0.5, 1.0)
    schedules: tuple = DEFAULT_SCHEDULES
    peak_lrs: tuple = (3e-3, 1e-2, 3e-2)
    seeds: tuple = (0, 1, 2)
    batch_size: int = 100
    num_evals: int = 4
    eval_batch_size: int = 1000
    diagnostics: bool | int = DEFAULT_DIAGNOSTICS
    divergence_factor: float | None = DIVERGENCE_FACTOR
    strategy: str = "grid"
    prune_rate: int = 3
    prune_at: tuple = (0.25, 0.5)
    prune_estimator: str = "tse_e"
    law_anchors: tuple = ("constant", "cosine", "step")
    law_verify: int = 2
    law_tolerance: float = 0.05
    custom_schedules: tuple = ()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        if not isinstance(self.optimizer, OptimizerSpec):
            raise TypeError(f"optimizer must be an OptimizerSpec, got {self.optimizer!r}")
        if self.optimizer.schedule == "autowu":
            raise ValueError("optimizer.schedule='autowu' cannot be swept: AutoWU has no peak "
                             "lr and its own state; train it with budgetax.training.train")
        set_("full_budget", _validate.positive_int("full_budget", self.full_budget))
        set_("budgets", _tuple("budgets", self.budgets, _fraction))
        if isinstance(self.schedules, str | bytes) or not hasattr(self.schedules, "__iter__"):
            raise TypeError(f"schedules must be a sequence, got {self.schedules!r}")
        custom = _custom(self)
        names = tuple(s.name if isinstance(s, CustomSchedule) else s for s in self.schedules)
        check = lambda n, v: _schedule_name(n, v, tuple(custom))
        set_("schedules", _tuple("schedules", names, check))
        unused = [n for n in custom if n not in self.schedules]
        if unused:
            raise ValueError(f"custom_schedules {unused} are not in schedules "
                             f"{list(self.schedules)}: sweep them or leave them out")
        set_("custom_schedules", tuple(custom[n] for n in self.schedules if n in custom))
        set_("peak_lrs", _tuple("peak_lrs", self.peak_lrs, _lr))
        set_("seeds", _tuple("seeds", self.seeds, _validate.seed))
        for name in ("batch_size", "num_evals", "eval_batch_size"):
            set_(name, _validate.positive_int(name, getattr(self, name)))
        set_("diagnostics", check_diagnostics(self.diagnostics))
        if self.divergence_factor is not None:
            set_("divergence_factor", _validate.real("divergence_factor", self.divergence_factor,
                                                     low=1.0, low_open=True))
        _validate.one_of("strategy", self.strategy, STRATEGIES)
        set_("prune_rate", _validate.positive_int("prune_rate", self.prune_rate))
        if self.prune_rate < 2:
            raise ValueError(f"prune_rate must be an int >= 2, got {self.prune_rate!r}")
        set_("prune_at", _tuple("prune_at", self.prune_at, lambda n, v: _validate.real(
            n, v, low=0.0, high=1.0, low_open=True, high_open=True)))
        if list(self.prune_at) != sorted(self.prune_at):
            raise ValueError(f"prune_at must be increasing, got {self.prune_at!r}")
        _validate.one_of("prune_estimator", self.prune_estimator, tuple(ESTIMATORS))
        set_("law_anchors", _tuple("law_anchors", self.law_anchors, check))
        set_("law_verify", _validate.positive_int("law_verify", self.law_verify))
        set_("law_tolerance", _validate.real("law_tolerance", self.law_tolerance, low=0.0,
                                             low_open=True))
        if self.strategy == "law":
            missing = [s for s in self.law_anchors if s not in self.schedules]
            if missing or len(self.law_anchors) < 2:
                raise ValueError(f"law_anchors must be at least 2 of the sweep's schedules "
                                 f"{list(self.schedules)}, got {list(self.law_anchors)!r}"
                                 + (f" ({missing} not swept)" if missing else ""))
        _check_collisions(self)
        # the base optimizer, normalised: schedule/peak_lr/seed are per run
        first = next((s for s in self.schedules if s not in custom), DEFAULT_SCHEDULES[0])
        set_("optimizer", dataclasses.replace(self.optimizer, schedule=first,
                                              peak_lr=0.0, seed=0, schedule_kwargs=()))
        for c in self.custom_schedules:  # checks every multiplier at every budget now
            for t in self.budget_steps():
                c.digest(t)

    def _custom_by_name(self) -> dict:
        return {c.name: c for c in self.custom_schedules}

    def profile(self, name: str):
        """The profile ``p -> multiplier`` of the schedule ``name`` (built-in or custom)."""
        return self._custom_by_name().get(name) or profiles.get(name)

    def budget_steps(self) -> list[int]:
        """The budgets in steps."""
        return [schedules.steps_for_budget(full_steps=self.full_budget, fraction=f)
                for f in self.budgets]

    def runs(self) -> list[dict]:
        """Every run, budget-major, then schedule, peak lr, seed."""
        out = []
        for f, steps in zip(self.budgets, self.budget_steps(), strict=True):
            for s in self.schedules:
                for lr in self.peak_lrs:
                    for seed in self.seeds:
                        out.append({"run_id": f"T{steps}/{s}/lr{lr:g}/seed{seed}",
                                    "budget_fraction": f, "budget": steps, "schedule": s,
                                    "peak_lr": lr, "seed": seed})
        return out

    def programs(self, task) -> dict:
        """``{budget steps: core.Program}``: the program of each budget on ``task`` (validates
        the whole spec against the task: batch size, warmup per budget, ...)."""
        custom = self._custom_by_name()
        choices = tuple(custom.get(s, s) for s in self.schedules)
        return {steps: make_program(task, steps, self.optimizer, schedules=choices,
                                    batch_size=self.batch_size, num_evals=self.num_evals,
                                    eval_batch_size=self.eval_batch_size,
                                    diagnostics=self.diagnostics,
                                    divergence_factor=self.divergence_factor)
                for steps in self.budget_steps()}

    def to_dict(self) -> dict:
        """JSON-friendly (stored in the results store; compared on resume)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name != "custom_schedules"}
        if self.custom_schedules:  # older stores and sweeps without them lack the key
            d["custom_schedules"] = {c.name: {str(t): c.digest(t) for t in self.budget_steps()}
                                     for c in self.custom_schedules}
        d["optimizer"] = self.optimizer.to_dict()
        for k in ("budgets", "schedules", "peak_lrs", "seeds", "prune_at", "law_anchors"):
            d[k] = list(d[k])
        if self.strategy != "law":  # they change nothing (and older stores lack them)
            d = {k: v for k, v in d.items() if not k.startswith("law_")}
        return json.loads(json.dumps(d))
