"""Speed and accuracy of the batched curve fits of ``budgetax.ranking`` against a SciPy loop.

For ``ranking.lcga`` and ``ranking.extrapolate`` with every family, on the same 10,000 curves
of 400 steps, measured in one run:

  budgetax:  one call on all curves (jitted; compile time reported apart, warm time = median
             of ``--repeats`` calls);
  SciPy:     a per-curve ``scipy.optimize.curve_fit`` loop, timed on the first ``--scipy-curves``
             curves (300 by default) and extrapolated to a per-curve rate. Two variants: with
             the family's bounds (``method="trf"``: the same constrained problem budgetax
             solves) and without (``method="lm"``, MINPACK: faster, but it may leave the family,
             e.g. a negative amplitude). Both start from the same data-driven ``p0``.

The ratio is budgetax curves/s over SciPy curves/s. Accuracy: on the SciPy subset, the sum of
squared errors (SSE, float64, of each returned fit on the raw curve; LCGA: on its normalised
window) of budgetax over that of bounded SciPy, and the fraction of curves where budgetax's
SSE is no worse (within 1e-3 relative, plus 1e-9 of the curve's sum of squares: float32's
resolution).

The curves: 90% synthetic training-loss curves (power law, stretched exponential, log-power
and LCGA-shaped decays, multiplicative noise of 0-10%), 10% stress curves (flat, rising,
linear, cliff, noisy, oscillating), shuffled.

Usage: python benchmarks/curve_fits.py [--curves 10000] [--steps 400] [--scipy-curves 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy
from scipy.optimize import curve_fit

from budgetax import ranking
from budgetax._io import atomic_write_json, atomic_write_text

SPE = 20  # LCGA: 20 epochs of 20 steps, burn-in 1 epoch
TARGET = 4000  # extrapolate: predict the loss at 10x the observed steps
STRESS = ("flat", "rising", "linear", "cliff", "noisy", "oscillating")


def make_curves(n_curves, steps, seed=0):
    """``[n_curves, steps]`` loss curves: 90% noisy decays of four shapes, 10% stress curves."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, steps + 1, dtype=np.float64)
    out = np.empty((n_curves, steps))
    for i in range(n_curves):
        c, a = rng.uniform(0.05, 1.0), rng.uniform(0.5, 3.0)
        if rng.uniform() < 0.1:
            kind = STRESS[rng.integers(len(STRESS))]
            if kind == "flat":
                out[i] = c
            elif kind == "rising":
                out[i] = c + a * k / steps
            elif kind == "linear":
                out[i] = c + a * (1 - k / steps)
            elif kind == "cliff":
                out[i] = np.where(k < rng.uniform(0.2, 0.8) * steps, c + a, c)
            elif kind == "noisy":
                out[i] = (c + a * k ** -0.5) * np.exp(0.5 * rng.standard_normal(steps))
            else:
                out[i] = c + a * k ** -0.5 + 0.2 * a * np.sin(k / rng.uniform(3, 30))
            continue
        shape = rng.integers(4)
        if shape == 0:
            y = c + a * k ** -rng.uniform(0.1, 1.5)
        elif shape == 1:
            y = c + a * np.exp(-(k / rng.uniform(10, 300)) ** rng.uniform(0.5, 1.5))
        elif shape == 2:
            y = c + a / (1 + (k / rng.uniform(5, 200)) ** rng.uniform(0.5, 2.5))
        else:
            y = c + a / (1 + rng.uniform(0.01, 0.5) * k)
        out[i] = y * np.exp(rng.uniform(0.0, 0.1) * rng.standard_normal(steps))
    return out


# ----------------------------------------------------------------------------- SciPy side


def _lcga_model(k, b1, b2, b3):
    return 1.0 / (b1 + b2 * k) + b3


FAMILIES = {
    # name: (model, p0 from the curve y, lower bounds, upper bounds); k = 1..n
    "pow3": (lambda k, c, a, al: c + a * k ** -al,
             lambda y: (0.0, max(y[0] - y[-1], 1e-3), 0.5),
             [-np.inf, 0.0, 1e-6], [np.inf, np.inf, 10.0]),
    "exp4": (lambda k, c, a, al, b: c + np.exp(-a * k ** al + b),
             lambda y: (y.min(), 1e-2, 0.5, np.log(max(y[0] - y.min(), 1e-3))),
             [-np.inf, 0.0, 1e-6, -np.inf], [np.inf, np.inf, 5.0, np.inf]),
    "log_power": (lambda k, a, b, c: a / (1.0 + (k / np.exp(b)) ** c),
                  lambda y: (y[0], np.log(len(y) / 10), 1.0),
                  [0.0, -np.inf, 1e-6], [np.inf, np.inf, 10.0]),
    "lcga": (_lcga_model, lambda y: (0.3, 0.1, 0.0), [1e-12, 1e-12, 0.0], [np.inf] * 3),
}


