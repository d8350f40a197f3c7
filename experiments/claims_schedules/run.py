"""Budgeted Training and REX claims: budget-aware schedules ranked over four settings.

Thin entry point: the configuration is in ``config.py``; every training run is made by the
sweep engine, :func:`budgetax.training.sweep` (one sweep per task and optimizer, stored under
``--work``, its lr grid widened by ``auto_lrs`` while a best lr sits at an edge). Each
schedule's lr is the one :func:`budgetax.report.summarize` picks (lowest mean final
full-training-set loss over seeds; an lr at which a seed diverged is not eligible). This
script reads the stores back (:func:`budgetax.report.load`) and compares. Writes
``results.json`` (every cell with per-seed values, the comparisons, the command, the
machine), ``results.md`` (the tables) and ``ranks.png``.

Usage:
  python experiments/claims_schedules/run.py [--config default] [--analyze-only]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # config; claims_common (it adds the repo root)

from claims_common import Claim, choose_lr, ci95, make_task, run, save_figure, subplots  # noqa: E402
from config import CONFIGS, REX_FIELD, SMALL  # noqa: E402

from budgetax import schedules as sched_lib  # noqa: E402
from budgetax import training  # noqa: E402
from budgetax.report import load, summarize  # noqa: E402

OPT_NAMES = {"momentum": "SGDM", "adam": "Adam"}


# ----------------------------------------------------------------------------- sweeps

def sweep_spec(cfg, tcfg, opt):
    return training.SweepSpec(
        optimizer=training.OptimizerSpec(opt, momentum=cfg["momentum"]),
        full_budget=tcfg["full_budget"], budgets=cfg["budgets"], schedules=cfg["schedules"],
        peak_lrs=cfg["lrs"][opt], seeds=cfg["seeds"], batch_size=tcfg["batch_size"],
        num_evals=1, diagnostics=True)


def sweep_dirs(cfg, work: Path):
    return [(name, opt, work / name / opt) for name in cfg["tasks"] for opt in cfg["lrs"]]


def run_sweeps(cfg, work: Path):
    timings = []
    for name, opt, d in sweep_dirs(cfg, work):
        tcfg = cfg["tasks"][name]
        t0 = time.perf_counter()
        res = training.sweep(make_task(tcfg), sweep_spec(cfg, tcfg, opt), str(d),
                             progress=False, auto_lrs=cfg["auto_lrs"])
        dt = time.perf_counter() - t0
        timings.append({"sweep": f"{name}/{opt}", "runs": len(res.runs),
                        "lrs": list(res.spec.peak_lrs), "seconds": round(dt, 1)})
        print(f"{name}/{opt}: {len(res.runs)} runs, lrs {list(res.spec.peak_lrs)}, {dt:.0f} s",
              flush=True)
    return timings


# ----------------------------------------------------------------------------- data

def collect(cfg, work: Path):
    """``cells[(task, opt, fraction)] = {"budget", "metric", "higher", "by_sched",
    "chosen"}``: ``by_sched[s][lr][seed]`` = the run's final metrics (``None`` if it
    diverged), ``chosen[s]`` = the lr :func:`budgetax.report.summarize` picks."""
    cells = {}
    for name, opt, d in sweep_dirs(cfg, work):
        spec, runs, _groups = load(str(d))
        metric, higher = spec["table_metric"]
        for c in summarize(runs, select="train_loss", metric=metric, higher_is_better=higher):
            cell = cells.setdefault((name, opt, c.budget_fraction), {
                "budget": c.budget, "metric": metric, "higher": higher, "by_sched": {},
                "chosen": {}, "edge": {}})
            cell["chosen"][c.schedule] = c.best_lr
            cell["edge"][c.schedule] = bool(c.lr_at_edge)
        for r in runs:
            if r["status"] not in ("done", "diverged"):
                continue
            cell = cells[(name, opt, r["budget_fraction"])]
            cell["by_sched"].setdefault(r["schedule"], {}).setdefault(r["peak_lr"], {})[
                r["seed"]] = None if r["status"] == "diverged" else r["final"]
    return cells


def picked(cell, seeds):
    """``{schedule: (lr, metric per seed, full grad norm per seed, train loss per seed)}``."""
    out = {}
    for s, by_lr in cell["by_sched"].items():
        lr, runs = choose_lr(by_lr, seeds)
        if lr is None:
            out[s] = (None, None, None, None)
            continue
        out[s] = (lr, *(np.array([r[k] for r in runs], np.float64)
                        for k in (cell["metric"], "full_grad_norm", "train_loss")))
    return out


def advantage(cell, pick, a, b):
    """Per seed, how much better ``a`` is than ``b`` (test metric, sign-adjusted; accuracy
    in points); ``None`` when either has no eligible lr."""
    if pick[a][1] is None or pick[b][1] is None:
        return None
    d = pick[a][1] - pick[b][1]
    d = d if cell["higher"] else -d
    return d * (100.0 if cell["metric"].endswith("accuracy") else 1.0)


def verdict(d):
    """``+`` a beats b (95 % paired interval above 0), ``-`` loses, ``=`` within noise."""
    if d is None:
        return "n/a"
    m, h = float(d.mean()), ci95(d)
    return "+" if m - h > 0 else "-" if m + h < 0 else "="


def ranks(cell, pick, field):
    """Average ranks (1 = best) of ``field`` by the mean test metric; no eligible lr = last."""
    sign = -1.0 if cell["higher"] else 1.0
    score = {s: (sign * pick[s][1].mean() if pick.get(s, (None, None))[1] is not None
                 else math.inf) for s in field}
    out = {}
    for s in field:
        better = sum(score[o] < score[s] for o in field if o != s)
        equal = sum(score[o] == score[s] for o in field if o != s)
        out[s] = 1 + better + equal / 2
    return out


def end_lr_fraction(name, steps):
    """The last step's lr over the peak lr of schedule ``name`` at a budget of ``steps``."""
    fn = getattr(sched_lib, name)
    return float(fn(steps, peak_value=1.0)(steps - 1))


