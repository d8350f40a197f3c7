"""Joins the settings' results (``<setting>.json`` from ``run.py``) into ``results.md``.

Usage:
  python experiments/frontier/summarize.py [mlp cnn]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(settings):
    rows, est_rows, pred_rows = [], [], []
    for s in settings:
        r = json.loads((HERE / f"{s}.json").read_text())
        for name, cmp in r["strategies"].items():
            b = cmp["budgets"]
            trained, grid = sum(x["trained"] for x in b), sum(x["grid_steps"] for x in b)
            same = sum(x["same_winner"] for x in b)
            within = sum(x["within_noise"] and not x["same_winner"] for x in b)
            t = r["trained"][name]
            share = t["pruning_seconds"] / t["seconds"] if t["seconds"] else 0.0
            rows.append(f"| {s} | {name} | {trained / grid:.0%} | {same} / {len(b)} | "
                        f"{within} | {cmp['regret_mean']:.2f} / {cmp['regret_max']:.2f} | "
                        f"{cmp['lr_changed']} of {cmp['cells']} | "
                        f"{cmp['runs_identical']} of {cmp['runs_compared']} | "
                        + (f"{cmp['run_diff_max']:.2f}" if cmp["run_diff_max"] is not None
                           else "") + f" | {t['seconds']:.0f} | {100 * share:.2f}% |")
        for est, e in r["estimators"].items():
            est_rows.append(f"| {s} | `{est}` | {e['agree']} of {e['cells']} | "
                            f"{e['regret_mean']:.2f} / {e['regret_max']:.2f} |")
        preds = r["predictions"]
        for target in sorted({p["target"] for p in preds}):
            ps = [p for p in preds if p["target"] == target]
            err = np.array([p["error"] for p in ps])
            pred_rows.append(f"| {s} | {target:.0%} from the {len(ps[0]['fit_on'])} smaller "
                             f"budgets | {len(ps)} | {np.mean(np.abs(err)):.2f} | "
                             f"{np.max(np.abs(err)):.2f} | {sum(p['covered'] for p in ps)} of "
                             f"{len(ps)} |")
    lines = [
        "# The budget frontier at a fraction of the grid's compute", "",
        "Branched decays, successive halving and frontier prediction against the grid "
        "(every run trained from scratch), on the default sweep (`mlp`: MNIST-1D MLP, Adam, "
        "5 budgets x 8 schedules x 3 lrs x 3 seeds) and on the MNIST-1D CNN (`cnn`: 5 budgets "
        "x 4 schedules x 3 lrs x 3 seeds, full budget 600 steps). Per setting, with every "
        "budget's and every cell's numbers: " + ", ".join(f"[{s}]({s}.md)" for s in settings)
        + "; configuration in [config.py](config.py).", "",
        "Commands:", "", "```",
        "budgetax sweep --out experiments/sweep_default --overwrite --no-progress",
        "budgetax report experiments/sweep_default --predict 2 --out "
        "experiments/frontier/mlp_report",
        "python experiments/frontier/run.py --setting mlp --grid-from experiments/sweep_default",
        "python experiments/frontier/run.py --setting cnn",
        f"python experiments/frontier/summarize.py {' '.join(settings)}", "```", "",
        "## Steps, winners and regret against the grid", "",
        "Steps: optimizer steps trained, summed over runs, as a share of the grid's. "
        "Winners: the budgets whose best schedule is the grid's, and those where it differs "
        "but the grid's own runs of the winning (schedule, lr) are within the grid winner's "
        "seed spread of it (or better). Regret: per "
        "(budget, schedule) cell, the grid's test accuracy at the lr the strategy selected "
        "minus the grid's at its own best lr (points; negative: the strategy's pick had the "
        "better test accuracy, since the table selects on training loss). Identical runs: "
        "runs the strategy finished whose final test accuracy equals the grid's to the bit. "
        "Pruning: the share of the sweep's wall time spent scoring curves and pruning.", "",
        "| setting | strategy | steps vs grid | same winner | other winner within noise | "
        "regret mean / max (pts) | best lr changed | identical runs | max run difference "
        "(pts) | wall s | pruning |", "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows, "",
        "The grids' wall times, for comparison (other jobs shared the 2 cores throughout): "
        "the default sweep 493 s (`experiments/sweep_default` regenerated in this run of the "
        "experiment; identical table), the CNN 753 s.", "",
        "## Halving's estimator", "",
        "Halving's decisions (rungs at 25% and 50%, keep 1/3 of each schedule's lrs) replayed "
        "on the grid's full curves with each estimator (halving's survivors are the grid's "
        "runs to the bit, so these are the decisions a halving sweep with that estimator "
        "makes); the default, `tse_e`, is the one with the smallest worst-case regret over "
        "both settings.", "",
        "| setting | estimator | same lr as the grid | regret mean / max (pts) |",
        "|---|---|---|---|", *est_rows, "",
        "## Frontier prediction at a held-out budget", "",
        "Each schedule's test accuracy at a budget left out of the fit, predicted from the "
        "smaller budgets (`budgetax.training.sweep.frontier.fit_frontier`); coverage of its "
        "95% interval.", "",
        "| setting | held out | schedules | mean abs error (pts) | max abs error (pts) | "
        "covered |", "|---|---|---|---|---|---|", *pred_rows, ""]
    (HERE / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or ["mlp", "cnn"])
