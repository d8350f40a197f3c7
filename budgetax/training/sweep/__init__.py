"""The sweep engine: planning, strategies, checkpoints, progress, the store, the driver.

See :func:`budgetax.training.sweep.run.sweep`.
"""

from budgetax.training.sweep import frontier, store, strategies
from budgetax.training.sweep.run import SweepResult, sweep
from budgetax.training.sweep.spec import (
    DEFAULT_SCHEDULES,
    SWEEP_SCHEDULES,
    SweepSpec,
    SweepSpecMismatchError,
    plan_groups,
    plan_trunks,
)

__all__ = ["DEFAULT_SCHEDULES", "SWEEP_SCHEDULES", "SweepResult", "SweepSpec",
           "SweepSpecMismatchError", "frontier", "plan_groups", "plan_trunks", "store",
           "strategies", "sweep"]