# ----------------------------------------------------------------------------- analysis

def average_ranks(cells, keys, field, seeds_of):
    per = {s: [] for s in field}
    for k in keys:
        pick = picked(cells[k], seeds_of(k))
        for s, r in ranks(cells[k], pick, field).items():
            per[s].append(r)
    return {s: float(np.mean(v)) for s, v in per.items()}


def analyze(cfg, work: Path):
    cells = collect(cfg, work)
    seeds = tuple(cfg["seeds"])
    opts = list(cfg["lrs"])
    tasks = list(cfg["tasks"])
    budgets = sorted({k[2] for k in cells})
    order = sorted(cells, key=lambda k: (tasks.index(k[0]), opts.index(k[1]), k[2]))
    schedules = list(cfg["schedules"])
    field_rex = [s for s in REX_FIELD if s in schedules]
    fields = {"REX paper (6)": field_rex, "all (8)": schedules}
    rng = np.random.default_rng(0)
    draws = [{k: tuple(rng.choice(seeds, size=len(seeds), replace=True)) for k in order}
             for _ in range(cfg["bootstrap_draws"])]

    rows, mismatch = [], []
    for k in order:
        cell = cells[k]
        pick = picked(cell, seeds)
        for s, (lr, *_r) in pick.items():
            if lr != cell["chosen"].get(s):
                mismatch.append([*k, s, lr, cell["chosen"].get(s)])
        row = {"task": k[0], "optimizer": k[1], "budget_fraction": k[2],
               "budget": cell["budget"], "metric": cell["metric"], "higher_is_better":
               cell["higher"], "schedules": {}, "comparisons": {}}
        for s in schedules:
            lr, m, gn, tl = pick.get(s, (None, None, None, None))
            row["schedules"][s] = {
                "lr": lr, "edge": cell["edge"].get(s), "grid": sorted(cell["by_sched"].get(s, {})),
                "mean": None if m is None else float(m.mean()),
                "ci95": None if m is None else ci95(m),
                "per_seed": None if m is None else m.tolist(),
                "full_grad_norm": None if gn is None else gn.tolist(),
                "train_loss": None if tl is None else tl.tolist(),
                "end_lr_fraction": end_lr_fraction(s, cell["budget"])}
        for a, b in (("linear", "step"), ("linear", "exponential"), ("rex", "linear")):
            d = advantage(cell, pick, a, b)
            row["comparisons"][f"{a}-{b}"] = {
                "mean": None if d is None else float(d.mean()),
                "ci95": None if d is None else ci95(d),
                "per_seed": None if d is None else d.tolist(), "verdict": verdict(d)}
        row["ranks"] = {f: ranks(cell, pick, fld) for f, fld in fields.items()}
        rows.append(row)

    # claim 1 and REX's first half: verdict counts at small budgets and at the full budget
    counts = {}
    for comp in ("linear-step", "linear-exponential", "rex-linear"):
        for part, sel in (("small", lambda f: f in SMALL), ("full", lambda f: f == 1.0),
                          ("all", lambda f: True)):
            for opt in opts + ["all"]:
                c = {"+": 0, "=": 0, "-": 0, "n/a": 0}
                for r in rows:
                    if sel(r["budget_fraction"]) and opt in (r["optimizer"], "all"):
                        c[r["comparisons"][comp]["verdict"]] += 1
                counts.setdefault(comp, {}).setdefault(part, {})[opt] = c
    # does the gap close? |advantage| at the full budget vs at the smallest budget, per setting
    closes = {}
    for comp in ("linear-step", "linear-exponential"):
        out = []
        for t in tasks:
            for opt in opts:
                by_f = {r["budget_fraction"]: r["comparisons"][comp]["mean"] for r in rows
                        if r["task"] == t and r["optimizer"] == opt}
                small = [by_f[f] for f in SMALL if by_f.get(f) is not None]
                if small and by_f.get(1.0) is not None:
                    out.append({"task": t, "optimizer": opt, "small_mean": float(np.mean(small)),
                                "full": by_f[1.0]})
        closes[comp] = out

    # budgeted convergence: full-batch gradient norm at the end, relative to linear's
    conv = {}
    for s in schedules:
        logs, below_const = [], []
        for r in rows:
            g, gl, gc = (r["schedules"][x]["full_grad_norm"] for x in (s, "linear", "constant"))
            if g is None or gl is None:
                continue
            logs.append(math.log(np.mean(g) / np.mean(gl)))
            if gc is not None and s != "constant":
                below_const.append(np.mean(g) < np.mean(gc))
        boot = []
        for _ in range(cfg["bootstrap_draws"]):
            idx = rng.integers(0, len(logs), len(logs))
            boot.append(math.exp(float(np.mean(np.array(logs)[idx]))))
        fr = [r["schedules"][s]["end_lr_fraction"] for r in rows]
        conv[s] = {"geo_mean_vs_linear": math.exp(float(np.mean(logs))),
                   "ci95_cells": [float(np.percentile(boot, 2.5)),
                                  float(np.percentile(boot, 97.5))],
                   "below_constant": (int(sum(below_const)), len(below_const)),
                   "end_lr_fraction": [float(min(fr)), float(max(fr))], "cells": len(logs)}

    # does a smaller last lr go with a smaller final gradient norm? Spearman's rho per cell
    rho = []
    for r in rows:
        pts = [(v["end_lr_fraction"], np.mean(v["full_grad_norm"]))
               for v in r["schedules"].values() if v["full_grad_norm"] is not None]
        if len(pts) > 2:
            rho.append(float(spearmanr(*zip(*pts, strict=True)).statistic))
    conv_rho = {"mean": float(np.mean(rho)), "positive": int(sum(x > 0 for x in rho)),
                "cells": len(rho)}

    # REX's second half: average rank over settings and budgets, per field and optimizer
    avg = {}
    for fname, fld in fields.items():
        for opt in opts + ["all"]:
            keys = [k for k in order if opt in (k[1], "all")]
            point = average_ranks(cells, keys, fld, lambda k: seeds)
            boot = [average_ranks(cells, keys, fld, lambda k, d=d: d[k]) for d in draws]
            best = [min(b, key=b.get) for b in boot]
            avg.setdefault(fname, {})[opt] = {
                s: {"rank": point[s],
                    "ci95": [float(np.percentile([b[s] for b in boot], 2.5)),
                             float(np.percentile([b[s] for b in boot], 97.5))],
                    "best_share": best.count(s) / len(best)} for s in fld}
    by_budget = {fname: {opt: {f: average_ranks(cells, [k for k in order if k[2] == f and
                                                         opt in (k[1], "all")], fld,
                                                 lambda k: seeds)
                               for f in budgets} for opt in opts + ["all"]}
                 for fname, fld in fields.items()}
    return {"rows": rows, "counts": counts, "gap_closes": closes, "convergence": conv,
            "convergence_rho": conv_rho,
            "average_rank": avg, "average_rank_by_budget": by_budget, "fields": fields,
            "budgets": budgets, "lr_choice_mismatches": mismatch,
            "edge_cells": sum(bool(v["edge"]) for r in rows for v in r["schedules"].values())}


