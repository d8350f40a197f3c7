"""AutoWU against a tuned peak-lr grid at budgets of thousands of steps, large batch.

Thin entry point: the configuration is in ``config.py``. The grids are trained by the sweep
engine, :func:`budgetax.training.sweep` (one sweep per setting, optimizer and lr grid part,
stored under ``--work``) and read back with :func:`budgetax.report.load`. The sweep engine
refuses ``schedule="autowu"`` (AutoWU has no peak lr to sweep and its own state), so AutoWU
runs through :func:`budgetax.training.train_many`, the same training core, with the seeds
``jax.vmap``-ped together; its runs (finals and per-step ``lr`` / ``loss`` curves) are stored
as JSON next to the sweeps. Writes ``results.json`` (every cell with its per-seed values, the
command, the machine, the timings), ``results.md`` (the tables) and ``autowu.png``.

Usage:
  python experiments/claims_autowu/run.py [--config default] [--analyze-only]
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # config; claims_common (it adds the repo root)

from claims_common import Claim, ci95, make_task, run, save_figure, subplots  # noqa: E402
from config import CONFIGS  # noqa: E402

from budgetax import schedules, training  # noqa: E402
from budgetax.report import load  # noqa: E402

OPT_NAMES = {"adamp": "AdamP", "lamb": "LAMB"}


# ----------------------------------------------------------------------------- training

def budget_steps(tcfg):
    return [schedules.steps_for_budget(full_steps=tcfg["full_budget"], fraction=f)
            for f in tcfg["budgets"]]


def grid_dirs(cfg, work: Path):
    """``[(task, opt, part, lrs, dir)]`` of every grid sweep."""
    return [(name, opt, i, tuple(lrs), work / name / f"{opt}_grid_p{i}")
            for name, tcfg in cfg["tasks"].items()
            for opt, parts in tcfg["lrs"].items() for i, lrs in enumerate(parts)]


def autowu_files(cfg, work: Path):
    """``[(task, opt, budget, file)]`` of every AutoWU group (all seeds of one budget)."""
    return [(name, opt, t, work / name / f"{opt}_autowu_T{t}.json")
            for name, tcfg in cfg["tasks"].items() for opt in tcfg["lrs"]
            for t in budget_steps(tcfg)]


def autowu_spec(cfg, opt):
    return training.OptimizerSpec(opt, "autowu", peak_lr=cfg["autowu"]["max_lr"],
                                  weight_decay=cfg["weight_decay"],
                                  schedule_kwargs=cfg["autowu"])


def run_autowu(cfg, tcfg, task, opt, budget, path: Path):
    """Trains (or finds stored) AutoWU for every seed at one budget; returns its wall seconds."""
    spec = autowu_spec(cfg, opt)
    key = {"task": task.identity(), "optimizer": spec.to_dict(), "budget": budget,
           "batch_size": tcfg["batch_size"], "seeds": list(cfg["seeds"]),
           "num_evals": cfg["num_evals"], "diagnostics": cfg["diagnostics"]}
    key = json.loads(json.dumps(key, default=str))
    if path.exists():
        old = json.loads(path.read_text())
        if old["key"] == key:
            return None
        raise RuntimeError(f"{path} was made with another configuration; move it away")
    t0 = time.perf_counter()
    hs = training.train_many(task, seeds=list(cfg["seeds"]), peak_lrs=[spec.peak_lr],
                             budget=budget, batch_size=tcfg["batch_size"], optimizer=spec,
                             num_evals=cfg["num_evals"], diagnostics=cfg["diagnostics"])
    seconds = time.perf_counter() - t0
    runs = [{"seed": int(h.config["seed"]), "final": h.final, "diverged": bool(h.diverged),
             "diverged_step": h.diverged_step,
             "lr": np.asarray(h.train["lr"], np.float64).tolist(),
             "loss": np.asarray(h.train["loss"], np.float64).tolist()} for h in hs]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "seconds": seconds, "runs": runs}))
    return seconds


def run_all(cfg, work: Path):
    """Trains (resumes) every grid sweep and AutoWU group, setting by setting."""
    timings = []
    for name, tcfg in cfg["tasks"].items():
        task = make_task(tcfg)
        for n2, opt, _part, lrs, d in grid_dirs(cfg, work):
            if n2 != name:
                continue
            spec = training.SweepSpec(
                optimizer=training.OptimizerSpec(
                    opt, warmup_fraction=cfg["grid_warmup_fraction"],
                    weight_decay=cfg["weight_decay"]),
                full_budget=tcfg["full_budget"], budgets=tcfg["budgets"],
                schedules=(cfg["grid_schedule"],), peak_lrs=lrs, seeds=cfg["seeds"],
                batch_size=tcfg["batch_size"], num_evals=cfg["num_evals"],
                diagnostics=cfg["diagnostics"], strategy="grid")
            try:
                done = all(r["status"] in ("done", "diverged") for r in load(str(d))[1])
            except FileNotFoundError:
                done = False
            t0 = time.perf_counter()
            res = training.sweep(task, spec, str(d), progress=False)
            dt = time.perf_counter() - t0
            timings.append({"what": str(d.relative_to(work)), "runs": len(res.runs),
                            "steps": sum(budget_steps(tcfg)) * len(lrs) * len(cfg["seeds"]),
                            "seconds": round(dt, 1), "resumed": done})
            print(f"{d.relative_to(work)}: {len(res.runs)} runs, {dt:.0f} s", flush=True)
        for n2, opt, budget, path in autowu_files(cfg, work):
            if n2 != name:
                continue
            dt = run_autowu(cfg, tcfg, task, opt, budget, path)
            timings.append({"what": str(path.relative_to(work)), "runs": len(cfg["seeds"]),
                            "steps": budget * len(cfg["seeds"]),
                            "seconds": None if dt is None else round(dt, 1),
                            "resumed": dt is None})
            print(f"{path.relative_to(work)}: {len(cfg['seeds'])} runs, "
                  + ("stored" if dt is None else f"{dt:.0f} s"), flush=True)
    return timings


# ----------------------------------------------------------------------------- analysis

def switch_of(lr, loss, budget, kw):
    """AutoWU's warmup read off its per-step lr curve.

    The switch ``s`` is the first step whose lr is not the exponential warmup
    ``min_lr * (max_lr / min_lr) ** (t / L)``, ``L = int(max_warmup_fraction * T)``. The
    decay's first value is already one cosine step down, so the peak is
    ``lr[s] / (0.5 (1 + cos(pi / (T - s))))``; the last warmup lr ``lr[s - 1]`` is how far
    the warmup went. The test fired when ``s`` is before the warmup's latest end
    ``E = min(L, ceil((1 - 0.2) T))``. Also: the lr of the smallest minibatch loss of the
    warmup (losses averaged over windows of ``test_every`` steps).
    """
    lr, loss = np.asarray(lr, np.float64), np.asarray(loss, np.float64)
    lo, hi = kw["min_lr"], kw["max_lr"]
    limit = int(kw["max_warmup_fraction"] * budget)
    end = min(limit, max(1, math.ceil(0.8 * budget)))
    t = np.arange(len(lr))
    warm = lo * (hi / lo) ** (t / max(limit, 1))
    off = np.nonzero(np.abs(lr - warm) > 1e-3 * warm)[0]
    if len(off) == 0:
        return {"switch_step": None}
    s = int(off[0])
    peak = lr[s] / (0.5 * (1 + math.cos(math.pi / (budget - s))))
    every = kw.get("test_every") or max(1, round(budget / 100))
    w = loss[:s]
    sm = np.convolve(w, np.ones(every) / every, mode="valid") if len(w) >= every else w
    i = int(np.nanargmin(sm)) + (every - 1 if len(w) >= every else 0)
    return {"switch_step": s, "fired": s < end, "peak_lr": float(peak),
            "last_warmup_lr": float(lr[s - 1]) if s > 0 else float("nan"),
            "min_loss_lr": float(lr[i]), "min_loss_step": i}


def analyze(cfg, work: Path):
    seeds = list(cfg["seeds"])
    cells = []
    for name, tcfg in cfg["tasks"].items():
        for opt in tcfg["lrs"]:
            grid, spec = {}, None
            for n2, o2, _part, _lrs, d in grid_dirs(cfg, work):
                if (n2, o2) != (name, opt):
                    continue
                spec, runs, _groups = load(str(d))
                for r in runs:
                    if r["status"] in ("done", "diverged"):
                        grid.setdefault(r["budget"], {}).setdefault(r["peak_lr"], {})[
                            r["seed"]] = r
            metric, higher = spec["table_metric"]
            for budget in budget_steps(tcfg):
                cells.append(cell(cfg, work, name, opt, budget, grid.get(budget, {}), metric,
                                  higher, seeds, spec["task"]))
    return cells


def cell(cfg, work, name, opt, budget, by_lr, metric, higher, seeds, task_id):
    lrs = sorted(by_lr)
    per_lr = {}
    for lr in lrs:
        runs = [by_lr[lr].get(s) for s in seeds]
        complete = all(r is not None for r in runs)
        div = [r is not None and r["status"] == "diverged" for r in runs]
        fin = [(r or {}).get("final") or {} for r in runs]
        m = [f.get(metric, math.nan) for f in fin]
        tl = [f.get("train_loss", math.nan) for f in fin]
        per_lr[lr] = {"complete": complete, "diverged": int(sum(div)),
                      "test": m, "train_loss": tl,
                      "test_mean": float(np.mean(m)), "test_ci95": ci95(m),
                      "train_loss_mean": float(np.mean(tl))}
    # best lr: lowest mean final full-training-set loss; an lr where a seed diverged or a
    # value is missing / not finite is not eligible
    ok = {lr: v["train_loss_mean"] for lr, v in per_lr.items()
          if v["complete"] and not v["diverged"] and np.isfinite(v["train_loss_mean"])}
    best = min(ok, key=lambda k: (ok[k], k)) if ok else None
    # grid median over lrs of the mean test metric; a diverged run counts with the metric of
    # its last finite state (where the core froze it), a missing value as the worst
    worst = -math.inf if higher else math.inf
    means = [v["test_mean"] if np.isfinite(v["test_mean"]) else worst
             for v in per_lr.values()]
    median = float(np.median(means)) if means else math.nan
    oracle = (max if higher else min)((v["test_mean"] for v in per_lr.values()
                                       if not v["diverged"]), default=math.nan)
    # AutoWU
    path = work / name / f"{opt}_autowu_T{budget}.json"
    auto = None
    if path.exists():
        data = json.loads(path.read_text())
        runs = sorted(data["runs"], key=lambda r: r["seed"])
        vals = [r["final"][metric] for r in runs]
        sw = [switch_of(r["lr"], r["loss"], budget, cfg["autowu"]) for r in runs]
        auto = {"test": vals, "test_mean": float(np.mean(vals)), "test_ci95": ci95(vals),
                "train_loss": [r["final"].get("train_loss") for r in runs],
                "diverged": [r["diverged"] for r in runs], "warmup": sw,
                "seconds": data["seconds"]}
    out = {"task": name, "task_id": task_id, "optimizer": opt, "budget": budget,
           "metric": metric, "higher_is_better": higher,
           "grid": {"per_lr": {repr(k): v for k, v in per_lr.items()}, "lrs": lrs,
                    "best_lr": best,
                    "edge": (None if best is None or len(lrs) < 2 else "smallest"
                             if best == lrs[0] else "largest" if best == lrs[-1] else None),
                    "best": per_lr[best]["test"] if best is not None else None,
                    "best_mean": per_lr[best]["test_mean"] if best is not None else None,
                    "best_ci95": per_lr[best]["test_ci95"] if best is not None else None,
                    "median": median, "oracle_mean": oracle},
           "autowu": auto}
    if auto is not None and best is not None:
        d = np.asarray(auto["test"]) - np.asarray(per_lr[best]["test"])
        out["diff"] = {"per_seed": d.tolist(), "mean": float(d.mean()), "ci95": ci95(d)}
        lo, hi = d.mean() - ci95(d), d.mean() + ci95(d)
        sign = 1 if higher else -1
        out["verdict"] = ("better" if sign * lo > 0 else "worse" if sign * hi < 0
                          else "tie")
        out["compute"] = {"autowu_steps_per_seed": budget,
                          "grid_steps_per_seed": budget * len(lrs)}
    return out


# ----------------------------------------------------------------------------- output

def fmt(v, ci, acc):
    return f"{100 * v:.1f} ± {100 * ci:.1f}" if acc else f"{v:.3f} ± {ci:.3f}"


def markdown(meta, cells, cfg):
    L = ["# AutoWU vs a tuned peak-lr grid at large batch, short and long budgets", "",
         f"Command: `{meta['command']}`  ",
         f"Machine: {meta['machine']}, {meta['cpu_count']} CPU cores shared with other jobs, "
         f"jax {meta['jax']}, budgetax {meta['budgetax']} at commit {meta['commit'][:10]}, "
         f"{meta['date']}; training wall time {meta['train_seconds']:.0f} s" + (
             f" in {len(meta['passes'])} passes of the command (" + ", ".join(
                 f"{p:.0f} s" for p in meta["passes"]) + "; a later pass trains only the "
             "grid parts added to the config, the rest resumes from the stores)"
             if len(meta.get("passes", [])) > 1 else "") + ".", "",
         "Settings: " + "; ".join(
             f"{n} (`preset{tuple(t['preset'])}`"
             + (f", {t['model_kwargs']}" if t.get("model_kwargs") else "")
             + f", batch {t['batch_size']}, budgets {budget_steps(t)} steps, "
             + ", ".join(OPT_NAMES[o] for o in t["lrs"]) + ")"
             for n, t in cfg["tasks"].items())
         + f". Seeds {list(cfg['seeds'])}. Grid: {cfg['grid_schedule']} decay to 0 after a "
         f"linear warmup over {cfg['grid_warmup_fraction']:.0%} of the budget, best lr = "
         "lowest mean final full-training-set loss (an lr where a seed diverged is not "
         f"eligible). AutoWU: `budgetax.autowu` defaults `{cfg['autowu']}` (test_every = "
         "round(T/100)), no peak lr given. No weight decay.", "",
         "## Test metric at the end of the budget", "",
         "Mean ± 95 % t-interval over seeds (test accuracy in %). *grid best*: at the lr "
         "chosen on the training loss; *grid median*: median over the grid's lrs of the "
         "seed mean; *AutoWU − best*: paired over seeds, with its 95 % t-interval; "
         "⇤/⇥: the chosen lr is the smallest / largest of the grid.", "",
         "| setting | opt | budget | AutoWU | grid best (lr) | grid median | AutoWU − best "
         "| verdict | AutoWU peak lr (per seed) | last warmup lr | lr at warmup-loss min | "
         "switch step (fired?) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        acc = c["metric"].endswith("accuracy")
        g, a = c["grid"], c["autowu"]
        if a is None or g["best_lr"] is None:
            continue
        mark = {"smallest": "⇤", "largest": "⇥"}.get(g["edge"], "")
        sw = a["warmup"]
        d = c["diff"]
        L.append(
            f"| {c['task']} | {OPT_NAMES[c['optimizer']]} | {c['budget']} | "
            f"{fmt(a['test_mean'], a['test_ci95'], acc)}"
            + (" (div.)" if any(a["diverged"]) else "") + " | "
            f"{fmt(g['best_mean'], g['best_ci95'], acc)} ({g['best_lr']:g}{mark}) | "
            + (f"{100 * g['median']:.1f}" if acc else f"{g['median']:.3f}") + " | "
            + fmt(d["mean"], d["ci95"], acc) + f" | {c['verdict']} | "
            + ", ".join(f"{w.get('peak_lr', math.nan):.3g}" for w in sw) + " | "
            + ", ".join(f"{w.get('last_warmup_lr', math.nan):.3g}" for w in sw) + " | "
            + ", ".join(f"{w.get('min_loss_lr', math.nan):.3g}" for w in sw) + " | "
            + ", ".join(f"{w.get('switch_step')} ({'y' if w.get('fired') else 'n'})"
                        for w in sw) + " |")
    L += ["", "## Every grid point", "",
          "Test metric mean ± 95 % t-interval over seeds (accuracy in %), and the mean final "
          "full-training-set loss that selects the lr (bold: chosen; †: some seed diverged).",
          ""]
    for c in cells:
        g = c["grid"]
        acc = c["metric"].endswith("accuracy")
        parts = []
        for k, v in g["per_lr"].items():
            s = (f"{float(k):g}: {fmt(v['test_mean'], v['test_ci95'], acc)} "
                 f"(train loss {v['train_loss_mean']:.3g})" + ("†" if v["diverged"] else ""))
            parts.append(f"**{s}**" if g["best_lr"] is not None and float(k) == g["best_lr"]
                         else s)
        L.append(f"- {c['task']} {OPT_NAMES[c['optimizer']]} {c['budget']} steps: "
                 + "; ".join(parts))
    L += ["", "## Compute", "",
          "Training steps per seed: AutoWU is 1 run, the grid one run per lr. Wall seconds: "
          "each sweep / AutoWU group as measured (all its seeds, and all its budgets for a "
          "grid sweep; vmapped runs, compilation included, on a shared machine: the "
          "timings carry the other jobs' load).", "",
          "| setting | opt | budget | AutoWU steps / seed | grid steps / seed | AutoWU s | "
          "grid s (all budgets) |", "|---|---|---|---|---|---|---|"]
    secs = {t["what"]: t["seconds"] for t in meta.get("timings", [])}
    for c in cells:
        if "compute" not in c:
            continue
        gs = sum(v or 0 for k, v in secs.items()
                 if k.startswith(f"{c['task']}/{c['optimizer']}_grid"))
        L.append(f"| {c['task']} | {OPT_NAMES[c['optimizer']]} | {c['budget']} | "
                 f"{c['compute']['autowu_steps_per_seed']} | "
                 f"{c['compute']['grid_steps_per_seed']} | "
                 f"{c['autowu']['seconds']:.0f} | {gs:.0f} |")
    L += ["", "![AutoWU vs the grid](autowu.png)", ""]
    return "\n".join(L) + "\n"


def plot(cells, _cfg, path):
    panels = [c for c in cells if c["autowu"] is not None and c["grid"]["lrs"]]
    keys = sorted({(c["task"], c["optimizer"]) for c in panels},
                  key=lambda k: [(c["task"], c["optimizer"]) for c in panels].index(k))
    ncol = min(3, len(keys))
    nrow = -(-len(keys) // ncol)
    fig, axes = subplots(nrow, ncol, figsize=(5.2 * ncol, 4.0 * nrow), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]
    for ax, key in zip(axes.flat, keys, strict=False):
        mine = [c for c in panels if (c["task"], c["optimizer"]) == key]
        for c, col in zip(mine, colors, strict=False):
            acc = c["metric"].endswith("accuracy")
            k = 100 if acc else 1
            g = c["grid"]
            lrs = g["lrs"]
            m = np.array([g["per_lr"][repr(lr)]["test_mean"] for lr in lrs]) * k
            e = np.array([g["per_lr"][repr(lr)]["test_ci95"] for lr in lrs]) * k
            ax.errorbar(lrs, m, yerr=e, marker="o", color=col, capsize=2,
                        label=f"grid, T={c['budget']}")
            ax.plot([g["best_lr"]], [g["best_mean"] * k], marker="*", ms=14, color=col,
                    ls="none")
            a = c["autowu"]
            ax.axhline(a["test_mean"] * k, color=col, ls="--", lw=1,
                       label=f"AutoWU, T={c['budget']}")
            ax.axhspan((a["test_mean"] - a["test_ci95"]) * k,
                       (a["test_mean"] + a["test_ci95"]) * k, color=col, alpha=0.12)
            pts = [(w["peak_lr"], v * k) for w, v in zip(a["warmup"], a["test"], strict=True)
                   if w.get("peak_lr")]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="X", ms=8, ls="none", color=col,
                        markeredgecolor="k", label=f"AutoWU seeds at their peak lr, "
                        f"T={c['budget']}")
        ax.set_xscale("log")
        if acc:
            ax.set_ylim(0, 100)
        ax.set_xlabel("peak lr")
        ax.set_ylabel(f"test {'accuracy (%)' if acc else c['metric']}")
        ax.set_title(f"{key[0]}, {OPT_NAMES[key[1]]}", fontsize=10)
        ax.legend(fontsize=6.5, loc="best", framealpha=0.6)
    fig.suptitle("Grid (cosine, 10 % warmup): mean ± 95 % t-interval over seeds, star = lr "
                 "chosen on the training loss; AutoWU: dashed mean, band 95 % t-interval",
                 fontsize=9)
    save_figure(fig, path)


def main(argv=None):
    run(Claim(HERE, __doc__, CONFIGS, train=run_all, analyze=analyze, markdown=markdown,
              plot=plot, figure="autowu", key="cells", passes=True), argv)


if __name__ == "__main__":
    main()
