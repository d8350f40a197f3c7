"""MNIST-1D anchor: default MLP / CNN vs the paper, and linear decay vs constant at 10% budget.

Usage:
  python experiments/mnist1d_anchor/run.py [--variants anchor,anchor_linear,short]
      [--seeds 0,1,2] [--full-budget 6000]

Writes ``results.json`` (merged with earlier variants) and ``results.md`` next to this file.
Each (model, schedule, budget) cell is one ``budgetax.training.train_many`` call: the
seeds run vmapped in one compiled program.

References:
  Greydanus. Scaling down Deep Learning (MNIST-1D). 2020. arXiv:2011.14439.
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import config  # noqa: E402

from budgetax import data, schedules, training  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run_cell(ds, model, schedule, budget, seeds, optimizer=config.OPTIMIZER,
             peak_lr=config.PEAK_LR):
    spec = training.OptimizerSpec(optimizer, schedule, peak_lr=peak_lr, momentum=0.9)
    hs = training.train_many(ds, seeds=seeds, model=model, budget=budget,
                             batch_size=config.BATCH_SIZE, optimizer=spec, num_evals=4)
    acc = np.array([h.final["test_accuracy"] for h in hs])
    return {
        "model": model, "schedule": schedule, "budget": budget, "seeds": list(seeds),
        "optimizer": optimizer, "peak_lr": peak_lr,
        "test_accuracy": acc.tolist(),
        "test_accuracy_mean": float(acc.mean()), "test_accuracy_std": float(acc.std(ddof=1))
        if len(acc) > 1 else 0.0,
        "test_loss": [h.final["test_loss"] for h in hs],
        "train_loss": [h.final["train_loss"] for h in hs],
        "full_grad_norm": [h.final["full_grad_norm"] for h in hs],
        "eval_steps": [int(s) for s in hs[0].eval_steps],
        "test_accuracy_curve_mean": np.mean([h.eval["test_accuracy"] for h in hs], 0).tolist(),
        "diverged": [h.diverged for h in hs],
        "seconds": hs[0].seconds,
    }


def device_info():
    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind, "jax": jax.__version__,
            "machine": platform.machine(), "cpu_count": os.cpu_count()}


def pm(cell):
    return f"{100 * cell['test_accuracy_mean']:.1f} ± {100 * cell['test_accuracy_std']:.1f}%"


def write_markdown(results, path):
    cells = results["cells"]
    lines = ["# MNIST-1D anchor", "",
             f"Device: {results['device']['platform']} ({results['device']['device_kind']}, "
             f"{results['device']['cpu_count']} cores, shared), jax {results['device']['jax']}.",
             "", "Commands:", ""]
    lines += [f"    {c}" for c in results["commands"]]
    lines += ["", f"Protocol: {config.OPTIMIZER}, peak lr {config.PEAK_LR}, batch "
              f"{config.BATCH_SIZE}, no weight decay, full budget {results['full_budget']} "
              f"steps ({results['full_budget'] * config.BATCH_SIZE // 4000} epochs); "
              "test accuracy mean ± std (ddof=1) over seeds; the learning rate of a decaying "
              "schedule reaches 0 at the end of its budget.", ""]
    anchor = {k: v for k, v in cells.items() if k.startswith("anchor")}
    if anchor:
        lines += ["## Full budget vs the paper", "",
                  "| model | schedule | steps | seeds | test accuracy | paper | "
                  "final full-train grad norm | final train loss |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in sorted(anchor.values(), key=lambda c: (c["model"], c["schedule"])):
            lines.append(
                f"| {c['model']} | {c['schedule']} | {c['budget']} | {len(c['seeds'])} | "
                f"{pm(c)} | ~{100 * config.PAPER[c['model']]:.0f}% | "
                f"{np.mean(c['full_grad_norm']):.3g} | {np.mean(c['train_loss']):.3g} |")
        lines.append("")
    shorts = sorted({k.split("/")[0] for k in cells if k.startswith("short")})
    for variant in shorts:
        short = {k: v for k, v in cells.items() if k.split("/")[0] == variant}
        any_cell = next(iter(short.values()))
        lines += [f"## 10% of the budget: linear decay vs constant ({variant}: "
                  f"{any_cell.get('optimizer', config.OPTIMIZER)}, peak lr "
                  f"{any_cell.get('peak_lr', config.PEAK_LR)})", "",
                  "| model | steps | seeds | constant: test acc | linear: test acc | "
                  "linear - constant | constant: test loss | linear: test loss | "
                  "constant: full grad norm | linear: full grad norm |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for model in ("mlp", "cnn1d"):
            c = short.get(f"{variant}/{model}/constant")
            lin = short.get(f"{variant}/{model}/linear")
            if c and lin:
                diff = 100 * (lin["test_accuracy_mean"] - c["test_accuracy_mean"])
                lines.append(
                    f"| {model} | {c['budget']} | {len(c['seeds'])} | {pm(c)} | {pm(lin)} | "
                    f"{diff:+.1f} points | {np.mean(c['test_loss']):.3f} | "
                    f"{np.mean(lin['test_loss']):.3f} | {np.mean(c['full_grad_norm']):.3g} | "
                    f"{np.mean(lin['full_grad_norm']):.3g} |")
        lines.append("")
    lines += ["## Reading", ""]
    for c in sorted(anchor.values(), key=lambda c: (c["model"], c["schedule"])):
        gap = 100 * (c["test_accuracy_mean"] - config.PAPER[c["model"]])
        lines.append(f"- {c['model']}, {c['schedule']}, full budget: {pm(c)}, {gap:+.1f} points "
                     f"from the paper's ~{100 * config.PAPER[c['model']]:.0f}%.")
    for variant, model in [(v, m) for v in shorts for m in ("mlp", "cnn1d")]:
        c, lin = cells.get(f"{variant}/{model}/constant"), cells.get(f"{variant}/{model}/linear")
        if c and lin:
            diff = lin["test_accuracy_mean"] - c["test_accuracy_mean"]
            noise = np.hypot(c["test_accuracy_std"], lin["test_accuracy_std"])
            verdict = ("linear decay beats constant" if diff > noise else
                       "constant beats linear decay" if diff < -noise else
                       "no difference beyond seed noise")
            lower_loss = np.mean(lin["test_loss"]) < np.mean(c["test_loss"])
            lines.append(f"- {model}, 10% budget, {c.get('optimizer', config.OPTIMIZER)}: "
                         f"{verdict} in test accuracy "
                         f"({100 * diff:+.1f} points, seed noise ~{100 * noise:.1f}); linear "
                         f"decay has {'lower' if lower_loss else 'higher'} test loss and a "
                         f"{np.mean(c['full_grad_norm']) / np.mean(lin['full_grad_norm']):.1f}x "
                         "smaller full-training-set gradient norm at the end of the budget.")
    lines += ["", "Per-seed numbers, curves at 25/50/75/100% of each budget and timings: "
              "`results.json`.", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="anchor,short",
                   help="comma-separated names from config.VARIANTS; '' = only rewrite results.md")
    p.add_argument("--seeds", default=",".join(map(str, config.SEEDS)))
    p.add_argument("--full-budget", type=int, default=config.FULL_BUDGET)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in config.VARIANTS:
            p.error(f"--variants must be among {sorted(config.VARIANTS)}, got {v!r}")
    json_path, md_path = os.path.join(HERE, "results.json"), os.path.join(HERE, "results.md")
    results = {"cells": {}, "commands": []}
    if os.path.exists(json_path):
        with open(json_path) as f:
            results = json.load(f)
        if results.get("full_budget") != args.full_budget:
            results = {"cells": {}, "commands": []}
    results["full_budget"] = args.full_budget
    results["device"] = device_info()
    ds = data.load("mnist1d", data_dir=args.data_dir)
    for v in variants:
        cfg = config.VARIANTS[v]
        budget = schedules.steps_for_budget(full_steps=args.full_budget, fraction=cfg["fraction"])
        for model in cfg["models"]:
            for sched in cfg["schedules"]:
                t0 = time.perf_counter()
                cell = run_cell(ds, model, sched, budget, seeds,
                                optimizer=cfg.get("optimizer", config.OPTIMIZER),
                                peak_lr=cfg.get("peak_lr", config.PEAK_LR))
                results["cells"][f"{v}/{model}/{sched}"] = cell
                print(f"{v:14s} {model:6s} {sched:9s} {budget:5d} steps: {pm(cell)} "
                      f"(per seed {[round(a, 3) for a in cell['test_accuracy']]}, "
                      f"{time.perf_counter() - t0:.0f}s)", flush=True)
                with open(json_path, "w") as f:
                    json.dump(results, f, indent=1)
    cmd = "python experiments/mnist1d_anchor/run.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    if variants and cmd.strip() not in results["commands"]:
        results["commands"].append(cmd.strip())
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(results, md_path)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
