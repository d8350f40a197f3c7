r"""Rank agreement between predicted scores and the true outcome (Spearman, Kendall).

Convention: ``scores`` are "lower = predicted better" (every ranker in
:mod:`budgetax.ranking`), ``truth`` is "higher = better" (e.g. the final test
accuracy; pass ``-final_loss`` for a loss). The correlations are computed
between the predicted goodness ``-scores`` and ``truth``, so a perfect ranker
gives +1 and a perfectly reversed one -1.

Non-finite values are ranked last: a NaN or ±inf score (a diverged curve, a
failed fit) counts as the worst prediction, and a NaN/±inf truth as the worst
outcome; ties among them share the average rank (as ``scipy.stats.rankdata``).
These are host-side NumPy/SciPy helpers (not jittable), built on
``scipy.stats.spearmanr`` and ``scipy.stats.kendalltau`` (tau-b).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.stats

from budgetax import _validate

__all__ = ["RANK_METRICS", "bootstrap_ci", "goodness_ranks", "kendall", "spearman"]

RANK_METRICS = ("spearman", "kendall")


def goodness_ranks(values: Any, *, higher_is_better: bool) -> np.ndarray:
    """Ranks ``1..n`` with ``n`` = best; non-finite values share the lowest ranks.

    Args:
      values: 1-D array.
      higher_is_better: orientation of ``values``.

    Returns:
      float64 ranks (average ranks for ties).

    Example:
      >>> from budgetax import ranking
      >>> ranking.goodness_ranks([0.3, float("nan"), 0.1], higher_is_better=False).tolist()
      [2.0, 1.0, 3.0]
    """
    _validate.boolean("higher_is_better", higher_is_better)
    v = np.asarray(values, np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {v.shape}: {values!r}")
    good = v if higher_is_better else -v
    good = np.where(np.isfinite(v), good, -np.inf)
    return scipy.stats.rankdata(good)


def _prepare(scores: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    if s.ndim != 1 or t.ndim != 1 or s.shape != t.shape:
        raise ValueError(f"scores and truth must be 1-D arrays of the same length, got shapes "
                         f"{s.shape} and {t.shape}")
    if s.shape[0] < 2:
        raise ValueError(f"scores and truth need at least 2 entries, got {s.shape[0]}")
    return (goodness_ranks(s, higher_is_better=False),
            goodness_ranks(t, higher_is_better=True))


def _say_constant(metric: str, scores: Any, truth: Any) -> None:
    """Warns when a correlation is undefined because one side ranks every entry the same."""
    s, t = _prepare(scores, truth)
    sides = [name for name, r in (("scores", s), ("truth", t)) if np.all(r == r[0])]
    if sides:
        verb = "rank" if len(sides) > 1 else "ranks"
        warnings.warn(f"{metric} is undefined (NaN): {' and '.join(sides)} {verb} every entry "
                      f"the same (constant, or all non-finite)", UserWarning, stacklevel=3)


def _corr(metric: str, a: np.ndarray, b: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input -> NaN, without a warning
        if metric == "spearman":
            return float(scipy.stats.spearmanr(a, b).statistic)
        return float(scipy.stats.kendalltau(a, b).statistic)


def spearman(scores: Any, truth: Any) -> float:
    r"""Spearman rank correlation between predicted goodness (``-scores``) and ``truth``.

    Args:
      scores: ``[n]``, lower = predicted better; NaN/inf ranked last.
      truth: ``[n]``, higher = better (e.g. final accuracy); NaN/inf ranked last.

    Returns:
      :math:`\rho \in [-1, 1]`, +1 for a perfect ranker; NaN, with a warning saying
      which, if either side is constant.

    Example:
      >>> from budgetax import ranking
      >>> ranking.spearman([0.1, 0.2, 0.3, float("nan")], [0.9, 0.8, 0.7, 0.1])
      1.0
    """
    _say_constant("spearman", scores, truth)
    return _corr("spearman", *_prepare(scores, truth))


def kendall(scores: Any, truth: Any) -> float:
    r"""Kendall's tau-b between predicted goodness (``-scores``) and ``truth``.

    Args:
      scores: ``[n]``, lower = predicted better; NaN/inf ranked last.
      truth: ``[n]``, higher = better; NaN/inf ranked last.

    Returns:
      :math:`\tau_b \in [-1, 1]`, +1 for a perfect ranker; NaN, with a warning saying
      which, if either side is constant.

    Example:
      >>> from budgetax import ranking
      >>> round(ranking.kendall([0.1, 0.3, 0.2], [0.9, 0.8, 0.7]), 4)
      0.3333
    """
    _say_constant("kendall", scores, truth)
    return _corr("kendall", *_prepare(scores, truth))


def bootstrap_ci(scores: Any, truth: Any, *, metric: str = "spearman", n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a rank correlation.

    Resamples the ``n`` configurations with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``), recomputes the metric on each
    resample (ranks recomputed within the resample, NaN/inf scores last) and
    returns the ``(1 - level)/2`` and ``(1 + level)/2`` percentiles, ignoring
    resamples where the metric is undefined (e.g. all entries identical).

    Args:
      scores: ``[n]``, lower = predicted better.
      truth: ``[n]``, higher = better.
      metric: ``"spearman"`` or ``"kendall"``.
      n_boot: number of resamples, a positive int.
      level: confidence level in ``(0, 1)``.
      seed: the resampling seed (an int); the same seed gives the same interval.

    Returns:
      ``(low, high)`` floats (NaN if no resample gave a defined metric).

    Example:
      >>> import numpy as np
      >>> from budgetax import ranking
      >>> truth = np.linspace(0.5, 0.9, 20)
      >>> low, high = ranking.bootstrap_ci(-truth, truth, n_boot=50)
      >>> round(low, 6), round(high, 6)
      (1.0, 1.0)
    """
    metric = _validate.one_of("metric", metric, RANK_METRICS)
    n_boot = _validate.positive_int("n_boot", n_boot)
    level = _validate.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    seed = _validate.seed("seed", seed)
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    _prepare(s, t)  # validates the shapes
    rng = np.random.default_rng(seed)
    n = s.shape[0]
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        stats[b] = _corr(metric, *_prepare(s[idx], t[idx]))
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)
