r"""The budget frontier: what a schedule will reach at a budget nobody trained.

For each schedule, the sweep's table gives the metric at the schedule's best peak
lr for each trained budget ``T_1 < ... < T_n`` (a mean over seeds). The frontier
is fitted by the saturating power law

.. math::  y(T) = a + b\,(T / T_\text{full})^{-c}, \qquad c \in [c_\min, c_\max],

which is linear in ``(a, b)`` for a fixed ``c``: the fit is a least-squares
solve per ``c`` on a grid (variable projection), the ``c`` with the smallest
squared error wins. A prediction's interval comes from a parametric bootstrap:
each budget's mean is redrawn from a normal with its seed standard error (the
standard deviation pooled over the budgets, divided by ``sqrt(seeds)``), the
law refitted, the predicted budget's own seed standard error added, and the
2.5% and 97.5% quantiles taken. With one seed per budget there is no seed spread:
the noise is then the fit's own residual standard deviation (the residual sum of
squares over ``B - 3`` degrees of freedom), which needs more than 3 budgets; with
exactly 3 the law passes through them and there is no interval
(:attr:`Frontier.noise_from` says which). It covers the seed noise of the fitted points
and of the predicted mean and the freedom of the law, not a change of regime
beyond the trained budgets (a new best lr, a schedule that stops improving), so
at a budget beyond the trained ones it covers less than its nominal 95%.

Example:
  >>> import numpy as np
  >>> steps = np.array([150, 300, 750, 1500])
  >>> acc = 70 - 40 * (steps / 3000) ** -0.3 / 10
  >>> fit = fit_frontier(steps / 3000, acc[:, None] + np.zeros((4, 3)))
  >>> round(float(fit.predict(1.0)), 2), round(70 - 4.0, 2)
  (66.0, 66.0)

References:
  Kaplan et al. Scaling Laws for Neural Language Models. 2020. arXiv:2001.08361.
  Domhan, Springenberg, Hutter. Speeding up Automatic Hyperparameter
  Optimization of Deep Neural Networks by Extrapolation of Learning Curves. IJCAI 2015.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Frontier", "fit_frontier"]

_C_GRID = np.geomspace(0.02, 3.0, 200)


def _solve(x: np.ndarray, y: np.ndarray, c: np.ndarray,
           floor: bool = False) -> tuple[np.ndarray, ...]:
    """For every row ``k`` of ``y`` ``[K, B]`` and every exponent ``c[k, j]``: ``(a, b, sse)``.

    ``floor``: constrain the asymptote ``a >= 0``.
    """
    g = x[None, None, :] ** -c[..., None]                       # [K, J, B]
    gm = g.mean(axis=-1, keepdims=True)
    gc = g - gm
    sgg = np.sum(gc ** 2, axis=-1)                              # [K, J]
    yc = y - y.mean(axis=-1, keepdims=True)                     # [K, B]
    sgy = np.einsum("kjb,kb->kj", gc, yc)
    b = sgy / sgg
    a = y.mean(axis=-1, keepdims=True) - b * gm[..., 0]
    sse = np.sum(yc ** 2, axis=-1, keepdims=True) - sgy ** 2 / sgg
    if floor:  # a >= 0: where the free optimum is below, the optimum has a = 0
        s0 = np.einsum("kjb,kb->kj", g, y)
        g2 = np.sum(g ** 2, axis=-1)
        below = a < 0.0
        a = np.where(below, 0.0, a)
        b = np.where(below, s0 / g2, b)
        sse = np.where(below, np.sum(y ** 2, axis=-1, keepdims=True) - s0 ** 2 / g2, sse)
    return a, b, sse


def _fit(x: np.ndarray, y: np.ndarray, floor: bool = False) -> np.ndarray:
    """Least squares ``y ~ a + b x^-c`` for each row of ``y`` ``[K, B]``: ``[K, 3]`` (a, b, c).

    Closed-form simple regression on ``x^-c`` for every ``c`` of a log grid, then on
    a fine grid between the best one's neighbours.
    """
    k = np.arange(y.shape[0])
    grid = np.broadcast_to(_C_GRID, (y.shape[0], _C_GRID.size))
    _, _, sse = _solve(x, y, grid, floor)
    best = np.argmin(sse, axis=1)
    lo = _C_GRID[np.maximum(best - 1, 0)]
    hi = _C_GRID[np.minimum(best + 1, _C_GRID.size - 1)]
    fine = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 201)[None, :]
    a, b, sse = _solve(x, y, fine, floor)
    j = np.argmin(sse, axis=1)
    return np.stack([a[k, j], b[k, j], fine[k, j]], axis=1)


@dataclasses.dataclass(frozen=True)
class Frontier:
    """A fitted frontier ``y(f) = a + b f^-c`` (``f``: fraction of the full budget).

    ``boot``: the bootstrap fits ``[K, 3]`` (a, b, c) for intervals; ``noise``: the
    seed standard error of a budget's mean (the pooled seed std over ``sqrt(seeds)``),
    added to the intervals since a trained budget's mean has it too; ``noise_from``:
    ``"seeds"``, ``"residuals"`` (one seed per budget: the fit's residual std) or
    ``"none"`` (one seed and 3 budgets: :meth:`interval` is NaN).
    """

    a: float
    b: float
    c: float
    boot: np.ndarray
    noise: float = 0.0
    bound: float | None = None
    higher_is_better: bool = False
    noise_from: str = "seeds"

    def _back(self, gap):
        """The metric from the fitted quantity (its gap to ``bound`` when one is given)."""
        if self.bound is None:
            return gap
        return self.bound - gap if self.higher_is_better else self.bound + gap

    def predict(self, fraction) -> np.ndarray:
        """The predicted metric at ``fraction`` (scalar or array) of the full budget."""
        f = np.asarray(fraction, np.float64)
        return self._back(self.a + self.b * f ** -self.c)

    def interval(self, fraction, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The ``level`` bootstrap interval of the prediction at ``fraction`` (NaN when
        ``noise_from`` is ``"none"``: nothing measures the noise)."""
        f = np.asarray(fraction, np.float64)[..., None]
        if self.noise_from == "none":
            nan = np.full(f.shape[:-1], np.nan)
            return nan, nan
        preds = self.boot[:, 0] + self.boot[:, 1] * f ** -self.boot[:, 2]
        preds = preds + self.noise * np.random.default_rng(1).normal(size=self.boot.shape[0])
        if self.bound is not None:
            preds = self._back(np.maximum(preds, 0.0))
        lo, hi = np.quantile(preds, [(1 - level) / 2, (1 + level) / 2], axis=-1)
        return lo, hi


def fit_frontier(fractions, values, *, bound: float | None = None,
                 higher_is_better: bool = False, n_boot: int = 500,
                 seed: int = 0) -> Frontier:
    """Fits the frontier to ``values[b, s]`` (budget ``fractions[b]``, seed ``s``).

    Args:
      fractions: the trained budgets as fractions of the full budget, ``[B]``, B >= 3.
      values: the metric at each budget's selected lr, one column per seed ``[B, S]``
        (NaN entries ignored).
      bound: the metric's best possible value (1 for an accuracy, 0 for a
        non-negative loss), or None. With a bound the law is fitted to the gap
        ``|bound - y|`` with its asymptote ``a >= 0``, so that no prediction passes
        the bound (an accuracy above 100%).
      higher_is_better: the metric's direction (with ``bound``).
      n_boot: bootstrap resamples for :meth:`Frontier.interval`.
      seed: the bootstrap's seed (the fit is deterministic).

    Returns:
      A :class:`Frontier`.
    """
    x = np.asarray(fractions, np.float64)
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if x.ndim != 1 or v.shape[0] != x.shape[0]:
        raise ValueError(f"values must have one row per budget ({x.shape[0]}), got shape "
                         f"{v.shape}")
    keep = np.isfinite(v).any(axis=1) & (x > 0)
    x, v = x[keep], v[keep]
    if x.size < 3:
        raise ValueError(f"fit_frontier needs at least 3 budgets with a finite value, got "
                         f"{x.size}")
    if bound is not None:
        v = bound - v if higher_is_better else v - bound
    mean = np.nanmean(v, axis=1)
    n = np.sum(np.isfinite(v), axis=1)
    var = [np.nanvar(row, ddof=1) for row, k in zip(v, n, strict=True) if k > 1]
    sd = float(np.sqrt(np.mean(var))) if var else 0.0
    floor = bound is not None
    a, b, c = _fit(x, mean[None, :], floor)[0]
    noise_from = "seeds"
    if not var:  # one seed per budget: the law's own misfit, when it has any freedom left
        noise_from = "residuals" if x.size > 3 else "none"
        resid = mean - (a + b * x ** -c)
        sd = float(np.sqrt(np.sum(resid ** 2) / (x.size - 3))) if x.size > 3 else 0.0
    rng = np.random.default_rng(seed)
    draws = mean + rng.normal(size=(n_boot, mean.size)) * sd / np.sqrt(np.maximum(n, 1))
    return Frontier(float(a), float(b), float(c), _fit(x, draws, floor),
                    sd / np.sqrt(max(float(np.median(n)), 1.0)), bound, higher_is_better,
                    noise_from)
