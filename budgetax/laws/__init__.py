"""Schedule-aware loss laws: fit a few runs, predict the loss of any schedule at any budget.

``Curve(lrs, steps, loss)`` is a run (its per-update learning rates and logged losses);
:func:`fit` fits the Multi-Power Law (Luo et al. 2025) or the LR-annealing law (Tissue et
al. 2024) to a few curves; :meth:`Fit.predict` predicts the loss of any learning-rate
sequence; :func:`optimize_schedule` finds the non-increasing schedule that minimises the
predicted final loss.

Example:
  >>> import numpy as np
  >>> from budgetax import laws
  >>> lrs = np.full(500, 1e-3)
  >>> curve = laws.Curve(lrs=lrs, steps=[99, 199, 299, 399, 499], loss=[3.0, 2.7, 2.55, 2.45, 2.4])
  >>> f = laws.fit([curve], law="lr_annealing")
  >>> f.predict(lrs, np.array([499])).shape
  (1,)
"""

from budgetax.laws.curve import Curve
from budgetax.laws.fitting import LAWS, CurveQuality, Fit, fit
from budgetax.laws.forms import LrAnnealingParams, MultiPowerParams, lr_annealing, multi_power
from budgetax.laws.optimize import LawWarning, OptimizedSchedule, optimize_schedule

__all__ = ["LAWS", "Curve", "CurveQuality", "Fit", "LawWarning", "LrAnnealingParams",
           "MultiPowerParams",
           "OptimizedSchedule", "fit", "lr_annealing", "multi_power", "optimize_schedule"]
