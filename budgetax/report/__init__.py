"""Tables and plots of a sweep, rebuilt from its results store (``budgetax report DIR``).

The table answers "which schedule, at my budget?": for each budget and schedule,
the task's table metric (test accuracy for the classification presets; see
:meth:`budgetax.training.Task.table_metric`), mean ± std over seeds, at that
schedule's best peak learning rate, the best cell of each budget marked. The best
learning rate is chosen
*without looking at the test set*: by default the one with the lowest mean final
training loss of the diagnostics over seeds (``select="train_loss"``: on the sweep's
fixed subset of the training set, or on the whole set; the header says which), or, for a sweep run
without diagnostics, the lowest mean minibatch training loss over each run's last
epoch (``select="train_minibatch_loss"``,
:func:`budgetax.training.sweep.selection.minibatch_loss`); a learning rate at
which any seed diverged is not eligible. ``select="test_accuracy"`` picks by test
accuracy instead (optimistic: it tunes on the test set); any other evaluation metric
of the task can be named (lower is better, unless its name ends in ``accuracy``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform

import numpy as np

from budgetax._io import atomic_write_json, atomic_write_text
from budgetax.report.plots import PLOTS, curve_grid, metric_vs_budget, write_plots
from budgetax.report.predict import (
    MIN_PREDICT_BUDGETS,
    check_predict,
    format_predictions,
    predict_cells,
)
from budgetax.report.sections import (
    holdout_lines,
    law_lines,
    selected_by,
    steps_trained,
    time_text,
)
from budgetax.report.tables import LEGEND, SELECT, Cell, format_table, summarize
from budgetax.training.sweep.selection import MINIBATCH_LOSS, default_select, minibatch_loss
from budgetax.training.sweep.store import STORE_NAME, Store, decode_curves

__all__ = ["LEGEND", "MIN_PREDICT_BUDGETS", "PLOTS", "SELECT", "Cell", "check_predict",
           "curve_grid", "elasticity_stops", "format_predictions", "format_table", "load",
           "metric_vs_budget", "optimizer_text", "predict_cells", "steps_trained", "summarize",
           "write_report"]

SUMMARY = "summary.json"


def load(out_dir: str, *, with_curves: bool = False) -> tuple[dict, list[dict], list[dict]]:
    """``(spec, runs, groups)`` of the sweep stored in ``out_dir``.

    ``spec`` is the stored spec with the plan's ``steps_per_epoch``, the task's
    identity (``task``), its metric names (``metrics``), its table metric
    (``table_metric``: ``[name, higher_is_better]``) and the calls that trained it
    (``sessions``: their wall and compilation seconds) added.
    """
    path = os.path.join(out_dir, STORE_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no sweep in {out_dir!r}: {STORE_NAME} not found")
    with Store(path, readonly=True) as store:
        if store.get_meta("spec") is None:
            raise FileNotFoundError(f"no sweep in {out_dir!r}: {STORE_NAME} holds no sweep yet "
                                    f"(it was interrupted before its plan was written); run "
                                    f"the sweep again")
        spec = dict(store.get_meta("spec"))
        spec["steps_per_epoch"] = (store.get_meta("plan") or {}).get("steps_per_epoch")
        for key in ("task", "metrics", "table_metric"):
            spec[key] = store.get_meta(key)
        spec["sessions"] = store.sessions()
        spec["law"] = store.get_meta("law")
        return spec, store.runs(with_curves=with_curves), store.groups()


def elasticity_stops(runs: list[dict], steps_per_epoch: int, train_metrics, *,
                     threshold: float = 0.05, patience: int = 3,
                     smoothing: float = 0.5) -> list[dict]:
    """The elasticity stopping rule replayed on every finished run, summarised per budget.

    For each budget: how many runs (not diverged, at least ``patience + 1`` epochs
    long) the rule of :func:`budgetax.ranking.early_stop` would have stopped
    before the end, the mean fraction of the budget it saves and the mean
    training loss it gives up (loss of the stop epoch minus that of the last epoch).
    ``train_metrics`` names the rows of the stored per-step curves.
    """
    from budgetax import ranking

    out = []
    for steps in sorted({r["budget"] for r in runs}):
        mine = [r for r in runs if r["budget"] == steps and r["status"] == "done"
                and r.get("curves") is not None]
        epochs = steps // steps_per_epoch
        row = {"budget": steps, "epochs": epochs, "runs": len(mine), "stopped": 0,
               "compute_saved": math.nan, "loss_given_up": math.nan}
        if mine and epochs > patience:
            loss = np.stack([decode_curves(r["curves"], train_metrics, steps)["loss"]
                             for r in mine])
            res = ranking.early_stop(loss, steps_per_epoch, threshold=threshold,
                                     patience=patience, smoothing=smoothing)
            saved = np.asarray(res.compute_saved, np.float64)
            row.update(stopped=int((saved > 0).sum()), compute_saved=float(saved.mean()),
                       loss_given_up=float(np.nanmean(np.asarray(res.loss_given_up))))
        out.append(row)
    return out


def optimizer_text(opt: dict) -> str:
    """The optimizer of a stored spec in words, its momentum always named.

    ``--optimizer sgd`` is SGD with momentum 0.9 unless ``momentum=0`` is given: the
    report says so rather than "sgd".
    """
    name, m = opt["optimizer"], opt.get("momentum", 0.9)
    if name in ("sgd", "momentum", "sgdp"):
        text = (f"{name} with momentum {m:g}" + (" (Nesterov)" if opt.get("nesterov") else "")
                if m else f"{name} without momentum")
    else:
        text = f"{name} (b1 {m:g}, b2 {opt.get('b2', 0.999):g})"
    if opt.get("demon"):
        text += " + Demon (momentum decayed from that value)"
    if opt.get("weight_decay"):
        text += f", weight decay {opt['weight_decay']:g}"
    return text + f", precision {opt.get('precision', 'float32')}"


def _cpu_name() -> str:
    """The host CPU's model name (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _with_minibatch_loss(out_dir: str, spec: dict, runs: list[dict]) -> list[dict]:
    """``runs`` with :data:`MINIBATCH_LOSS` in each finished run's ``final``, computed from
    its stored loss curve where the store predates it."""
    missing = [r for r in runs if r["status"] in ("done", "diverged")
               and MINIBATCH_LOSS not in r["final"]]
    if not missing:
        return runs
    if "curves" not in missing[0]:
        _, with_curves, _ = load(out_dir, with_curves=True)
        blobs = {r["run_id"]: r["curves"] for r in with_curves}
    else:
        blobs = {r["run_id"]: r["curves"] for r in missing}
    names = tuple(spec["metrics"]["train"])
    for r in missing:
        loss = decode_curves(blobs[r["run_id"]], names, r["budget"])["loss"]
        r["final"] = {**r["final"], MINIBATCH_LOSS: minibatch_loss(
            loss, r["budget"], spec.get("steps_per_epoch"))}
    return runs


