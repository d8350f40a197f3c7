"""Tables and plots of a sweep, rebuilt from its results store (``budgetax report DIR``).

The table answers "which schedule, at my budget?": for each budget and schedule,
the task's table metric (test accuracy for the classification presets; see
:meth:`budgetax.training.Task.table_metric`), mean ± std over seeds, at that
schedule's best peak learning rate, the best cell of each budget marked. The best
learning rate is chosen
*without looking at the test set*: by default the one with the lowest mean final
full-training-set loss over seeds (``select="train_loss"``), or, for a sweep run
without diagnostics, the lowest mean minibatch training loss over each run's last
epoch (``select="train_minibatch_loss"``,
:func:`budgetax.training.sweep.selection.minibatch_loss`); a learning rate at
which any seed diverged is not eligible. ``select="test_accuracy"`` picks by test
accuracy instead (optimistic: it tunes on the test set); any other evaluation metric
of the task can be named (lower is better, unless its name ends in ``accuracy``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform

import numpy as np

from budgetax._io import atomic_write_json, atomic_write_text
from budgetax.training.sweep.selection import (
    MINIBATCH_LOSS,
    default_select,
    eligible,
    minibatch_loss,
    rank_lrs,
    select_sign,
)
from budgetax.training.sweep.store import STORE_NAME, Store, decode_curves

__all__ = ["SELECT", "Cell", "curve_grid", "elasticity_stops", "format_table", "load",
           "metric_vs_budget", "optimizer_text", "summarize", "write_report"]

SELECT = ("train_loss", MINIBATCH_LOSS, "test_accuracy", "test_loss")
PLOTS = ("metric_vs_budget.png", "lr_curves.png", "loss_curves.png")
SUMMARY = "summary.json"


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


def load(out_dir: str, *, with_curves: bool = False) -> tuple[dict, list[dict], list[dict]]:
    """``(spec, runs, groups)`` of the sweep stored in ``out_dir``.

    ``spec`` is the stored spec with the plan's ``steps_per_epoch``, the task's
    identity (``task``), its metric names (``metrics``), its table metric
    (``table_metric``: ``[name, higher_is_better]``) and the calls that trained it
    (``sessions``: their wall and compilation seconds) added.
    """
    path = os.path.join(out_dir, STORE_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no sweep in {out_dir!r}: {STORE_NAME} not found")
    with Store(path, readonly=True) as store:
        if store.get_meta("spec") is None:
            raise FileNotFoundError(f"no sweep in {out_dir!r}: {STORE_NAME} holds no sweep yet "
                                    f"(it was interrupted before its plan was written); run "
                                    f"the sweep again")
        spec = dict(store.get_meta("spec"))
        spec["steps_per_epoch"] = (store.get_meta("plan") or {}).get("steps_per_epoch")
        for key in ("task", "metrics", "table_metric"):
            spec[key] = store.get_meta(key)
        spec["sessions"] = store.sessions()
        spec["law"] = store.get_meta("law")
        return spec, store.runs(with_curves=with_curves), store.groups()


def elasticity_stops(runs: list[dict], steps_per_epoch: int, train_metrics, *,
                     threshold: float = 0.05, patience: int = 3,
                     smoothing: float = 0.5) -> list[dict]:
    """The elasticity stopping rule replayed on every finished run, summarised per budget.

    For each budget: how many runs (not diverged, at least ``patience + 1`` epochs
    long) the rule of :func:`budgetax.ranking.early_stop` would have stopped
    before the end, the mean fraction of the budget it saves and the mean
    training loss it gives up (loss of the stop epoch minus that of the last epoch).
    ``train_metrics`` names the rows of the stored per-step curves.
    """
    from budgetax import ranking

    out = []
    for steps in sorted({r["budget"] for r in runs}):
        mine = [r for r in runs if r["budget"] == steps and r["status"] == "done"
                and r.get("curves") is not None]
        epochs = steps // steps_per_epoch
        row = {"budget": steps, "epochs": epochs, "runs": len(mine), "stopped": 0,
               "compute_saved": math.nan, "loss_given_up": math.nan}
        if mine and epochs > patience:
            loss = np.stack([decode_curves(r["curves"], train_metrics, steps)["loss"]
                             for r in mine])
            res = ranking.early_stop(loss, steps_per_epoch, threshold=threshold,
                                     patience=patience, smoothing=smoothing)
            saved = np.asarray(res.compute_saved, np.float64)
            row.update(stopped=int((saved > 0).sum()), compute_saved=float(saved.mean()),
                       loss_given_up=float(np.nanmean(np.asarray(res.loss_given_up))))
        out.append(row)
    return out


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

    return _budget_table([(c.budget_fraction, c.budget, c.schedule, c) for c in cells], text)


def _budget_table(entries, text, budget_label="{:.0%}") -> str:
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


def optimizer_text(opt: dict) -> str:
    """The optimizer of a stored spec in words, its momentum always named.

    ``--optimizer sgd`` is SGD with momentum 0.9 unless ``momentum=0`` is given: the
    report says so rather than "sgd".
    """
    name, m = opt["optimizer"], opt.get("momentum", 0.9)
    if name in ("sgd", "momentum", "sgdp"):
        text = (f"{name} with momentum {m:g}" + (" (Nesterov)" if opt.get("nesterov") else "")
                if m else f"{name} without momentum")
    else:
        text = f"{name} (b1 {m:g}, b2 {opt.get('b2', 0.999):g})"
    if opt.get("demon"):
        text += " + Demon (momentum decayed from that value)"
    if opt.get("weight_decay"):
        text += f", weight decay {opt['weight_decay']:g}"
    return text + f", precision {opt.get('precision', 'float32')}"


def _cpu_name() -> str:
    """The host CPU's model name (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def _plots(out_dir, cells, runs_by_id, metric, train_metrics, predictions=()):
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


