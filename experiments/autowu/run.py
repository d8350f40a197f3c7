"""AutoWU + AdamP / LAMB against a grid of peak learning rates, large batch, MNIST-1D CNN.

Thin entry point: the configuration is in ``config.py``; training is
:func:`budgetax.training.train` (one compiled run per call, same compiled
function for every seed / learning rate of a variant). Writes ``results.json``
(every run, the command, the machine) and ``results.md`` (the tables).

Usage:
  python experiments/autowu/run.py [--config default] [--out experiments/autowu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from config import CONFIGS  # noqa: E402

import budgetax  # noqa: E402
from budgetax import data, training  # noqa: E402


def switch_of(lr: np.ndarray, budget: int, kw: dict):
    """(switch step, peak lr) read off an AutoWU lr curve.

    The switch is the first step whose lr is not the exponential warmup's
    ``min_lr * (max_lr / min_lr) ** (t / W)``; the peak is the lr there.
    """
    lo, hi = kw.get("min_lr", 1e-5), kw.get("max_lr", 1.0)
    span = kw.get("max_warmup_fraction", 0.5) * budget
    t = np.arange(len(lr))
    warm = lo * (hi / lo) ** (t / span)
    off = np.nonzero(np.abs(lr - warm) > 1e-4 * warm)[0]
    if len(off) == 0:
        return None, float("nan")
    s = int(off[0])
    return s, float(lr[s])


def run_one(ds, cfg, opt, spec, seed):
    h = training.train(ds, model=cfg["model"], model_kwargs=cfg["model_kwargs"],
                       budget=cfg["budget"], batch_size=cfg["batch_size"], optimizer=spec,
                       seed=seed, num_evals=cfg["num_evals"], diagnostics=False)
    out = {"optimizer": opt, "seed": seed, "test_accuracy": h.final["test_accuracy"],
           "test_loss": h.final["test_loss"], "final_train_loss": float(h.train["loss"][-1]),
           "diverged": bool(h.diverged), "seconds": float(h.seconds)}
    return out, h


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default", choices=sorted(CONFIGS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--only", choices=["autowu", "grid"], default=None)
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    ds = data.load(cfg["dataset"])
    runs = []
    for opt, ocfg in cfg["optimizers"].items():
        for name, kw in cfg["autowu"].items() if args.only != "grid" else ():
            spec = training.OptimizerSpec(opt, "autowu", peak_lr=kw["max_lr"],
                                          weight_decay=ocfg["weight_decay"], schedule_kwargs=kw)
            for seed in cfg["seeds"]:
                r, h = run_one(ds, cfg, opt, spec, seed)
                s, peak = switch_of(np.asarray(h.train["lr"], np.float64), cfg["budget"], kw)
                r.update(method="autowu", variant=name, switch_step=s, peak_lr=peak)
                runs.append(r)
                print(json.dumps(r), flush=True)
        if args.only != "autowu":
            spec = training.OptimizerSpec(opt, cfg["grid_schedule"],
                                          warmup_fraction=cfg["grid_warmup_fraction"],
                                          weight_decay=ocfg["weight_decay"])
            for seed in cfg["seeds"]:
                for lr in ocfg["grid"]:
                    r, _ = run_one(ds, cfg, opt, spec.__class__(**{**spec.to_dict(),
                                                                   "peak_lr": lr}), seed)
                    r.update(method="grid", peak_lr=lr)
                    runs.append(r)
                    print(json.dumps(r), flush=True)
    summary = summarize(cfg, runs)
    command = "python experiments/autowu/run.py --config " + args.config + (
        f" --only {args.only}" if args.only else "")
    meta = {"command": command, "config": cfg, "machine": platform.platform(),
            "cpu_count": os.cpu_count(), "jax": __import__("jax").__version__,
            "budgetax": budgetax.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}
    out = Path(args.out)
    suffix = "" if args.config == "default" else f"_{args.config}"
    (out / f"results{suffix}.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "runs": runs}, indent=1))
    (out / f"results{suffix}.md").write_text(markdown(meta, summary))
    print(markdown(meta, summary))


def summarize(cfg, runs):
    out = {}
    for opt, ocfg in cfg["optimizers"].items():
        grid = [r for r in runs if r["optimizer"] == opt and r["method"] == "grid"]
        s = {"autowu": {}}
        for name in cfg["autowu"]:
            auto = [r for r in runs if r["optimizer"] == opt and r["method"] == "autowu"
                    and r["variant"] == name]
            if not auto:
                continue
            acc = np.array([r["test_accuracy"] for r in auto])
            s["autowu"][name] = {
                "mean": float(acc.mean()), "std": float(acc.std()), "per_seed": acc.tolist(),
                "switch_steps": [r["switch_step"] for r in auto],
                "peak_lrs": [r["peak_lr"] for r in auto],
                "seconds_per_run": float(np.median([r["seconds"] for r in auto]))}
        if grid:
            per_lr = {}
            for lr in ocfg["grid"]:
                acc = np.array([r["test_accuracy"] for r in grid if r["peak_lr"] == lr])
                per_lr[lr] = {"mean": float(acc.mean()), "std": float(acc.std()),
                              "diverged": sum(r["diverged"] for r in grid if r["peak_lr"] == lr)}
            means = np.array([v["mean"] for v in per_lr.values()])
            best_lr = list(per_lr)[int(np.argmax(means))]
            s["grid"] = {"per_lr": {str(k): v for k, v in per_lr.items()},
                         "best_lr": best_lr, "best": float(means.max()),
                         "median": float(np.median(means)),
                         "runs_per_seed": len(ocfg["grid"]),
                         "seconds_per_run": float(np.median([r["seconds"] for r in grid]))}
        out[opt] = s
    return out


def markdown(meta, summary):
    cfg = meta["config"]
    lines = [
        "# AutoWU vs a peak-learning-rate grid (large batch, MNIST-1D CNN)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}, {meta['cpu_count']} CPU cores, jax {meta['jax']}, "
        f"{meta['date']}.",
        "",
        f"Setup: {cfg['model']} {cfg['model_kwargs']}, batch {cfg['batch_size']} of the 4000 "
        f"MNIST-1D training examples, budget {cfg['budget']} steps, seeds {cfg['seeds']}. "
        f"Grid: {cfg['grid_schedule']} decay after a linear warmup over "
        f"{cfg['grid_warmup_fraction']:.0%} of the budget. AutoWU variants: `{cfg['autowu']}` "
        "(no peak lr given). Test accuracy at the end of the budget, mean ± std over seeds.",
        "",
        "| optimizer | AutoWU variant | AutoWU | grid best (lr) | grid median | AutoWU - best "
        "| AutoWU - median | runs per seed (AutoWU : grid) | switch steps | chosen peak lrs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for opt, s in summary.items():
        g = s.get("grid")
        for name, a in s["autowu"].items():
            if not g:
                continue
            lines.append(
                f"| {opt} | {name} | {a['mean']:.3f} ± {a['std']:.3f} | {g['best']:.3f} "
                f"({g['best_lr']:g}) | {g['median']:.3f} | {a['mean'] - g['best']:+.3f} | "
                f"{a['mean'] - g['median']:+.3f} | 1 : {g['runs_per_seed']} | "
                f"{a['switch_steps']} | " + ", ".join(f"{p:.3g}" for p in a["peak_lrs"]) + " |")
    lines += ["", "Per grid point (mean ± std over seeds):", ""]
    for opt, s in summary.items():
        g = s.get("grid")
        if not g:
            continue
        lines.append(f"- {opt}: " + "; ".join(
            f"lr {k}: {v['mean']:.3f} ± {v['std']:.3f}" + (f" ({v['diverged']} diverged)"
                                                            if v["diverged"] else "")
            for k, v in g["per_lr"].items()))
    lines += ["", "Compute: AutoWU needs 1 run per seed, the grid "
              + ", ".join(f"{s['grid']['runs_per_seed']} ({opt})" for opt, s in summary.items()
                          if s.get("grid"))
              + "; median wall seconds per run (CPU; the first run of each setting also compiles): "
              + ", ".join(f"{opt} grid {s['grid']['seconds_per_run']:.1f} s, " + ", ".join(
                  f"AutoWU {n} {a['seconds_per_run']:.1f} s" for n, a in s["autowu"].items())
                          for opt, s in summary.items() if s.get("grid")) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
