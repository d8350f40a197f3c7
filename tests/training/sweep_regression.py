"""The sweeps of the regression net: every strategy, an extended sweep and ``auto_lrs``.

:func:`record` trains them (small: the toy regression task, 10 and 20 steps) and
returns what they stored: every column of the ``runs`` table (the training curves
as their SHA-256), every ``meta`` entry as stored, and the ``groups`` table without
its wall-clock columns. ``tests/training/test_sweep_regression.py`` compares a new
recording with the one checked in at :data:`FIXTURE`.

Recording it again (only when a change of results is intended, in the suite's XLA flags):

    python -m tests.training.sweep_regression
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "sweep_regression.json")

# every strategy trains the same runs: a schedule that branches from its start
# (constant), one that branches before its decay (wsd) and one that never branches; the
# largest lr diverges
BASE = dict(full_budget=20, budgets=(0.5, 1.0), schedules=("wsd", "constant", "linear"),
            peak_lrs=(0.03, 0.1, 1e3), seeds=(0, 1), batch_size=20, num_evals=2,
            eval_batch_size=100, diagnostics=True)
STRATEGIES = ("grid", "branch", "halving", "branch+halving")
GROUP_COLUMNS = ("group_id", "budget", "runs", "padded_runs", "resumed", "steps")


def environment() -> dict:
    """What the last bits of a result depend on besides the code: the exact comparison
    applies where this equals the recording's."""
    import jax
    import jaxlib

    flags = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "machine": platform.machine(), "devices": jax.device_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "isa": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl"})}


def _exact(column, value):
    """A column's value as JSON that keeps every bit: reals as ``float.hex``, the curves'
    bytes as their SHA-256 (the JSON columns are stored as text already)."""
    if column == "curves":
        return None if value is None else "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, float):
        return value.hex()
    return value


def tables(result) -> dict:
    """The stored tables of a sweep, JSON-friendly, without anything time-dependent."""
    from budgetax.training.sweep.store import RUN_COLUMNS, Store

    with Store(os.path.join(result.out_dir, "results.sqlite"), readonly=True) as store:
        runs = [[_exact(c, v) for c, v in zip(RUN_COLUMNS, row, strict=True)]
                for row in store.dump()]
        meta = dict(store._conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall())
    groups = sorted(({k: g[k] for k in GROUP_COLUMNS} for g in result.groups),
                    key=lambda g: g["group_id"])
    return {"run_columns": list(RUN_COLUMNS), "runs": runs, "meta": meta, "groups": groups,
            "compiled_budgets": result.compiled_budgets}


def record(root: str) -> dict:
    """Trains the net's sweeps under ``root`` and returns their tables, by name."""
    from budgetax import training
    from tests import tasks

    task = tasks.make_task()
    out = {}

    def run(name, spec, out_dir=None, **kw):
        res = training.sweep(task, spec, os.path.join(root, out_dir or name), progress=False,
                             max_runs_per_program=6, **kw)
        out[name] = tables(res)

    # at most 6 runs a program: several groups (and trunks) per budget, and the programs
    # of one sweep serve the others (fewer compilations)
    for strategy in STRATEGIES:
        run(strategy, training.SweepSpec(strategy=strategy, **BASE))
    run("extended_before", training.SweepSpec(**dict(BASE, peak_lrs=(0.03, 0.1))), "extended")
    run("extended", training.SweepSpec(**BASE))
    # the best lr of every cell is the smallest of the grid: auto_lrs adds lrs below it
    run("auto_lrs", training.SweepSpec(**dict(BASE, peak_lrs=(0.1, 0.3))), auto_lrs=2)
    return out


def main() -> int:
    import tests.conftest  # noqa: F401 - the suite's XLA flags, before JAX starts

    with tempfile.TemporaryDirectory() as root:
        sweeps = record(root)
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w", encoding="utf-8") as f:
        json.dump({"environment": environment(), "sweeps": sweeps}, f, indent=1,
                  sort_keys=True)
        f.write("\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
