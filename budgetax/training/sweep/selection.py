"""The one rule that picks a (budget, schedule) cell's peak learning rate from its runs.

The report's table (:func:`budgetax.report.summarize`), the widening of the lr grid
(:func:`lr_extension`, behind ``sweep(..., auto_lrs=n)``) and the experiments all
choose a cell's lr with :func:`rank_lrs` among its :func:`eligible` lrs: the best
mean final value of the selection metric over the lr's runs, a tie going to the
smaller lr. The selection metric is :func:`default_select` unless the user names
one: a training loss, never the test set.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MINIBATCH_LOSS", "by_cell", "default_select", "eligible", "lr_extension",
           "minibatch_loss", "minibatch_window", "rank_lrs", "select_sign"]

MINIBATCH_LOSS = "train_minibatch_loss"


def default_select(eval_metrics) -> str:
    """The metric that picks a cell's lr unless told otherwise: the diagnostics' training
    loss (``train_loss``, on the sweep's fixed subset of the training set or on the whole
    set) when the sweep evaluated it, else :data:`MINIBATCH_LOSS`; never a test metric."""
    return "train_loss" if "train_loss" in eval_metrics else MINIBATCH_LOSS


def minibatch_loss(losses, budget: int, steps_per_epoch: int | None) -> float:
    """A run's :data:`MINIBATCH_LOSS`: the mean of its per-step minibatch training losses over
    its last epoch, or over its last half when it is shorter than two epochs (the window
    never reaches back into the first half of a run, where the loss is far from final).

    Recorded for runs trained without diagnostics, so that their lr is
    chosen on training data the runs have already seen, not on the test set.
    """
    window = minibatch_window(budget, steps_per_epoch)
    return float(np.mean(np.asarray(losses, np.float64)[budget - window:budget]))


def minibatch_window(budget: int, steps_per_epoch: int | None) -> int:
    """The last steps :func:`minibatch_loss` averages: an epoch, at most half the run."""
    window = max(1, budget // 2)
    if steps_per_epoch:
        window = min(window, int(steps_per_epoch))
    return window


def select_sign(select: str, metric: str, higher_is_better: bool) -> float:
    """``-1.0`` when a larger final ``select`` is better, else ``1.0``: the table
    ``metric``'s own direction when ``select`` is that metric; otherwise larger for
    accuracies, smaller for the rest (losses, norms)."""
    if select == metric:
        return -1.0 if higher_is_better else 1.0
    return -1.0 if select.endswith("accuracy") else 1.0


def rank_lrs(by_lr: dict, select: str, sign: float) -> list[tuple[float, float]]:
    """``[(lr, score)]`` of one (budget, schedule), best first: the score is ``sign``
    times the mean final ``select`` over the lr's runs (lower is better), lrs with a
    non-finite score are left out, and a tie goes to the smaller lr. The rule that
    picks a cell's lr in the report and in :func:`lr_extension`; the caller decides
    which lrs are eligible."""
    scores = {}
    for lr, rs in by_lr.items():
        m = float(np.mean([r["final"].get(select, math.nan) for r in rs]))
        if np.isfinite(m):
            scores[lr] = sign * m
    return sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))


def by_cell(runs: list[dict]) -> dict:
    """``{(budget, schedule): {peak_lr: [runs]}}``, in the order of ``runs``."""
    cells: dict = {}
    for r in runs:
        cells.setdefault((r["budget"], r["schedule"]), {}).setdefault(r["peak_lr"], []).append(r)
    return cells


def eligible(by_lr: dict) -> dict:
    """The lrs of ``by_lr`` (``{lr: [runs]}``) that can be a cell's best: every run
    finished and none diverged (an lr pruned by successive halving is not)."""
    return {lr: rs for lr, rs in by_lr.items() if all(r["status"] == "done" for r in rs)}


def lr_extension(runs: list[dict], peak_lrs, select: str, higher_is_better: bool) -> list[float]:
    """The peak lrs to add so that no (budget, schedule)'s best lr stays at the grid's edge.

    Each (budget, schedule)'s best lr is the one with the best mean final ``select``
    (larger if ``higher_is_better``) among the lrs at which every run finished and
    none diverged (:func:`rank_lrs`, the report's rule). If any is the
    smallest lr of the grid, one geometric step below it is added (the grid's mean
    ratio, 3 for a one-lr grid); likewise above the largest. Rounded to 3
    significant digits. An empty list: every best lr is interior (or the runs are
    not finished).
    """
    grid = sorted(float(v) for v in peak_lrs)
    ratio = 3.0 if len(grid) < 2 else (grid[-1] / grid[0]) ** (1.0 / (len(grid) - 1))
    low = high = False
    for by_lr in by_cell(runs).values():
        ranked = rank_lrs(eligible(by_lr), select, -1.0 if higher_is_better else 1.0)
        if not ranked:
            continue
        best = ranked[0][0]
        low |= best == grid[0]
        high |= best == grid[-1]
    out = []
    if low:
        out.append(float(f"{grid[0] / ratio:.3g}"))
    if high:
        out.append(float(f"{grid[-1] * ratio:.3g}"))
    return out
