"""A user's CNN sweep on CPU: its wall time per diagnostics setting, and the engine against train().

The sweep is the one a new user runs on the CNN of Flax's MNIST tutorial on
scikit-learn's 8x8 digits (``benchmarks/digits_cnn.py``, written as a user's task):
2 budgets (50%, 100% of 200 steps) x 4 schedules (constant, linear, cosine, wsd) x
2 peak lrs (1e-3, 3e-3) x 2 seeds = 32 runs, Adam, batch 32, 4 evaluations. In one run
this script measures

(a) the sweep as the user runs it, ``budgetax sweep --task benchmarks/digits_cnn.py:make_task
    ...`` in a fresh process (start-up, compilation, training, evaluation, the report and
    its plots; the persistent compilation cache off), once per diagnostics setting: the
    whole training set (``full``), none, and the sweep's default
    (``SweepSpec().diagnostics``), plus any ``--subsets``; the settings interleaved over
    ``--repeats``. Per setting: wall seconds, the sweep call's seconds and compilation
    seconds (from its results store), and the diagnostics' share of the wall time
    (1 - none / setting, from the medians), also in the process's CPU time;
(b) throughput in one process: the same 32 runs by ``budgetax.training.train`` one
    after another (one compiled program per schedule; budget, seed and lr are
    inputs) against ``budgetax.training.sweep`` (one vmapped program for both budgets; with
    ``--per-run-programs`` also with one run per program, ``max_runs_per_program=1``),
    cold (compilation included) and warm (the median of ``--warm-repeats`` calls with
    everything compiled), with the sweep's default diagnostics; and the sweep without diagnostics
    (what the evaluations cost). The figure of merit is run-steps per second and the
    ratio to sequential ``train()`` in the same run.

The machine may be shared: the load average is recorded before and after.

Usage: python benchmarks/cpu_sweep.py [--repeats 1] [--warm-repeats 1] [--subsets 256]
Writes benchmarks/results/cpu_sweep.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from budgetax import training
from budgetax._io import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TASK = "benchmarks/digits_cnn.py:make_task"
GRID = dict(full_budget=200, budgets=(0.5, 1.0), schedules=("constant", "linear", "cosine", "wsd"),
            peak_lrs=(1e-3, 3e-3), seeds=(0, 1), batch_size=32, num_evals=4)
CLI_GRID = ["--full-budget", "200", "--budgets", "0.5,1", "--schedules",
            "constant,linear,cosine,wsd", "--lrs", "1e-3,3e-3", "--seeds", "0,1",
            "--batch-size", "32", "--num-evals", "4"]


def cli_value(diagnostics) -> str:
    """``--diagnostics`` spelled as the CLI reads it."""
    if diagnostics is True:
        return "full"
    if diagnostics is False:
        return "none"
    return str(diagnostics)


def trial(diagnostics) -> dict:
    """The user's sweep through the CLI in a fresh process: wall, session and compile seconds."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "budgetax.cli", "sweep", "--task", TASK, "--out", out,
               *CLI_GRID, "--diagnostics", cli_value(diagnostics), "--no-progress",
               "--compile-cache", "off"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with sqlite3.connect(os.path.join(out, "results.sqlite")) as conn:
            seconds, compile_s = conn.execute(
                "SELECT SUM(seconds), SUM(compile_seconds) FROM sessions").fetchone()
        with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
    picks = {f"{c['budget']}/{c['schedule']}": c["best_lr"] for c in summary["cells"]}
    return {"wall_s": wall, "cpu_s": cpu, "sweep_s": seconds, "compile_s": compile_s,
            "select": summary["select"], "best_lr": picks}


def load_task():
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_cnn", HERE / "digits_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_task()