def lcga_window(curves):
    """(k in epochs, normalised window) exactly as ``ranking.lcga(..., burn_in_epochs=1)``."""
    steps = curves.shape[-1]
    stop = (steps // SPE) * SPE
    y = curves[:, SPE:stop]
    k = (np.arange(SPE, stop) + 1.0) / SPE
    return k, y / y[:, :SPE].mean(axis=1, keepdims=True)


def scipy_loop(name, curves, bounded):
    """(wall s, CPU s, params per curve or None) of a curve_fit loop over ``curves``."""
    model, p0, lower, upper = FAMILIES[name]
    if name == "lcga":
        k, ys = lcga_window(curves)
    else:
        k, ys = np.arange(1, curves.shape[-1] + 1, dtype=np.float64), curves
    params = []
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y in ys:
            start = np.clip(p0(y), lower, upper)
            try:
                if bounded:
                    p, _ = curve_fit(model, k, y, p0=start, bounds=(lower, upper))
                else:
                    p, _ = curve_fit(model, k, y, p0=start)
            except (RuntimeError, ValueError):
                p = None
            params.append(p)
    return time.perf_counter() - t0, time.process_time() - c0, params


def sse(name, params, curves):
    """Float64 SSE of each fit (rows of ``params``, None = failed -> inf) on its curve."""
    model = FAMILIES[name][0]
    if name == "lcga":
        k, ys = lcga_window(curves)
    else:
        k, ys = np.arange(1, curves.shape[-1] + 1, dtype=np.float64), curves
    out = []
    for p, y in zip(params, ys):
        if p is None or not np.all(np.isfinite(p)):
            out.append(np.inf)
            continue
        with np.errstate(all="ignore"):
            r = model(k, *np.asarray(p, np.float64)) - y
        out.append(float(np.sum(r * r)) if np.all(np.isfinite(r)) else np.inf)
    return np.asarray(out)


# ----------------------------------------------------------------------------- budgetax side


def budgetax_fit(name, x):
    if name == "lcga":
        return ranking.lcga(x, SPE, burn_in_epochs=1, variant="slope")
    return ranking.extrapolate(x, TARGET, family=name)


def budgetax_params(name, fit, scale_back):
    """Parameters in the SciPy model's convention, float64 (LCGA: of the normalised window)."""
    p = np.asarray(fit.params, np.float64)
    if name == "lcga":  # lcga's params describe the raw losses; the window is normalised by s
        s = scale_back[:, None]
        p = np.concatenate([p[:, :2] * s, p[:, 2:] / s], axis=1)
    return list(p)


def bench(name, curves, x, n_scipy, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(budgetax_fit(name, x))
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = jax.block_until_ready(budgetax_fit(name, x))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    warm, warm_cpu = float(np.median(times)), float(np.median(cpu))
    sub = curves[:n_scipy]
    t_bounded, c_bounded, p_bounded = scipy_loop(name, sub, bounded=True)
    t_lm, c_lm, _ = scipy_loop(name, sub, bounded=False)
    ours_rate = len(curves) / warm
    rates = {"bounded": n_scipy / t_bounded, "lm": n_scipy / t_lm}
    # CPU time (summed over threads): less sensitive to other jobs than wall time
    cpu_ratio_lm = (len(curves) / warm_cpu) / (n_scipy / c_lm)
    first_epoch = sub[:, SPE:2 * SPE].mean(axis=1) if name == "lcga" else None
    sub_fit = jax.tree.map(lambda a: a[:n_scipy], fit)
    ours = sse(name, budgetax_params(name, sub_fit, first_epoch), sub)
    theirs = sse(name, p_bounded, sub)
    # float32 cannot resolve an SSE below ~1e-9 of the curve's sum of squares
    ys = lcga_window(sub)[1] if name == "lcga" else sub
    floor = 1e-9 * np.sum(ys * ys, axis=1)
    ok = np.isfinite(theirs)
    no_worse = ours[ok] <= theirs[ok] * (1 + 1e-3) + floor[ok]
    ratio = (ours[ok] + floor[ok]) / (theirs[ok] + floor[ok])
    return {
        "fit": name if name == "lcga" else f"extrapolate(family={name!r})",
        "curves": len(curves),
        "steps": curves.shape[-1],
        "compile_and_first_call_s": first,
        "warm_s": warm,
        "budgetax_curves_per_s": ours_rate,
        "scipy_curves": n_scipy,
        "scipy_bounded_s": t_bounded,
        "scipy_lm_s": t_lm,
        "scipy_bounded_curves_per_s": rates["bounded"],
        "scipy_lm_curves_per_s": rates["lm"],
        "ratio_vs_bounded": ours_rate / rates["bounded"],
        "ratio_vs_lm": ours_rate / rates["lm"],
        "warm_cpu_s": warm_cpu,
        "scipy_lm_cpu_s": c_lm,
        "cpu_ratio_vs_lm": cpu_ratio_lm,
        "scipy_bounded_failures": int((~ok).sum()),
        "sse_ratio_median": float(np.median(ratio)),
        "sse_ratio_max": float(ratio.max()),
        "sse_no_worse_fraction": float(np.mean(no_worse)),
        "budgetax_nan": int(np.isnan(np.asarray(fit[0])).sum()),
    }


def to_markdown(result):
    lines = [
        "# Curve fits: budgetax vs a per-curve SciPy loop",
        "",
        f"Device: {result['device']}; jax {result['jax']}, scipy {result['scipy']}; "
        f"{result['date']}; {result['cpu_count']} CPU cores, 1-min load average at start / end "
        f"{result['load_average_start_end']} (a shared machine: other jobs slow both sides; "
        "read the ratios, not the seconds).",
        "",
        "Command: `" + result["command"] + "`",
        "",
        f"{result['curves']:,} curves of {result['steps']} steps (90% noisy synthetic loss "
        "curves, 10% stress curves: flat, rising, linear, cliff, noisy, oscillating). budgetax: "
        "one jitted call on all curves (warm: median of repeats). SciPy: a "
        "`scipy.optimize.curve_fit` loop timed on the first "
        f"{result['scipy_curves']} curves and **extrapolated** to a per-curve rate; "
        "`bounded` = the family's bounds (`trf`, the same constrained problem), `lm` = no "
        "bounds (MINPACK). Ratio = budgetax curves/s / SciPy curves/s, measured in the same "
        "run. SSE ratio = budgetax SSE / bounded-SciPy SSE on the SciPy subset (float64, both "
        "plus 1e-9 of the curve's sum of squares, float32's resolution; < 1 is better); "
        "`no worse` = fraction of curves where budgetax's SSE <= SciPy's x 1.001 + that "
        "floor. `ratio vs lm, CPU`: the same ratio in process CPU time (summed over threads; "
        "the SciPy loop runs on one thread), the measure less affected by other jobs.",
        "",
        "| fit | compile + 1st call s | warm s | budgetax curves/s | SciPy bounded curves/s "
        "| SciPy lm curves/s | ratio vs bounded | ratio vs lm | ratio vs lm, CPU "
        "| SSE ratio median / max | no worse |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in result["results"]:
        lines.append(
            f"| `{r['fit']}` | {r['compile_and_first_call_s']:.2f} | {r['warm_s']:.3f} | "
            f"{r['budgetax_curves_per_s']:,.0f} | {r['scipy_bounded_curves_per_s']:,.0f} | "
            f"{r['scipy_lm_curves_per_s']:,.0f} | {r['ratio_vs_bounded']:,.0f}x | "
            f"{r['ratio_vs_lm']:,.0f}x | {r['cpu_ratio_vs_lm']:,.0f}x | "
            f"{r['sse_ratio_median']:.4f} / "
            f"{r['sse_ratio_max']:.4f} | {r['sse_no_worse_fraction']:.1%} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--scipy-curves", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fits", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    curves = make_curves(args.curves, args.steps)
    x = jnp.asarray(curves, jnp.float32)
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    result = {
        "benchmark": "curve_fits",
        "command": (f"python benchmarks/curve_fits.py --curves {args.curves} --steps "
                    f"{args.steps} --scipy-curves {args.scipy_curves} --repeats {args.repeats}"),
        "device": f"{dev.platform}: {dev.device_kind} ({cpu}, {jax.device_count()} device(s))",
        "jax": jax.__version__,
        "scipy": scipy.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "curves": args.curves,
        "steps": args.steps,
        "scipy_curves": args.scipy_curves,
        "results": [bench(f, curves, x, args.scipy_curves, args.repeats) for f in args.fits],
    }
    result["cpu_count"] = os.cpu_count()
    result["load_average_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "curve_fits.json", result)
    atomic_write_text(out / "curve_fits.md", to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
