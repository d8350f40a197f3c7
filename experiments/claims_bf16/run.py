"""bfloat16-only training: nearest rounding vs stochastic rounding vs Kahan summation vs float32.

Thin entry point: the configuration is in ``config.py``; every training run is made by the
sweep engine, :func:`budgetax.training.sweep` (one sweep per task and precision mode,
``OptimizerSpec(precision=...)``, stored under ``--work``). This script only plans the sweeps,
reads their stores back (:func:`budgetax.report.load`), measures the persistent state of each
mode on the training core's own state pytrees, and compares. Writes ``results.json`` (every
cell with its per-seed values, the state report, the command, the machine, the timings),
``results.md`` (the tables) and ``gap.png``.

Comparison rule: each mode at its own best peak lr (lowest mean final full-training-set loss
over seeds; an lr at which a seed diverged is not eligible); the test metric at the end of
the budget (test accuracy; test bits per byte for the Transformer, lower is better); the gap
of a mode to float32 is the mean over seeds of ``mode - float32`` of the same seed, with a
95 % t-interval over the seed differences. The same seed gives every mode the same batch
order and the same initial weights (a bf16 model is initialised in float32 and rounded to
bfloat16, ``Task.build_model``).

Usage:
  python experiments/claims_bf16/run.py [--config default] [--analyze-only]
"""

from __future__ import annotations

import functools
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # config; claims_common (it adds the repo root)

from claims_common import Claim, choose_lr, make_task, run, save_figure, subplots  # noqa: E402
from claims_common import ci95 as _ci95  # noqa: E402
from config import CONFIGS  # noqa: E402

import budgetax  # noqa: E402
from budgetax import training  # noqa: E402
from budgetax.report import load  # noqa: E402
from budgetax.training import core  # noqa: E402

LABELS = {"float32": "float32", "bf16": "bf16, nearest", "bf16_sr": "bf16 + stochastic rounding",
          "bf16_kahan": "bf16 + Kahan summation"}
PAPER = "0.1 % lower to 0.2 % higher than float32 (SR or Kahan); nearest rounding behind"

ci95 = functools.partial(_ci95, single=math.nan)  # one seed: no interval


# ----------------------------------------------------------------------------- sweeps

def opt_spec(cfg, mode):
    return training.OptimizerSpec(cfg["optimizer"], cfg["schedule"], momentum=cfg["momentum"],
                                  precision=mode)


def sweep_spec(cfg, tcfg, mode):
    return training.SweepSpec(
        optimizer=opt_spec(cfg, mode), full_budget=tcfg["budget"], budgets=(1.0,),
        schedules=(cfg["schedule"],), peak_lrs=tcfg["lrs"], seeds=cfg["seeds"],
        batch_size=tcfg["batch_size"], num_evals=cfg["num_evals"],
        diagnostics=cfg["diagnostics"])


def sweep_dirs(cfg, work: Path):
    """``[(task_name, mode, dir)]`` of every sweep of the config."""
    return [(name, mode, work / name / mode) for name in cfg["tasks"] for mode in cfg["modes"]]


def tasks_of(cfg):
    return {name: make_task(tcfg) for name, tcfg in cfg["tasks"].items()}


def run_sweeps(cfg, work: Path):
    tasks = tasks_of(cfg)
    timings = []
    for name, mode, d in sweep_dirs(cfg, work):
        tcfg = cfg["tasks"][name]
        t0 = time.perf_counter()
        res = training.sweep(tasks[name], sweep_spec(cfg, tcfg, mode), str(d), progress=False,
                             auto_lrs=cfg["auto_lrs"])
        dt = time.perf_counter() - t0
        timings.append({"sweep": str(d.relative_to(work)), "runs": len(res.runs),
                        "seconds": round(dt, 1)})
        print(f"{d.relative_to(work)}: {len(res.runs)} runs, {dt:.0f} s", flush=True)
    return timings


# ----------------------------------------------------------------------------- state