def _with_minibatch_loss(out_dir: str, spec: dict, runs: list[dict]) -> list[dict]:
    """``runs`` with :data:`MINIBATCH_LOSS` in each finished run's ``final``, computed from
    its stored loss curve where the store predates it."""
    missing = [r for r in runs if r["status"] in ("done", "diverged")
               and MINIBATCH_LOSS not in r["final"]]
    if not missing:
        return runs
    if "curves" not in missing[0]:
        _, with_curves, _ = load(out_dir, with_curves=True)
        blobs = {r["run_id"]: r["curves"] for r in with_curves}
    else:
        blobs = {r["run_id"]: r["curves"] for r in missing}
    names = tuple(spec["metrics"]["train"])
    for r in missing:
        loss = decode_curves(blobs[r["run_id"]], names, r["budget"])["loss"]
        r["final"] = {**r["final"], MINIBATCH_LOSS: minibatch_loss(
            loss, r["budget"], spec.get("steps_per_epoch"))}
    return runs


def _law_lines(spec: dict, runs: list[dict], metric: str) -> list[str]:
    """The ``law`` strategy's section: what it fitted, how it checked, what it predicted."""
    law = spec["law"]
    check = law.get("check")
    anchors = ", ".join(f"`{a}`" for a in spec["law_anchors"])
    out = [f"Strategy `law`: the Multi-Power Law, fitted per peak lr on the anchors ({anchors} "
           f"at the longest budget, seed {spec['seeds'][0]}; fits for "
           f"{len(law['fits'])} of {len(spec['peak_lrs'])} lrs), predicted every cell's final "
           f"training minibatch loss; the {spec['law_verify']} best predicted cells of each "
           f"budget were trained with every seed."]
    if check is None:
        out[0] += " The check of its predictions is not done yet (resume the sweep)."
    elif check["trusted"]:
        out[0] += (f" On the {check['cells']} verified cells that are not anchors its median "
                   f"relative error was {check['median_rel_error']:.1%} (tolerance "
                   f"{check['tolerance']:.1%}): the other cells are its predictions, not "
                   f"trained, and the table above holds the trained cells only.")
    else:
        out[0] += (f" On the {check['cells']} verified cells that are not anchors its median "
                   f"relative error was {check['median_rel_error']:.1%}, above the tolerance "
                   f"{check['tolerance']:.1%}: the law was not trusted, and every cell was "
                   f"trained.")
    measured: dict = {}
    for r in runs:
        value = r["final"].get(MINIBATCH_LOSS) if r["final"] else None
        if r["status"] == "done" and value is not None:
            measured.setdefault((r["budget"], r["schedule"], r["peak_lr"]), []).append(value)
    best: dict = {}
    for c in law["cells"]:
        key = (c["budget"], c["schedule"])
        if c["predicted"] is not None and (key not in best
                                           or c["predicted"] < best[key]["predicted"]):
            best[key] = c
    fraction = {r["budget"]: r["budget_fraction"] for r in runs}

    def text(c):
        if c is None:
            return ""
        got = measured.get((c["budget"], c["schedule"], c["peak_lr"]))
        band = (f" [{c['low']:.4g}, {c['high']:.4g}]" if c.get("low") is not None else "")
        return (f"{c['predicted']:.4g}{band} (lr {c['peak_lr']:g})"
                + (f" → {np.mean(got):.4g}" if got else ""))

    out += ["", "Predicted final training minibatch loss of each budget and schedule at its best "
            "predicted lr, with the law's 95% interval (from its fit; it does not cover a "
            "law that is wrong for this task, which the check above measures); `→` the "
            "measured mean where that cell was trained.", "",
            _budget_table([(fraction[b], b, s, best[b, s]) for b in sorted({b for b, _ in best})
                           for s in spec["schedules"] if (b, s) in best], text), ""]
    return out


