"""The budget frontier at a fraction of the grid's compute: branch, halving, prediction.

For one setting (``config.py``), trains the sweep as a grid and with each strategy
of :data:`config.STRATEGIES` through the Python sweep API
(:func:`budgetax.training.sweep`), then measures against the grid:

- the optimizer steps each strategy trained (the report's per-budget count);
- the winner of each budget against the grid's (same, or its (schedule, lr) within the
  grid winner's seed spread in the grid's own runs of it), and the table's cells;
- halving's regret: the grid's test accuracy at the lr halving kept against the
  grid's at its own best lr, per (budget, schedule) cell;
- the estimators of :data:`config.ESTIMATORS`, replayed on the grid's curves
  (halving's decisions with each, same rungs and rate), to choose halving's default;
- frontier prediction: each schedule's 100% (and 50%) budget predicted from the
  smaller ones, error and 95%-interval coverage;
- the share of the halving sweeps' time spent on the pruning decisions.

Writes ``<setting>.json`` and ``<setting>.md`` here; ``summarize.py`` joins the
settings into ``results.md``. Sweep stores go to ``runs/`` (not checked in): a
rerun resumes them.

Usage:
  python experiments/frontier/run.py --setting mlp [--grid-from experiments/sweep_default]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
from config import CONFIGS, ESTIMATORS, STRATEGIES  # noqa: E402

from budgetax import report, training  # noqa: E402
from budgetax.frontier import fit_frontier  # noqa: E402
from budgetax.training.sweep import execute as sweep_run  # noqa: E402
from budgetax.training.sweep.store import decode_curves  # noqa: E402
from budgetax.training.sweep.strategies import prune, score_curves  # noqa: E402

METRIC, SELECT = "test_accuracy", "train_loss"


def make_spec(setting: str, strategy: str) -> training.SweepSpec:
    kw = {k: tuple(v) if isinstance(v, list) else v
          for k, v in CONFIGS[setting]["spec"].items()}
    return training.SweepSpec(**kw, **STRATEGIES.get(strategy, {}))


class Timed:
    """Wraps the sweep's pruning functions to time them."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0
        self._orig = (sweep_run.score_curves, sweep_run.prune)

    def _wrap(self, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1
        return timed

    def __enter__(self):
        sweep_run.score_curves, sweep_run.prune = (self._wrap(f) for f in self._orig)
        return self

    def __exit__(self, *exc):
        sweep_run.score_curves, sweep_run.prune = self._orig


def train_all(setting: str, grid_from: str | None) -> dict:
    cfg = CONFIGS[setting]
    task = training.preset(cfg["dataset"], cfg["model"])
    old = HERE / f"{setting}.json"  # a rerun over finished sweeps keeps their timings
    before = json.loads(old.read_text())["trained"] if old.exists() else {}
    out = {}
    for strategy in ["grid", *STRATEGIES]:
        if strategy == "grid" and grid_from:
            out[strategy] = {"dir": grid_from, "seconds": None, "pruning_seconds": 0.0}
            continue
        d = HERE / "runs" / setting / strategy
        t = time.perf_counter()
        with Timed() as timer:
            res = training.sweep(task, make_spec(setting, strategy), str(d), progress=False)
        out[strategy] = {"dir": str(d), "seconds": time.perf_counter() - t,
                         "pruning_seconds": timer.seconds, "pruning_calls": timer.calls}
        if res.compiled_budgets == 0 and strategy in before:  # nothing trained now
            out[strategy] = before[strategy]
        print(f"{setting} {strategy}: {out[strategy]['seconds']:.0f}s", flush=True)
    return out


def _cells(d: str):
    spec, runs, groups = report.load(d, with_curves=False)
    return spec, runs, groups, report.summarize(runs, SELECT, METRIC, True)


def _grid_stats(runs, budget, schedule, lr) -> tuple[float, float]:
    """Mean and seed std of the metric of the finished runs of one (budget, schedule, lr)."""
    vals = [r["final"][METRIC] for r in runs if r["budget"] == budget
            and r["schedule"] == schedule and r["peak_lr"] == lr and r["status"] == "done"]
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def _grid_value(runs, budget, schedule, lr) -> float:
    return _grid_stats(runs, budget, schedule, lr)[0]


def _winner(cells, budget):
    return next((c for c in cells if c.budget == budget and c.best_in_budget), None)


def compare(grid_dir: str, other_dir: str) -> dict:
    spec, g_runs, _, g_cells = _cells(grid_dir)
    s_spec, s_runs, s_groups, s_cells = _cells(other_dir)
    steps = report.steps_trained(s_spec, s_runs, s_groups)
    by = {(c.budget, c.schedule): c for c in g_cells}
    budgets = []
    for b in steps:
        t = b["budget"]
        gw, sw = _winner(g_cells, t), _winner(s_cells, t)
        same = sw is not None and gw is not None and sw.schedule == gw.schedule
        # the strategy's winning (schedule, lr), judged on the grid's own runs of it
        g_of_sw = (_grid_stats(g_runs, t, sw.schedule, sw.best_lr)
                   if sw and sw.best_lr is not None else None)
        within = (same or (g_of_sw is not None and gw is not None
                           and gw.mean - g_of_sw[0] <= max(gw.std, g_of_sw[1])))
        budgets.append({"budget": t, "fraction": b["budget_fraction"], "trained": b["trained"],
                        "grid_steps": b["grid"], "grid_winner": gw.schedule if gw else None,
                        "winner": sw.schedule if sw else None, "same_winner": same,
                        "within_noise": bool(within),
                        "grid_winner_acc": gw.mean if gw else None,
                        "winner_acc_in_grid": g_of_sw[0] if g_of_sw else None})
    regrets, diffs, lr_changed = [], [], 0
    for c in s_cells:
        g = by.get((c.budget, c.schedule))
        if g is None or c.best_lr is None or g.best_lr is None:
            continue
        regrets.append(100 * (_grid_value(g_runs, c.budget, c.schedule, g.best_lr)
                              - _grid_value(g_runs, c.budget, c.schedule, c.best_lr)))
        diffs.append(100 * (c.mean - g.mean))
        lr_changed += c.best_lr != g.best_lr
    per_run = []
    g_final = {r["run_id"]: r["final"].get(METRIC) for r in g_runs if r["status"] == "done"}
    for r in s_runs:
        if r["status"] == "done" and r["run_id"] in g_final:
            per_run.append(100 * abs(r["final"][METRIC] - g_final[r["run_id"]]))
    return {"budgets": budgets, "cells": len(regrets), "lr_changed": int(lr_changed),
            "regret_mean": float(np.mean(regrets)), "regret_max": float(np.max(regrets)),
            "cell_diff_mean": float(np.mean(np.abs(diffs))),
            "cell_diff_max": float(np.max(np.abs(diffs))),
            "run_diff_max": float(np.max(per_run)) if per_run else None,
            "runs_identical": int(sum(d == 0 for d in per_run)), "runs_compared": len(per_run),
            "pruned": sum(r["status"] == "pruned" for r in s_runs)}


def replay_estimators(grid_dir: str, spec_halving: training.SweepSpec) -> dict:
    """Halving's decisions with each estimator, replayed on the grid's full curves."""
    spec, runs, _ = report.load(grid_dir, with_curves=True)
    names = spec["metrics"]["train"]
    spe = spec["steps_per_epoch"]
    cells = {(c.budget, c.schedule): c for c in report.summarize(runs, SELECT, METRIC, True)}
    out = {}
    for est in ESTIMATORS:
        regrets, agree, n = [], 0, 0
        for (t, s), g in cells.items():
            mine = [r for r in runs if r["budget"] == t and r["schedule"] == s
                    and r["status"] == "done"]
            lrs = sorted({r["peak_lr"] for r in mine})
            if g.best_lr is None or len(lrs) < 2:
                continue
            loss = np.stack([decode_curves(r["curves"], names, t)["loss"] for r in mine])
            cell_of = [(s, r["peak_lr"]) for r in mine]
            alive = list(range(len(mine)))
            plan = sweep_run.halving_plan(spec_halving, t, cell_of)
            for rung, _ in plan:
                scores = score_curves(loss[alive, :rung], spe, est)
                keep = prune([cell_of[i] for i in alive], scores, spec_halving.prune_rate)
                alive = [i for i, k in zip(alive, keep, strict=True) if k]
            survivors = sorted({mine[i]["peak_lr"] for i in alive})
            # among the survivors, the table's own rule (lowest final training loss)
            chosen = min(survivors, key=lambda lr: np.mean(
                [r["final"][SELECT] for r in mine if r["peak_lr"] == lr]))
            regrets.append(100 * (_grid_value(runs, t, s, g.best_lr)
                                  - _grid_value(runs, t, s, chosen)))
            agree += chosen == g.best_lr
            n += 1
        out[est] = {"cells": n, "agree": agree, "regret_mean": float(np.mean(regrets)),
                    "regret_max": float(np.max(regrets))}
    return out


def predictions(grid_dir: str) -> list[dict]:
    """Each schedule's held-out budget predicted from the smaller ones."""
    spec, runs, _ = report.load(grid_dir, with_curves=False)
    by_id = {r["run_id"]: r for r in runs}
    cells = report.summarize(runs, SELECT, METRIC, True)
    out = []
    for s in dict.fromkeys(c.schedule for c in cells):
        mine = sorted((c for c in cells if c.schedule == s and c.best_lr is not None),
                      key=lambda c: c.budget)
        for held in range(3, len(mine)):
            fit_on, target = mine[:held], mine[held]
            values = np.array([[by_id[i]["final"][METRIC] for i in c.run_ids]
                               for c in fit_on], np.float64)
            fit = fit_frontier([c.budget_fraction for c in fit_on], values, bound=1.0,
                               higher_is_better=True)
            lo, hi = fit.interval(target.budget_fraction)
            pred = float(fit.predict(target.budget_fraction))
            out.append({"schedule": s, "fit_on": [c.budget_fraction for c in fit_on],
                        "target": target.budget_fraction, "actual": 100 * target.mean,
                        "actual_std": 100 * target.std, "predicted": 100 * pred,
                        "low": 100 * float(lo), "high": 100 * float(hi),
                        "error": 100 * (pred - target.mean),
                        "covered": bool(lo <= target.mean <= hi)})
    return out


def write(setting: str, trained: dict, results: dict) -> None:
    lines = [f"# Budget frontier: `{setting}`", "",
             f"Device: {results['device']}.", "",
             f"Command: `python experiments/frontier/run.py --setting {setting}"
             + (f" --grid-from {trained['grid']['dir']}" if trained["grid"]["seconds"] is None
                else "") + "`", "",
             "## Steps trained and winners, against the grid", "",
             "| strategy | budget | run-steps | grid's | share | grid's winner | winner | "
             "same / within noise |", "|---|---|---|---|---|---|---|---|"]
    for name, cmp in results["strategies"].items():
        for b in cmp["budgets"]:
            mark = "same" if b["same_winner"] else ("within noise" if b["within_noise"]
                                                     else "**different**")
            lines.append(f"| {name} | {b['fraction']:.0%} | {b['trained']:,} | "
                         f"{b['grid_steps']:,} | {b['trained'] / b['grid_steps']:.0%} | "
                         f"{b['grid_winner']} | {b['winner']} | {mark} |")
        tot, grid = (sum(b[k] for b in cmp["budgets"]) for k in ("trained", "grid_steps"))
        lines.append(f"| {name} | all | {tot:,} | {grid:,} | {tot / grid:.0%} | | | |")
    lines += ["", "## The table's cells against the grid's", "",
              "| strategy | cells | best lr changed | regret mean / max (pts) | "
              "|cell − grid cell| mean / max (pts) | runs compared | identical | "
              "max |run − grid run| (pts) | pruned runs | wall s | pruning s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, cmp in results["strategies"].items():
        t = trained[name]
        lines.append(
            f"| {name} | {cmp['cells']} | {cmp['lr_changed']} | {cmp['regret_mean']:.2f} / "
            f"{cmp['regret_max']:.2f} | {cmp['cell_diff_mean']:.2f} / {cmp['cell_diff_max']:.2f}"
            f" | {cmp['runs_compared']} | {cmp['runs_identical']} | "
            + (f"{cmp['run_diff_max']:.2f}" if cmp["run_diff_max"] is not None else "")
            + f" | {cmp['pruned']} | {t['seconds']:.0f} | {t['pruning_seconds']:.3f} |")
    lines += ["", "## Halving's estimator, replayed on the grid's curves", "",
              "| estimator | cells | same lr as the grid | regret mean / max (pts) |",
              "|---|---|---|---|"]
    for est, r in results["estimators"].items():
        lines.append(f"| `{est}` | {r['cells']} | {r['agree']} | {r['regret_mean']:.2f} / "
                     f"{r['regret_max']:.2f} |")
    lines += ["", "## Frontier prediction at a held-out budget", "",
              "| schedule | fitted on | held out | actual (± seed std) | predicted [95%] | "
              "error | covered |", "|---|---|---|---|---|---|---|"]
    for p in results["predictions"]:
        lines.append(f"| {p['schedule']} | {', '.join(f'{f:.0%}' for f in p['fit_on'])} | "
                     f"{p['target']:.0%} | {p['actual']:.1f} ± {p['actual_std']:.1f} | "
                     f"{p['predicted']:.1f} [{p['low']:.1f}, {p['high']:.1f}] | "
                     f"{p['error']:+.1f} | {'yes' if p['covered'] else 'no'} |")
    (HERE / f"{setting}.md").write_text("\n".join(lines) + "\n")
    (HERE / f"{setting}.json").write_text(json.dumps(
        {"trained": trained, **results}, indent=1, default=float) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", default="mlp", choices=sorted(CONFIGS))
    p.add_argument("--grid-from", default=None,
                   help="a finished grid sweep of the same spec to reuse (e.g. "
                        "experiments/sweep_default for mlp)")
    args = p.parse_args()
    trained = train_all(args.setting, args.grid_from)
    grid = trained["grid"]["dir"]
    d = jax.devices()[0]
    results = {
        "device": f"{d.platform} ({platform.processor() or platform.machine()}), jax "
                  f"{jax.__version__}",
        "strategies": {name: compare(grid, trained[name]["dir"]) for name in STRATEGIES},
        "estimators": replay_estimators(grid, make_spec(args.setting, "halving")),
        "predictions": predictions(grid),
    }
    write(args.setting, trained, results)
    print((HERE / f"{args.setting}.md").read_text())


if __name__ == "__main__":
    main()
