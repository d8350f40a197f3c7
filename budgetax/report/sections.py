"""The report's sections on strategies, the law and time."""

from __future__ import annotations

import numpy as np

from budgetax.report.tables import budget_table
from budgetax.training.sweep.selection import MINIBATCH_LOSS

__all__ = ["diagnostics_text", "holdout_lines", "law_lines", "selected_by", "steps_trained",
           "time_text"]

def law_lines(spec: dict, runs: list[dict], metric: str) -> list[str]:
    """The ``law`` strategy's section: what it fitted, how it checked, what it predicted."""
    law = spec["law"]
    check = law.get("check")
    anchors = ", ".join(f"`{a}`" for a in spec["law_anchors"])
    out = [f"Strategy `law`: the Multi-Power Law, fitted per peak lr on the anchors ({anchors} "
           f"at the longest budget, seed {spec['seeds'][0]}; fits for "
           f"{len(law['fits'])} of {len(spec['peak_lrs'])} lrs), predicted every cell's final "
           f"training minibatch loss; the {spec['law_verify']} best predicted cells of each "
           f"budget were trained with every seed."]
    if check is None:
        out[0] += " The check of its predictions is not done yet (resume the sweep)."
    elif check["trusted"]:
        out[0] += (f" On the {check['cells']} verified cells that are not anchors its median "
                   f"relative error was {check['median_rel_error']:.1%} (tolerance "
                   f"{check['tolerance']:.1%}): the other cells are its predictions, not "
                   f"trained, and the table above holds the trained cells only.")
    else:
        out[0] += (f" On the {check['cells']} verified cells that are not anchors its median "
                   f"relative error was {check['median_rel_error']:.1%}, above the tolerance "
                   f"{check['tolerance']:.1%}: the law was not trusted, and every cell was "
                   f"trained.")
    measured: dict = {}
    for r in runs:
        value = r["final"].get(MINIBATCH_LOSS) if r["final"] else None
        if r["status"] == "done" and value is not None:
            measured.setdefault((r["budget"], r["schedule"], r["peak_lr"]), []).append(value)
    best: dict = {}
    for c in law["cells"]:
        key = (c["budget"], c["schedule"])
        if c["predicted"] is not None and (key not in best
                                           or c["predicted"] < best[key]["predicted"]):
            best[key] = c
    fraction = {r["budget"]: r["budget_fraction"] for r in runs}

    def text(c):
        if c is None:
            return ""
        got = measured.get((c["budget"], c["schedule"], c["peak_lr"]))
        band = (f" [{c['low']:.4g}, {c['high']:.4g}]" if c.get("low") is not None else "")
        return (f"{c['predicted']:.4g}{band} (lr {c['peak_lr']:g})"
                + (f" → {np.mean(got):.4g}" if got else ""))

    out += ["", "Predicted final training minibatch loss of each budget and schedule at its best "
            "predicted lr, with the law's 95% interval (from its fit; it does not cover a "
            "law that is wrong for this task, which the check above measures); `→` the "
            "measured mean where that cell was trained.", "",
            budget_table([(fraction[b], b, s, best[b, s]) for b in sorted({b for b, _ in best})
                           for s in spec["schedules"] if (b, s) in best], text), ""]
    return out


def holdout_lines(check: dict) -> list[str]:
    """The section of ``budgetax report DIR --law``."""
    anchors = ", ".join(f"`{a}`" for a in check["anchors"])
    out = [f"Law check: the Multi-Power Law, fitted per peak lr on the anchors ({anchors} at "
           f"the longest budget, first seed), predicts the final training minibatch loss of "
           f"the {len(check['cells'])} other trained cells: median relative error "
           f"{check['median_rel_error']:.1%}, worst {check['worst_rel_error']:.1%}. Per budget, "
           f"the cell (schedule, lr) it predicts best against the measured best; \"within "
           f"spread\": the predicted best measured within the larger seed std of the two.", "",
           "| budget | predicted best | measured best | same or within spread |",
           "|---|---|---|---|"]
    for b in check["budgets"]:
        (ps, plr), (ms, mlr) = b["predicted_best"], b["measured_best"]
        same = (ps, plr) == (ms, mlr)
        out.append(f"| {b['budget']} | `{ps}` lr {plr:g} | `{ms}` lr {mlr:g} | "
                   f"{'same' if same else ('within spread' if b['within_spread'] else 'no')} |")
    return out + [""]