def _holdout_lines(check: dict) -> list[str]:
    """The section of ``budgetax report DIR --law``."""
    anchors = ", ".join(f"`{a}`" for a in check["anchors"])
    out = [f"Law check: the Multi-Power Law, fitted per peak lr on the anchors ({anchors} at "
           f"the longest budget, first seed), predicts the final training minibatch loss of "
           f"the {len(check['cells'])} other trained cells: median relative error "
           f"{check['median_rel_error']:.1%}, worst {check['worst_rel_error']:.1%}. Per budget, "
           f"the cell (schedule, lr) it predicts best against the measured best; \"within "
           f"spread\": the predicted best measured within the larger seed std of the two.", "",
           "| budget | predicted best | measured best | same or within spread |",
           "|---|---|---|---|"]
    for b in check["budgets"]:
        (ps, plr), (ms, mlr) = b["predicted_best"], b["measured_best"]
        same = (ps, plr) == (ms, mlr)
        out.append(f"| {b['budget']} | `{ps}` lr {plr:g} | `{ms}` lr {mlr:g} | "
                   f"{'same' if same else ('within spread' if b['within_spread'] else 'no')} |")
    return out + [""]


def _time_text(groups: list[dict], sessions: list[dict], run_steps: int, device: str) -> str:
    """The report's sentence on time: the stored groups' training time and rate without
    compilation, and the wall time of every call that trained the sweep."""
    total = sum(g["seconds"] for g in groups)
    known = all(g.get("compile_seconds") is not None for g in groups)
    if known:
        comp = sum(g["compile_seconds"] for g in groups)
        out = (f"The stored groups trained {run_steps:,} run-steps in {total:.1f}s, "
               f"{comp:.1f}s of it compiling ({run_steps / max(total - comp, 1e-9):,.0f} "
               f"run-steps/s without compilation) on {device}.")
    else:  # a store written before compilation was timed apart
        out = (f"The stored groups trained {run_steps:,} run-steps in {total:.1f}s "
               f"({run_steps / max(total, 1e-9):,.0f} run-steps/s, compilation included) "
               f"on {device}.")
    if sessions:
        wall = sum(x["seconds"] for x in sessions)
        comp = sum(x["compile_seconds"] for x in sessions)
        out += (f" Wall time {wall:.1f}s over {len(sessions)} call(s) of the sweep "
                f"({comp:.1f}s compiling; a resumed sweep has one call per start, and a "
                f"killed call's time after its last stored group is not counted).")
    return out


def _selected_by(select: str) -> str:
    """How the table's header says what picked the lrs."""
    if select == "train_loss":
        return "lowest mean final training loss"
    if select == MINIBATCH_LOSS:
        return ("lowest mean minibatch training loss over each run's last epoch: the sweep "
                "ran without full-training-set diagnostics, and the test set is not used")
    if select.startswith("test_"):
        return f"{select}: tuned on the test set, so the table is optimistic"
    return select


def steps_trained(spec: dict, runs: list[dict], groups: list[dict]) -> list[dict]:
    """Per budget: the run-steps the sweep trained against the grid's (every run from scratch).

    A branched sweep counts the trunk's steps since the previous branch step for
    the budget that branches there; successive halving counts the steps its runs
    trained before they were pruned. Stores written before strategies existed
    count every run's budget.
    """
    out = []
    for f, steps in sorted({(r["budget_fraction"], r["budget"]) for r in runs}):
        mine = [g for g in groups if g["budget"] == steps]
        trained = sum(g["runs"] * g["budget"] if g.get("steps") is None else g["steps"]
                      for g in mine)
        grid = steps * sum(r["budget"] == steps for r in runs)
        out.append({"budget_fraction": f, "budget": steps, "trained": int(trained),
                    "grid": int(grid), "finished": bool(mine)})
    return out


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

    return _budget_table([(p["budget_fraction"], p["budget"], p["schedule"], p) for p in preds],
                         text, "{:.0%} (predicted)")


