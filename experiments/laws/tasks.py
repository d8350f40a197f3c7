"""The Multi-Power Law on budgetax's own settings: from 3 anchor runs, predict a grid.

    python experiments/laws/tasks.py [--only TASK/OPT ...]   # writes tasks.json and tasks.md

For each setting (the four tasks of ``experiments/claims_schedules`` x SGD with momentum and
Adam, each at the peak lr most of its schedules chose at the full budget there), a grid
sweep trains the 8 built-in schedules x 5 budgets x 3 seeds (no full-training-set
diagnostics: the target is the training loss the runs record). The law is fitted on three
anchor runs at the full budget, seed 0 only (constant, cosine and step: step's drops are
the sharp-drop anchor the paper's two-stage run provides), each curve the minibatch losses
averaged over windows of 1/20 of the budget (``laws.Curve.from_training``). It then predicts
the final training loss (the mean of the last window) of every (budget, schedule) cell,
compared with the measured mean over seeds: relative errors, Spearman per budget, and
whether the predicted best schedule of a budget is the measured best or within its seed
spread (95 % t-interval). Sweeps are kept under ``experiments/laws/sweeps/`` (resumable).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
from scipy import stats

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT)]

from budgetax import laws, training  # noqa: E402
from budgetax.laws.curve import window_step  # noqa: E402
from budgetax.training.sweep.store import STORE_NAME, Store, decode_curves  # noqa: E402
from experiments.claims_common import ci95, command_line, make_task, run_stamp  # noqa: E402
from experiments.claims_schedules.config import CONFIGS  # noqa: E402

SETTINGS = CONFIGS["default"]["tasks"]
# the peak lr most schedules chose at the full budget in experiments/claims_schedules
LRS = {("mnist1d_mlp", "momentum"): 0.3, ("mnist1d_mlp", "adam"): 0.01,
       ("digits_mlp", "momentum"): 0.1, ("digits_mlp", "adam"): 0.03,
       ("transformer_ci", "momentum"): 0.3, ("transformer_ci", "adam"): 0.01,
       ("mnist1d_cnn1d", "momentum"): 0.3, ("mnist1d_cnn1d", "adam"): 0.03}
SCHEDULES = ("linear", "rex", "cosine", "step", "exponential", "constant", "wsd", "one_cycle")
BUDGETS = (0.05, 0.1, 0.25, 0.5, 1.0)
SEEDS = (0, 1, 2)
ANCHORS = ("constant", "cosine", "step")
WINDOWS = 20


def run_sweep(task_name, opt):
    tcfg = SETTINGS[task_name]
    spec = training.SweepSpec(
        optimizer=training.OptimizerSpec(opt, momentum=0.9), full_budget=tcfg["full_budget"],
        budgets=BUDGETS, schedules=SCHEDULES, peak_lrs=(LRS[task_name, opt],), seeds=SEEDS,
        batch_size=tcfg["batch_size"], num_evals=1, diagnostics=False)
    out = HERE / "sweeps" / task_name / opt
    t0 = time.perf_counter()
    training.sweep(make_task(tcfg), spec, str(out), progress=False)
    return out, time.perf_counter() - t0


def window(budget):
    return max(2, budget // WINDOWS)


def analyse(out):
    with Store(out / STORE_NAME, readonly=True) as store:
        names = tuple(store.get_meta("metrics")["train"])
        rows = [r for r in store.runs(with_curves=True)]
    full = max(r["budget"] for r in rows)
    runs = {}
    for r in rows:
        if r["status"] != "done":
            continue
        c = decode_curves(r["curves"], names, r["budget"])
        w = window(r["budget"])
        runs[r["schedule"], r["budget"], r["seed"]] = (c["lr"].astype(np.float64),
                                                      c["loss"].astype(np.float64), w)
    anchors = []
    for s in ANCHORS:
        lr, loss, w = runs[s, full, 0]
        anchors.append(laws.Curve.from_training(lr, loss, every=w, name=s))
    fit = laws.fit(anchors)
    budgets = sorted({b for _, b, _ in runs})
    cells = []
    for b in budgets:
        for s in SCHEDULES:
            seeds = [runs[s, b, k] for k in SEEDS if (s, b, k) in runs]
            if not seeds:
                continue
            lr, _, w = seeds[0]
            finals = [float(np.mean(loss[-w:])) for _, loss, _ in seeds]
            at = np.array([window_step(b - w, w)])  # the last window's step
            pred = float(fit.predict(lr, at)[0])
            lo, hi = fit.interval(lr, at)
            cells.append({"budget": b, "schedule": s, "measured": float(np.mean(finals)),
                          "ci95": ci95(finals), "predicted": pred,
                          "interval": [float(lo[0]), float(hi[0])],
                          "anchor": b == full and s in ANCHORS,
                          "rel_error": abs(pred - np.mean(finals)) / np.mean(finals)})
    per_budget = []
    for b in budgets:
        cs = [c for c in cells if c["budget"] == b]
        rho = stats.spearmanr([c["predicted"] for c in cs], [c["measured"] for c in cs]).statistic
        best = min(cs, key=lambda c: c["measured"])
        pick = min(cs, key=lambda c: c["predicted"])
        per_budget.append({"budget": b, "spearman": float(rho), "measured_best": best["schedule"],
                           "predicted_best": pick["schedule"],
                           "hit": pick["schedule"] == best["schedule"],
                           "within_spread": pick["measured"] - pick["ci95"]
                           <= best["measured"] + best["ci95"]})
    held = [c["rel_error"] for c in cells if not c["anchor"]]
    grid_steps = sum(b for _, b, _ in runs)  # every trained run of the grid
    return {"fit": {"params": list(fit.params), "quality": [q.__dict__ for q in fit.quality]},
            "cells": cells, "per_budget": per_budget,
            "median_rel_error": float(np.median(held)), "worst_rel_error": float(np.max(held)),
            "steps_fraction": 3 * full / grid_steps,
            "negative_predictions": int(sum(c["predicted"] <= 0 for c in cells))}


def write_markdown(results):
    lines = ["# The Multi-Power Law on budgetax's settings: 3 anchor runs predict a grid", "",
             command_line("experiments/laws/tasks.py", results), "",
             "Per setting: one peak lr, 8 schedules x 5 budgets x 3 seeds trained; the law fitted "
             "on 3 runs (constant, cosine, step at the full budget, seed 0; minibatch losses "
             "averaged over windows of 1/20 of the budget) predicts the final training loss (the "
             "last window's mean) of every cell. Errors over the cells not fitted (all but the "
             "3 anchors); Spearman and the best schedule over all cells of a budget; "
             "\"best\": the predicted best schedule of a budget is the measured best, or within "
             "its seed spread (95 % intervals overlap).", "",
             "| setting | lr | median rel. error | worst | Spearman per budget (5% ... 100%) | "
             "best found (exact / within spread) | steps vs grid |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, r in results["settings"].items():
        rhos = ", ".join(f"{p['spearman']:+.2f}" for p in r["per_budget"])
        exact = sum(p["hit"] for p in r["per_budget"])
        within = sum(p["within_spread"] for p in r["per_budget"])
        lines.append(f"| {key} | {r['lr']:g} | {100 * r['median_rel_error']:.1f}% | "
                     f"{100 * r['worst_rel_error']:.1f}% | {rhos} | {exact}/5 / {within}/5 | "
                     f"{100 * r['steps_fraction']:.1f}% |")
    lines += ["", "## Per cell", "",
              "| setting | budget | schedule | measured (± 95%) | predicted [interval] "
              "| rel. error |",
              "| --- | --- | --- | --- | --- | --- |"]
    for key, r in results["settings"].items():
        for c in r["cells"]:
            mark = " (anchor)" if c["anchor"] else ""
            lines.append(f"| {key} | {c['budget']} | {c['schedule']}{mark} | "
                         f"{c['measured']:.4f} ± {c['ci95']:.4f} | {c['predicted']:.4f} "
                         f"[{c['interval'][0]:.4f}, {c['interval'][1]:.4f}] | "
                         f"{100 * c['rel_error']:.1f}% |")
    (HERE / "tasks.md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="settings TASK/OPT (default: all)")
    parser.add_argument("--analyze-only", action="store_true")
    args = parser.parse_args()
    keys = [f"{t}/{o}" for t, o in LRS] if not args.only else args.only
    path = HERE / "tasks.json"
    results = json.loads(path.read_text()) if path.exists() else {"settings": {}}
    results.update(run_stamp())
    for key in keys:
        task_name, opt = key.split("/")
        if args.analyze_only:
            out, seconds = HERE / "sweeps" / task_name / opt, math.nan
        else:
            out, seconds = run_sweep(task_name, opt)
        r = analyse(out)
        r.update(lr=LRS[task_name, opt], sweep_seconds=seconds)
        results["settings"][key] = r
        print(key, f"median {r['median_rel_error']:.3f} worst {r['worst_rel_error']:.3f}",
              [(p["predicted_best"], p["measured_best"]) for p in r["per_budget"]], flush=True)
        path.write_text(json.dumps(results, indent=1))
        write_markdown(results)


if __name__ == "__main__":
    main()
