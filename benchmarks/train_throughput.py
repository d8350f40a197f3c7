"""Training throughput of ``budgetax.training``: optimizer steps per second on this machine.

For each (dataset, model, precision) it times ``training.train`` over a budget of
``--steps`` steps (the whole budget is one compiled call: on-device batching,
forward, backward, Adam with a linear schedule, per-step metrics; evaluation and
diagnostics are switched off so that only training is timed) after a warm-up call
that compiles it, and ``training.train_many`` with ``--runs`` vmapped seeds
(aggregate steps/s = runs x steps / seconds). Each timing is the median of
``--repeats`` calls. Device, jax version and load average are recorded, because the
CPU of this machine is shared.

Usage: python benchmarks/train_throughput.py [--steps 1000] [--runs 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax

from budgetax import data, training
from budgetax._io import atomic_write_text

CASES = [
    # (dataset, model, model_kwargs, batch size)
    ("mnist1d", "mlp", {}, 100),
    ("mnist1d", "cnn1d", {}, 100),
    ("digits", "resnet", {"depth": 1, "width": 16}, 64),
]
PRECISIONS = ("float32", "bf16")


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--resnet-steps", type=int, default=100)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    dev = jax.devices()[0]
    meta = {
        "device": f"{dev.platform}: {dev.device_kind}", "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "jax": jax.__version__,
        "load_average_at_start": os.getloadavg(), "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/train_throughput.py " + " ".join(
            argv if argv is not None else __import__("sys").argv[1:]),
        "steps": args.steps, "runs": args.runs, "repeats": args.repeats,
    }
    rows = []
    for ds_name, model, kw, batch in CASES:
        ds = data.load(ds_name)
        steps = args.resnet_steps if model == "resnet" else args.steps
        for precision in PRECISIONS:
            spec = training.OptimizerSpec("adam", "linear", peak_lr=1e-3, precision=precision)
            common = dict(model=model, model_kwargs=kw, budget=steps, batch_size=batch,
                          optimizer=spec, num_evals=1, diagnostics=False)
            t_compile = time.perf_counter()
            training.train(ds, seed=0, **common)
            t_compile = time.perf_counter() - t_compile
            single, single_all = timed(lambda common=common: training.train(ds, seed=1, **common),
                                       args.repeats)
            seeds = list(range(args.runs))
            training.train_many(ds, seeds=seeds, **common)
            many, many_all = timed(lambda common=common: training.train_many(ds, seeds=seeds,
                                                                             **common),
                                   args.repeats)
            row = {"dataset": ds_name, "model": model, "model_kwargs": kw, "batch_size": batch,
                   "precision": precision, "steps": steps,
                   "first_call_seconds": t_compile,
                   "steps_per_second": steps / single,
                   "ms_per_step": 1e3 * single / steps,
                   "vmapped_runs": args.runs,
                   "vmapped_steps_per_second": args.runs * steps / many,
                   "single_seconds_all": single_all, "many_seconds_all": many_all}
            rows.append(row)
            print(f"{ds_name:8s} {model:7s} {precision:8s} {row['steps_per_second']:8.1f} steps/s"
                  f"  ({row['ms_per_step']:.2f} ms/step; {args.runs} vmapped runs: "
                  f"{row['vmapped_steps_per_second']:.1f} steps/s; first call "
                  f"{t_compile:.1f}s)", flush=True)
    meta["load_average_at_end"] = os.getloadavg()
    out = Path(args.out)
    atomic_write_text(out / "train_throughput.json",
                      json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Training throughput", "",
             f"Device: {meta['device']} ({meta['machine']}, {meta['cpu_count']} cores, shared "
             f"with other jobs: load average {meta['load_average_at_start'][0]:.1f} at start, "
             f"{meta['load_average_at_end'][0]:.1f} at end); jax {meta['jax']}; {meta['date']}.",
             "", f"Command: `{meta['command'].strip()}`", "",
             "Whole budget in one compiled call (on-device batching, forward, backward, Adam with "
             "a linear schedule, per-step metrics; no evaluation). Median of "
             f"{args.repeats} calls after a compiling call. `vmapped` = `train_many` with "
             f"{args.runs} seeds in one call, aggregate steps/s.", "",
             "| dataset | model | batch | precision | steps/s | ms/step | vmapped steps/s "
             "| first call (s, incl. compile) |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch_size']} | {r['precision']} | "
                     f"{r['steps_per_second']:.0f} | {r['ms_per_step']:.2f} | "
                     f"{r['vmapped_steps_per_second']:.0f} | {r['first_call_seconds']:.1f} |")
    atomic_write_text(out / "train_throughput.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'train_throughput.json'} and {out / 'train_throughput.md'}")


if __name__ == "__main__":
    main()