def _kind(path) -> str:
    # the first matching name: the optimizer state's own fields come before the parameter
    # path inside them (a parameter path may itself contain e.g. an attention "key")
    names = [str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", "")))) for k in path]
    for n in names:
        if n in ("mu", "nu"):
            return f"adam_{n}"
        if n == "trace":
            return "momentum"
        if n == "compensation":
            return "kahan_buffer"
        if n == "key":
            return "sr_key"
        if n == "count":
            return "count"
    return "other"


def state_report(task, tcfg, cfg, mode):
    """Persistent bytes per parameter and dtypes of one mode, from the state pytrees.

    ``carry``: the training core's own carried state of one run
    (``core.abstract_carry`` of the sweep's program: the shapes and dtypes of the
    ``TrainState`` its compiled program initialises and updates). ``concrete``: the same
    state initialised for real (the core's ``model_fns(task, precision).init`` and the
    optimizer's ``init``), measured with :func:`budgetax.persistent_bytes_per_param`.
    """
    import jax

    spec = opt_spec(cfg, mode)
    prog = core.make_program(task, tcfg["budget"], spec, batch_size=tcfg["batch_size"],
                             num_evals=cfg["num_evals"], diagnostics=cfg["diagnostics"])
    st = core.abstract_carry(prog, 1).states
    nbytes = lambda a: math.prod(a.shape) * a.dtype.itemsize
    n_params = sum(math.prod(a.shape) for a in jax.tree.leaves(st.params))
    by_kind = {"params": sum(nbytes(a) for a in jax.tree.leaves(st.params))}
    for path, a in jax.tree_util.tree_flatten_with_path(st.opt_state)[0]:
        k = _kind(path)
        by_kind[k] = by_kind.get(k, 0) + nbytes(a)
    dtypes = {"params": sorted({str(a.dtype) for a in jax.tree.leaves(st.params)})}
    for path, a in jax.tree_util.tree_flatten_with_path(st.opt_state)[0]:
        dtypes.setdefault(_kind(path), set()).add(str(a.dtype))
    dtypes = {k: sorted(v) for k, v in dtypes.items()}
    rest = sum(nbytes(a) for a in jax.tree.leaves(st.rest))
    fns = core.model_fns(task, mode)
    params, _rest = fns.init(jax.random.key(0))
    opt_state = spec.build(tcfg["budget"]).init(params)
    return {
        "num_params": int(n_params),
        "bytes_per_param": sum(by_kind.values()) / n_params,
        "bytes_per_param_by_part": {k: v / n_params for k, v in by_kind.items()},
        "bytes_per_param_concrete": budgetax.persistent_bytes_per_param(params, opt_state),
        "dtypes": dtypes,
        "model_state_bytes": int(rest),
    }


# ----------------------------------------------------------------------------- data

def collect(cfg, work: Path):
    """``({(task, mode): {lr: {seed: final | None}}}, meta)``; ``None``: diverged."""
    data, meta = {}, {}
    for name, mode, d in sweep_dirs(cfg, work):
        spec, runs, _groups = load(str(d))
        if spec["optimizer"]["precision"] != mode:
            raise RuntimeError(f"{d}: stored precision {spec['optimizer']['precision']!r}")
        meta[name] = {"task": spec["task"], "table_metric": spec["table_metric"],
                      "steps_per_epoch": spec["steps_per_epoch"]}
        cell = data.setdefault((name, mode), {})
        for r in runs:
            if r["status"] not in ("done", "diverged"):
                continue
            meta[name]["budget"] = r["budget"]
            cell.setdefault(r["peak_lr"], {})[r["seed"]] = (
                None if r["status"] == "diverged" else r["final"])
    return data, meta


def mean_ci(x):
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "ci95": ci95(x), "per_seed": x.tolist()}


def verdicts(gap, ci, tol, higher):
    """Direction of a mode's gap to float32 (``mode - float32``) and whether it is within
    ``tol`` of float32 beyond its 95 % interval."""
    lo, hi = gap - ci, gap + ci
    good = (lambda v: v) if higher else (lambda v: -v)  # > 0: better than float32
    blo, bhi = sorted((good(lo), good(hi)))
    if bhi < 0:
        direction = "behind"
    elif blo > 0:
        direction = "ahead"
    else:
        direction = "not resolved"
    if -tol <= lo and hi <= tol:
        within = "within (resolved)"
    elif bhi < -tol:
        within = "behind by more than the tolerance"
    elif blo > tol:
        within = "ahead by more than the tolerance"
    elif abs(gap) <= tol:
        within = "mean within, interval wider than the tolerance"
    else:
        within = "mean outside, interval overlaps the tolerance"
    return {"vs_float32": direction, "tolerance": within, "ci_low": lo, "ci_high": hi}


