r"""The ``law`` strategy: a few anchor runs, a loss law fitted to them, the best cells verified.

A grid trains every (budget, schedule, peak lr, seed) run. The ``law`` strategy trains:

1. **Anchors**: at the longest budget, the schedules ``spec.law_anchors`` (by default
   ``constant``, ``cosine`` and ``step``: a flat rate, a smooth decay and sharp drops,
   the shapes the Multi-Power Law's fit needs), at every peak lr, with the first seed.
2. **The law**: per peak lr, :func:`budgetax.laws.fit` (the Multi-Power Law) on the
   anchors' training curves (:meth:`budgetax.laws.Curve.from_training`, windows of
   1/20 of the budget). It predicts every cell's
   :data:`~budgetax.training.sweep.selection.MINIBATCH_LOSS` (the law's mean over the
   same window of final steps that the measured value averages).
3. **Verification**: per budget, the ``spec.law_verify`` cells (schedule, lr) with the
   lowest prediction are trained with every seed.
4. **Self-check**: the median relative error of the predictions on the verified cells
   that are not anchors. Above ``spec.law_tolerance`` the law is not trusted and every
   cell left is trained (the grid's results, at the grid's cost plus the anchors').

The runs the law predicted and nobody trained are stored with status ``predicted``
and their prediction (``final["predicted_train_minibatch_loss"]``); the fit, the
predictions and the check are stored as ``meta.law``. Each step is one store
transaction and depends only on stored results, so a killed sweep resumes to the
same store. Cells at an lr whose anchors do not give a fit (a diverged anchor, too
few windows) are trained, not predicted.

References:
  Luo et al. A Multi-Power Law for Loss Curve Prediction Across Learning Rate
  Schedules. ICLR 2025. arXiv:2503.12811.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from budgetax.training.sweep.plan import GridGroup, LawGroup, Plan, grid_groups, lr_values
from budgetax.training.sweep.selection import MINIBATCH_LOSS, minibatch_loss, minibatch_window
from budgetax.training.sweep.store import Store, decode_curves

__all__ = ["PREDICTED", "WINDOWS", "advance", "anchor_runs", "holdout"]

WINDOWS = 20  # an anchor's curve: its minibatch losses averaged over 1/20 of its budget
PREDICTED = "predicted_" + MINIBATCH_LOSS


def anchor_runs(spec, runs: list[dict]) -> set[int]:
    """The indices (in ``runs``, the spec's runs) of the anchors."""
    longest = max(spec.budget_steps())
    return {i for i, r in enumerate(runs) if r["budget"] == longest
            and r["schedule"] in spec.law_anchors and r["seed"] == spec.seeds[0]}


def _fits(peak_lrs, rows: list[dict], names: tuple) -> dict:
    """``{peak lr: Fit}`` of the lrs whose anchor ``rows`` give a fit."""
    from budgetax import laws

    out = {}
    for lr in peak_lrs:
        curves = []
        for r in rows:
            if r["peak_lr"] != lr or r["status"] != "done":
                continue
            c = decode_curves(r["curves"], names, r["budget"])
            if not np.all(np.isfinite(c["loss"])):
                continue
            every = max(2, r["budget"] // WINDOWS)
            curves.append(laws.Curve.from_training(c["lr"], c["loss"], every=every,
                                                   name=r["schedule"]))
        if len(curves) < 2:
            continue
        try:
            out[lr] = laws.fit(curves)
        except ValueError:  # too few points for the law's parameters
            continue
    return out


def _predict(fit, lrs, steps_per_epoch) -> tuple[float, float, float]:
    """``(prediction, low, high)`` for a run of learning rates ``lrs``: the law's mean over
    the window :func:`minibatch_loss` averages at its end, and the window's mean of the
    law's pointwise 95% interval (:meth:`budgetax.laws.Fit.interval`)."""
    lrs = np.asarray(lrs, np.float64)
    budget = lrs.shape[0]
    steps = np.arange(budget - minibatch_window(budget, steps_per_epoch), budget)
    lo, hi = fit.interval(lrs, steps)
    return (float(np.mean(fit.predict(lrs, steps))), float(np.mean(lo)), float(np.mean(hi)))


def _new_groups(spec, plan: Plan, runs: list[dict], idx: set[int], max_runs) -> list:
    """``idx`` planned as grid groups of a new round (padded among themselves)."""
    round_ = 1 + max((g.extension for g in plan.groups), default=0)
    return grid_groups(spec, runs, lambda r: r["_i"] in idx, max_runs, cls=GridGroup,
                       extension=round_)


def _largest(plan: Plan) -> int:
    """The runs of the plan's largest program: the most a new group may hold (it fits in
    memory, within the sweep's ``max_runs_per_program``)."""
    return max((len(g.run_idx) for g in plan.groups if not isinstance(g, LawGroup)),
               default=1)


def _fit_and_choose(store: Store, spec, plan: Plan, law_group: LawGroup) -> None:
    """Step 2 and 3: fit the anchors, predict every cell, plan the verification."""
    runs = [dict(r, _i=i) for i, r in enumerate(spec.runs())]
    names = tuple(store.get_meta("metrics")["train"])
    anchors = anchor_runs(spec, runs)
    ids = {runs[i]["run_id"] for i in anchors}
    rows = [r for r in store.runs(with_curves=True) if r["run_id"] in ids]
    fits = _fits(spec.peak_lrs, rows, names)
    spe = plan.steps_per_epoch
    left = [runs[i] for i in law_group.run_idx]
    cells: dict = {}
    for r in left:
        cells.setdefault((r["budget"], r["schedule"], r["peak_lr"]), []).append(r["_i"])
    for i in anchors:  # the anchors' own cells are predicted too, for the report
        r = runs[i]
        cells.setdefault((r["budget"], r["schedule"], r["peak_lr"]), [])
    def band(budget, schedule, peak):
        if peak not in fits:
            return None, None, None
        lrs = lr_values(spec.optimizer, spec.profile(schedule), budget, float(peak))
        return _predict(fits[peak], lrs, spe)

    bands = {c: band(*c) for c in cells}
    predicted = {c: bands[c][0] for c in cells}
    verify: set[int] = set()
    for budget in sorted({c[0] for c in cells}):
        mine = [c for c in cells if c[0] == budget]
        unfit = [c for c in mine if predicted[c] is None or not np.isfinite(predicted[c])]
        for c in unfit:  # no law at this lr: its cells are trained
            verify.update(cells[c])
        ranked = sorted((c for c in mine if c not in unfit), key=lambda c: predicted[c])
        for c in ranked[:spec.law_verify]:
            verify.update(cells[c])
    new = _new_groups(spec, plan, runs, verify, _largest(plan))
    rest = tuple(i for i in law_group.run_idx if i not in verify)
    groups = [g for g in plan.groups if g is not law_group] + new
    if rest:
        groups.append(dataclasses.replace(law_group, run_idx=rest))
    moves = [(runs[i]["run_id"], g.group_id, "pending", None) for g in new for i in g.run_idx]
    for i in rest:
        r = runs[i]
        value = predicted[r["budget"], r["schedule"], r["peak_lr"]]
        moves.append((r["run_id"], law_group.group_id, "predicted",
                      {PREDICTED: value if value is not None else float("nan")}))
    law = {"fits": {f"{lr:g}": [float(p) for p in f.params] for lr, f in fits.items()},
           "cells": [{"budget": c[0], "schedule": c[1], "peak_lr": c[2],
                      "predicted": bands[c][0], "low": bands[c][1], "high": bands[c][2]}
                     for c in sorted(cells)],
           "verified": sorted({(runs[i]["budget"], runs[i]["schedule"], runs[i]["peak_lr"])
                               for i in verify})}
    store.replan({"plan": dataclasses.replace(plan, groups=tuple(groups)).to_dict(),
                  "law": law}, moves)


def _check(store: Store, spec, plan: Plan, law: dict, law_group: LawGroup | None) -> None:
    """Step 4: compare the verified cells with their predictions; train the rest if needed."""
    runs = [dict(r, _i=i) for i, r in enumerate(spec.runs())]
    anchors = {(runs[i]["budget"], runs[i]["schedule"], runs[i]["peak_lr"])
               for i in anchor_runs(spec, runs)}
    verified = {tuple(v) for v in law["verified"]}
    names = tuple(store.get_meta("metrics")["train"])
    measured: dict = {}
    for r in store.runs(with_curves=True):
        if r["status"] != "done":
            continue
        value = r["final"].get(MINIBATCH_LOSS)
        if value is None:
            loss = decode_curves(r["curves"], names, r["budget"])["loss"]
            value = minibatch_loss(loss, r["budget"], plan.steps_per_epoch)
        measured.setdefault((r["budget"], r["schedule"], r["peak_lr"]), []).append(value)
    errors = []
    for cell in law["cells"]:
        key = (cell["budget"], cell["schedule"], cell["peak_lr"])
        if (key in anchors or key not in verified or cell["predicted"] is None
                or key not in measured):
            continue
        truth = float(np.mean(measured[key]))
        errors.append(abs(cell["predicted"] - truth) / abs(truth))
    error = float(np.median(errors)) if errors else float("nan")
    trusted = bool(errors) and error <= spec.law_tolerance
    law = dict(law, check={"cells": len(errors), "median_rel_error": error,
                           "tolerance": spec.law_tolerance, "trusted": trusted})
    moves, groups = [], list(plan.groups)
    if not trusted and law_group is not None:  # the grid for every cell left
        new = _new_groups(spec, plan, runs, set(law_group.run_idx), _largest(plan))
        groups = [g for g in groups if g is not law_group] + new
        moves = [(runs[i]["run_id"], g.group_id, "pending", None) for g in new
                 for i in g.run_idx]
    store.replan({"plan": dataclasses.replace(plan, groups=tuple(groups)).to_dict(),
                  "law": law}, moves)


def holdout(rows: list[dict], names: tuple, steps_per_epoch, anchors=None) -> dict:
    """The law checked on a trained sweep (``budgetax report DIR --law``): fitted per peak lr
    on ``anchors`` (default: :class:`SweepSpec`'s ``law_anchors``) at the longest budget,
    first seed, it predicts every other cell's
    :data:`MINIBATCH_LOSS`, compared with the measured mean over seeds.

    ``rows``: the store's runs with their curves. Returns ``{"cells": [...], "budgets":
    [...], "median_rel_error", "worst_rel_error"}``; a cell holds ``predicted``, ``low``,
    ``high``, ``measured``, ``rel_error``; a budget its predicted and measured best
    (schedule, lr) and whether the predicted best is measured within the best's seed
    spread (the larger std of the two).
    """
    from budgetax.training.sweep.spec import SweepSpec

    anchors = SweepSpec.law_anchors if anchors is None else tuple(anchors)
    done = [r for r in rows if r["status"] == "done"]
    if not done:
        raise ValueError("the law needs a sweep with finished runs")
    longest, first = max(r["budget"] for r in done), min(r["seed"] for r in done)
    missing = [a for a in anchors if not any(r["schedule"] == a and r["budget"] == longest
                                             for r in done)]
    if missing:
        raise ValueError(f"the law's anchors {list(anchors)} must be trained at the longest "
                         f"budget ({longest} steps); missing: {missing}")
    lrs = sorted({r["peak_lr"] for r in done})
    anchor_rows = [r for r in done if r["budget"] == longest and r["schedule"] in anchors
                   and r["seed"] == first]
    fits = _fits(lrs, anchor_rows, names)
    by_cell: dict = {}
    for r in done:
        by_cell.setdefault((r["budget"], r["schedule"], r["peak_lr"]), []).append(r)
    anchor_cells = {(r["budget"], r["schedule"], r["peak_lr"]) for r in anchor_rows}
    cells = []
    for key in sorted(by_cell):
        if key in anchor_cells or key[2] not in fits:
            continue
        curves = [decode_curves(r["curves"], names, r["budget"]) for r in by_cell[key]]
        pred, lo, hi = _predict(fits[key[2]], curves[0]["lr"], steps_per_epoch)
        values = [minibatch_loss(c["loss"], key[0], steps_per_epoch) for c in curves]
        truth = float(np.mean(values))
        cells.append({"budget": key[0], "schedule": key[1], "peak_lr": key[2],
                      "predicted": pred, "low": lo, "high": hi, "measured": truth,
                      "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                      "rel_error": abs(pred - truth) / abs(truth)})
    if not cells:
        raise ValueError("the law could predict no cell: no lr's anchors gave a fit")
    budgets = []
    for b in sorted({c["budget"] for c in cells}):
        mine = [c for c in cells if c["budget"] == b]
        pick = min(mine, key=lambda c: c["predicted"])
        best = min(mine, key=lambda c: c["measured"])
        budgets.append({"budget": b, "predicted_best": [pick["schedule"], pick["peak_lr"]],
                        "measured_best": [best["schedule"], best["peak_lr"]],
                        "within_spread": pick["measured"] - best["measured"]
                        <= max(pick["std"], best["std"])})
    errors = [c["rel_error"] for c in cells]
    return {"anchors": list(anchors), "fitted_lrs": sorted(fits), "cells": cells,
            "budgets": budgets, "median_rel_error": float(np.median(errors)),
            "worst_rel_error": float(np.max(errors))}


def advance(store: Store, spec, plan: Plan) -> bool:
    """The next step of a law sweep whose trained groups are all finished: fit and plan the
    verification, or check it (and plan the rest when the law fails). Returns whether
    it planned groups to train."""
    law_group = next((g for g in plan.groups if isinstance(g, LawGroup)), None)
    law = store.get_meta("law")
    if law is None:
        if law_group is None:
            return False
        _fit_and_choose(store, spec, plan, law_group)
        return True
    if "check" in law:
        return False
    _check(store, spec, plan, law, law_group)
    return not store.get_meta("law")["check"]["trusted"] and law_group is not None
