"""The sweep report's table: each (budget, schedule) cell at its best peak lr."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from budgetax.training.sweep.selection import (
    MINIBATCH_LOSS,
    eligible,
    rank_lrs,
    select_sign,
)

__all__ = ["LEGEND", "SELECT", "Cell", "budget_table", "format_table", "summarize"]

SELECT = ("train_loss", MINIBATCH_LOSS, "test_accuracy", "test_loss")

@dataclasses.dataclass
class Cell:
    """One (budget, schedule) cell of the table."""

    budget_fraction: float
    budget: int
    schedule: str
    best_lr: float | None       # None: every lr diverged
    mean: float                 # the table metric at best_lr, mean over seeds
    std: float                  # sample std over seeds (0 for one seed)
    seeds: int
    diverged_lrs: tuple         # lrs at which some seed diverged
    best_in_budget: bool = False
    run_ids: tuple = ()
    lr_near_tie: bool = False   # the runner-up lr is within the seed spread of the best one
    winner_near_tie: bool = False  # best in budget, with the runner-up within the seed spread
    lr_at_edge: bool = False    # the best lr is the smallest or largest of the grid


def summarize(runs: list[dict], select: str = "train_loss", metric: str = "test_accuracy",
              higher_is_better: bool = True) -> list[Cell]:
    """The table's cells, budget-major then in the sweep's schedule order (finished runs only).

    Args:
      runs: the store's rows.
      select: the evaluation metric that picks each cell's learning rate (the best
        mean over seeds, among the lrs at which no seed diverged; in ``metric``'s
        direction when it is ``metric``, else larger for accuracies and smaller
        for the rest: :func:`budgetax.training.sweep.selection.rank_lrs`).
      metric: the evaluation metric the cells report.
      higher_is_better: the direction of ``metric`` (which cell of a budget is best).
    """
    done = [r for r in runs if r["status"] in ("done", "diverged")]
    names = set().union(*(r["final"] for r in done)) if done else set()
    for arg, value in (("select", select), ("metric", metric)):
        if not isinstance(value, str) or (names and value not in names):
            raise ValueError(f"{arg} must be one of {sorted(names) or list(SELECT)}, "
                             f"got {value!r}")
    budgets = sorted({(r["budget_fraction"], r["budget"]) for r in done})
    schedules = list(dict.fromkeys(r["schedule"] for r in runs))
    sign = select_sign(select, metric, higher_is_better)
    cells = []
    for f, steps in budgets:
        row = []
        for s in schedules:
            mine = [r for r in done if r["budget"] == steps and r["schedule"] == s]
            if not mine:
                continue
            by_lr = {}
            for r in mine:
                by_lr.setdefault(r["peak_lr"], []).append(r)
            diverged = tuple(sorted(lr for lr, rs in by_lr.items()
                                    if any(r["status"] == "diverged" for r in rs)))
            ok = eligible(by_lr)
            scored = dict(rank_lrs(ok, select, sign))
            if not scored:
                row.append(Cell(f, steps, s, None, math.nan, math.nan, 0, diverged))
                continue
            ranked = list(scored)
            lr = ranked[0]
            acc = np.array([r["final"][metric] for r in ok[lr]], np.float64)
            cell = Cell(f, steps, s, lr, float(acc.mean()),
                        float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, len(acc), diverged,
                        run_ids=tuple(r["run_id"] for r in ok[lr]))
            if len(ranked) > 1:  # within the seed spread of the selection metric
                sel = [_spread(ok[k], select) for k in ranked[:2]]
                cell.lr_near_tie = abs(scored[ranked[1]] - scored[lr]) <= max(sel)
            grid = sorted({r["peak_lr"] for r in runs if r["budget"] == steps
                           and r["schedule"] == s})  # pruned lrs are part of the grid
            cell.lr_at_edge = len(grid) > 1 and lr in (grid[0], grid[-1])
            row.append(cell)
        finite = sorted((c for c in row if np.isfinite(c.mean)), key=lambda c: c.mean,
                        reverse=higher_is_better)
        if finite:
            for c in finite:
                c.best_in_budget = c.mean == finite[0].mean
            if len(finite) > 1:
                first, second = finite[0], finite[1]
                first.winner_near_tie = abs(first.mean - second.mean) <= max(first.std,
                                                                            second.std)
        cells.extend(row)
    return cells


def _spread(runs, select) -> float:
    vals = np.array([r["final"].get(select, math.nan) for r in runs], np.float64)
    return float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


def _value(metric: str, mean: float, std: float, seeds: int) -> str:
    """``mean ± std`` (accuracies in percent); the mean alone for one seed (no spread)."""
    if metric.endswith("accuracy"):
        return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")
    return f"{mean:.4g}" + (f" ± {std:.2g}" if seeds > 1 else "")


def format_table(cells: list[Cell], *, markdown_bold: bool = True,
                 metric: str = "test_accuracy") -> str:
    """A markdown table: one row per budget, one column per schedule, best cell marked.

    Each cell is ``mean ± std`` of ``metric`` (accuracies in percent; the mean alone
    with one seed) at the schedule's best lr, with that lr; the best schedule of each
    budget is in bold (or marked ``*``). Marks (explained by :data:`LEGEND`): ``~`` a winner whose
    runner-up is within the seed spread, ``†`` a best lr whose runner-up lr is
    within the seed spread of the selection metric, ``⇥`` a best lr at the edge of
    the grid.
    """
    def text(c):
        if c is None:
            return ""
        if c.best_lr is None:
            return "diverged"
        marks = ("†" if c.lr_near_tie else "") + ("⇥" if c.lr_at_edge else "")
        out = f"{_value(metric, c.mean, c.std, c.seeds)} (lr {c.best_lr:g}{marks})"
        if c.best_in_budget:
            out = f"**{out}**" if markdown_bold else f"{out} *"
            if c.winner_near_tie:
                out = "~" + out
        return out

    return budget_table([(c.budget_fraction, c.budget, c.schedule, c) for c in cells], text)


def budget_table(entries, text, budget_label="{:.0%}") -> str:
    """A markdown table of ``(fraction, steps, schedule, item)`` entries: a row per budget,
    a column per schedule (first-seen order), each cell ``text(item)`` (``text(None)``
    where a budget lacks a schedule)."""
    budgets = list(dict.fromkeys((f, steps) for f, steps, _, _ in entries))
    schedules = list(dict.fromkeys(s for _, _, s, _ in entries))
    by = {(steps, s): item for _, steps, s, item in entries}
    header = ["budget", "steps"] + schedules
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for f, steps in budgets:
        row = [budget_label.format(f), str(steps)] + [text(by.get((steps, s)))
                                                     for s in schedules]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


LEGEND = ("Bold: the budget's best schedule; ~ before it: the runner-up is within the seed "
          "spread (the larger std of the two), so the ranking of these two is not resolved by "
          "these seeds. † after an lr: the runner-up lr scored within the seed spread of the "
          "selection metric (a near-tie in the lr choice, which may flip on another machine). "
          "⇥ after an lr: it is the smallest or largest lr of the grid, so a better one may "
          "lie outside it.")
