"""The sweep engine: budgets x schedules x peak lrs x seeds of a task, resumable.

One module per concern:

- :mod:`~budgetax.training.sweep.spec`: :class:`SweepSpec`, what a sweep trains;
- :mod:`~budgetax.training.sweep.custom`: :class:`CustomSchedule`, a schedule of
  the user's own;
- :mod:`~budgetax.training.sweep.plan`: the typed plan (which runs share a
  compiled program) and all planning;
- :mod:`~budgetax.training.sweep.strategies`: how halving scores and prunes (and
  what each strategy does);
- :mod:`~budgetax.training.sweep.execute`: one group runner, one function per kind
  of group;
- :mod:`~budgetax.training.sweep.checkpoints`, :mod:`~budgetax.training.sweep.store`,
  :mod:`~budgetax.training.sweep.progress`: in-flight state, results, display;
- :mod:`~budgetax.training.sweep.resume`: a given spec against the stored one
  (resume, extend or refuse);
- :mod:`~budgetax.training.sweep.selection`: the best-lr-per-cell rule;
- :mod:`~budgetax.training.sweep.run`: :func:`sweep`, the directory lock and the loop.
"""

from budgetax.training.sweep import frontier, store, strategies
from budgetax.training.sweep.custom import CustomSchedule
from budgetax.training.sweep.run import SweepResult, sweep
from budgetax.training.sweep.spec import (
    DEFAULT_SCHEDULES,
    SWEEP_SCHEDULES,
    SweepSpec,
    SweepSpecMismatchError,
    plan_groups,
    plan_trunks,
)

__all__ = ["DEFAULT_SCHEDULES", "SWEEP_SCHEDULES", "CustomSchedule", "SweepResult", "SweepSpec",
           "SweepSpecMismatchError", "frontier", "plan_groups", "plan_trunks", "store",
           "strategies", "sweep"]
