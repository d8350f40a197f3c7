"""Sweep throughput: the sweep engine against the same runs trained one after another.

One grid (``--schedules`` x ``--lrs`` x ``--seeds`` runs of one budget of
``--steps`` steps, MNIST-1D MLP or CNN, Adam, evaluation every quarter of the
budget with the full-training-set diagnostics) is trained

- *sequentially*: ``budgetax.training.train`` once per run (the training core: one
  compiled call per run; one compilation per schedule, since the schedule is
  compiled in, the seed and peak lr are inputs);
- by the *engine*: ``budgetax.training.sweep``, every run in one vmapped program
  (a ``lax.switch`` picks each run's schedule), on 1 device and, in
  subprocesses, on 2 and 4 emulated CPU devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=N``).

Each is timed cold (compilation included: what a user waits for) and warm (the
programs already compiled in the process: the steady state), as the median of
``--repeats`` warm calls. The figure of merit is run-steps per second
(runs x steps / seconds) and the ratio engine / sequential, measured in the same
run on the same machine. Emulated devices share this machine's CPU cores, so
they test the sharded code path, not a speed-up; on a GPU the engine's gain
should be much larger (small models leave it idle), to be measured there.

Usage: python benchmarks/sweep_throughput.py [--model mlp] [--steps 300] [--repeats 3]
Writes benchmarks/results/sweep_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from budgetax import data, launch, training
from budgetax._io import atomic_write_json, atomic_write_text


def grid_spec(args) -> training.SweepSpec:
    return training.SweepSpec(
        full_budget=args.steps, budgets=(1.0,),
        schedules=tuple(args.schedules.split(",")),
        peak_lrs=tuple(float(v) for v in args.lrs.split(",")),
        seeds=tuple(int(v) for v in args.seeds.split(",")), num_evals=4,
        optimizer=training.OptimizerSpec("adam"))


def time_engine(spec, task, repeats, workdir=None):
    """(cold seconds, [warm seconds]) of the engine on the devices of every process.

    ``workdir``: a directory every process sees (several processes); default a temp dir.
    """
    cold = warm = None
    times = []
    for i in range(repeats + 1):
        with tempfile.TemporaryDirectory() as tmp:
            d = os.path.join(workdir or tmp, f"repeat{i}")
            t0 = time.perf_counter()
            training.sweep(task, spec, d, progress=False, checkpoint_every=0)
            dt = time.perf_counter() - t0
        if i == 0:
            cold = dt
        else:
            times.append(dt)
    warm = statistics.median(times)
    return cold, warm, times


def time_sequential(spec, task, repeats):
    def once():
        for r in spec.runs():
            opt = training.OptimizerSpec("adam", schedule=r["schedule"])
            training.train(task, budget=r["budget"], optimizer=opt,
                           seed=r["seed"], peak_lr=r["peak_lr"], num_evals=spec.num_evals)

    t0 = time.perf_counter()
    once()
    cold = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return cold, statistics.median(times), times


def child(args):
    """Runs in a subprocess (N emulated devices, maybe one of several processes): prints JSON."""
    if args.workdir:
        launch.initialize()
    task = training.preset(data.load("mnist1d"), args.model)
    spec = grid_spec(args)
    cold, warm, times = time_engine(spec, task, args.repeats, args.workdir)
    if jax.process_index() == 0:
        print(json.dumps({"devices": len(jax.devices()), "processes": jax.process_count(),
                          "cold": cold, "warm": warm, "warm_all": times}))


def _child_cmd(args):
    return [sys.executable, __file__, "--child", "--model", args.model, "--steps",
            str(args.steps), "--schedules", args.schedules, "--lrs", args.lrs, "--seeds",
            args.seeds, "--repeats", str(args.repeats)]


def processes_row(args, n, k):
    """The engine in ``n`` processes of ``k`` CPU devices (localhost coordinator, gloo)."""
    port = launch._free_port()
    with tempfile.TemporaryDirectory() as work:
        procs = []
        for i in range(n):
            env = dict(os.environ, JAX_PLATFORMS="cpu", BUDGETAX_COORDINATOR=f"127.0.0.1:{port}",
                       BUDGETAX_NUM_PROCESSES=str(n), BUDGETAX_PROCESS_ID=str(i),
                       XLA_FLAGS=f"--xla_force_host_platform_device_count={k}")
            procs.append(subprocess.Popen(_child_cmd(args) + ["--workdir", work], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True))
        outs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"a benchmark process failed: {[p.returncode for p in procs]}")
    r = json.loads(outs[0].strip().splitlines()[-1])
    return {"mode": f"engine, {n} processes x {k} device(s)", "devices": r["devices"],
            "processes": n, "cold_s": r["cold"], "warm_s": r["warm"], "warm_all_s": r["warm_all"]}


def baseline_rows(args, tree):
    """The same grid measured by this script as it was in an older checkout ``tree``."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=tree)
        cmd = [sys.executable, os.path.join(tree, "benchmarks", "sweep_throughput.py"),
               "--model", args.model, "--steps", str(args.steps), "--schedules", args.schedules,
               "--lrs", args.lrs, "--seeds", args.seeds, "--repeats", str(args.repeats),
               "--devices", "", "--out", out]
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=tree)
        name = "sweep_throughput" if args.model == "mlp" else f"sweep_throughput_{args.model}"
        with open(os.path.join(out, f"{name}.json")) as f:
            rows = json.load(f)["results"]
    for r in rows:
        r["mode"] = f"before: {r['mode']}"
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mlp")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--schedules", default="linear,rex,cosine,constant")
    p.add_argument("--lrs", default="3e-3,1e-2")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--devices", default="2,4", help="emulated device counts to also measure")
    p.add_argument("--processes", default="1x2,2x1",
                   help="NxK: also measure N processes of K CPU devices each (comma-separated)")
    p.add_argument("--baseline-tree", default=None,
                   help="a checkout of an earlier version: measure its engine and sequential "
                        "runs on the same grid in the same run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    spec = grid_spec(args)
    n_runs = len(spec.runs())
    run_steps = n_runs * args.steps
    task = training.preset(data.load("mnist1d"), args.model)
    dev = jax.devices()[0]
    meta = {"device": f"{dev.platform}: {dev.device_kind}", "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_before": os.getloadavg()}
    print(f"{n_runs} runs x {args.steps} steps ({args.model}); sequential ...", flush=True)
    s_cold, s_warm, s_all = time_sequential(spec, task, args.repeats)
    print(f"  sequential: cold {s_cold:.1f}s warm {s_warm:.1f}s; engine, 1 device ...",
          flush=True)
    e_cold, e_warm, e_all = time_engine(spec, task, args.repeats)
    rows = [{"mode": "sequential train()", "devices": 1, "cold_s": s_cold, "warm_s": s_warm,
             "warm_all_s": s_all},
            {"mode": "engine", "devices": 1, "cold_s": e_cold, "warm_s": e_warm,
             "warm_all_s": e_all}]
    for n in [int(v) for v in args.devices.split(",") if v.strip()]:
        print(f"  engine, {n} emulated devices ...", flush=True)
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        out = subprocess.run(_child_cmd(args), env=env, capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"mode": "engine (emulated devices)", "devices": r["devices"],
                     "cold_s": r["cold"], "warm_s": r["warm"], "warm_all_s": r["warm_all"]})
    for spec_nk in [v for v in args.processes.split(",") if v.strip()]:
        n, k = (int(v) for v in spec_nk.lower().split("x"))
        print(f"  engine, {n} processes x {k} devices ...", flush=True)
        rows.append(processes_row(args, n, k))
    if args.baseline_tree:
        print(f"  before: {args.baseline_tree} ...", flush=True)
        rows.extend(baseline_rows(args, args.baseline_tree))
    for r in rows:
        r.setdefault("processes", 1)
        r["cold_run_steps_per_s"] = run_steps / r["cold_s"]
        r["warm_run_steps_per_s"] = run_steps / r["warm_s"]
        r["cold_speedup_vs_sequential"] = s_cold / r["cold_s"]
        r["warm_speedup_vs_sequential"] = s_warm / r["warm_s"]
    meta["loadavg_after"] = os.getloadavg()
    payload = {"meta": meta, "model": args.model, "steps": args.steps, "runs": n_runs,
               "grid": {"schedules": args.schedules, "lrs": args.lrs, "seeds": args.seeds},
               "command": "python benchmarks/sweep_throughput.py " + " ".join(
                   a for a in (argv if argv is not None else sys.argv[1:])),
               "results": rows}
    out = Path(args.out)
    name = "sweep_throughput" if args.model == "mlp" else f"sweep_throughput_{args.model}"
    atomic_write_json(out / f"{name}.json", payload)
    lines = [
        f"# Sweep throughput ({args.model}, {n_runs} runs x {args.steps} steps)", "",
        f"Command: `{payload['command'].strip()}`", "",
        f"Device: {meta['device']} ({meta['machine']}, {meta['cpu_count']} cores), jax "
        f"{meta['jax']}, {meta['date']}; load average before/after "
        f"{meta['loadavg_before'][0]:.2f} / {meta['loadavg_after'][0]:.2f}. Emulated devices "
        "share the same CPU cores: they exercise the sharded path, they add no compute.", "",
        "Grid: schedules " + args.schedules + ", peak lrs " + args.lrs + ", seeds " + args.seeds
        + "; Adam, MNIST-1D, batch 100, 4 evaluations with full-training-set diagnostics.", "",
        "| mode | processes | devices | cold s (compile incl.) | warm s (median) | "
        "warm run-steps/s | speed-up vs sequential, cold | speed-up vs sequential, warm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['processes']} | {r['devices']} | {r['cold_s']:.2f} | "
                     f"{r['warm_s']:.2f} | "
                     f"{r['warm_run_steps_per_s']:,.0f} | {r['cold_speedup_vs_sequential']:.2f}x"
                     f" | {r['warm_speedup_vs_sequential']:.2f}x |")
    lines += [""]
    atomic_write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
