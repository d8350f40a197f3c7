r"""Rank training runs from their early loss curves, and decide when to stop.

Every estimator takes per-step training losses of shape ``[..., steps]`` (any
leading batch shape), returns ``[...]`` (or a ``NamedTuple`` of such arrays),
is vectorised, jittable (``steps_per_epoch``, ``last_epochs``, ``family``,
``variant``, ``burn_in_epochs`` and ``patience`` are static Python values,
validated eagerly) and computes in float32 (float64 with x64 enabled). The
convention throughout is **lower = predicted better**. A curve containing
NaN/inf gives NaN, without affecting the other curves of the batch.

* training speed: :func:`tse`, :func:`tse_e`, :func:`tse_ema` (Ru et al., 2021);
* loss-curve gradient approximation: :func:`lcga` (Zhao et al., 2022);
* parametric extrapolation to the budget: :func:`extrapolate` with the
  ``pow3``, ``exp4`` and ``log_power`` families (Domhan et al., 2015);
* training elasticity and the stopping rule: :func:`elasticity`,
  :func:`early_stop`, :func:`should_stop` (Zhao et al., 2022);
* rank agreement with the truth (host-side, SciPy): :func:`spearman`,
  :func:`kendall`, :func:`bootstrap_ci`.

This package depends only on JAX, NumPy and SciPy.

Example:
  >>> import jax.numpy as jnp
  >>> from budgetax import ranking
  >>> k = jnp.arange(1.0, 101.0)
  >>> curves = jnp.stack([1 + 2 * k ** -0.5, 0.8 + 2 * k ** -0.5])  # the second is better
  >>> scores = ranking.tse(curves, steps_per_epoch=10)
  >>> round(ranking.spearman(scores, truth=[0.0, 1.0]), 6)
  1.0

References:
  Ru, Lyle, Schut, Fil, van der Wilk, Gal. Speedy Performance Estimation for
  Neural Architecture Search. NeurIPS 2021. arXiv:2006.04492.
  Zhao, Frey, Gadepally, Samsi. Loss Curve Approximations for Fast Neural
  Architecture Ranking & Training Elasticity Estimation. IPDPS Workshops 2022.
  Domhan, Springenberg, Hutter. Speeding up Automatic Hyperparameter
  Optimization of Deep Neural Networks by Extrapolation of Learning Curves.
  IJCAI 2015.
"""

from budgetax.ranking._common import epoch_means
from budgetax.ranking.agreement import (
    RANK_METRICS,
    bootstrap_ci,
    goodness_ranks,
    kendall,
    spearman,
)
from budgetax.ranking.curves import CURVE_FAMILIES, CurveFit, curve, extrapolate
from budgetax.ranking.elasticity import EarlyStop, early_stop, elasticity, should_stop
from budgetax.ranking.lcga import LCGA_VARIANTS, LCGAFit, lcga, lcga_curve
from budgetax.ranking.speed import tse, tse_e, tse_ema

__all__ = [
    "CURVE_FAMILIES",
    "LCGA_VARIANTS",
    "RANK_METRICS",
    "CurveFit",
    "EarlyStop",
    "LCGAFit",
    "bootstrap_ci",
    "curve",
    "early_stop",
    "elasticity",
    "epoch_means",
    "extrapolate",
    "goodness_ranks",
    "kendall",
    "lcga",
    "lcga_curve",
    "should_stop",
    "spearman",
    "tse",
    "tse_e",
    "tse_ema",
]