def timed(fn, warm_repeats):
    """``(cold, [warm])``: each a ``(wall s, process CPU s)`` of one call of ``fn``."""
    out = []
    for _ in range(warm_repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out[0], out[1:]


def throughput(task, diagnostics, warm_repeats, per_run_programs=False) -> list[dict]:
    spec = training.SweepSpec(optimizer=training.OptimizerSpec("adam"), diagnostics=diagnostics,
                              **GRID)
    bare = dataclasses.replace(spec, diagnostics=False)

    def sequential():
        for r in spec.runs():
            opt = training.OptimizerSpec("adam", schedule=r["schedule"])
            training.train(task, budget=r["budget"], optimizer=opt, seed=r["seed"],
                           peak_lr=r["peak_lr"], batch_size=spec.batch_size,
                           num_evals=spec.num_evals, diagnostics=diagnostics)

    def engine(sweep_spec=spec, **kw):
        def run():
            with tempfile.TemporaryDirectory() as d:
                training.sweep(task, sweep_spec, d, progress=False, checkpoint_every=0, **kw)
        return run

    run_steps = sum(r["budget"] for r in spec.runs())
    rows = []
    modes = [("sequential train()", sequential), ("sweep", engine()),
             ("sweep, diagnostics none", engine(bare))]
    if per_run_programs:
        modes.append(("sweep, one run per program", engine(max_runs_per_program=1)))
    for mode, fn in modes:
        print(f"  (b) {mode} ...", flush=True)
        cold, warm = timed(fn, warm_repeats)
        rows.append({"mode": mode, "cold_s": cold[0], "cold_cpu_s": cold[1],
                     "warm_s": statistics.median(w for w, _ in warm),
                     "warm_cpu_s": statistics.median(c for _, c in warm),
                     "warm_all_s": [w for w, _ in warm], "run_steps": run_steps})
    base = rows[0]
    for r in rows:
        r["cold_run_steps_per_s"] = run_steps / r["cold_s"]
        r["warm_run_steps_per_s"] = run_steps / r["warm_s"]
        r["cold_vs_sequential"] = base["cold_s"] / r["cold_s"]
        r["warm_vs_sequential"] = base["warm_s"] / r["warm_s"]
        r["warm_cpu_vs_sequential"] = base["warm_cpu_s"] / r["warm_cpu_s"]
    return rows


def markdown(p: dict) -> str:
    m = p["meta"]
    lines = [
        f"# A user's CNN sweep on CPU ({m['date']})", "",
        f"Command: `{p['command']}`", "",
        f"Device: {m['device']} ({m['machine']}, {m['cpu_count']} cores), jax {m['jax']}; "
        f"load average (1, 5, 15 min) before {m['loadavg_before']}, after "
        f"{m['loadavg_after']}. Task: `{TASK}` (Flax's MNIST-tutorial CNN on "
        "sklearn's 8x8 digits, 1437 training / 360 test images); 32 runs: budgets 100 and "
        "200 steps x constant, linear, cosine, wsd x peak lr 1e-3, 3e-3 x seeds 0, 1; Adam, "
        "batch 32, 4 evaluations.", "",
        f"## (a) The sweep per diagnostics setting (`budgetax sweep`, fresh process, "
        f"{p['repeats']} repeat(s) interleaved; the sweep's default is "
        f"`diagnostics={p['default']!r}`)", "",
        "| --diagnostics | wall s (median; each) | sweep call s | compiling s | diagnostics' "
        "share of wall | wall / none | CPU s | diagnostics' share of CPU | lr picks as full's |",
        "|---|---|---|---|---|---|---|---|---|"]
    none = p["trial"]["none"]["wall_s"]
    none_cpu = p["trial"]["none"]["cpu_s"]
    full_picks = p["trial"]["full"]["runs"][0]["best_lr"]
    for name, t in p["trial"].items():
        r0 = t["runs"][0]
        same = sum(r0["best_lr"][k] == v for k, v in full_picks.items())
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in t["runs"])
        lines.append(
            f"| {name}{' (default)' if name == p['default_name'] else ''} | {t['wall_s']:.1f} "
            f"({walls}) | {t['sweep_s']:.1f} | "
            f"{t['compile_s']:.1f} | {1 - none / t['wall_s']:.0%} | {t['wall_s'] / none:.2f} "
            f"| {t['cpu_s']:.1f} | {1 - none_cpu / t['cpu_s']:.0%} | {same}/{len(full_picks)} |")
    lines += ["", "The diagnostics' share is 1 - (time without diagnostics) / (time with "
              "them), from the medians; CPU s is the sweep process's user + system CPU time "
              "(all its threads), steadier than wall time on a shared machine. Lr picks: "
              "cells whose best lr (by the setting's selection metric: train_loss on its "
              "examples, or the last epoch's minibatch loss without "
              "diagnostics) equals the one picked with the whole training set.", "",
              f"## (b) Throughput, one process, diagnostics={p['default']!r} "
              f"({p['warm_repeats']} warm repeat(s))", "",
              "| mode | cold s | warm s | warm run-steps/s | vs sequential, cold | "
              "vs sequential, warm | warm CPU s | vs sequential, warm CPU |",
              "|---|---|---|---|---|---|---|---|"]
    for r in p["throughput"]:
        lines.append(f"| {r['mode']} | {r['cold_s']:.1f} | {r['warm_s']:.1f} | "
                     f"{r['warm_run_steps_per_s']:,.0f} | {r['cold_vs_sequential']:.2f}x | "
                     f"{r['warm_vs_sequential']:.2f}x | {r['warm_cpu_s']:.1f} | "
                     f"{r['warm_cpu_vs_sequential']:.2f}x |")
    if p.get("findings"):
        lines += ["", "## Findings", "", p["findings"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="(a): runs of each setting")
    ap.add_argument("--warm-repeats", type=int, default=1, help="(b): warm calls of each mode")
    ap.add_argument("--subsets", default="", help="(a): also these subset sizes, e.g. 256,512")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--per-run-programs", action="store_true",
                    help="(b): also the sweep with one run per program")
    ap.add_argument("--findings", default=None, help="a file whose text ends the report")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    default = training.SweepSpec().diagnostics
    settings = {"full": True, "none": False}
    default_name = cli_value(default)
    settings[default_name] = default
    for n in (v for v in args.subsets.split(",") if v.strip()):
        settings.setdefault(n.strip(), int(n))
    dev = jax.devices()[0]
    meta = {"device": f"{dev.platform}: {dev.device_kind}", "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_before": [round(v, 2) for v in os.getloadavg()]}
    runs = {k: [] for k in settings}
    for i in range(args.repeats):
        for name, value in settings.items():
            print(f"(a) repeat {i + 1}: --diagnostics {name} ...", flush=True)
            runs[name].append(trial(value))
            print(f"    {runs[name][-1]['wall_s']:.1f}s", flush=True)
    trial_rows = {}
    for name, rs in runs.items():
        trial_rows[name] = {k: statistics.median(r[k] for r in rs)
                            for k in ("wall_s", "cpu_s", "sweep_s", "compile_s")}
        trial_rows[name]["runs"] = rs
    rows = [] if args.skip_throughput else throughput(load_task(), default, args.warm_repeats,
                                                      args.per_run_programs)
    meta["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    payload = {"meta": meta, "default": default, "default_name": default_name,
               "repeats": args.repeats, "warm_repeats": args.warm_repeats,
               "command": "python benchmarks/cpu_sweep.py " + " ".join(
                   argv if argv is not None else sys.argv[1:]),
               "trial": trial_rows, "throughput": rows,
               "findings": Path(args.findings).read_text().strip() if args.findings else None}
    out = Path(args.out)
    atomic_write_json(out / "cpu_sweep.json", payload)
    md = markdown(payload)
    atomic_write_text(out / "cpu_sweep.md", md)
    print(md)


if __name__ == "__main__":
    main()