# ----------------------------------------------------------------------------- report

def fmt(mean, h, metric):
    if mean is None:
        return "diverged"
    if metric.endswith("accuracy"):
        return f"{100 * mean:.1f} ± {100 * h:.1f}"
    return f"{mean:.3f} ± {h:.3f}"


def fcomp(c, metric):
    if c["mean"] is None:
        return "n/a"
    return f"{c['verdict']} {c['mean']:+.2f} ± {c['ci95']:.2f}"


def markdown(meta, summary, cfg):
    rows, opts = summary["rows"], list(cfg["lrs"])
    L = ["# Budgeted Training and REX: budget-aware schedules over four settings", "",
         f"Command: `{meta['command']}`  ",
         f"Machine: {meta['machine']}, {meta['cpu_count']} CPU cores (shared with other jobs), "
         f"jax {meta['jax']}, budgetax {meta['budgetax']} at commit {meta['commit'][:10]}, "
         f"{meta['date']}; training wall time {meta['train_seconds']:.0f} s.", "",
         "Settings: " + "; ".join(
             f"{n} (full budget {t['full_budget']} steps, batch {t['batch_size']})"
             for n, t in cfg["tasks"].items())
         + f" x SGD with momentum {cfg['momentum']} (SGDM) and Adam (b1 {cfg['momentum']}) x "
         "budgets " + ", ".join(f"{f:.0%}" for f in summary["budgets"])
         + f". Seeds {list(cfg['seeds'])} (the same initialisations and batch orders for every "
         "schedule). Each schedule at its own best peak lr (lowest mean final "
         "full-training-set loss over seeds, never the test set; an lr at which a seed "
         "diverged is not eligible). Test metric at the end of the budget: test accuracy "
         "(%), test bits per byte for the Transformer (lower is better). Intervals: 95 % "
         f"t-intervals over the seeds. lr choices at the edge of their final grid: "
         f"{summary['edge_cells']} of {len(rows) * len(cfg['schedules'])}.", ""]
    # claim 1
    L += ["## Budgeted Training: linear vs step and exponential", "",
          "Advantage of linear (paired by seed; accuracy points, or bits per byte saved): "
          "`+` linear better (interval above 0), `=` within the seed noise, `-` worse.", "",
          "| task | optimizer | budget | linear - step | linear - exponential | "
          "rex - linear |", "|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['task']} | {OPT_NAMES[r['optimizer']]} | {r['budget_fraction']:.0%} "
                 f"({r['budget']}) | " + " | ".join(
                     fcomp(r["comparisons"][c], r["metric"])
                     for c in ("linear-step", "linear-exponential", "rex-linear")) + " |")
    L += ["", "Counts of `+` / `=` / `-` over the settings, small budgets = "
          + ", ".join(f"{f:.0%}" for f in SMALL) + ":", "",
          "| comparison | budgets | SGDM | Adam | both |", "|---|---|---|---|---|"]
    for comp, by_part in summary["counts"].items():
        for part in ("small", "full", "all"):
            L.append(f"| {comp} | {part} | " + " | ".join(
                "{} / {} / {}".format(*(by_part[part][o][v] for v in "+=-"))
                for o in opts + ["all"]) + " |")
    L += ["", "Does the gap close at the full budget? Mean advantage over the small budgets "
          "against the advantage at 100 %:", "",
          "| comparison | task | optimizer | small budgets | 100 % |", "|---|---|---|---|---|"]
    for comp, items in summary["gap_closes"].items():
        for it in items:
            L.append(f"| {comp} | {it['task']} | {OPT_NAMES[it['optimizer']]} | "
                     f"{it['small_mean']:+.2f} | {it['full']:+.2f} |")
    L += ["", "## Budgeted convergence: full-batch gradient norm at the end of the budget", "",
          "Each schedule at its chosen lr; geometric mean over the cells (settings x budgets) "
          "of its final full-training-set gradient norm over linear's, with a 95 % bootstrap "
          "interval over cells; how often it ends below the constant schedule's; the last "
          "step's lr as a fraction of the peak.", "",
          "| schedule | last lr / peak | grad norm / linear's | below constant's |",
          "|---|---|---|---|"]
    conv = summary["convergence"]
    for s in sorted(conv, key=lambda s: conv[s]["geo_mean_vs_linear"]):
        c = conv[s]
        lo, hi = c["end_lr_fraction"]
        end = f"{lo:.3g}" if abs(hi - lo) < 1e-9 else f"{lo:.3g}-{hi:.3g}"
        bc = c["below_constant"]
        L.append(f"| {s} | {end} | {c['geo_mean_vs_linear']:.2f} [{c['ci95_cells'][0]:.2f}, "
                 f"{c['ci95_cells'][1]:.2f}] | " + (f"{bc[0]}/{bc[1]}" if bc[1] else "-") + " |")
    cr = summary["convergence_rho"]
    L += ["", "Spearman's rho between a schedule's last lr and its final gradient norm, "
          f"across the schedules of a cell (positive: a smaller last lr goes with a smaller "
          f"norm): {cr['mean']:+.2f} on average, positive in {cr['positive']} of "
          f"{cr['cells']} cells."]
    # claim 2
    L += ["", "## REX: average rank over settings and budgets", "",
          "Rank 1 = best of the field in a cell (task x optimizer x budget), by the mean test "
          "metric; averaged over the cells. Interval: 95 % seed bootstrap (seeds resampled per "
          "cell, lrs re-chosen, cells re-ranked); *best* = share of bootstrap draws in which "
          "the schedule has the best average rank.", ""]
    for fname, by_opt in summary["average_rank"].items():
        L += [f"Field {fname}:", "", "| schedule | " + " | ".join(
            OPT_NAMES.get(o, "both") for o in opts + ["all"]) + " |",
            "|---|" + "---|" * (len(opts) + 1)]
        for s in sorted(by_opt["all"], key=lambda s: by_opt["all"][s]["rank"]):
            L.append(f"| {s} | " + " | ".join(
                f"{by_opt[o][s]['rank']:.2f} [{by_opt[o][s]['ci95'][0]:.2f}, "
                f"{by_opt[o][s]['ci95'][1]:.2f}] best {100 * by_opt[o][s]['best_share']:.0f}%"
                for o in opts + ["all"]) + " |")
        L.append("")
    L += ["Average rank per budget (field REX paper, both optimizers):", "",
          "| schedule | " + " | ".join(f"{f:.0%}" for f in summary["budgets"]) + " |",
          "|---|" + "---|" * len(summary["budgets"])]
    bb = summary["average_rank_by_budget"]["REX paper (6)"]["all"]
    for s in summary["fields"]["REX paper (6)"]:
        L.append(f"| {s} | " + " | ".join(f"{bb[f][s]:.2f}" for f in summary["budgets"]) + " |")
    # every cell
    L += ["", "## Every cell: test metric at each schedule's chosen lr (lr in parentheses)", ""]
    sch = list(cfg["schedules"])
    for t in cfg["tasks"]:
        for o in opts:
            mine = [r for r in rows if r["task"] == t and r["optimizer"] == o]
            if not mine:
                continue
            L += [f"{t}, {OPT_NAMES[o]} ({mine[0]['metric']}):", "",
                  "| budget | " + " | ".join(sch) + " |", "|---|" + "---|" * len(sch)]
            for r in mine:
                L.append(f"| {r['budget_fraction']:.0%} | " + " | ".join(
                    fmt(v["mean"], v["ci95"], r["metric"]) + (
                        f" ({v['lr']:.3g}{' ⇥' if v['edge'] else ''})" if v["lr"] else "")
                    for v in (r["schedules"][s] for s in sch)) + " |")
            L.append("")
    if summary["lr_choice_mismatches"]:
        L += ["lr choices that differ from `budgetax.report.summarize`'s: "
              f"{summary['lr_choice_mismatches']}", ""]
    return "\n".join(L) + "\n"