def write_report(out_dir: str, *, select: str | None = None, plots: bool = True,
                 command: str | None = None, device: str | None = None,
                 dest: str | None = None, predict=(), law: bool = False) -> str:
    """Writes ``results.md``, ``summary.json`` and the PNG plots in ``out_dir``; returns the table.

    ``summary.json`` holds the spec, the table's cells and every run's status and
    final metrics (no per-step curves): a small, diffable record of the sweep.

    Args:
      out_dir: a sweep directory.
      select: the metric that picks each cell's best lr (see the module docstring);
        default ``train_loss``, or ``train_minibatch_loss`` when the sweep ran
        without diagnostics (:func:`~budgetax.training.sweep.selection.default_select`).
      plots: also write ``metric_vs_budget.png``, ``lr_curves.png``, ``loss_curves.png``.
      command: the command line that ran the sweep (written into ``results.md``).
      device: a description of the device(s) (default: from ``jax.devices()``).
      dest: where to write the files (default: ``out_dir``; e.g. for a sweep on
        read-only media).
      predict: budgets (fractions of the full budget) at which to predict each
        schedule's result from the trained ones (:func:`predict_cells`).
      law: also check the Multi-Power Law on this sweep: fitted on its anchors (constant,
        cosine and step at the longest budget, first seed) it predicts every other
        trained cell's final training loss, and the report gives its errors
        (:func:`budgetax.training.sweep.law.holdout`).
    """
    if not isinstance(law, bool):
        raise TypeError(f"law must be a bool, got {law!r}")
    spec, runs, groups = load(out_dir, with_curves=plots or law)
    summary_path = os.path.join(out_dir, SUMMARY)
    dest = out_dir if dest is None else dest
    if command is None and os.path.exists(summary_path):  # `budgetax report` keeps the command
        with open(summary_path, encoding="utf-8") as f:
            command = json.load(f).get("command")
    metric, higher = spec["table_metric"]
    train_names = spec["metrics"]["train"]
    if select is None:
        select = default_select(spec["metrics"]["eval"])
    if select == MINIBATCH_LOSS:
        runs = _with_minibatch_loss(out_dir, spec, runs)
    cells = summarize(runs, select, metric, higher)
    table = format_table(cells, metric=metric)
    pending = sum(r["status"] == "pending" for r in runs)
    predicted = sum(r["status"] == "predicted" for r in runs)
    diverged = [r for r in runs if r["status"] == "diverged"]
    if device is None:
        import jax

        d = jax.devices()
        device = (f"{len(d)} x {d[0].device_kind} ({d[0].platform}; {_cpu_name()}), "
                  f"jax {jax.__version__}")
    per_budget = steps_trained(spec, runs, groups)
    run_steps = sum(b["trained"] for b in per_budget)
    pruned = [r for r in runs if r["status"] == "pruned"]
    by_id = {r["run_id"]: r for r in runs}
    preds, not_predicted = predict_cells(cells, by_id, metric, predict, spec["full_budget"])
    if predict and not preds:
        raise ValueError(
            f"predict: no schedule can be predicted, as each needs at least "
            f"{MIN_PREDICT_BUDGETS} trained budgets with a result (the law a + b T^-c has 3 "
            f"parameters): " + "; ".join(f"{k}: {v}" for k, v in not_predicted.items())
            + ". Train more budgets (e.g. --budgets 0.25,0.5,1), or leave out predict")
    opt = spec["optimizer"]
    spe = spec.get("steps_per_epoch")
    train_examples = spe * spec["batch_size"] if spe else None  # a lower bound
    lines = [
        "# Sweep results", "",
        f"Task `{spec['task']['name']}` ({json.dumps(spec['task']['config'])}), "
        f"{optimizer_text(opt)}, batch {spec['batch_size']}, "
        f"full budget {spec['full_budget']} steps"
        + (f" ({spec['full_budget'] / spec['steps_per_epoch']:.3g} epochs)"
           if spec.get("steps_per_epoch") else "") + "; "
        f"peak lrs {spec['peak_lrs']}, seeds {spec['seeds']}.", "",
    ]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [
        f"{metric}{' (%)' if metric.endswith('accuracy') else ''} at the end of each "
        f"budget, mean ± std over "
        f"{len(spec['seeds'])} seed(s), at each schedule's best peak lr (chosen by "
        f"{selected_by(select, spec.get('diagnostics', True), train_examples)}, "
        "over lrs at which no seed diverged); bold: the best schedule of the budget.", "",
        table, "", LEGEND, "",
        f"{len(runs) - pending - predicted} of {len(runs)} runs finished"
        + (f", {predicted} predicted by the law and not trained" if predicted else "")
        + (f", {pending} pending (resume the sweep to finish them)" if pending else "")
        + f"; {len(diverged)} diverged"
        + (f", {len(pruned)} pruned by successive halving" if pruned else "") + "."
        + (" " + time_text(groups, spec["sessions"], run_steps, device) if groups else ""),
        "",
    ]
    strategy = spec.get("strategy", "grid")
    if strategy != "grid":
        done = [b for b in per_budget if b["finished"]]
        lines += [
            f"Strategy `{strategy}`: optimizer steps trained (summed over runs) against the "
            "grid's, which trains every run from scratch to its budget"
            + (" (branch: a trunk of the schedules whose learning rate does not depend on the "
               "budget before their decay, each budget's decay branched from it; the trunk's "
               "steps count for the budget that branches next)" if "branch" in strategy
               else "")
            + (f" (halving: each schedule's lrs pruned to 1/{spec['prune_rate']} at "
               f"{', '.join(f'{x:.0%}' for x in spec['prune_at'])} of the budget by "
               f"`{spec['prune_estimator']}` on the training loss so far)"
               if "halving" in strategy else "") + ".", "",
            "| budget | steps | run-steps trained | grid's run-steps | share |",
            "|---|---|---|---|---|"]
        lines += [f"| {b['budget_fraction']:.0%} | {b['budget']} | {b['trained']:,} | "
                  f"{b['grid']:,} | {b['trained'] / max(b['grid'], 1):.0%} |" for b in done]
        total, grid = sum(b["trained"] for b in done), sum(b["grid"] for b in done)
        lines += [f"| all | | {total:,} | {grid:,} | {total / max(grid, 1):.0%} |", ""]
    if spec.get("law"):
        lines += law_lines(spec, runs, metric)
    check = None
    if law:
        from budgetax.training.sweep.law import holdout

        check = holdout(runs, tuple(train_names), spec.get("steps_per_epoch"))
        lines += holdout_lines(check)
    if preds:
        lines += [
            f"Predicted {metric}{' (%)' if metric.endswith('accuracy') else ''} at budgets "
            "nobody trained: per schedule, a power law `a + b (T/T_full)^-c` fitted to the "
            "cells above, with a 95% interval from a bootstrap over the seed noise "
            "(`budgetax.frontier`; it does not cover a change of regime beyond "
            "the trained budgets)"
            + ("; with one seed per budget the interval comes from the law's residuals, and "
               "with one seed and 3 budgets nothing measures the noise (no interval)"
               if any(p["noise_from"] != "seeds" for p in preds) else "") + ".", "",
            format_predictions(preds, metric), ""]
        if not_predicted:
            lines += ["Not predicted: " + "; ".join(f"`{k}` ({v})"
                                                     for k, v in not_predicted.items()) + ".",
                      ""]
    if diverged:
        lines += ["Diverged runs (NaN/inf loss or update; frozen at their last finite state):",
                  ""]
        lines += [f"- `{r['run_id']}` at step {r['diverged_step']}" for r in diverged[:50]]
        lines.append("")
    if spe and plots:
        stops = elasticity_stops(runs, spe, train_names)
        lines += [
            "Elasticity early stopping (Zhao et al. 2022; `budgetax.ranking.early_stop`, "
            f"threshold 0.05, patience 3 epochs of {spe} steps), replayed on every finished run: "
            "how much of each budget it would have saved and the training loss it would have "
            "given up.", "",
            "| budget | epochs | runs | stopped early | mean compute saved | "
            "mean training loss given up |", "|---|---|---|---|---|---|"]
        for r in stops:
            if np.isfinite(r["compute_saved"]):
                saved, given = f"{100 * r['compute_saved']:.1f}%", f"{r['loss_given_up']:.4f}"
            else:
                saved = given = "too few epochs"
            lines.append(f"| {r['budget']} | {r['epochs']} | {r['runs']} | {r['stopped']} | "
                         f"{saved} | {given} |")
        lines.append("")
    if plots and any(r["status"] != "pending" for r in runs):
        write_plots(dest, cells, by_id, metric, train_names, preds)
        lines += [f"![{metric} vs budget]({PLOTS[0]})", "",
                  "![learning-rate curves](lr_curves.png)", "",
                  "![loss curves](loss_curves.png)", ""]
    atomic_write_text(os.path.join(dest, "results.md"), "\n".join(lines))
    atomic_write_json(os.path.join(dest, SUMMARY), {
        "spec": spec, "select": select, "command": command, "device": device,
        "cells": [dataclasses.asdict(c) for c in cells], "predictions": preds,
        "not_predicted": not_predicted, "law_check": check,
        "steps_trained": per_budget,
        "runs": [{k: r.get(k) for k in ("run_id", "budget", "schedule", "peak_lr", "seed",
                                        "status", "diverged_step", "pruned_step", "final")}
                 for r in runs],
        "groups": groups})
    return table
