"""Ranks the search space from the first 5/10/25% of training; the elasticity stopping rule.

Usage:
  python experiments/ranking/run.py [--curves experiments/ranking/curves.npz] [--n-boot 1000]

Reads the curves stored by ``train_space.py`` (no training) and writes
``results.json``, ``results.md`` and ``ranking.png`` next to this file.

Ground truth: the final test accuracy of each configuration after its full budget.
For each fraction ``f`` the per-step training-loss curves are cut to their first
``f * budget`` steps and every ranker scores all configurations at once (lower =
predicted better); Spearman's rho and Kendall's tau against the ground truth, with
percentile-bootstrap 95% CIs over configurations (``budgetax.ranking.bootstrap_ci``).
Rankers: TSE, TSE-E, TSE-EMA (Ru et al. 2021), LCGA (Zhao et al. 2022; "ratio" and
"slope" variants), loss-curve extrapolation to the full budget (``pow3``, ``exp4``,
``log_power``) and, as the naive baseline, the test accuracy at ``f`` ("early
validation accuracy"; MNIST-1D has no separate validation split).

Elasticity: ``budgetax.ranking.early_stop`` on the full curves decides, per
configuration, at which epoch training could have stopped; the compute saved is
``1 - stop_step / budget`` and the accuracy lost is the final test accuracy minus the
test accuracy at the last evaluation at or before the stop step (chance, 0.1, before
the first evaluation). Compared with stopping every configuration at the same fixed
fraction of its budget.

References:
  Ru, Lyle, Schut, Fil, van der Wilk, Gal. Speedy Performance Estimation for Neural
  Architecture Search. NeurIPS 2021. arXiv:2006.04492.
  Zhao, Frey, Gadepally, Samsi. Loss Curve Approximations for Fast Neural Architecture
  Ranking & Training Elasticity Estimation. 2022. arXiv:2210.00078.
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

from budgetax import ranking  # noqa: E402
from budgetax._io import atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CEILING = "another seed, full budget (noise ceiling)"
COLLAPSED = 0.15  # final test accuracy below this = a run that learned nothing
CHANCE = 0.1  # 10 classes: accuracy of an untrained model, used before the first evaluation
TSE_EMA_GAMMA = 0.9  # per epoch, as in Ru et al. (2021)
TSE_E_EPOCHS = 1
LCGA_BURN_IN = 1  # epochs
EARLY_STOP_THRESHOLDS = (0.03, 0.05, 0.1, 0.2, 0.3, 0.5)  # |elasticity|; 0.05 = library default
EARLY_STOP_PATIENCE = 3  # library default
EARLY_STOP_MIN_EPOCHS = 10  # the variant that may not stop before epoch 10 (1/6 of the budget)
FIXED_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 0.75)


def rankers(losses, budget, spe, test_acc_at_f):
    """``({name: (scores [N], converged fraction or None)}, {name: negative predictions})``.

    ``losses``: the curves cut at the fraction, ``[N, n]``.
    """
    negative = {}
    out = {"TSE": (ranking.tse(losses, spe), None),
           "TSE-E": (ranking.tse_e(losses, spe, last_epochs=TSE_E_EPOCHS), None),
           "TSE-EMA": (ranking.tse_ema(losses, spe, gamma=TSE_EMA_GAMMA), None)}
    for variant in ("ratio", "slope"):
        fit = ranking.lcga(losses, spe, burn_in_epochs=LCGA_BURN_IN, variant=variant)
        out[f"LCGA ({variant})"] = (fit.score, np.mean(np.asarray(fit.converged)))
    for fam in ranking.CURVE_FAMILIES:
        fit = ranking.extrapolate(losses, budget, family=fam)
        out[f"extrapolation ({fam})"] = (fit.prediction, np.mean(np.asarray(fit.converged)))
        negative[f"extrapolation ({fam})"] = int((np.asarray(fit.prediction) < 0).sum())
    out["early test accuracy (naive)"] = (-test_acc_at_f, None)
    return {k: (np.asarray(s, np.float64), c) for k, (s, c) in out.items()}, negative


def evaluate(scores, truth, n_boot, mask=None, metrics=("spearman", "kendall")):
    if mask is not None:
        scores, truth = scores[mask], truth[mask]
    row = {}
    fns = {"spearman": ranking.spearman, "kendall": ranking.kendall}
    for metric in metrics:
        fn = fns[metric]
        lo, hi = ranking.bootstrap_ci(scores, truth, metric=metric, n_boot=n_boot, seed=0)
        row[metric] = float(fn(scores, truth))
        row[f"{metric}_ci"] = [float(lo), float(hi)]
    # the configuration the ranker puts first, and its true final accuracy
    s = np.where(np.isfinite(scores), scores, np.inf)
    best = int(np.argmin(s))
    row["top1_accuracy"] = float(truth[best])
    row["top1_regret"] = float(truth.max() - truth[best])
    k = max(1, len(truth) // 10)
    top_pred = set(np.argsort(s, kind="stable")[:k].tolist())
    top_true = set(np.argsort(-truth, kind="stable")[:k].tolist())
    row["top10pct_overlap"] = len(top_pred & top_true) / k
    row["nan_scores"] = int((~np.isfinite(scores)).sum())
    # where the collapsed runs (final accuracy < COLLAPSED, i.e. about chance) are ranked
    order = np.argsort(np.argsort(s, kind="stable"), kind="stable") + 1  # 1 = predicted best
    bad = truth < COLLAPSED
    row["best_rank_of_collapsed"] = int(order[bad].min()) if bad.any() else None
    return row


PAIRS = (("LCGA (ratio)", "TSE"), ("LCGA (slope)", "TSE"), ("LCGA (slope)", "TSE-E"),
         ("early test accuracy (naive)", "TSE"),
         ("early test accuracy (naive)", "LCGA (slope)"))


def paired_diff(a, b, truth, n_boot, seed=0):
    """Spearman(a) - Spearman(b) and its paired percentile-bootstrap 95% CI (same resamples)."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        diffs.append(ranking.spearman(a[i], truth[i]) - ranking.spearman(b[i], truth[i]))
    diffs = np.asarray(diffs, float)
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    return {"diff": float(ranking.spearman(a, truth) - ranking.spearman(b, truth)),
            "ci": [float(lo), float(hi)], "p_le_0": float(np.nanmean(diffs <= 0))}


