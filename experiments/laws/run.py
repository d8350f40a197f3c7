"""The Multi-Power Law on the paper's released curves: fit on three, predict six.

    python experiments/laws/run.py          # writes results.json and results.md here

For each model size (25M, 100M) it fits ``budgetax.laws.fit`` on the paper's three
curves (cosine and constant at 24000 steps, the two-stage ``wsdcon_9``) and predicts the
other six (including 72000 steps, 3x the fitted horizon); PredE and WorstE are computed
as the paper's ``src/evaluation.py`` does. Beside it, in the same run: the paper's own
fitted parameters, and the paper's fitting algorithm ported to NumPy
(``tests/reference/multipower_law.py``) refitted here and timed against ``laws.fit``, and
``laws.fit(method="paper")``, the same algorithm in JAX. The port runs with BLAS limited to
one thread, as ``method="paper"`` runs its L-BFGS-B: SciPy's L-BFGS-B makes tiny BLAS
calls that a multi-threaded OpenBLAS slows down by orders of magnitude on a busy machine.
Also: the coverage of ``Fit.interval`` on the predicted points, the LR-annealing law on
the same curves, and the schedule ``laws.optimize_schedule`` finds at 24000 steps.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

import released  # noqa: E402

from budgetax import laws  # noqa: E402
from experiments.claims_common import command_line, run_stamp  # noqa: E402
from tests.reference import multipower_law as upstream  # noqa: E402


def _summary(fitted_predict, size):
    """``(average, per-curve)`` metrics of the paper's six predicted curves."""
    per = {}
    for name in released.TEST_SET:
        c = released.load(size, name)
        per[name] = released.metrics(fitted_predict(c), c.loss)
    avg = {k: float(np.mean([m[k] for m in per.values()])) for k in next(iter(per.values()))}
    return avg, per


def _coverage(fit, size, level=0.95):
    inside = total = 0
    for name in released.TEST_SET:
        c = released.load(size, name)
        lo, hi = fit.interval(c.lrs, c.steps, level)
        inside += int(np.sum((c.loss >= lo) & (c.loss <= hi)))
        total += c.loss.shape[0]
    return inside / total


def _fixed(params):
    """A Fit holding given parameters (to predict with the paper's own)."""
    return laws.Fit.from_params("multi_power", params)


def run_size(size):
    fit_curves = [released.load(size, n) for n in released.FIT_SET]
    out = {}
    paper = _fixed(released.UPSTREAM_PARAMS[size])
    out["paper_params"] = {"avg": _summary(lambda c: paper.predict(c.lrs, c.steps), size)[0],
                           "params": list(released.UPSTREAM_PARAMS[size])}

    t0 = time.perf_counter()
    fit = laws.fit(fit_curves)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    laws.fit(fit_curves)
    second = time.perf_counter() - t0
    avg, per = _summary(lambda c: fit.predict(c.lrs, c.steps), size)
    out["budgetax"] = {"avg": avg, "per_curve": per, "params": list(fit.params),
                       "objective": fit.objective, "seconds_first": first,
                       "seconds_second": second, "iterations": fit.iterations,
                       "coverage95": _coverage(fit, size),
                       "fit_quality": [q.__dict__ for q in fit.quality]}

    data = upstream.load_curves(str(released.DATA / f"csv_{size}"))
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):  # see the module docstring
        params, objective, seconds = upstream.fit_upstream(data)
    ref_seconds = time.perf_counter() - t0
    ref = _fixed(params)
    out["upstream_fitter"] = {
        "avg": _summary(lambda c: ref.predict(c.lrs, c.steps), size)[0], "params": list(params),
        "objective": objective, "seconds": ref_seconds}
    out["budgetax"]["objective_at_upstream_fit"] = upstream.mpl_objective(
        list(fit.params), data, upstream.TRAIN_SET)

    t0 = time.perf_counter()
    pfit = laws.fit(fit_curves, method="paper")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    laws.fit(fit_curves, method="paper")
    second = time.perf_counter() - t0
    avg, per = _summary(lambda c: pfit.predict(c.lrs, c.steps), size)
    out["paper_method"] = {
        "avg": avg, "per_curve": per, "params": list(pfit.params),
        "objective_at_upstream_fit": upstream.mpl_objective(list(pfit.params), data,
                                                            upstream.TRAIN_SET),
        "seconds_first": first, "seconds_second": second, "adamw_steps": pfit.iterations,
        "max_rel_param_diff_vs_port": float(np.max(np.abs(np.asarray(pfit.params)
                                                          / np.asarray(params) - 1)))}

    la = laws.fit(fit_curves, law="lr_annealing")
    out["lr_annealing"] = {"avg": _summary(lambda c: la.predict(c.lrs, c.steps), size)[0],
                           "params": list(la.params)}

    opt = laws.optimize_schedule(fit, 24000, released.PEAK, warmup_steps=released.WARMUP,
                                 end_lr=released.END)
    out["optimized_24000"] = {"predicted_final_loss": opt.predicted_final_loss,
                              "baselines": opt.baselines,
                              "lr_at": {str(t): float(opt.lrs[t])
                                        for t in (2160, 8000, 16000, 20000, 22000, 23000, 23999)}}
    return out


