"""What a user waits for: ``budgetax --help``, and a small sweep run twice in a row.

Measured in one run, each command in a fresh process:

- ``budgetax --help`` (the light parser: no JAX import), against ``python -c "import jax"``;
- a small sweep (MNIST-1D MLP, 2 budgets x 2 schedules x 1 lr x 1 seed, 40 steps), first
  with an empty persistent compilation cache, then again with the cache the first run
  filled (a new output directory each time), and once with the cache off;
- a 20-step MNIST-1D CNN sweep (1 schedule, 1 lr, 1 seed, cache off) with the default
  full-training-set diagnostics and with ``--diagnostics 1000`` and ``none``;
- with ``--baseline-tree DIR`` (a checkout of an earlier version), ``--help`` and the CNN
  sweep of that version, in the same run.

Usage: python benchmarks/cli_startup.py [--repeats 3] [--baseline-tree DIR]
Writes benchmarks/results/cli_startup.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from budgetax._io import atomic_write_json, atomic_write_text

SWEEP = ["sweep", "--full-budget", "40", "--budgets", "0.5,1", "--schedules", "linear,wsd",
         "--lrs", "0.01", "--seeds", "0", "--no-progress", "--no-plots"]
CNN = ["sweep", "--model", "cnn1d", "--full-budget", "20", "--budgets", "1", "--schedules",
       "linear", "--lrs", "0.01", "--seeds", "0", "--no-progress", "--no-plots"]


def timed(cmd, env=None, cwd=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=cwd)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--baseline-tree", default=None,
                   help="a checkout of an earlier budgetax to time the same commands with")
    args = p.parse_args(argv)
    cli = [sys.executable, "-m", "budgetax.cli"]
    rows = {"help": [], "import_jax": [], "sweep_cold_cache": [], "sweep_warm_cache": [],
            "sweep_cache_off": [], "cnn20_full": [], "cnn20_1000": [], "cnn20_none": []}
    env = dict(os.environ, BUDGETAX_COMPILE_CACHE="off")
    old_env = None
    if args.baseline_tree:
        rows.update(help_before=[], cnn20_before=[])
        old_env = dict(env, PYTHONPATH=os.path.abspath(args.baseline_tree))
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            for name, extra in (("cnn20_full", []), ("cnn20_1000", ["--diagnostics", "1000"]),
                                ("cnn20_none", ["--diagnostics", "none"])):
                rows[name].append(timed(cli + CNN + extra + ["--out", os.path.join(d, name)],
                                        env))
            if old_env is not None:  # run from the old tree: `-m` puts the cwd first
                old = os.path.abspath(args.baseline_tree)
                rows["help_before"].append(timed(cli + ["--help"], old_env, old))
                rows["cnn20_before"].append(timed(
                    cli + CNN + ["--out", os.path.join(d, "before")], old_env, old))
        rows["help"].append(timed(cli + ["--help"]))
        rows["import_jax"].append(timed([sys.executable, "-c", "import jax"]))
        with tempfile.TemporaryDirectory() as d:
            cache = os.path.join(d, "cache")
            run = lambda name, c: cli + SWEEP + ["--out", os.path.join(d, name),
                                                 "--compile-cache", c]
            rows["sweep_cold_cache"].append(timed(run("a", cache)))
            rows["sweep_warm_cache"].append(timed(run("b", cache)))
            rows["sweep_cache_off"].append(timed(run("c", "off")))
    med = {k: statistics.median(v) for k, v in rows.items()}
    meta = {"machine": platform.machine(), "cpu_count": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg": os.getloadavg()}
    payload = {"meta": meta, "command": "python benchmarks/cli_startup.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "seconds": rows, "median": med,
        "ratios": {"help_vs_import_jax": med["help"] / med["import_jax"],
                   "cnn20_none_vs_full": med["cnn20_none"] / med["cnn20_full"],
                   **({"help_vs_before": med["help"] / med["help_before"],
                       "cnn20_full_vs_before": med["cnn20_full"] / med["cnn20_before"],
                       "cnn20_none_vs_before": med["cnn20_none"] / med["cnn20_before"]}
                      if args.baseline_tree else {}),
                   "warm_cache_vs_cold_cache": med["sweep_warm_cache"] / med["sweep_cold_cache"],
                   "warm_cache_vs_cache_off": med["sweep_warm_cache"] / med["sweep_cache_off"]}}
    out = Path(args.out)
    atomic_write_json(out / "cli_startup.json", payload)
    r = payload["ratios"]
    lines = [
        "# CLI start-up and compilation cache", "",
        f"Command: `{payload['command'].strip()}`; {meta['machine']}, {meta['cpu_count']} "
        f"cores, {meta['date']}, load average {meta['loadavg'][0]:.2f}; medians of "
        f"{args.repeats}, each command a fresh process.", "",
        "| what | median s |", "|---|---|",
        f"| `budgetax --help` | {med['help']:.2f} |",
        f"| `python -c 'import jax'` | {med['import_jax']:.2f} |",
        f"| small sweep, empty compilation cache | {med['sweep_cold_cache']:.2f} |",
        f"| the same sweep again, cache filled by the first | {med['sweep_warm_cache']:.2f} |",
        f"| the same sweep, cache off | {med['sweep_cache_off']:.2f} |",
        f"| 20-step CNN sweep, full-training-set diagnostics (default) | "
        f"{med['cnn20_full']:.2f} |",
        f"| 20-step CNN sweep, `--diagnostics 1000` | {med['cnn20_1000']:.2f} |",
        f"| 20-step CNN sweep, `--diagnostics none` | {med['cnn20_none']:.2f} |",
        *([f"| before (`{args.baseline_tree}`): `budgetax --help` | "
           f"{med['help_before']:.2f} |",
           f"| before: 20-step CNN sweep | {med['cnn20_before']:.2f} |"]
          if args.baseline_tree else []), "",
        f"`--help` takes {r['help_vs_import_jax']:.2f}x the time of importing JAX alone; the "
        f"second sweep takes {r['warm_cache_vs_cold_cache']:.2f}x the first "
        f"({r['warm_cache_vs_cache_off']:.2f}x a run with the cache off). The 20-step CNN "
        f"sweep without diagnostics takes {r['cnn20_none_vs_full']:.2f}x the one with them"
        + (f"; against the earlier version, `--help` takes {r['help_vs_before']:.2f}x and the "
           f"CNN sweep {r['cnn20_full_vs_before']:.2f}x ({r['cnn20_none_vs_before']:.2f}x "
           f"without diagnostics)." if args.baseline_tree else "."), ""]
    atomic_write_text(out / "cli_startup.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