def acc_at(steps, eval_steps, test_acc):
    """Test accuracy at the last evaluation at or before ``steps`` (chance before the first)."""
    idx = np.searchsorted(eval_steps, steps, side="right") - 1  # [N]
    acc = np.take_along_axis(test_acc, np.clip(idx, 0, None)[:, None], axis=1)[:, 0]
    return np.where(idx >= 0, acc, CHANCE)


def elasticity_rule(d):
    losses, budget, spe = d["loss"], int(d["budget"]), int(d["steps_per_epoch"])
    truth, eval_steps, test_acc = d["final_test_accuracy"], d["eval_steps"], d["test_accuracy"]
    finite = np.isfinite(losses).all(axis=1)
    rows, rows_min = [], []
    for thr, min_epochs in [(t, m) for m in (0, EARLY_STOP_MIN_EPOCHS)
                            for t in EARLY_STOP_THRESHOLDS]:
        es = ranking.early_stop(losses, spe, threshold=thr, patience=EARLY_STOP_PATIENCE,
                                min_epochs=min_epochs)
        stop_epoch = np.asarray(es.stop_epoch)
        stop_step = np.minimum(stop_epoch * spe, budget)
        saved = 1.0 - stop_step / budget
        lost = truth - acc_at(stop_step, eval_steps, test_acc)
        api_saved = np.asarray(es.compute_saved, np.float64)
        same = np.full(len(truth), int(round((1 - saved.mean()) * budget)))
        lost_same = truth - acc_at(same, eval_steps, test_acc)
        (rows if min_epochs == 0 else rows_min).append({
            "threshold": thr, "patience": EARLY_STOP_PATIENCE, "min_epochs": min_epochs,
            "compute_saved_mean": float(saved.mean()),
            "compute_saved_median": float(np.median(saved)),
            "acc_lost_mean": float(lost.mean()), "acc_lost_median": float(np.median(lost)),
            "acc_lost_max": float(lost.max()),
            "fixed_same_compute_acc_lost_mean": float(lost_same.mean()),
            "lost_over_10pts": int((lost > 0.10).sum()),
            "acc_lost_mean_finite": float(lost[finite].mean()),
            "stopped_early": float((stop_step < budget).mean()),
            "before_first_eval": int((stop_step < eval_steps[0]).sum()),
            "stop_epoch_median": float(np.median(stop_epoch)),
            "api_compute_saved_mean": float(np.nanmean(api_saved)),
            "api_matches_saved": bool(np.allclose(api_saved, saved, atol=1e-6,
                                                  equal_nan=True)),
            "loss_given_up_mean": float(np.nanmean(np.asarray(es.loss_given_up))),
            "ranking_spearman_at_stop": float(ranking.spearman(
                -acc_at(stop_step, eval_steps, test_acc), truth)),
        })
    fixed = []
    for f in FIXED_FRACTIONS:
        step = np.full(len(truth), int(round(f * budget)))
        lost = truth - acc_at(step, eval_steps, test_acc)
        fixed.append({"fraction": f, "compute_saved": 1 - f, "acc_lost_mean": float(lost.mean()),
                      "acc_lost_median": float(np.median(lost))})
    return {"rule": rows, "rule_min_epochs": rows_min, "fixed_fraction": fixed}


