"""Predictions at budgets nobody trained: a power law in the budget per schedule."""

from __future__ import annotations

import math

import numpy as np

from budgetax.report.tables import Cell, budget_table

__all__ = ["MIN_PREDICT_BUDGETS", "check_predict", "format_predictions", "predict_cells"]

def check_predict(predict) -> tuple[float, ...]:
    """``predict`` (budgets to predict, as fractions of the full budget) as a tuple of floats,
    or a ``TypeError``/``ValueError`` naming it and its value."""
    if isinstance(predict, str | bytes) or not hasattr(predict, "__iter__"):
        raise TypeError(f"predict must be a sequence of budget fractions (e.g. (2.0,) for "
                        f"twice the full budget), got {predict!r}")
    out = []
    for f in predict:
        if isinstance(f, bool) or not isinstance(f, int | float | np.integer | np.floating):
            raise TypeError(f"predict must hold budget fractions (numbers), got {f!r} in "
                            f"{predict!r}")
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"predict must hold positive, finite budget fractions, got {f!r} "
                             f"in {predict!r}")
        out.append(float(f))
    return tuple(out)


MIN_PREDICT_BUDGETS = 3  # the law a + b T^-c has 3 parameters


def predict_cells(cells: list[Cell], runs_by_id: dict, metric: str, fractions,
                  full_budget: int) -> tuple[list[dict], dict]:
    """Each schedule's ``metric`` predicted at budget ``fractions`` of the full budget.

    Fits :func:`budgetax.frontier.fit_frontier` to the table's cells of the schedule
    (the seeds' values at each budget's selected lr). Returns ``(predictions,
    not_predicted)``: ``[{"schedule", "budget_fraction", "budget", "mean", "low",
    "high", "noise_from", "fit"}]`` (95% bootstrap interval; ``low``/``high`` ``None``
    where nothing measures the noise: one seed and 3 budgets) and ``{schedule: why}``
    for the schedules with fewer than 3 budgets with a result.
    """
    from budgetax.frontier import fit_frontier

    fractions = check_predict(fractions)
    out, skipped = [], {}
    if not fractions:
        return out, skipped
    for s in dict.fromkeys(c.schedule for c in cells):
        mine = [c for c in cells if c.schedule == s and c.best_lr is not None]
        if len(mine) < MIN_PREDICT_BUDGETS:
            skipped[s] = (f"{len(mine)} budget(s) with a result, the power law needs "
                          f"{MIN_PREDICT_BUDGETS}")
            continue
        values = [[runs_by_id[i]["final"].get(metric, math.nan) for i in c.run_ids]
                  for c in mine]
        width = max(len(v) for v in values)
        values = np.array([v + [math.nan] * (width - len(v)) for v in values], np.float64)
        bound = 1.0 if metric.endswith("accuracy") else (0.0 if metric.endswith("loss")
                                                          else None)
        fit = fit_frontier([c.budget_fraction for c in mine], values, bound=bound,
                           higher_is_better=metric.endswith("accuracy"))
        for f in fractions:
            lo, hi = fit.interval(f)
            known = fit.noise_from != "none"
            out.append({"schedule": s, "budget_fraction": f,
                        "budget": int(round(f * full_budget)),
                        "mean": float(fit.predict(f)),
                        "low": float(lo) if known else None,
                        "high": float(hi) if known else None,
                        "noise_from": fit.noise_from,
                        "fit": {"a": fit.a, "b": fit.b, "c": fit.c}})
    return out, skipped


def format_predictions(preds: list[dict], metric: str) -> str:
    """The predicted cells as a markdown table (``≈ mean [low, high]``), budget-major."""
    fmt = (lambda v: f"{100 * v:.1f}") if metric.endswith("accuracy") else (lambda v: f"{v:.4g}")
    def text(p):
        if p is None:
            return ""
        if p["low"] is None:
            return f"≈{fmt(p['mean'])} (no interval)"
        return f"≈{fmt(p['mean'])} [{fmt(p['low'])}, {fmt(p['high'])}]"

    return budget_table([(p["budget_fraction"], p["budget"], p["schedule"], p) for p in preds],
                         text, "{:.0%} (predicted)")