def write_markdown(results):
    lines = [
        "# The Multi-Power Law on the paper's released curves",
        "",
        command_line("experiments/laws/run.py", results),
        "",
        "Fit on the paper's three curves (`cosine_24000`, `constant_24000`, `wsdcon_9`), "
        "predict its six others (`constant_72000`, `cosine_72000`, `wsd_20000_24000`, "
        "`wsdld_20000_24000`, `wsdcon_3`, `wsdcon_18`); errors over the predicted curves' "
        "logged points as the paper's `src/evaluation.py` computes them (mean over the six "
        "curves of each curve's mean / max relative error). Data: `data/` (MIT, with its source).",
        "",
        "| model | parameters | PredE | WorstE | R^2 | fit objective (3 curves) | fit time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, r in results["sizes"].items():
        pub = released.UPSTREAM_README[size]
        lines.append(f"| {size}M | paper's README | {100 * pub[0]:.3f}% | {100 * pub[1]:.3f}% | "
                     "| | |")
        p = r["paper_params"]["avg"]
        lines.append(f"| {size}M | paper's fitted parameters, predicted by `laws.multi_power` | "
                     f"{100 * p['prede']:.3f}% | {100 * p['worste']:.3f}% | {p['r2']:.4f} | | |")
        u = r["upstream_fitter"]
        lines.append(f"| {size}M | paper's fitter (NumPy port), refitted | "
                     f"{100 * u['avg']['prede']:.3f}% | {100 * u['avg']['worste']:.3f}% | "
                     f"{u['avg']['r2']:.4f} | {u['objective']:.3e} | {u['seconds']:.1f} s |")
        q = r.get("paper_method")
        if q is not None:
            lines.append(f"| {size}M | `laws.fit(method=\"paper\")` (the paper's fitter, in JAX) | "
                         f"{100 * q['avg']['prede']:.3f}% | {100 * q['avg']['worste']:.3f}% | "
                         f"{q['avg']['r2']:.4f} | {q['objective_at_upstream_fit']:.3e} | "
                         f"{q['seconds_first']:.1f} s (again: {q['seconds_second']:.1f} s) |")
        b = r["budgetax"]
        lines.append(f"| {size}M | `laws.fit` | {100 * b['avg']['prede']:.3f}% | "
                     f"{100 * b['avg']['worste']:.3f}% | {b['avg']['r2']:.4f} | "
                     f"{b['objective_at_upstream_fit']:.3e} | {b['seconds_first']:.1f} s "
                     f"(again: {b['seconds_second']:.1f} s) |")
        a = r["lr_annealing"]["avg"]
        lines.append(f"| {size}M | `laws.fit(law=\"lr_annealing\")` | {100 * a['prede']:.3f}% | "
                     f"{100 * a['worste']:.3f}% | {a['r2']:.4f} | | |")
    lines += ["", "The fit objective is the paper's (Huber, delta 1e-3, on log-residuals, its "
              "loss rounded to float32), computed by the NumPy port for both fits. Fit times "
              "include compilation for the first `laws.fit`; the port runs the paper's "
              "algorithm (135 L-BFGS-B starts of a 4-parameter fit, then up to 200 AdamW "
              "steps over a Python loop of logged steps). `method=\"paper\"` runs the same "
              "algorithm in float64 JAX (its 135 L-BFGS-B runs in lockstep, one batched "
              "evaluation per round; AdamW in one jitted loop); its parameters differ from the "
              "port's by at most "
              + ", ".join(f"{r['paper_method']['max_rel_param_diff_vs_port']:.1e} ({size}M)"
                          for size, r in results["sizes"].items() if "paper_method" in r)
              + " (relative), from rounding.", "",
              "## Per predicted curve (`laws.fit`)", "",
              "| model | curve | PredE | WorstE | R^2 |", "| --- | --- | --- | --- | --- |"]
    for size, r in results["sizes"].items():
        for name, m in r["budgetax"]["per_curve"].items():
            lines.append(f"| {size}M | `{name}` | {100 * m['prede']:.3f}% | "
                         f"{100 * m['worste']:.3f}% | {m['r2']:.4f} |")
    lines += ["", "## The interval and the optimised schedule", "",
              "| model | 95% interval coverage of the predicted points | optimised schedule's "
              "predicted loss at 24000 | cosine | linear | wsd |",
              "| --- | --- | --- | --- | --- | --- |"]
    for size, r in results["sizes"].items():
        o = r["optimized_24000"]
        lines.append(f"| {size}M | {100 * r['budgetax']['coverage95']:.1f}% | "
                     f"{o['predicted_final_loss']:.4f} | {o['baselines']['cosine']:.4f} | "
                     f"{o['baselines']['linear']:.4f} | {o['baselines']['wsd']:.4f} |")
    lines += ["", "The optimised schedule: peak 3e-4, warmup 2160, end 3e-5, under each "
              "size's `laws.fit`; the baselines are budgetax's schedules with the same peak, "
              "warmup and end, predicted by the same fit (predictions, not trained runs).", ""]
    (HERE / "results.md").write_text("\n".join(lines))


def main():
    results = {**run_stamp(), "sizes": {}}
    for size in ("25", "100"):
        results["sizes"][size] = run_size(size)
        print(size, json.dumps({k: v.get("avg") for k, v in results["sizes"][size].items()
                                if isinstance(v, dict) and "avg" in v}, indent=1))
    (HERE / "results.json").write_text(json.dumps(results, indent=1))
    write_markdown(results)


if __name__ == "__main__":
    main()