def device_info():
    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind, "jax": jax.__version__,
            "machine": platform.machine(), "cpu_count": os.cpu_count()}


def fmt_ci(row, metric):
    lo, hi = row[f"{metric}_ci"]
    return f"{row[metric]:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr = results["fractions"]
    names = list(results["by_fraction"][str(fr[0])]["all"].keys())
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [2, 1]})
    w = 0.8 / len(fr)
    x = np.arange(len(names))
    for i, f in enumerate(fr):
        rows = results["by_fraction"][str(f)]["all"]
        v = np.array([rows[n]["spearman"] for n in names])
        lo = np.array([rows[n]["spearman_ci"][0] for n in names])
        hi = np.array([rows[n]["spearman_ci"][1] for n in names])
        ax.bar(x + (i - (len(fr) - 1) / 2) * w, v, w, yerr=[v - lo, hi - v], capsize=2,
               label=f"{int(round(100 * f))}% of training")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("Spearman rho vs final test accuracy")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(min(-0.2, ax.get_ylim()[0]), 1.0)
    ax.legend(fontsize=8)
    ax.set_title(f"Ranking {results['n_configs']} MNIST-1D configurations (95% bootstrap CI)")
    el = results["elasticity"]
    ax2.plot([100 * r["compute_saved"] for r in el["fixed_fraction"]],
             [100 * r["acc_lost_mean"] for r in el["fixed_fraction"]], "o--", color="gray",
             label="stop all at a fixed fraction")
    for r in el["rule"]:
        ax2.plot(100 * r["compute_saved_mean"], 100 * r["acc_lost_mean"], "s", color="C3")
        ax2.annotate(f"thr {r['threshold']:g}", (100 * r["compute_saved_mean"],
                                                 100 * r["acc_lost_mean"]), fontsize=7,
                     xytext=(3, 3), textcoords="offset points")
    ax2.plot([], [], "s", color="C3", label="elasticity rule (early_stop)")
    for r in el.get("rule_min_epochs", []):
        ax2.plot(100 * r["compute_saved_mean"], 100 * r["acc_lost_mean"], "^", color="C2")
    ax2.plot([], [], "^", color="C2",
             label=f"elasticity rule, min_epochs={EARLY_STOP_MIN_EPOCHS}")
    ax2.set_xlabel("compute saved (% of the budget, mean over configs)")
    ax2.set_ylabel("test accuracy lost (points, mean over configs)")
    ax2.set_title("Elasticity stopping rule")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def write_markdown(res, path):
    d = res["device"]
    L = ["# Ranking configurations from the start of their loss curves", "",
         f"Device: {d['platform']} ({d['machine']}, {d['cpu_count']} cores, shared with other "
         f"jobs), jax {d['jax']}.", "", "Commands:", "",
         f"    {res['train_command']}   # {res['train_seconds']:.0f} s",
         *([f"    {res['second_seed']['command']}   # {res['second_seed']['seconds']:.0f} s"
            ] if res.get("second_seed", {}).get("command") else []),
         f"    {res['command']}   # {res['seconds']:.0f} s", "",
         f"Search space: {res['n_configs']} configurations = {res['space']} on MNIST-1D, "
         f"Adam, batch {config.BATCH_SIZE}, one seed, full budget {res['budget']} steps "
         f"({res['budget'] // res['steps_per_epoch']} epochs of {res['steps_per_epoch']} steps). "
         f"Ground truth: final test accuracy (range {res['truth_range'][0]:.3f} to "
         f"{res['truth_range'][1]:.3f}, median {res['truth_median']:.3f}; "
         f"{res['n_diverged']} runs with a non-finite loss).", ""]
    if "second_seed" in res:
        s2 = res["second_seed"]
        L += [f"Noise of the ground truth: the same configurations retrained with seed 1 "
              f"(`{s2['file']}`) differ in final test accuracy by {100 * s2['mean_abs_diff']:.1f}"
              f" points on average (std of the difference {100 * s2['std_diff']:.1f} points, "
              f"{100 * s2['std_diff_top_half']:.1f} in the top half); ranking one seed by the "
              f"other gives Spearman {s2['spearman']:+.2f} (the row \"{CEILING}\"): "
              "no early ranker can be expected to beat it against a one-seed truth.", ""]
    L += [
         "Rankers (lower score = predicted better): "
         f"TSE, TSE-E (last {TSE_E_EPOCHS} epoch), TSE-EMA (gamma {TSE_EMA_GAMMA} per epoch), "
         f"LCGA (burn-in {LCGA_BURN_IN} epoch; `ratio` and `slope` variants), extrapolation of "
         "the training-loss curve to the full budget with each curve family, and the naive "
         "baseline: the test accuracy at the same point of training. Epochs are the data's "
         f"epochs ({res['steps_per_epoch']} steps), so 5% of the budget = "
         f"{int(0.05 * res['budget'])} steps = {0.05 * res['budget'] / res['steps_per_epoch']:g}"
         " epochs. 95% CIs: percentile bootstrap over configurations "
         f"({res['n_boot']} resamples).", ""]
    for f in res["fractions"]:
        by = res["by_fraction"][str(f)]
        L += [f"## {int(round(100 * f))}% of training ({by['steps']} steps, "
              f"{by['epochs']} epochs)", "",
              "| ranker | Spearman [95% CI] | Kendall [95% CI] | top-1 pick: final acc "
              "(regret) | top-10% overlap | fits converged |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in by["all"].items():
            conv = by["converged"].get(name)
            L.append(f"| {name} | {fmt_ci(r, 'spearman')} | {fmt_ci(r, 'kendall')} | "
                     f"{r['top1_accuracy']:.3f} ({100 * r['top1_regret']:.1f} pts) | "
                     f"{100 * r['top10pct_overlap']:.0f}% | "
                     f"{'' if conv is None else f'{100 * conv:.0f}%'} |")
        L.append("")
    L += ["## Within subsets (Spearman [95% CI])", "",
          "Each model family on its own, and the better half of the space (final test "
          "accuracy >= the median), where the clearly failed runs are left out.", ""]
    names = list(res["by_fraction"][str(res["fractions"][0])]["all"])
    for fam in res["families"]:
        L += [f"{fam} ({res['family_sizes'][fam]} configurations):", "",
              "| ranker | " + " | ".join(f"{int(round(100 * f))}%" for f in res["fractions"])
              + " |", "| --- | " + " | ".join("---:" for _ in res["fractions"]) + " |"]
        for name in names:
            cells = [fmt_ci(res["by_fraction"][str(f)][fam][name], "spearman")
                     for f in res["fractions"]]
            L.append(f"| {name} | " + " | ".join(cells) + " |")
        L.append("")
    L += ["## Paired differences of Spearman's rho", "",
          "Spearman(ranker A) - Spearman(ranker B) on the same bootstrap resamples of "
          f"configurations ({res['n_boot']} resamples): 95% CI of the difference and the "
          "fraction of resamples in which A is not better (a one-sided bootstrap p-value).", "",
          "| A - B | " + " | ".join(f"all, {int(round(100 * f))}%" for f in res["fractions"])
          + " | " + " | ".join(f"top half, {int(round(100 * f))}%" for f in res["fractions"])
          + " |", "| --- |" + " ---: |" * (2 * len(res["fractions"]))]
    for pair in res["by_fraction"][str(res["fractions"][0])]["paired"]:
        cells = []
        for key in ("paired", "paired_top_half"):
            for f in res["fractions"]:
                r = res["by_fraction"][str(f)][key][pair]
                cells.append(f"{r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] "
                             f"p={r['p_le_0']:.2f}")
        L.append(f"| {pair} | " + " | ".join(cells) + " |")
    flip = {f: res["by_fraction"][str(f)]["lcga_ratio_flipped_spearman"]
            for f in res["fractions"]}
    L += ["", "LCGA (ratio) with its sign flipped (higher fitted remaining improvement = "
          "*worse*): Spearman " + ", ".join(
              f"{int(round(100 * f))}%: {flip[f]['all']:+.2f} (top half "
              f"{flip[f]['top half']:+.2f})" for f in res["fractions"]) + ".", ""]
    el = res["elasticity"]
    L += ["## Elasticity stopping rule", "",
          f"`ranking.early_stop(loss, {res['steps_per_epoch']}, threshold=thr, "
          f"patience={EARLY_STOP_PATIENCE})` on the full per-step training-loss curves. "
          "Compute saved = 1 - stop step / budget; accuracy lost = final test accuracy - test "
          "accuracy at the last evaluation (every 5% of the budget) at or before the stop step "
          f"(chance = {CHANCE} before the first one). Mean / median over the "
          f"{res['n_configs']} configurations.", "",
          "| threshold | stopped early | median stop epoch | compute saved mean / median | "
          "acc lost mean / median / max (pts) | configs losing > 10 pts | fixed fraction, "
          "same mean compute: acc lost mean (pts) | Spearman of acc at stop vs final |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in el["rule"]:
        L.append(f"| {r['threshold']:g} | {100 * r['stopped_early']:.0f}% | "
                 f"{r['stop_epoch_median']:.0f} | {100 * r['compute_saved_mean']:.1f}% / "
                 f"{100 * r['compute_saved_median']:.1f}% | {100 * r['acc_lost_mean']:.2f} / "
                 f"{100 * r['acc_lost_median']:.2f} / {100 * r['acc_lost_max']:.1f} | "
                 f"{r['lost_over_10pts']} | {100 * r['fixed_same_compute_acc_lost_mean']:.2f} | "
                 f"{r['ranking_spearman_at_stop']:+.3f} |")
    L += ["", f"The same rule with `min_epochs={EARLY_STOP_MIN_EPOCHS}` (no stop before the end "
          f"of epoch {EARLY_STOP_MIN_EPOCHS}, 1/6 of the budget):", "",
          "| threshold | stopped early | compute saved mean | acc lost mean / max (pts) | "
          "configs losing > 10 pts | fixed fraction, same mean compute: acc lost mean (pts) |",
          "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in el.get("rule_min_epochs", []):
        L.append(f"| {r['threshold']:g} | {100 * r['stopped_early']:.0f}% | "
                 f"{100 * r['compute_saved_mean']:.1f}% | {100 * r['acc_lost_mean']:.2f} / "
                 f"{100 * r['acc_lost_max']:.1f} | {r['lost_over_10pts']} | "
                 f"{100 * r['fixed_same_compute_acc_lost_mean']:.2f} |")
    L += ["", "Baseline: stop every configuration at the same fraction of its budget:", "",
          "| stop at | compute saved | acc lost mean / median (pts) |", "| ---: | ---: | ---: |"]
    for r in el["fixed_fraction"]:
        L.append(f"| {int(round(100 * r['fraction']))}% | {100 * r['compute_saved']:.0f}% | "
                 f"{100 * r['acc_lost_mean']:.2f} / {100 * r['acc_lost_median']:.2f} |")
    L += ["", "![ranking](ranking.png)", ""]
    if res.get("discussion"):
        L += ["## Reading", ""] + res["discussion"] + [""]
    L += ["Per-configuration scores are not stored; every number here is recomputed from "
          "`curves.npz` by the command above. All numbers: `results.json`.", ""]
    atomic_write_text(path, "\n".join(L))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--curves", default=os.path.join(HERE, "curves.npz"))
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out-dir", default=HERE)
    p.add_argument("--second-seed", default=os.path.join(HERE, "curves_seed1.npz"),
                   help="curves of the same space with another seed (noise ceiling; optional)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    with np.load(args.curves) as z:
        d = {k: z[k] for k in z.files}
    meta_path = os.path.splitext(args.curves)[0] + "_configs.json"
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    budget, spe = int(d["budget"]), int(d["steps_per_epoch"])
    truth = d["final_test_accuracy"].astype(np.float64)
    losses = d["loss"]
    eval_steps = d["eval_steps"]
    ceiling = None
    if args.second_seed and os.path.exists(args.second_seed):
        with np.load(args.second_seed) as z:
            same = all(np.array_equal(z[k], d[k]) for k in ("arch", "schedule", "peak_lr"))
            if same:
                ceiling = z["final_test_accuracy"].astype(np.float64)
            else:
                print(f"ignoring {args.second_seed}: not the same configurations")
    families = sorted(set(d["model"].tolist()))
    # subsets: each model family, and the better half of the space (final accuracy >= its
    # median: drops the clearly failed runs that make the ranking easy)
    subsets = {f: d["model"] == f for f in families}
    subsets["top half"] = truth >= np.median(truth)
    res = {"fractions": list(config.FRACTIONS), "budget": budget, "steps_per_epoch": spe,
           "n_configs": int(len(truth)), "n_boot": args.n_boot, "families": list(subsets),
           "family_sizes": {f: int(m.sum()) for f, m in subsets.items()},
           "truth_range": [float(truth.min()), float(truth.max())],
           "truth_median": float(np.median(truth)),
           "n_diverged": int((~np.isfinite(losses).all(axis=1)).sum()),
           "n_collapsed": int((truth < COLLAPSED).sum()),
           "space": space_text(d), "by_fraction": {}}
    if ceiling is not None:
        diff = ceiling - truth
        res["second_seed"] = {
            "file": os.path.relpath(args.second_seed, HERE),
            "mean_abs_diff": float(np.abs(diff).mean()),
            "std_diff": float(diff.std(ddof=1)),
            "std_diff_top_half": float(diff[subsets["top half"]].std(ddof=1)),
            "spearman": float(ranking.spearman(-ceiling, truth)),
            "best_config_same": bool(np.argmax(ceiling) == np.argmax(truth))}
        meta2_path = os.path.splitext(args.second_seed)[0] + "_configs.json"
        if os.path.exists(meta2_path):
            with open(meta2_path) as fh:
                meta2 = json.load(fh)
            res["second_seed"]["command"] = meta2.get("command")
            res["second_seed"]["seconds"] = meta2.get("total_seconds")
    for f in config.FRACTIONS:
        n = int(round(f * budget))
        k = int(np.flatnonzero(eval_steps == n)[0]) if (eval_steps == n).any() else None
        if k is None:
            raise ValueError(f"no evaluation at step {n}; eval_steps = {eval_steps.tolist()}")
        early_acc = d["test_accuracy"][:, k].astype(np.float64)
        scored, negative = rankers(losses[:, :n], budget, spe, early_acc)
        if ceiling is not None:
            scored[CEILING] = (-ceiling, None)
        by = {"steps": n, "epochs": n // spe, "all": {}, "converged": {},
              "negative_predictions": negative}
        for fam in subsets:
            by[fam] = {}
        for name, (s, conv) in scored.items():
            by["all"][name] = evaluate(s, truth, args.n_boot)
            by["converged"][name] = None if conv is None else float(conv)
            for fam, mask in subsets.items():
                by[fam][name] = evaluate(s, truth, args.n_boot, mask=mask,
                                         metrics=("spearman",))
        by["paired"] = {f"{a} - {b}": paired_diff(scored[a][0], scored[b][0], truth, args.n_boot)
                        for a, b in PAIRS}
        by["paired_top_half"] = {
            f"{a} - {b}": paired_diff(scored[a][0][subsets["top half"]],
                                      scored[b][0][subsets["top half"]],
                                      truth[subsets["top half"]], args.n_boot)
            for a, b in PAIRS}
        # sign-flipped LCGA ratio: does the opposite orientation rank better?
        by["lcga_ratio_flipped_spearman"] = {
            "all": float(ranking.spearman(-scored["LCGA (ratio)"][0], truth)),
            "top half": float(ranking.spearman(-scored["LCGA (ratio)"][0][subsets["top half"]],
                                               truth[subsets["top half"]]))}
        res["by_fraction"][str(f)] = by
        print(f"{int(100 * f)}%: " + "; ".join(
            f"{k} {v['spearman']:+.2f}" for k, v in by["all"].items()), flush=True)
    res["elasticity"] = elasticity_rule(d)
    res["device"] = meta.get("device", device_info())
    res["train_command"] = meta.get("command", "python experiments/ranking/train_space.py")
    res["train_seconds"] = float(meta.get("total_seconds", float("nan")))
    res["command"] = ("python experiments/ranking/run.py " + " ".join(
        argv if argv is not None else sys.argv[1:])).strip()
    res["seconds"] = time.perf_counter() - t0
    res["discussion"] = discussion(res)
    atomic_write_text(os.path.join(args.out_dir, "results.json"), json.dumps(res, indent=1))
    write_markdown(res, os.path.join(args.out_dir, "results.md"))
    plot(res, os.path.join(args.out_dir, "ranking.png"))
    print(f"wrote results.json, results.md, ranking.png in {args.out_dir} "
          f"({time.perf_counter() - t0:.0f}s)")


def space_text(d):
    archs = list(dict.fromkeys(d["arch"].tolist()))
    scheds = list(dict.fromkeys(d["schedule"].tolist()))
    lrs = {a: sorted(set(np.round(d["peak_lr"][d["arch"] == a], 6).tolist())) for a in archs}
    groups = {}
    for a in archs:
        groups.setdefault(tuple(lrs[a]), []).append(a)
    parts = [f"{{{', '.join(g)}}} x peak lr {{{', '.join(f'{v:g}' for v in k)}}}"
             for k, g in groups.items()]
    return "(" + " + ".join(parts) + f") x schedule {{{', '.join(scheds)}}}"


def _verdict(r, a, b):
    lo, hi = r["ci"]
    if lo > 0:
        return f"{a} better"
    if hi < 0:
        return f"{b} better"
    return "no significant difference"


def discussion(res):
    """Data-driven sentences: LCGA vs TSE (paired bootstrap), the baseline, the elasticity rule."""
    out = []
    for f in res["fractions"]:
        by = res["by_fraction"][str(f)]
        rows = by["all"]
        parts = []
        for a, b in (("LCGA (ratio)", "TSE"), ("LCGA (slope)", "TSE"),
                     ("early test accuracy (naive)", "TSE")):
            r = by["paired"][f"{a} - {b}"]
            rt = by["paired_top_half"][f"{a} - {b}"]
            parts.append(f"{a} {rows[a]['spearman']:+.2f} vs {b} {rows[b]['spearman']:+.2f}: "
                         f"difference {r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] "
                         f"-> {_verdict(r, a, b)} (top half: {rt['diff']:+.2f} "
                         f"[{rt['ci'][0]:+.2f}, {rt['ci'][1]:+.2f}] -> {_verdict(rt, a, b)})")
        best = max((k for k in rows if k != CEILING), key=lambda k: rows[k]["spearman"])
        out.append(f"- {int(round(100 * f))}% of training: " + "; ".join(parts)
                   + f". Highest rho: {best} ({rows[best]['spearman']:+.2f}).")
    n_bad = res["n_collapsed"]
    for f in res["fractions"]:
        by = res["by_fraction"][str(f)]
        top = [f"{k} (rank {r['best_rank_of_collapsed']})" for k, r in by["all"].items()
               if r["best_rank_of_collapsed"] is not None and r["best_rank_of_collapsed"] <= 10]
        neg = [f"{k}: {v}" for k, v in by["negative_predictions"].items() if v]
        out.append(f"- {int(round(100 * f))}%: of the {n_bad} collapsed runs (final accuracy < "
                   f"{COLLAPSED}), at least one is ranked in the top 10 by: "
                   + (", ".join(top) if top else "none")
                   + ". Negative predicted final losses: "
                   + (", ".join(neg) if neg else "none") + ".")
    el = res["elasticity"]["rule"]
    parts = [f"threshold {r['threshold']:g}: saves {100 * r['compute_saved_mean']:.0f}% of the "
             f"compute for {100 * r['acc_lost_mean']:.1f} points lost on average "
             f"({r['lost_over_10pts']} configurations lose > 10 points), vs "
             f"{100 * r['fixed_same_compute_acc_lost_mean']:.1f} points for stopping every "
             "configuration at the same fixed fraction" for r in el]
    out.append("- Elasticity rule: " + "; ".join(parts) + ".")
    return out


if __name__ == "__main__":
    main()