def plot(summary, cfg, path):
    from matplotlib.ticker import NullFormatter
    opts = list(cfg["lrs"])
    fig, axes = subplots(1, len(opts) + 1, figsize=(5 * (len(opts) + 1), 4))
    fld = summary["fields"]["REX paper (6)"]
    by = summary["average_rank_by_budget"]["REX paper (6)"]
    budgets = summary["budgets"]
    for ax, o in zip(axes, opts, strict=False):
        for s in fld:
            ax.plot([100 * f for f in budgets], [by[o][f][s] for f in budgets], marker="o",
                    label=s, lw=2.5 if s in ("rex", "linear") else 1.2)
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in budgets], [f"{100 * f:g}" for f in budgets])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("budget (% of the full budget)")
        ax.set_ylabel("average rank (1 = best)")
        n = len(cfg["tasks"])
        ax.set_title(f"{OPT_NAMES[o]}: average rank over {n} task{'s' * (n > 1)}")
        ax.invert_yaxis()
    axes[0].legend(fontsize=8)
    ax = axes[-1]
    conv = summary["convergence"]
    names = sorted(conv, key=lambda s: conv[s]["geo_mean_vs_linear"])
    y = [conv[s]["geo_mean_vs_linear"] for s in names]
    err = [[v - conv[s]["ci95_cells"][0] for s, v in zip(names, y, strict=True)],
           [conv[s]["ci95_cells"][1] - v for s, v in zip(names, y, strict=True)]]
    ax.bar(names, y, yerr=err, capsize=3, color="tab:gray")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ticks = [t for t in (0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
             if min(conv[s]["ci95_cells"][0] for s in names) / 1.2 <= t
             <= max(conv[s]["ci95_cells"][1] for s in names) * 1.2]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("final full-batch grad norm / linear's")
    ax.set_title("budgeted convergence (geometric mean over cells)")
    ax.tick_params(axis="x", rotation=45)
    save_figure(fig, path, dpi=120)


def main(argv=None):
    run(Claim(HERE, __doc__, CONFIGS, train=run_sweeps, analyze=analyze, markdown=markdown,
              plot=plot, figure="ranks", json_newline=True), argv)


if __name__ == "__main__":
    main()