def analyze(cfg, work: Path):
    """The comparison of the stored sweeps, with each mode's state report and the verdicts
    of every setting."""
    tasks = tasks_of(cfg)
    states = {name: {m: state_report(tasks[name], tcfg, cfg, m) for m in cfg["modes"]}
              for name, tcfg in cfg["tasks"].items()}
    summary = compare(cfg, work, states)
    summary["verdicts"] = overall(summary)
    return summary


def compare(cfg, work: Path, states):
    data, meta = collect(cfg, work)
    seeds = tuple(cfg["seeds"])
    cells = []
    for name in cfg["tasks"]:
        metric, higher = meta[name]["table_metric"]
        scale = 100.0 if metric.endswith("accuracy") else 1.0  # accuracy in points
        chosen = {m: choose_lr(data[(name, m)], seeds) for m in cfg["modes"]}
        base_lr, base_runs = chosen["float32"]
        base = np.array([r[metric] for r in base_runs]) * scale
        base_train = np.array([r["train_loss"] for r in base_runs])
        tol = (cfg["tolerance_points"] if scale == 100.0
               else cfg["tolerance_relative"] * float(base.mean()))
        row = {"task": name, "task_name": meta[name]["task"]["name"],
               "budget": meta[name]["budget"],
               "epochs": meta[name]["budget"] / meta[name]["steps_per_epoch"],
               "metric": metric, "higher_is_better": higher,
               "unit": "points" if scale == 100.0 else "bits per byte", "tolerance": tol,
               "modes": {}}
        for m in cfg["modes"]:
            by_lr = data[(name, m)]
            grid = sorted(by_lr)
            lr, runs = chosen[m]
            diverged = sorted(x for x, rs in by_lr.items() if any(rs.get(s) is None for s in seeds))
            cell = {"lr": lr, "grid": grid, "diverged_lrs": diverged,
                    "edge": (None if lr is None or len(grid) < 2 else "smallest"
                             if lr == grid[0] else "largest" if lr == grid[-1] else None),
                    "state": states[name][m],
                    "train_loss_by_lr": {f"{x:g}": (None if any(by_lr[x].get(s) is None
                                                                 for s in seeds) else
                                                     float(np.mean([by_lr[x][s]["train_loss"]
                                                                    for s in seeds])))
                                         for x in grid}}
            if runs is not None:
                vals = np.array([r[metric] for r in runs]) * scale
                train = np.array([r["train_loss"] for r in runs])
                cell["test"] = mean_ci(vals)
                cell["train_loss"] = mean_ci(train)
                cell["test_loss"] = mean_ci([r["test_loss"] for r in runs])
                if m != "float32":
                    d = vals - base
                    cell["gap"] = mean_ci(d)
                    cell["train_loss_gap"] = mean_ci(train - base_train)
                    cell["verdict"] = verdicts(float(d.mean()), ci95(d), tol, higher)
                    # seeds for a 95 % interval of +- tol at this spread (normal approximation)
                    sd = float(np.std(d, ddof=1))
                    cell["seeds_for_tolerance"] = max(2, math.ceil((1.96 * sd / tol) ** 2))
                    cell["train_loss_verdict"] = verdicts(
                        float((train - base_train).mean()), ci95(train - base_train),
                        0.0, False)["vs_float32"]
                # at float32's lr (the same lr for every mode), for comparison
                at = by_lr.get(base_lr, {})
                if all(at.get(s) is not None for s in seeds):
                    v2 = np.array([at[s][metric] for s in seeds]) * scale
                    cell["test_at_float32_lr"] = mean_ci(v2)
                    cell["train_loss_at_float32_lr"] = mean_ci([at[s]["train_loss"]
                                                                for s in seeds])
                    if m != "float32":
                        cell["gap_at_float32_lr"] = mean_ci(v2 - base)
            row["modes"][m] = cell
        # SR / Kahan against nearest: the same seed is the same initial weights and batches
        near = row["modes"]["bf16"].get("test")
        for m in ("bf16_sr", "bf16_kahan"):
            c = row["modes"][m]
            if near is not None and "test" in c:
                d = np.array(c["test"]["per_seed"]) - np.array(near["per_seed"])
                c["gap_vs_nearest"] = mean_ci(d)
                c["vs_nearest"] = verdicts(float(d.mean()), ci95(d), 0.0, higher)["vs_float32"]
        cells.append(row)
    return {"cells": cells, "meta": meta}


