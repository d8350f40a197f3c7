"""Step-time overhead of a budgetax schedule transform over optax.adam with a constant lr.

Compares, in one process and interleaved repeat by repeat:

  baseline:  optax.adam(lr)                                              (constant lr)
  budgetax:  optax.chain(optax.scale_by_adam(), budgetax.rex(T), optax.scale(-lr))

on (a) the MNIST-1D MLP shapes (40 -> 100 -> 100 -> 10) and (b) an MLP of about 10M parameters.
Each timed call runs ``--steps`` full training steps (forward, backward, optimizer update) in a
``lax.scan`` inside one ``jax.jit``, so Python dispatch is not measured. The ratio is computed per
repeat (budgetax time / baseline time of the same repeat) and reported as median and IQR.
A schedule is one scalar per step, so the physical limit is a ratio of 1.00.

Usage: python benchmarks/schedule_overhead.py [--repeats 15] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import numpy as np
import optax
from common import init_mlp, mlp_loss  # noqa: E402  (benchmarks/ is on sys.path)

import budgetax
from budgetax._io import atomic_write_json, atomic_write_text

MODELS = {
    # name: (layer sizes, batch, steps per timed call)
    "mnist1d_mlp": ([40, 100, 100, 10], 100, 2000),
    "mlp_10m": ([1024, 2048, 2048, 2048, 10], 64, 10),
}


def make_runner(tx, steps):
    @jax.jit
    def run(params, state, x, y):
        def body(carry, _):
            params, state = carry
            loss, g = jax.value_and_grad(mlp_loss)(params, x, y)
            u, state = tx.update(g, state, params)
            return (optax.apply_updates(params, u), state), loss

        (params, state), losses = jax.lax.scan(body, (params, state), None, length=steps)
        return params, state, losses[-1]

    return run


def bench_model(name, repeats, lr=1e-3):
    sizes, batch, steps = MODELS[name]
    key = jax.random.key(0)
    params = init_mlp(key, sizes)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    x = jax.random.normal(jax.random.key(1), (batch, sizes[0]))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, sizes[-1])
    total = steps * (repeats + 2)
    variants = {
        "optax.adam(constant)": optax.adam(lr),
        "chain(scale_by_adam, budgetax.rex(T), scale(-lr))": optax.chain(
            optax.scale_by_adam(), budgetax.rex(total), optax.scale(-lr)),
    }
    runners = {}
    states = {}
    for v, tx in variants.items():
        runners[v] = make_runner(tx, steps)
        states[v] = (params, tx.init(params))
        p, s, loss = runners[v](*states[v], x, y)  # compile + warm up
        jax.block_until_ready(loss)
        states[v] = (p, s)
    times = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:  # interleaved: both see the same machine load
            t0 = time.perf_counter()
            p, s, loss = runners[v](*states[v], x, y)
            jax.block_until_ready(loss)
            times[v].append(time.perf_counter() - t0)
            states[v] = (p, s)
    base, ours = (np.asarray(times[v]) for v in variants)
    ratios = ours / base
    return {
        "model": name,
        "parameters": int(n_params),
        "batch": batch,
        "steps_per_call": steps,
        "repeats": repeats,
        "ms_per_step": {v: float(np.median(t) / steps * 1e3) for v, t in times.items()},
        "ratio_median": float(np.median(ratios)),
        "ratio_q25": float(np.quantile(ratios, 0.25)),
        "ratio_q75": float(np.quantile(ratios, 0.75)),
        "ratio_min": float(ratios.min()),
        "ratio_max": float(ratios.max()),
    }


def to_markdown(result):
    lines = [
        "# Schedule-transform overhead",
        "",
        f"Device: {result['device']}; jax {result['jax']}, optax {result['optax']}; "
        f"{result['date']}.",
        "",
        "Command: `" + result["command"] + "`",
        "",
        "Ratio = step time of `chain(scale_by_adam, budgetax.rex(T), scale(-lr))` / step time of "
        "`optax.adam(lr)`, per interleaved repeat (median, IQR, min-max). 1.00 is the physical "
        "limit (one scalar per step).",
        "",
        "| model | params | batch | adam ms/step | budgetax ms/step | ratio median | IQR "
        "| min-max |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in result["results"]:
        a, b = r["ms_per_step"].values()
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['batch']} | {a:.4f} | {b:.4f} | "
            f"{r['ratio_median']:.3f} | {r['ratio_q25']:.3f}-{r['ratio_q75']:.3f} | "
            f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    result = {
        "benchmark": "schedule_overhead",
        "command": f"python benchmarks/schedule_overhead.py --repeats {args.repeats}",
        "device": f"{dev.platform}: {dev.device_kind} ({cpu}, {jax.device_count()} device(s))",
        "jax": jax.__version__,
        "optax": optax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "results": [bench_model(m, args.repeats) for m in args.models],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "schedule_overhead.json", result)
    atomic_write_text(out / "schedule_overhead.md", to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
