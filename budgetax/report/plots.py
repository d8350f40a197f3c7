"""The sweep report's figures: the metric against the budget, and the lr and loss curves."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from budgetax.training.sweep.store import decode_curves

if TYPE_CHECKING:
    from budgetax.report.tables import Cell

__all__ = ["PLOTS", "curve_grid", "metric_vs_budget", "write_plots"]

PLOTS = ("metric_vs_budget.png", "lr_curves.png", "loss_curves.png")


def _smooth(x, k):
    x = np.asarray(x, np.float64)
    if k <= 1 or len(x) < k:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([x[:k - 1], out])


STYLES = ("-", "--", "-.", ":")
PANEL = (3.4, 2.6)  # inches of one panel of the curve grids


def _grid(n: int) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` panels: one row up to 3, 2 x 2 for 4, else 3 columns."""
    cols = 2 if n == 4 else min(n, 3)
    return -(-n // cols), cols


def _legend(fig, handles, labels, spare=None):
    """One legend for the whole figure: in the ``spare`` (empty) panel, else to the right."""
    kw = dict(frameon=False, fontsize=8, title="schedule", title_fontsize=8)
    if spare is not None:
        spare.legend(handles, labels, loc="center", **kw)
        spare.axis("off")
    else:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), **kw)


def _plain_log_ticks(ax):
    """Log-axis tick labels as plain numbers (0.01, 0.5, 2), minor ones on short ranges."""
    from matplotlib import ticker

    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = ax.get_ylim()
    if hi / max(lo, 1e-300) < 20:  # under about a decade and a half: label minor ticks too
        def minor(v, _):
            mantissa = round(v / 10 ** math.floor(math.log10(v)), 6) if v > 0 else 0
            return f"{v:.2g}" if mantissa in (2, 3, 5) else ""

        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(minor))
    else:
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _seed_band(runs, curve, train_metrics, steps):
    """Mean, min and max over seeds of one per-step curve (the loss smoothed per seed)."""
    ys = []
    for r in runs:
        y = decode_curves(r["curves"], train_metrics, r["budget"])[curve]
        if curve == "loss":
            y = _smooth(y, max(1, steps // 50))
        ys.append(np.asarray(y, np.float64))
    ys = np.stack(ys)
    return ys.mean(0), ys.min(0), ys.max(0)


_RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8,
       "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False}


def _styles(cells) -> dict:
    """Each schedule's colour and line style, the same in every plot (tell-apart in grey too)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    schedules = list(dict.fromkeys(c.schedule for c in cells))
    return {s: dict(color=cmap(i % 10), ls=STYLES[(i // 10 + i) % 4])
            for i, s in enumerate(schedules)}


def metric_vs_budget(cells: list[Cell], metric: str, predictions=()):
    """The figure of ``metric`` against the budget: one line per schedule at its best lr.

    With several seeds each line is their mean with a ± std band. Predicted budgets
    (:func:`predict_cells`) are open markers with their 95% interval, joined to the
    trained ones by a dashed line. The legend is outside the axes. Returns the
    matplotlib figure.
    """
    import matplotlib.pyplot as plt

    style = _styles(cells)
    budgets = list(dict.fromkeys(c.budget for c in cells))
    seeds = max((c.seeds for c in cells), default=1)
    k = 100 if metric.endswith("accuracy") else 1
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for s in style:
            cs = [c for c in cells if c.schedule == s and c.best_lr is not None]
            if not cs:
                continue
            x = np.array([c.budget for c in cs], np.float64)
            m = np.array([k * c.mean for c in cs])
            sd = np.array([k * c.std for c in cs])
            ax.plot(x, m, marker="o", ms=3.5, lw=1.4, label=s, **style[s])
            if seeds > 1:
                ax.fill_between(x, m - sd, m + sd, color=style[s]["color"], alpha=0.15, lw=0)
            pred = sorted((p for p in predictions if p["schedule"] == s),
                          key=lambda p: p["budget"])
            if pred:  # spread the schedules' predicted points a little apart
                shift = 1.04 ** (list(style).index(s) - (len(style) - 1) / 2)
                px = np.array([p["budget"] for p in pred], np.float64) * shift
                pm = np.array([k * p["mean"] for p in pred])
                err = np.array([[k * (p["mean"] - p["low"]) if p["low"] is not None else 0.0
                                 for p in pred],
                                [k * (p["high"] - p["mean"]) if p["high"] is not None else 0.0
                                 for p in pred]])
                ax.plot(np.r_[x[-1], px], np.r_[m[-1], pm], ls="--", lw=1.0,
                        color=style[s]["color"])
                ax.errorbar(px, pm, yerr=err, fmt="o", mfc="white", ms=4, capsize=2, lw=1.0,
                            color=style[s]["color"])
        ax.set_xscale("log")
        budgets = sorted(set(budgets) | {p["budget"] for p in predictions})
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("budget (optimizer steps)")
        ax.set_ylabel(f"{metric}{' (%)' if metric.endswith('accuracy') else ''}")
        ax.set_title(f"{metric} at each schedule's best lr"
                     + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else " (one seed)"))
        ax.grid(alpha=0.3)
        _legend(fig, *ax.get_legend_handles_labels())
        fig.tight_layout()
    return fig


def curve_grid(cells: list[Cell], runs_by_id: dict, curve: str, train_metrics):
    """One panel per budget of a per-step curve (``"lr"`` or ``"loss"``) of every schedule.

    Each schedule is drawn at its best lr, as the mean over its seeds with a min-max
    band (the loss smoothed per seed, on a log axis). Panels fill a grid of at most
    3 columns sized to their number; the legend takes the first empty panel, else
    stands to the right of the grid. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    style = _styles(cells)
    budgets = list(dict.fromkeys(c.budget for c in cells))
    seeds = max((c.seeds for c in cells), default=1)
    ylabel = {"lr": "learning rate", "loss": "training loss (smoothed)"}.get(curve, curve)
    rows, cols = _grid(len(budgets))
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows),
                                 squeeze=False)
        for i, (ax, steps) in enumerate(zip(axes.flat, budgets)):
            for s in style:
                c = next((c for c in cells if c.budget == steps and c.schedule == s), None)
                if c is None or not c.run_ids:
                    continue
                mean, lo, hi = _seed_band([runs_by_id[r] for r in c.run_ids], curve,
                                          train_metrics, steps)
                x = np.arange(1, steps + 1)
                ax.plot(x, mean, lw=1.2, label=s, **style[s])
                if len(c.run_ids) > 1:
                    ax.fill_between(x, lo, hi, color=style[s]["color"], alpha=0.15, lw=0)
            ax.set_title(f"budget {steps} steps")
            ax.set_xlim(0, steps)
            if curve == "loss":
                ax.set_yscale("log")
                _plain_log_ticks(ax)
            else:
                ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.grid(alpha=0.3)
            if i % cols == 0:
                ax.set_ylabel(ylabel)
            if i >= len(budgets) - cols:
                ax.set_xlabel("step")
        spare = list(axes.flat)[len(budgets):]
        for ax in spare[1:]:
            ax.set_visible(False)
        _legend(fig, *axes.flat[0].get_legend_handles_labels(), spare[0] if spare else None)
        what = f"mean of {seeds} seeds, band: min to max" if seeds > 1 else "one seed"
        fig.suptitle(f"{ylabel} at each schedule's best lr ({what})", fontsize=10)
        fig.tight_layout()
    return fig


def write_plots(out_dir, cells, runs_by_id, metric, train_metrics, predictions=()):
    """Writes :data:`PLOTS`: :func:`metric_vs_budget` and the lr and loss :func:`curve_grid`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    figs = (metric_vs_budget(cells, metric, predictions),
            curve_grid(cells, runs_by_id, "lr", train_metrics),
            curve_grid(cells, runs_by_id, "loss", train_metrics))
    for name, fig in zip(PLOTS, figs, strict=True):
        fig.savefig(os.path.join(out_dir, name), dpi=150, bbox_inches="tight")
        plt.close(fig)
