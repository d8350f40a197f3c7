"""Demon against learning-rate schedules: top-1 / top-3 finish rates, counted as the paper counts.

Thin entry point: the configuration is in ``config.py``; every training run is made by the
sweep engine, :func:`budgetax.training.sweep` (one sweep per task, optimizer, Demon on/off
and lr grid part, stored under ``--work``). This script only plans the sweeps, reads their
stores back (:func:`budgetax.report.load`) and counts. Writes ``results.json`` (every cell,
the counts, the command, the machine), ``results.md`` (the tables) and ``finishes.png``.

Counting rule (the paper's Table 1 caption, arXiv:1910.04952v4): one *setting* is one
model-dataset-base optimizer-epochs combination; in each setting the methods are ranked by
their result; top-1 = the best result of the setting, top-3 = among the best three; a
method's rate is its number of top-1 (top-3) finishes over the number of settings.

Usage:
  python experiments/claims_demon/run.py [--config default] [--analyze-only]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # config; claims_common (it adds the repo root)

from claims_common import Claim, choose_lr, ci95, make_task, run, save_figure, subplots  # noqa: E402
from config import CONFIGS, PAPER_SCHEDULES  # noqa: E402

from budgetax import training  # noqa: E402
from budgetax.report import load  # noqa: E402

OPT_NAMES = {"momentum": "SGDM", "adam": "Adam"}
DEMON = "demon"                # Demon, constant lr (the main entrant)
DEMON_LIN = "demon+linear"     # Demon with linear lr decay (a variant)
PAPER = {"top1": 39.29, "top3": 85.71, "settings": 28}


# ----------------------------------------------------------------------------- sweeps

def sweep_dirs(cfg, work: Path):
    """``[(task_name, opt, demon, part, lrs, dir)]`` of every sweep of the config."""
    out = []
    for name, tcfg in cfg["tasks"].items():
        for opt, parts in tcfg["lrs"].items():
            for i, lrs in enumerate(parts):
                for demon in (False, True):
                    d = work / name / f"{opt}_{'demon' if demon else 'base'}_p{i}"
                    out.append((name, opt, demon, i, tuple(lrs), d))
    return out


def run_sweeps(cfg, work: Path):
    timings = []
    tasks = {}
    for name, opt, demon, _part, lrs, d in sweep_dirs(cfg, work):
        tcfg = cfg["tasks"][name]
        if name not in tasks:
            tasks[name] = make_task(tcfg)
        spec = training.SweepSpec(
            optimizer=training.OptimizerSpec(opt, momentum=cfg["momentum"], demon=demon),
            full_budget=tcfg["full_budget"], budgets=cfg["budgets"],
            schedules=cfg["demon_schedules"] if demon else cfg["schedules"],
            peak_lrs=lrs, seeds=cfg["seeds"], batch_size=tcfg["batch_size"],
            num_evals=cfg["num_evals"], diagnostics=cfg["diagnostics"])
        t0 = time.perf_counter()
        res = training.sweep(tasks[name], spec, str(d), progress=False)
        dt = time.perf_counter() - t0
        timings.append({"sweep": str(d.relative_to(work)), "runs": len(res.runs),
                        "seconds": round(dt, 1)})
        print(f"{d.relative_to(work)}: {len(res.runs)} runs, {dt:.0f} s", flush=True)
    return timings


# ----------------------------------------------------------------------------- data

def collect(cfg, work: Path):
    """Finished runs as ``{(task, opt, budget_fraction): {entrant: {lr: {seed: final}}}}``.

    A diverged run is stored as ``None`` (its lr is then not eligible).
    """
    data, meta = {}, {}
    for name, opt, demon, _part, _lrs, d in sweep_dirs(cfg, work):
        spec, runs, _groups = load(str(d))
        meta[name] = {"task": spec["task"], "table_metric": spec["table_metric"],
                      "steps_per_epoch": spec["steps_per_epoch"]}
        for r in runs:
            if r["status"] not in ("done", "diverged"):
                continue
            if demon:
                entrant = DEMON if r["schedule"] == "constant" else f"demon+{r['schedule']}"
            else:
                entrant = r["schedule"]
            cell = data.setdefault((name, opt, r["budget_fraction"]), {})
            cell.setdefault(entrant, {}).setdefault(r["peak_lr"], {})[r["seed"]] = (
                None if r["status"] == "diverged" else r["final"])
            meta[name].setdefault("budgets", {})[r["budget_fraction"]] = r["budget"]
    return data, meta


def choose(by_lr, grid, metric, seeds):
    """The entrant's lr among ``grid`` (:func:`claims_common.choose_lr`) and its ``metric``
    over ``seeds``."""
    lr, runs = choose_lr(by_lr, seeds, lrs=grid)
    return lr, None if runs is None else np.array([r[metric] for r in runs], np.float64)


# ----------------------------------------------------------------------------- counting

def rank_cell(cell, entrants, grid_of, metric, higher, seeds):
    """``{entrant: (rank, mean, values, lr)}``; an entrant with no eligible lr ranks last."""
    res = {}
    for e in entrants:
        lr, vals = choose(cell.get(e, {}), grid_of(cell.get(e, {})), metric, seeds)
        res[e] = (lr, vals)
    sign = -1.0 if higher else 1.0
    score = {e: (sign * v.mean() if v is not None else math.inf) for e, (lr, v) in res.items()}
    out = {}
    for e in entrants:
        rank = 1 + sum(score[o] < score[e] for o in entrants if o != e)
        lr, vals = res[e]
        out[e] = (rank, None if vals is None else float(vals.mean()), vals, lr)
    return out


def count(data, meta, entrants, grid_filter=None, seeds_of=None, cfg=None):
    """Top-1 / top-3 counts of every entrant per optimizer; ``grid_filter(sorted_lrs)``
    restricts the lr grid (sensitivity), ``seeds_of(key)`` resamples seeds (bootstrap)."""
    counts = {}
    for key in sorted(data):
        name, opt, _f = key
        metric, higher = meta[name]["table_metric"]
        seeds = seeds_of(key) if seeds_of else tuple(cfg["seeds"])
        def grid_of(by_lr):
            lrs = sorted(by_lr)
            return grid_filter(lrs) if grid_filter else lrs
        ranks = rank_cell(data[key], entrants, grid_of, metric, higher, seeds)
        for e, (rank, *_rest) in ranks.items():
            c = counts.setdefault(opt, {}).setdefault(e, {"top1": 0, "top3": 0, "n": 0})
            c["n"] += 1
            c["top1"] += rank == 1
            c["top3"] += rank <= 3
    for opt in list(counts):
        pooled = counts.setdefault("all", {})
        for e, c in counts[opt].items():
            p = pooled.setdefault(e, {"top1": 0, "top3": 0, "n": 0})
            for k in p:
                p[k] += c[k]
    return counts


def wilson(k, n, z=1.96):
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def bootstrap(data, meta, entrants, cfg, draws=1000, seed=0):
    """95 % percentile intervals of each entrant's top-1 / top-3 rate over resampled seeds
    (paired: one resample of the seeds per setting, shared by all entrants and lrs; the lr
    choice is redone on each resample)."""
    rng = np.random.default_rng(seed)
    seeds = tuple(cfg["seeds"])
    rates = {}
    for _ in range(draws):
        pick = {key: tuple(rng.choice(seeds, size=len(seeds), replace=True)) for key in data}
        c = count(data, meta, entrants, seeds_of=lambda k: pick[k], cfg=cfg)
        for opt, by_e in c.items():
            for e, v in by_e.items():
                r = rates.setdefault(opt, {}).setdefault(e, {"top1": [], "top3": []})
                r["top1"].append(v["top1"] / v["n"])
                r["top3"].append(v["top3"] / v["n"])
    return {opt: {e: {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
                      for k, v in r.items()} for e, r in by_e.items()}
            for opt, by_e in rates.items()}


SUBGRIDS = {
    "full grid": lambda lrs: lrs,
    "without the largest lr": lambda lrs: lrs[:-1],
    "without the smallest lr": lambda lrs: lrs[1:],
    "every other lr, from the smallest": lambda lrs: lrs[0::2],
    "every other lr, from the second": lambda lrs: lrs[1::2],
    "3 middle points": lambda lrs: lrs[len(lrs) // 2 - 1: len(lrs) // 2 + 2],
}


def lr_robustness(data, meta, entrants, cfg):
    """Per entrant: the metric lost when its lr is one grid step (half a decade) off its
    chosen one (mean of the two neighbours; a diverged neighbour counts as the task's worst
    entrant-best value in that setting); median over settings, per metric kind."""
    seeds = tuple(cfg["seeds"])
    out = {}
    for key in sorted(data):
        name, opt, _f = key
        metric, higher = meta[name]["table_metric"]
        cell = data[key]
        kind = metric
        for e in entrants:
            by_lr = cell.get(e, {})
            lrs = sorted(by_lr)
            lr, vals = choose(by_lr, lrs, metric, seeds)
            if lr is None:
                continue
            i = lrs.index(lr)
            losses = []
            for j in (i - 1, i + 1):
                if 0 <= j < len(lrs):
                    runs = [by_lr[lrs[j]].get(s) for s in seeds]
                    if any(r is None for r in runs):
                        v = (0.0 if higher else math.inf)  # diverged: worst possible
                    else:
                        v = float(np.mean([r[metric] for r in runs]))
                    loss = (vals.mean() - v) if higher else (v - vals.mean())
                    losses.append(loss)
            if losses:
                out.setdefault(kind, {}).setdefault(e, []).append(float(np.mean(losses)))
    return {kind: {e: {"median": float(np.median(v)), "mean_finite": float(
        np.mean([x for x in v if np.isfinite(x)])) if any(np.isfinite(v)) else math.nan,
        "n": len(v)} for e, v in by_e.items()} for kind, by_e in out.items()}


# ----------------------------------------------------------------------------- report

def pct(k, n):
    return 100.0 * k / n if n else math.nan


def analyze(cfg, work: Path):
    data, meta = collect(cfg, work)
    schedules = list(cfg["schedules"])
    fields = {
        "all": schedules + [DEMON],
        "paper": [s for s in PAPER_SCHEDULES if s in schedules] + [DEMON],
        "all, Demon+linear instead": schedules + [DEMON_LIN],
    }
    if DEMON_LIN not in {e for c in data.values() for e in c}:
        del fields["all, Demon+linear instead"]
    seeds = tuple(cfg["seeds"])
    summary = {"fields": fields, "counts": {}, "bootstrap": {}, "subgrids": {}}
    for fname, entrants in fields.items():
        summary["counts"][fname] = count(data, meta, entrants, cfg=cfg)
        summary["bootstrap"][fname] = bootstrap(data, meta, entrants, cfg,
                                                draws=cfg.get("bootstrap_draws", 1000))
    for gname, g in SUBGRIDS.items():
        summary["subgrids"][gname] = {
            f: count(data, meta, fields[f], grid_filter=g, cfg=cfg)
            for f in fields if f != "paper"}
    summary["lr_robustness"] = lr_robustness(
        data, meta, fields["all"] + ([DEMON_LIN] if DEMON_LIN in fields.get(
            "all, Demon+linear instead", []) else []), cfg)
    # per-setting cells
    cells = []
    all_entrants = fields["all"] + ([DEMON_LIN] if "all, Demon+linear instead" in fields else [])
    for key in sorted(data, key=lambda k: (list(cfg["tasks"]).index(k[0]), k[1], k[2])):
        name, opt, f = key
        metric, higher = meta[name]["table_metric"]
        ranks = rank_cell(data[key], fields["all"], lambda b: sorted(b), metric, higher, seeds)
        ranks_lin = (rank_cell(data[key], fields["all, Demon+linear instead"], lambda b: sorted(b),
                               metric, higher, seeds) if DEMON_LIN in all_entrants else {})
        row = {"task": name, "optimizer": opt, "budget_fraction": f,
               "budget": meta[name]["budgets"][f], "metric": metric, "higher_is_better": higher,
               "entrants": {}}
        for e in all_entrants:
            by_lr = data[key].get(e, {})
            grid = sorted(by_lr)
            lr, vals = choose(by_lr, grid, metric, seeds)
            src = ranks_lin if e == DEMON_LIN else ranks
            diverged = sorted(lr_ for lr_, runs in by_lr.items()
                              if any(runs.get(s) is None for s in seeds))
            row["entrants"][e] = {
                "lr": lr, "mean": None if vals is None else float(vals.mean()),
                "ci95": None if vals is None else ci95(vals),
                "per_seed": None if vals is None else vals.tolist(),
                "rank": src[e][0] if e in src else None,
                "edge": (None if lr is None or len(grid) < 2 else
                         "smallest" if lr == grid[0] else "largest" if lr == grid[-1] else None),
                "diverged_lrs": diverged,
                "grid": grid}
        cells.append(row)
    summary["cells"] = cells
    summary["meta"] = {k: {kk: vv for kk, vv in v.items() if kk != "budgets"} | {
        "budgets": {str(b): s for b, s in v["budgets"].items()}} for k, v in meta.items()}
    return summary


def fmt_rate(c, b=None):
    s = f"{pct(c['top1'], c['n']):.0f}% ({c['top1']}/{c['n']})"
    return s


def markdown(meta, summary, cfg):
    fields = summary["fields"]
    L = ["# Demon vs learning-rate schedules: top-1 / top-3 finishes", "",
         f"Command: `{meta['command']}`  ",
         f"Machine: {meta['machine']}, {meta['cpu_count']} CPU cores (shared), jax {meta['jax']}, "
         f"budgetax {meta['budgetax']} at commit {meta['commit'][:10]}, {meta['date']}; "
         f"training wall time {meta['train_seconds']:.0f} s" + (
             f" (this pass; an earlier pass of the same command trained the first lr grid "
             f"parts in {meta['first_pass']['train_seconds']:.0f} s)" if "first_pass" in meta
             else "") + ".", "",
         "Settings: " + "; ".join(
             f"{n} ({v['task']['name']}, full budget {t['full_budget']} steps, batch "
             f"{t['batch_size']}, budgets " + ", ".join(
                 f"{float(b):.0%} = {s} steps" for b, s in v["budgets"].items()) + ")"
             for (n, v), t in zip(summary["meta"].items(), cfg["tasks"].values(), strict=True))
         + f" x SGD with momentum {cfg['momentum']} (SGDM) and Adam (b1 {cfg['momentum']}): "
         f"{summary['counts']['all']['all'][DEMON]['n']} settings. Seeds {list(cfg['seeds'])}. "
         "Each entrant at its own best peak lr (lowest mean final full-training-set loss over "
         "seeds; an lr at which a seed diverged is not eligible); ranked by the mean over seeds "
         "of the task's test metric at the end of the budget (test accuracy; test bits per byte "
         "for the Transformer, lower is better).", "",
         "## Top-1 / top-3 finish rates of Demon (constant lr, momentum 0.9 -> 0)", "",
         "Rate = finishes / settings. Intervals: [seed bootstrap 95 %] (noise of our runs: seeds "
         "resampled per setting, lr re-chosen), {Wilson 95 %} (the settings as a sample). Chance: "
         "1/k and 3/k for k entrants.", "",
         "| field (entrants) | chance top-1 / top-3 | optimizer | Demon top-1 | Demon top-3 |",
         "|---|---|---|---|---|"]
    for fname in fields:
        k = len(fields[fname])
        dem = DEMON_LIN if DEMON_LIN in fields[fname] else DEMON
        for opt in ("momentum", "adam", "all"):
            c = summary["counts"][fname][opt][dem]
            b = summary["bootstrap"][fname][opt][dem]
            w1, w3 = wilson(c["top1"], c["n"]), wilson(c["top3"], c["n"])
            L.append(
                f"| {fname} ({k}) | {100 / k:.0f}% / {300 / k:.0f}% | "
                f"{OPT_NAMES.get(opt, 'both')} | {fmt_rate(c)} [{100 * b['top1'][0]:.0f}, "
                f"{100 * b['top1'][1]:.0f}] {{{100 * w1[0]:.0f}, {100 * w1[1]:.0f}}} | "
                f"{pct(c['top3'], c['n']):.0f}% ({c['top3']}/{c['n']}) [{100 * b['top3'][0]:.0f}, "
                f"{100 * b['top3'][1]:.0f}] {{{100 * w3[0]:.0f}, {100 * w3[1]:.0f}}} |")
    L += ["", f"Paper (Table 1 of arXiv:1910.04952v4, 28 settings, 11 entrants, chance 9% / 27%): "
          f"Demon top-1 {PAPER['top1']}%, top-3 {PAPER['top3']}%.", "",
          "Fields: *all* = the sweep's 8 schedules + Demon; *paper* = the schedules of the "
          "paper's Table 1 that budgetax has (step, cosine, linear, exponential, one_cycle) + "
          "Demon; *Demon+linear instead* = the 8 schedules + Demon with linear lr decay "
          "(replacing Demon with a constant lr).", "",
          "## Every entrant (field *all*), as in the paper's Table 1", "",
          "| entrant | SGDM top-1 | SGDM top-3 | Adam top-1 | Adam top-3 | both top-1 | "
        "both top-3 |",
          "|---|---|---|---|---|---|---|"]
    c = summary["counts"]["all"]
    order = sorted(fields["all"], key=lambda e: (c["all"][e]["top1"], c["all"][e]["top3"]))
    for e in order:
        L.append(f"| {e} | " + " | ".join(
            f"{pct(c[o][e][k], c[o][e]['n']):.0f}%" for o in ("momentum", "adam", "all")
            for k in ("top1", "top3")) + " |")
    if "all, Demon+linear instead" in fields:
        c2 = summary["counts"]["all, Demon+linear instead"]
        L.append(f"| *{DEMON_LIN} (in place of demon)* | " + " | ".join(
            f"{pct(c2[o][DEMON_LIN][k], c2[o][DEMON_LIN]['n']):.0f}%"
            for o in ("momentum", "adam", "all") for k in ("top1", "top3")) + " |")
    # lr grid sensitivity
    L += ["", "## Sensitivity to the lr grid", "",
          "Demon's finish rates when every entrant's lr is chosen from a sub-grid of the same "
          "runs (no new training):", "",
          "| lr grid | Demon SGDM top-1 / top-3 | Demon Adam top-1 / top-3 | both | "
          "Demon+linear both (in its field) |", "|---|---|---|---|---|"]
    for gname, by_f in summary["subgrids"].items():
        a = by_f["all"]
        parts = [f"{pct(a[o][DEMON]['top1'], a[o][DEMON]['n']):.0f}% / "
                 f"{pct(a[o][DEMON]['top3'], a[o][DEMON]['n']):.0f}%"
                 for o in ("momentum", "adam", "all")]
        if "all, Demon+linear instead" in by_f:
            b = by_f["all, Demon+linear instead"]["all"][DEMON_LIN]
            parts.append(f"{pct(b['top1'], b['n']):.0f}% / {pct(b['top3'], b['n']):.0f}%")
        else:
            parts.append("-")
        L.append(f"| {gname} | " + " | ".join(parts) + " |")
    L += ["", "Cost of a mistuned lr: the test metric lost when an entrant's lr is one grid step "
          "(half a decade) from its chosen lr (mean of the two neighbours), median over settings "
          "(a diverged neighbour counts as the worst possible value, so a median can be inf):", ""]
    rob = summary["lr_robustness"]
    kinds = list(rob)
    L.append("| entrant | " + " | ".join(f"{k} lost (median, n)" for k in kinds) + " |")
    L.append("|---|" + "---|" * len(kinds))
    ents = list(next(iter(rob.values())))
    for e in ents:
        L.append(f"| {e} | " + " | ".join(
            (f"{100 * rob[k][e]['median']:.1f} pts" if k.endswith("accuracy") else
             f"{rob[k][e]['median']:.3f}") + f" ({rob[k][e]['n']})" for k in kinds) + " |")
    # per-setting table
    L += ["", "## Every setting", "",
          "Mean ± 95 % t-interval over seeds of the test metric (accuracy in %, or bits per "
          "byte) at the entrant's chosen lr (in brackets); bold: top-1 of the setting (field "
          "*all*); `#r`: Demon's rank among the "
          f"{len(fields['all'])} entrants of field *all* (for {DEMON_LIN}: in the field where it "
          "replaces demon); ⇤/⇥: the chosen lr is "
          "the smallest / largest of the grid; †: some seed diverged at some lr.", "",
          "| task | opt | budget | " + " | ".join(fields["all"]) + f" | {DEMON_LIN} |",
          "|---|---|---|" + "---|" * (len(fields["all"]) + 1)]
    edges = []
    for row in summary["cells"]:
        acc = row["metric"].endswith("accuracy")
        parts = []
        for e in fields["all"] + [DEMON_LIN]:
            v = row["entrants"].get(e)
            if v is None or v["mean"] is None:
                parts.append("-")
                continue
            s = (f"{100 * v['mean']:.1f} ± {100 * v['ci95']:.1f}" if acc else
                 f"{v['mean']:.3f} ± {v['ci95']:.3f}")
            mark = {"smallest": "⇤", "largest": "⇥"}.get(v["edge"], "")
            s += f" ({v['lr']:g}{mark}{'†' if v['diverged_lrs'] else ''})"
            if v["rank"] == 1 and e != DEMON_LIN:
                s = f"**{s}**"
            if e == DEMON:
                s += f" #{v['rank']}"
            if e == DEMON_LIN:
                s += f" #{v['rank']}"
            parts.append(s)
            if v["edge"]:
                edges.append(f"{row['task']} {OPT_NAMES[row['optimizer']]} "
                             f"{row['budget_fraction']:.0%}: {e} at the {v['edge']} lr "
                             f"{v['lr']:g}")
        L.append(f"| {row['task']} | {OPT_NAMES[row['optimizer']]} | "
                 f"{row['budget_fraction']:.0%} ({row['budget']}) | " + " | ".join(parts) + " |")
    L += ["", f"Edge cells ({len(edges)} of {len(summary['cells']) * (len(fields['all']) + 1)}): "
          + ("; ".join(edges) if edges else "none") + ".", "",
          "![finish rates](finishes.png)", ""]
    return "\n".join(L) + "\n"


def plot(summary, _cfg, path):
    fields = summary["fields"]
    c = summary["counts"]["all"]
    fig, axes = subplots(1, 3, figsize=(16, 4.6))
    ents = sorted(fields["all"], key=lambda e: (c["all"][e]["top1"], c["all"][e]["top3"]))
    for ax, opt in zip(axes[:2], ("momentum", "adam"), strict=True):
        y = np.arange(len(ents))
        t1 = [pct(c[opt][e]["top1"], c[opt][e]["n"]) for e in ents]
        t3 = [pct(c[opt][e]["top3"], c[opt][e]["n"]) for e in ents]
        ax.barh(y + 0.2, t3, 0.4, label="top-3", color="#9ecae1")
        ax.barh(y - 0.2, t1, 0.4, label="top-1", color="#08519c")
        ax.set_yticks(y, ents)
        ax.axvline(PAPER["top1"], color="#08519c", ls=":", lw=1)
        ax.axvline(PAPER["top3"], color="#9ecae1", ls=":", lw=1)
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of settings")
        ax.set_title(f"{OPT_NAMES[opt]}: {c[opt][DEMON]['n']} settings "
                     f"(dotted: Demon in the paper)")
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[2]
    names = list(summary["subgrids"])
    x = np.arange(len(names))
    for opt, col in (("momentum", "#d95f02"), ("adam", "#1b9e77")):
        t1 = [pct(summary["subgrids"][g]["all"][opt][DEMON]["top1"],
                  summary["subgrids"][g]["all"][opt][DEMON]["n"]) for g in names]
        t3 = [pct(summary["subgrids"][g]["all"][opt][DEMON]["top3"],
                  summary["subgrids"][g]["all"][opt][DEMON]["n"]) for g in names]
        ax.plot(x, t1, "o-", color=col, label=f"Demon-{OPT_NAMES[opt]} top-1")
        ax.plot(x, t3, "s--", color=col, label=f"Demon-{OPT_NAMES[opt]} top-3")
    ax.set_xticks(x, [n.replace(", ", "\n").replace("without the ", "w/o ") for n in names],
                  fontsize=7)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("% of settings")
    ax.set_title("Demon's rates vs the lr grid")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None):
    run(Claim(HERE, __doc__, CONFIGS, train=run_sweeps, analyze=analyze, markdown=markdown,
              plot=plot, figure="finishes"), argv)


if __name__ == "__main__":
    main()