def time_text(groups: list[dict], sessions: list[dict], run_steps: int, device: str) -> str:
    """The report's sentence on time: the stored groups' training time and rate without
    compilation, and the wall time of every call that trained the sweep."""
    total = sum(g["seconds"] for g in groups)
    known = all(g.get("compile_seconds") is not None for g in groups)
    if known:
        comp = sum(g["compile_seconds"] for g in groups)
        out = (f"The stored groups trained {run_steps:,} run-steps in {total:.1f}s, "
               f"{comp:.1f}s of it compiling ({run_steps / max(total - comp, 1e-9):,.0f} "
               f"run-steps/s without compilation) on {device}.")
    else:  # a store written before compilation was timed apart
        out = (f"The stored groups trained {run_steps:,} run-steps in {total:.1f}s "
               f"({run_steps / max(total, 1e-9):,.0f} run-steps/s, compilation included) "
               f"on {device}.")
    if sessions:
        wall = sum(x["seconds"] for x in sessions)
        comp = sum(x["compile_seconds"] for x in sessions)
        out += (f" Wall time {wall:.1f}s over {len(sessions)} call(s) of the sweep "
                f"({comp:.1f}s compiling; a resumed sweep has one call per start, and a "
                f"killed call's time after its last checkpoint or stored group is not "
                f"counted).")
    return out


def diagnostics_text(diagnostics, train_examples: int | None = None) -> str:
    """The training examples the ``train_*`` diagnostics were computed on, for the header.

    ``train_examples``: a lower bound on the training set's size (steps per epoch x batch
    size), ``None`` when unknown; it says whether an int ``diagnostics`` is a strict subset.
    """
    if diagnostics is True:
        return "the whole training set (diagnostics=full)"
    if train_examples is not None and train_examples >= diagnostics:
        return (f"a fixed random subset of {diagnostics:,} training examples, the same for "
                f"every run (diagnostics={diagnostics})")
    return (f"a fixed random subset of at most {diagnostics:,} training examples (the whole "
            f"set when it is smaller), the same for every run (diagnostics={diagnostics})")


def selected_by(select: str, diagnostics=True, train_examples: int | None = None) -> str:
    """How the table's header says what picked the lrs (``diagnostics``: the sweep's setting;
    ``train_examples``: as in :func:`diagnostics_text`)."""
    if select == "train_loss":
        return ("lowest mean final training loss on "
                + diagnostics_text(diagnostics, train_examples))
    if select == MINIBATCH_LOSS:
        return ("lowest mean minibatch training loss over each run's last epoch: the sweep "
                "ran without diagnostics, and the test set is not used")
    if select.startswith("test_"):
        return f"{select}: tuned on the test set, so the table is optimistic"
    return select


def steps_trained(spec: dict, runs: list[dict], groups: list[dict]) -> list[dict]:
    """Per budget: the run-steps the sweep trained against the grid's (every run from scratch).

    A branched sweep counts the trunk's steps since the previous branch step for
    the budget that branches there; successive halving counts the steps its runs
    trained before they were pruned. Stores written before strategies existed
    count every run's budget.
    """
    out = []
    for f, steps in sorted({(r["budget_fraction"], r["budget"]) for r in runs}):
        mine = [g for g in groups if g["budget"] == steps]
        trained = sum(g["runs"] * g["budget"] if g.get("steps") is None else g["steps"]
                      for g in mine)
        grid = steps * sum(r["budget"] == steps for r in runs)
        out.append({"budget_fraction": f, "budget": steps, "trained": int(trained),
                    "grid": int(grid), "finished": bool(mine)})
    return out