def write_report(out_dir: str, *, select: str | None = None, plots: bool = True,
                 command: str | None = None, device: str | None = None,
                 dest: str | None = None, predict=(), law: bool = False) -> str:
    """Writes ``results.md``, ``summary.json`` and the PNG plots in ``out_dir``; returns the table.

    ``summary.json`` holds the spec, the table's cells and every run's status and
    final metrics (no per-step curves): a small, diffable record of the sweep.

    Args:
      out_dir: a sweep directory.
      select: the metric that picks each cell's best lr (see the module docstring);
        default ``train_loss``, or ``train_minibatch_loss`` when the sweep ran
        without diagnostics (:func:`~budgetax.training.sweep.selection.default_select`).
      plots: also write ``metric_vs_budget.png``, ``lr_curves.png``, ``loss_curves.png``.
      command: the command line that ran the sweep (written into ``results.md``).
      device: a description of the device(s) (default: from ``jax.devices()``).
      dest: where to write the files (default: ``out_dir``; e.g. for a sweep on
        read-only media).
      predict: budgets (fractions of the full budget) at which to predict each
        schedule's result from the trained ones (:func:`predict_cells`).
      law: also check the Multi-Power Law on this sweep: fitted on its anchors (constant,
        cosine and step at the longest budget, first seed) it predicts every other
        trained cell's final training loss, and the report gives its errors
        (:func:`budgetax.training.sweep.law.holdout`).
    """
    if not isinstance(law, bool):
        raise TypeError(f"law must be a bool, got {law!r}")
    spec, runs, groups = load(out_dir, with_curves=plots or law)
    summary_path = os.path.join(out_dir, SUMMARY)
    dest = out_dir if dest is None else dest
    if command is None and os.path.exists(summary_path):  # `budgetax report` keeps the command
        with open(summary_path, encoding="utf-8") as f:
            command = json.load(f).get("command")
    metric, higher = spec["table_metric"]
    train_names = spec["metrics"]["train"]
    if select is None:
        select = default_select(spec["metrics"]["eval"])
    if select == MINIBATCH_LOSS:
        runs = _with_minibatch_loss(out_dir, spec, runs)
    cells = summarize(runs, select, metric, higher)
    table = format_table(cells, metric=metric)
    pending = sum(r["status"] == "pending" for r in runs)
    predicted = sum(r["status"] == "predicted" for r in runs)
    diverged = [r for r in runs if r["status"] == "diverged"]
    if device is None:
        import jax

        d = jax.devices()
        device = (f"{len(d)} x {d[0].device_kind} ({d[0].platform}; {_cpu_name()}), "
                  f"jax {jax.__version__}")
    per_budget = steps_trained(spec, runs, groups)
    run_steps = sum(b["trained"] for b in per_budget)
    pruned = [r for r in runs if r["status"] == "pruned"]
    by_id = {r["run_id"]: r for r in runs}
    preds, not_predicted = predict_cells(cells, by_id, metric, predict, spec["full_budget"])
    if predict and not preds:
        raise ValueError(
            f"predict: no schedule can be predicted, as each needs at least "
            f"{MIN_PREDICT_BUDGETS} trained budgets with a result (the law a + b T^-c has 3 "
            f"parameters): " + "; ".join(f"{k}: {v}" for k, v in not_predicted.items())
            + ". Train more budgets (e.g. --budgets 0.25,0.5,1), or leave out predict")
    opt = spec["optimizer"]
    lines = [
        "# Sweep results", "",
        f"Task `{spec['task']['name']}` ({json.dumps(spec['task']['config'])}), "
        f"{optimizer_text(opt)}, batch {spec['batch_size']}, "
        f"full budget {spec['full_budget']} steps"
        + (f" ({spec['full_budget'] / spec['steps_per_epoch']:.3g} epochs)"
           if spec.get("steps_per_epoch") else "") + "; "
        f"peak lrs {spec['peak_lrs']}, seeds {spec['seeds']}.", "",
    ]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [
        f"{metric}{' (%)' if metric.endswith('accuracy') else ''} at the end of each "
        f"budget, mean ± std over "
        f"{len(spec['seeds'])} seed(s), at each schedule's best peak lr (chosen by "
        f"{_selected_by(select)}, "
        "over lrs at which no seed diverged); bold: the best schedule of the budget.", "",
        table, "", LEGEND, "",
        f"{len(runs) - pending - predicted} of {len(runs)} runs finished"
        + (f", {predicted} predicted by the law and not trained" if predicted else "")
        + (f", {pending} pending (resume the sweep to finish them)" if pending else "")
        + f"; {len(diverged)} diverged"
        + (f", {len(pruned)} pruned by successive halving" if pruned else "") + "."
        + (" " + _time_text(groups, spec["sessions"], run_steps, device) if groups else ""),
        "",
    ]
    strategy = spec.get("strategy", "grid")
    if strategy != "grid":
        done = [b for b in per_budget if b["finished"]]
        lines += [
            f"Strategy `{strategy}`: optimizer steps trained (summed over runs) against the "
            "grid's, which trains every run from scratch to its budget"
            + (" (branch: a trunk of the schedules whose learning rate does not depend on the "
               "budget before their decay, each budget's decay branched from it; the trunk's "
               "steps count for the budget that branches next)" if "branch" in strategy
               else "")
            + (f" (halving: each schedule's lrs pruned to 1/{spec['prune_rate']} at "
               f"{', '.join(f'{x:.0%}' for x in spec['prune_at'])} of the budget by "
               f"`{spec['prune_estimator']}` on the training loss so far)"
               if "halving" in strategy else "") + ".", "",
            "| budget | steps | run-steps trained | grid's run-steps | share |",
            "|---|---|---|---|---|"]
        lines += [f"| {b['budget_fraction']:.0%} | {b['budget']} | {b['trained']:,} | "
                  f"{b['grid']:,} | {b['trained'] / max(b['grid'], 1):.0%} |" for b in done]
        total, grid = sum(b["trained"] for b in done), sum(b["grid"] for b in done)
        lines += [f"| all | | {total:,} | {grid:,} | {total / max(grid, 1):.0%} |", ""]
    if spec.get("law"):
        lines += _law_lines(spec, runs, metric)
    check = None
    if law:
        from budgetax.training.sweep.law import holdout

        check = holdout(runs, tuple(train_names), spec.get("steps_per_epoch"))
        lines += _holdout_lines(check)
    if preds:
        lines += [
            f"Predicted {metric}{' (%)' if metric.endswith('accuracy') else ''} at budgets "
            "nobody trained: per schedule, a power law `a + b (T/T_full)^-c` fitted to the "
            "cells above, with a 95% interval from a bootstrap over the seed noise "
            "(`budgetax.frontier`; it does not cover a change of regime beyond "
            "the trained budgets)"
            + ("; with one seed per budget the interval comes from the law's residuals, and "
               "with one seed and 3 budgets nothing measures the noise (no interval)"
               if any(p["noise_from"] != "seeds" for p in preds) else "") + ".", "",
            format_predictions(preds, metric), ""]
        if not_predicted:
            lines += ["Not predicted: " + "; ".join(f"`{k}` ({v})"
                                                     for k, v in not_predicted.items()) + ".",
                      ""]
    if diverged:
        lines += ["Diverged runs (NaN/inf loss or update; frozen at their last finite state):",
                  ""]
        lines += [f"- `{r['run_id']}` at step {r['diverged_step']}" for r in diverged[:50]]
        lines.append("")
    spe = spec.get("steps_per_epoch")
    if spe and plots:
        stops = elasticity_stops(runs, spe, train_names)
        lines += [
            "Elasticity early stopping (Zhao et al. 2022; `budgetax.ranking.early_stop`, "
            f"threshold 0.05, patience 3 epochs of {spe} steps), replayed on every finished run: "
            "how much of each budget it would have saved and the training loss it would have "
            "given up.", "",
            "| budget | epochs | runs | stopped early | mean compute saved | "
            "mean training loss given up |", "|---|---|---|---|---|---|"]
        for r in stops:
            if np.isfinite(r["compute_saved"]):
                saved, given = f"{100 * r['compute_saved']:.1f}%", f"{r['loss_given_up']:.4f}"
            else:
                saved = given = "too few epochs"
            lines.append(f"| {r['budget']} | {r['epochs']} | {r['runs']} | {r['stopped']} | "
                         f"{saved} | {given} |")
        lines.append("")
    if plots and any(r["status"] != "pending" for r in runs):
        _plots(dest, cells, by_id, metric, train_names, preds)
        lines += [f"![{metric} vs budget]({PLOTS[0]})", "",
                  "![learning-rate curves](lr_curves.png)", "",
                  "![loss curves](loss_curves.png)", ""]
    atomic_write_text(os.path.join(dest, "results.md"), "\n".join(lines))
    atomic_write_json(os.path.join(dest, SUMMARY), {
        "spec": spec, "select": select, "command": command, "device": device,
        "cells": [dataclasses.asdict(c) for c in cells], "predictions": preds,
        "not_predicted": not_predicted, "law_check": check,
        "steps_trained": per_budget,
        "runs": [{k: r.get(k) for k in ("run_id", "budget", "schedule", "peak_lr", "seed",
                                        "status", "diverged_step", "pruned_step", "final")}
                 for r in runs],
        "groups": groups})
    return table
