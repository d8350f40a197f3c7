"""The sweep engine: planning, checkpoints, progress, the results store and the driver.

See :func:`budgetax.training.sweep.run.sweep`.
"""

from budgetax.training.sweep import store
from budgetax.training.sweep.run import SweepResult, sweep
from budgetax.training.sweep.spec import (
    DEFAULT_SCHEDULES,
    SWEEP_SCHEDULES,
    SweepSpec,
    SweepSpecMismatchError,
    plan_groups,
)

__all__ = ["DEFAULT_SCHEDULES", "SWEEP_SCHEDULES", "SweepResult", "SweepSpec",
           "SweepSpecMismatchError", "plan_groups", "store", "sweep"]