# ----------------------------------------------------------------------------- report

def fmt(v, unit, ci=None, signed=False):
    d = 1 if unit == "points" else 3
    s = f"{v:+.{d}f}" if signed else f"{v:.{d}f}"
    return s if ci is None else f"{s} ± {ci:.{d}f}"


def overall(summary):
    """One line per setting: nearest behind? SR / Kahan within the tolerance?"""
    out = {}
    for row in summary["cells"]:
        ms = row["modes"]
        near = ms["bf16"].get("verdict", {}).get("vs_float32")
        out[row["task"]] = {
            "nearest_behind": near == "behind",
            "sr": ms["bf16_sr"].get("verdict"), "kahan": ms["bf16_kahan"].get("verdict"),
            "nearest_train_loss_higher": ms["bf16"].get("train_loss_verdict") == "behind"}
    return out


def markdown(meta, summary, cfg):
    L = ["# bfloat16-only training: nearest vs stochastic rounding vs Kahan summation", "",
         f"Command: `{meta['command']}`  ",
         f"Machine: {meta['machine']}, {meta['cpu_count']} CPU cores (shared with other jobs), "
         f"jax {meta['jax']}, budgetax {meta['budgetax']} at commit {meta['commit'][:10]}, "
         f"{meta['date']}; training wall time {meta['train_seconds']:.0f} s.", "",
         "Optimizer: " + (f"Adam (b1 {cfg['momentum']}, b2 0.999, eps 1e-8, "
                          if cfg["optimizer"] == "adam" else
                          f"SGD with momentum {cfg['momentum']} (") +
         f"no weight decay), {cfg['schedule']} decay of the lr to 0, no warmup; seeds "
         f"{list(cfg['seeds'])}. Each mode at its own best peak lr (lowest mean final "
         "full-training-set loss over seeds; never the test set). Test metric at the end of the "
         "budget: accuracy in % (gaps in points), bits per byte for the Transformer (lower is "
         "better). Intervals: 95 % t-intervals over the seeds; a gap is `mode - float32` "
         "paired by seed (the same batch order and initial weights, rounded to bfloat16 in "
         "the bf16 modes). Tolerance: "
         f"{cfg['tolerance_points']} points of accuracy; for bits per byte "
         f"{100 * cfg['tolerance_relative']:.1f} % of float32's value.", "",
         "## Results per setting", "",
         "| setting | mode | lr | test metric | gap to float32 | final train loss | "
         "train-loss gap | test loss | bytes/param | param / state dtypes |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary["cells"]:
        u = row["unit"]
        for m, c in row["modes"].items():
            st = c["state"]
            dts = ", ".join(f"{k} {'/'.join(v)}" for k, v in st["dtypes"].items()
                            if k in ("params", "adam_mu", "adam_nu", "momentum",
                                     "kahan_buffer"))
            mark = {"smallest": " ⇤", "largest": " ⇥"}.get(c["edge"], "")
            if "test" not in c:
                L.append(f"| {row['task']} | {LABELS[m]} | - | diverged | | | | | "
                         f"{st['bytes_per_param']:.3f} | {dts} |")
                continue
            gap = (fmt(c["gap"]["mean"], u, c["gap"]["ci95"], True) if "gap" in c else "-")
            tg = (f"{c['train_loss_gap']['mean']:+.4f} ± {c['train_loss_gap']['ci95']:.4f}"
                  if "train_loss_gap" in c else "-")
            L.append(f"| {row['task']} ({row['budget']} steps) | {LABELS[m]} | "
                     f"{c['lr']:g}{mark} | {fmt(c['test']['mean'], u, c['test']['ci95'])} | "
                     f"{gap} | {c['train_loss']['mean']:.4f} ± {c['train_loss']['ci95']:.4f} | "
                     f"{tg} | {c['test_loss']['mean']:.3f} ± {c['test_loss']['ci95']:.3f} | "
                     f"{st['bytes_per_param']:.3f} | {dts} |")
    L += ["", "⇤ / ⇥: the chosen lr is the smallest / largest of the (final, possibly widened) "
          "grid. bytes/param: params + optimizer state (Adam mu, nu, count, or the SGD momentum; "
          "the Kahan buffer; "
          "the stochastic-rounding key) of one run, from the training core's carried state; "
          "breakdown in results.json (`state`).", "",
          "## Verdict per setting", "",
          "| setting | nearest behind float32? | SR vs float32 | SR within tolerance? | "
          "Kahan vs float32 | Kahan within tolerance? | tolerance | nearest: train loss |",
          "|---|---|---|---|---|---|---|---|"]
    for row in summary["cells"]:
        ms, u = row["modes"], row["unit"]
        v = {m: ms[m].get("verdict", {}) for m in ("bf16", "bf16_sr", "bf16_kahan")}
        tl = ms["bf16"].get("train_loss_verdict")
        # the train-loss verdict is on a lower-is-better scale: "behind" = a higher loss
        tl = {"behind": "higher (worse)", "ahead": "lower", "not resolved":
              "not resolved"}.get(tl, "-")
        L.append(f"| {row['task']} | {v['bf16'].get('vs_float32', '-')} | "
                 f"{v['bf16_sr'].get('vs_float32', '-')} | {v['bf16_sr'].get('tolerance', '-')} | "
                 f"{v['bf16_kahan'].get('vs_float32', '-')} | "
                 f"{v['bf16_kahan'].get('tolerance', '-')} | {fmt(row['tolerance'], u)} {u} | "
                 f"{tl} |")
    L += ["", "*behind / ahead*: the 95 % interval of the paired gap is entirely on the worse / "
          "better side of 0; *within (resolved)*: the whole interval lies within ± the "
          f"tolerance; otherwise the interval is wider than the tolerance band, i.e. "
          f"{len(cfg['seeds'])} seeds cannot resolve a gap of the tolerance's size.", "",
          "Seeds a 95 % interval of ± the tolerance would need at the observed spread of the "
          "paired gap (normal approximation): " + "; ".join(
              f"{row['task']}: " + ", ".join(
                  f"{LABELS[m].replace('bf16 + ', '').replace('bf16, ', '')} "
                  f"{row['modes'][m].get('seeds_for_tolerance', '-')}"
                  for m in ("bf16", "bf16_sr", "bf16_kahan"))
              for row in summary["cells"]) + ".", "",
          "## SR and Kahan against nearest (paired: the same initial weights and batches)",
          "", "| setting | SR - nearest | Kahan - nearest |", "|---|---|---|"]
    for row in summary["cells"]:
        u, ms = row["unit"], row["modes"]
        parts = []
        for m in ("bf16_sr", "bf16_kahan"):
            g = ms[m].get("gap_vs_nearest")
            parts.append("-" if g is None else
                         f"{fmt(g['mean'], u, g['ci95'], True)} ({ms[m]['vs_nearest']})")
        L.append(f"| {row['task']} | " + " | ".join(parts) + " |")
    L += ["", "(*ahead*: better than nearest beyond the interval.)", "",
          "## At float32's lr (every mode at the lr float32 chose)", "",
          "| setting | float32 lr | mode | test metric | gap to float32 | final train loss |",
          "|---|---|---|---|---|---|"]
    for row in summary["cells"]:
        u = row["unit"]
        lr32 = row["modes"]["float32"]["lr"]
        for m, c in row["modes"].items():
            if "test_at_float32_lr" not in c:
                continue
            g = c.get("gap_at_float32_lr")
            L.append(f"| {row['task']} | {lr32:g} | {LABELS[m]} | "
                     f"{fmt(c['test_at_float32_lr']['mean'], u, c['test_at_float32_lr']['ci95'])}"
                     f" | {fmt(g['mean'], u, g['ci95'], True) if g else '-'} | "
                     f"{c['train_loss_at_float32_lr']['mean']:.4f} |")
    L += ["", "## Mean final training loss per lr (the selection)", "",
          "| setting | mode | " + "train loss at lr ... (mean over seeds; - = a seed diverged)"
          + " |", "|---|---|---|"]
    for row in summary["cells"]:
        for m, c in row["modes"].items():
            L.append(f"| {row['task']} | {LABELS[m]} | " + ", ".join(
                f"{k}: {'-' if v is None else f'{v:.4f}'}"
                for k, v in c["train_loss_by_lr"].items()) + " |")
    L += ["", f"![gap to float32]({meta['plot']})", ""]
    return "\n".join(L) + "\n"


def plot(summary, cfg, path):
    rows = summary["cells"]
    fig, axes = subplots(2, len(rows), figsize=(4.2 * len(rows), 7.2), squeeze=False)
    modes = [m for m in cfg["modes"] if m != "float32"]
    colors = {"bf16": "#d95f02", "bf16_sr": "#1b9e77", "bf16_kahan": "#7570b3"}
    for ax, row in zip(axes[1], rows, strict=True):  # the training loss: the mechanism
        ax.axhline(0, color="k", lw=0.8)
        for i, m in enumerate(modes):
            g = row["modes"][m].get("train_loss_gap")
            if g is None:
                continue
            ax.errorbar([i], [g["mean"]], yerr=[[g["ci95"]], [g["ci95"]]], fmt="s", capsize=5,
                        color=colors[m])
            ax.plot([i] * len(g["per_seed"]), g["per_seed"], ".", color=colors[m], alpha=0.4)
        ax.set_xticks(range(len(modes)), ["nearest", "SR", "Kahan"])
        ax.set_xlim(-0.6, len(modes) - 0.4)
        ax.set_ylabel("mode - float32, final full\ntraining-set loss (lower is better)",
                      fontsize=8)
        ax.set_title(f"{row['task']}: training loss (float32 "
                     f"{row['modes']['float32']['train_loss']['mean']:.4f})", fontsize=9)
    for ax, row in zip(axes[0], rows, strict=True):
        tol = row["tolerance"]
        ax.axhspan(-tol, tol, color="#dddddd", label=f"± tolerance ({fmt(tol, row['unit'])})")
        ax.axhline(0, color="k", lw=0.8)
        for i, m in enumerate(modes):
            c = row["modes"][m]
            if "gap" not in c:
                continue
            g = c["gap"]
            ax.errorbar([i], [g["mean"]], yerr=[[g["ci95"]], [g["ci95"]]], fmt="o", capsize=5,
                        color=colors[m])
            ax.plot([i] * len(g["per_seed"]), g["per_seed"], ".", color=colors[m], alpha=0.4)
        ax.set_xticks(range(len(modes)), ["nearest", "SR", "Kahan"])
        ax.set_xlim(-0.6, len(modes) - 0.4)
        better = "higher" if row["higher_is_better"] else "lower"
        what = "accuracy (points)" if row["unit"] == "points" else "bits per byte"
        ax.set_ylabel(f"mode - float32, test {what}\n({better} is better)", fontsize=8)
        ax.set_title(f"{row['task']} ({row['budget']} steps)", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("bf16 modes vs float32, each at its own best lr: paired gap over seeds, "
                 "mean ± 95 % t-interval (dots: seeds); top: test metric, bottom: training loss",
                 fontsize=10)
    save_figure(fig, path)


def main(argv=None):
    run(Claim(HERE, __doc__, CONFIGS, train=run_sweeps, analyze=analyze, markdown=markdown,
              plot=plot, figure="gap", meta=lambda figure: {"plot": figure, "paper": PAPER}),
        argv)


if __name__ == "__main__":
    main()
