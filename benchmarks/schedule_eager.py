"""Eager (un-jitted) cost of calling a budgetax schedule, against the matching optax schedule.

A schedule is called outside ``jax.jit`` when a training loop logs the learning rate or a
notebook plots it. This measures, in one process and interleaved repeat by repeat, for pairs
of equivalent schedules (budgetax / optax):

  call:            ``sched(t)`` with a Python int ``t``, on an existing schedule
  construct+call:  ``factory(T, peak)(t)``: a new schedule object for every call
  batch:           ``sched(np.arange(T + 1))``: one call with every count of the budget
                   (optax: ``jax.vmap(sched)(np.arange(T + 1))``, since not every optax
                   schedule takes a batch of counts)

and, once per schedule, the first call of a configuration not seen before (the one-off
compile of its cached function). Ratios are per repeat (budgetax time / optax time of the
same repeat), reported as median and IQR; the same calls are timed for both libraries.

Usage: python benchmarks/schedule_eager.py [--repeats 9] [--calls 200] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import numpy as np
import optax

from budgetax import schedules
from budgetax._io import atomic_write_json, atomic_write_text

T = 1000


def pairs(total):
    """name -> (budgetax factory, optax factory), each ``(T) -> schedule`` with peak 1."""
    w = total // 10
    return {
        "cosine": (lambda n: schedules.cosine(n, 1.0),
                   lambda n: optax.cosine_decay_schedule(1.0, n)),
        "linear": (lambda n: schedules.linear(n, 1.0),
                   lambda n: optax.linear_schedule(1.0, 0.0, n)),
        "cosine + warmup": (lambda n: schedules.cosine(n, 1.0, warmup_steps=w),
                            lambda n: optax.warmup_cosine_decay_schedule(0.0, 1.0, w, n)),
        "step (30-60-90)": (lambda n: schedules.step(n, 1.0),
                            lambda n: optax.piecewise_constant_schedule(
                                1.0, {3 * n // 10: 0.1, 6 * n // 10: 0.1, 9 * n // 10: 0.1})),
        "one_cycle": (lambda n: schedules.one_cycle(n, 1.0),
                      lambda n: optax.cosine_onecycle_schedule(n, 1.0)),
        "polynomial (power 2)": (lambda n: schedules.polynomial(n, 1.0, power=2.0),
                                 lambda n: optax.polynomial_schedule(1.0, 0.0, 2.0, n)),
    }


def _time(fn, calls):
    t0 = time.perf_counter()
    for i in range(calls):
        jax.block_until_ready(fn(i))
    return (time.perf_counter() - t0) / calls


def bench_pair(name, ours, theirs, repeats, calls):
    s_ours, s_theirs = ours(T), theirs(T)
    counts = np.arange(T + 1)
    batched_theirs = jax.vmap(s_theirs)  # not every optax schedule takes a batch of counts
    modes = {
        "call": (lambda i: s_ours((7 * i) % (T + 5)), lambda i: s_theirs((7 * i) % (T + 5))),
        "construct+call": (lambda i: ours(T)((7 * i) % (T + 5)),
                           lambda i: theirs(T)((7 * i) % (T + 5))),
        "batch": (lambda i: s_ours(counts), lambda i: batched_theirs(counts)),
    }
    out = {}
    for mode, (a, b) in modes.items():
        n = calls if mode != "batch" else max(5, calls // 10)
        _time(a, 3), _time(b, 3)  # warm up (compiles the budgetax function once)
        ta, tb = [], []
        for _ in range(repeats):  # interleaved: both see the same machine load
            ta.append(_time(a, n))
            tb.append(_time(b, n))
        ta, tb = np.asarray(ta), np.asarray(tb)
        r = ta / tb
        out[mode] = {
            "budgetax_us": float(np.median(ta) * 1e6),
            "optax_us": float(np.median(tb) * 1e6),
            "ratio_median": float(np.median(r)),
            "ratio_q25": float(np.quantile(r, 0.25)),
            "ratio_q75": float(np.quantile(r, 0.75)),
        }
    # first call of a configuration not compiled before (a budget not used so far)
    fresh = T + 1 + len(name)
    t0 = time.perf_counter()
    jax.block_until_ready(ours(fresh)(3))
    first_ms = (time.perf_counter() - t0) * 1e3
    return {"schedule": name, "modes": out, "first_call_ms": first_ms}


def to_markdown(result):
    lines = [
        "# Eager schedule calls: budgetax vs optax",
        "",
        f"Device: {result['device']}; jax {result['jax']}, optax {result['optax']}; "
        f"{result['date']}.",
        "",
        "Command: `" + result["command"] + "`",
        "",
        f"Budget T = {T}. Times are medians over {result['repeats']} interleaved repeats of "
        f"{result['calls']} calls (batch: one call with all T + 1 counts, `jax.vmap` for optax, "
        "1/10 as many calls). "
        "Ratio = budgetax time / optax time in the same repeat (median, IQR); below 1 is faster "
        "than optax. First call = building a schedule of a budget not seen before and calling "
        "it once (compiles its cached function; later schedules of that configuration reuse it).",
        "",
        "| schedule | mode | budgetax us/call | optax us/call | ratio median | IQR |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in result["results"]:
        for mode, m in r["modes"].items():
            lines.append(
                f"| {r['schedule']} | {mode} | {m['budgetax_us']:.1f} | {m['optax_us']:.1f} | "
                f"{m['ratio_median']:.3f} | {m['ratio_q25']:.3f}-{m['ratio_q75']:.3f} |")
    lines += ["", "| schedule | first call of a new configuration (ms) |", "| --- | ---: |"]
    for r in result["results"]:
        lines.append(f"| {r['schedule']} | {r['first_call_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    result = {
        "benchmark": "schedule_eager",
        "command": (f"python benchmarks/schedule_eager.py --repeats {args.repeats} "
                    f"--calls {args.calls}"),
        "device": f"{dev.platform}: {dev.device_kind} ({cpu}, {jax.device_count()} device(s))",
        "jax": jax.__version__,
        "optax": optax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "total_steps": T,
        "repeats": args.repeats,
        "calls": args.calls,
        "results": [bench_pair(name, a, b, args.repeats, args.calls)
                    for name, (a, b) in pairs(T).items()],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "schedule_eager.json", result)
    atomic_write_text(out / "schedule_eager.md", to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
