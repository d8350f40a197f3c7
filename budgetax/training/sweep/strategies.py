r"""How a sweep trains its runs: the grid, branched decays, successive halving.

The strategies give the same kind of results store and table:

- ``"grid"``: every (budget, schedule, peak lr, seed) run is trained from step 0
  to its budget.
- ``"branch"``: a schedule whose learning rate up to some step does not depend on
  the budget (``constant``; ``wsd`` before its decay;
  :func:`~budgetax.training.sweep.plan.shared_prefix` finds the step numerically) is
  trained once, as one *trunk* on the longest budget's program, and every shorter
  budget *branches* from the trunk's state where its own learning rate starts to
  differ, then decays on its own program
  (Hägele et al. 2024; Hu et al. 2024, MiniCPM). A branched run equals the run
  trained from scratch for its budget bit for bit: same initialisation and batch
  order (pure functions of the run's key and step), same learning rate at every
  step, same optimizer (not with Demon, whose momentum depends on the budget).
  For budgets 5/10/25/50/100% and a 20% decay the trunk and branches train 118%
  of the full budget per run instead of the grid's 190%. Other schedules are
  trained as in the grid.
- ``"halving"``: successive halving over learning rates, per (budget, schedule).
  At each rung (``prune_at``, fractions of the budget) the peak lrs still
  training are scored from their training-loss curves so far by a
  :mod:`budgetax.ranking` estimator (:data:`ESTIMATORS`, averaged over the seeds
  of an lr, which stay together) and only the best ``1/prune_rate`` of them go
  on; the others are stored with status ``pruned`` and the step they stopped at.
  Every schedule keeps at least one lr, so the table has every cell.
- ``"branch+halving"``: branched decays for the schedules with a shared prefix,
  halving for the others.
- ``"law"``: a few anchor runs, a loss law fitted to them predicts every cell, the
  best predicted cells of each budget are trained to verify it, and the rest are
  trained only when it fails its check (:mod:`budgetax.training.sweep.law`).

This module holds what halving scores and prunes with (:data:`ESTIMATORS`,
:func:`score_curves`, :func:`prune`); the groups each strategy plans are in
:mod:`budgetax.training.sweep.plan`, how each is trained in
:mod:`budgetax.training.sweep.execute`. ``shared_prefix``, ``branched_schedules``
(plan) and ``rank_lrs``, ``select_sign``, ``lr_extension`` (selection) keep their
names here.

References:
  Hägele, Bakouch, Kosson, Ben Allal, Von Werra, Jaggi. Scaling Laws and
  Compute-Optimal Training Beyond Fixed Training Durations. 2024. arXiv:2405.18392.
  Hu et al. MiniCPM: Unveiling the Potential of Small Language Models with
  Scalable Training Strategies. 2024. arXiv:2404.06395.
  Li, Jamieson, DeSalvo, Rostamizadeh, Talwalkar. Hyperband. JMLR 2018.
  arXiv:1603.06560.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from budgetax import ranking
from budgetax.training.sweep.plan import branched_schedules, shared_prefix
from budgetax.training.sweep.selection import lr_extension, rank_lrs, select_sign

__all__ = ["ESTIMATORS", "STRATEGIES", "branched_schedules", "lr_extension", "prune",
           "rank_lrs", "score_curves", "select_sign", "shared_prefix"]

STRATEGIES = ("grid", "branch", "halving", "branch+halving", "law")


def _tse_e(losses, spe):
    return ranking.tse_e(losses, spe, last_epochs=1)


def _tse(losses, spe):
    return ranking.tse(losses, spe)


def _lcga(losses, spe):
    return ranking.lcga(losses, spe, variant="slope").score


def _last(losses, spe):
    """The mean loss of the last tenth of the curve (at least one step)."""
    k = max(1, losses.shape[-1] // 10)
    return jnp.mean(losses[..., -k:], axis=-1)


ESTIMATORS = {"tse_e": _tse_e, "tse": _tse, "lcga": _lcga, "last": _last}


def score_curves(losses: np.ndarray, steps_per_epoch: int, estimator: str) -> np.ndarray:
    """Scores (lower = predicted better) of training-loss curves ``[R, t]`` by ``estimator``.

    An epoch is ``min(steps_per_epoch, t // 4)`` steps (at least one) so that short
    rungs still have complete epochs. A curve with a non-finite loss scores +inf.
    """
    losses = np.asarray(losses, np.float32)
    t = losses.shape[-1]
    spe = max(1, min(int(steps_per_epoch), t // 4))
    bad = ~np.isfinite(losses).all(axis=-1)
    clean = np.where(np.isfinite(losses), losses, 1.0)
    out = np.asarray(ESTIMATORS[estimator](jnp.asarray(clean), spe), np.float64)
    return np.where(bad | ~np.isfinite(out), np.inf, out)


def prune(cells: list[tuple], scores: np.ndarray, rate: int) -> list[bool]:
    """Which runs survive a rung of successive halving.

    ``cells[i] = (schedule, peak_lr)`` of run ``i``; a cell's score is the mean of
    its runs' (its seeds'); within each schedule the best ``ceil(n / rate)`` of
    its ``n`` cells survive (ties broken by the lr order). Returns a keep flag per run.
    """
    by_cell: dict = {}
    for i, c in enumerate(cells):
        by_cell.setdefault(c, []).append(i)
    keep_cells = set()
    schedules = sorted({c[0] for c in by_cell})
    for s in schedules:
        mine = sorted((c for c in by_cell if c[0] == s), key=lambda c: c[1])
        mean = [float(np.mean(scores[by_cell[c]])) for c in mine]
        order = sorted(range(len(mine)), key=lambda j: (mean[j], j))
        for j in order[:math.ceil(len(mine) / rate)]:
            keep_cells.add(mine[j])
    return [c in keep_cells for c in cells]
