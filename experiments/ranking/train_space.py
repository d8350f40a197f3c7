"""Trains the ranking search space (config.py) to its full budget and stores the curves.

Usage:
  python experiments/ranking/train_space.py [--budget 2400] [--out experiments/ranking/curves.npz]
      [--archs mlp-32,cnn-8x3] [--schedules constant,linear] [--seed 0]

Each (architecture, schedule) pair is one ``budgetax.training.train_many`` call that
vmaps the architecture's peak learning rates (one seed). Writes, atomically and after
every call (so an interrupted run keeps what it finished):

- ``curves.npz``: ``loss [N, budget]`` (per-step minibatch training loss),
  ``test_accuracy`` / ``test_loss [N, E]`` at ``eval_steps [E]`` (every 5% of the
  budget), ``final_test_accuracy [N]`` (the ground truth), ``arch``, ``model``,
  ``schedule``, ``peak_lr`` ``[N]``, ``budget``, ``steps_per_epoch``; float32.
- ``configs.json``: the full ``History.config`` of every run, the wall time of each
  call, the command and the device.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import config  # noqa: E402

from budgetax import data, training  # noqa: E402
from budgetax._io import atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def save_npz(path, **arrays):
    """``np.savez_compressed`` to a temp file in the same folder, then ``os.replace``."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def device_info():
    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind, "jax": jax.__version__,
            "machine": platform.machine(), "cpu_count": os.cpu_count()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=config.BUDGET)
    p.add_argument("--out", default=os.path.join(HERE, "curves.npz"))
    p.add_argument("--archs", default="", help="comma-separated arch names (default: all)")
    p.add_argument("--schedules", default=",".join(config.SCHEDULES))
    p.add_argument("--seed", type=int, default=config.SEED,
                   help="seed of every run (a second seed measures the ground truth's noise)")
    args = p.parse_args(argv)
    archs = [a for a in config.ARCHS
             if not args.archs or a[0] in args.archs.split(",")]
    scheds = [s for s in args.schedules.split(",") if s]
    ds = data.load(config.DATASET)
    rows, runs, calls = [], [], []
    t_start = time.perf_counter()
    n_calls = len(archs) * len(scheds)
    cmd = "python experiments/ranking/train_space.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    for name, model, kwargs, lrs in archs:
        for sched in scheds:
            spec = training.OptimizerSpec(config.OPTIMIZER, sched, peak_lr=lrs[0])
            t0 = time.perf_counter()
            hs = training.train_many(ds, seeds=[args.seed], peak_lrs=list(lrs), model=model,
                                     model_kwargs=kwargs, budget=args.budget,
                                     batch_size=config.BATCH_SIZE, optimizer=spec,
                                     num_evals=config.NUM_EVALS, diagnostics=False)
            dt = time.perf_counter() - t0
            calls.append({"arch": name, "schedule": sched, "runs": len(hs), "seconds": dt})
            for h, lr in zip(hs, lrs, strict=True):
                rows.append(dict(
                    loss=np.asarray(h.train["loss"], np.float32),
                    test_accuracy=np.asarray(h.eval["test_accuracy"], np.float32),
                    test_loss=np.asarray(h.eval["test_loss"], np.float32),
                    arch=name, model=model, schedule=sched, peak_lr=float(lr),
                    eval_steps=np.asarray(h.eval_steps)))
                runs.append(dict(h.config, arch=name, diverged=bool(h.diverged),
                                 diverged_step=h.diverged_step,
                                 final_test_accuracy=h.final["test_accuracy"]))
            accs = " ".join(f"{h.final['test_accuracy']:.3f}" for h in hs)
            print(f"[{len(calls)}/{n_calls}] {name:10s} {sched:8s} lrs {list(lrs)}: test acc "
                  f"{accs}  ({dt:.1f}s, total {time.perf_counter() - t_start:.0f}s)", flush=True)
            save_npz(
                args.out,
                loss=np.stack([r["loss"] for r in rows]),
                test_accuracy=np.stack([r["test_accuracy"] for r in rows]),
                test_loss=np.stack([r["test_loss"] for r in rows]),
                final_test_accuracy=np.array([r["test_accuracy"][-1] for r in rows], np.float32),
                eval_steps=rows[0]["eval_steps"].astype(np.int32),
                arch=np.array([r["arch"] for r in rows]),
                model=np.array([r["model"] for r in rows]),
                schedule=np.array([r["schedule"] for r in rows]),
                peak_lr=np.array([r["peak_lr"] for r in rows], np.float32),
                budget=np.int32(args.budget), steps_per_epoch=np.int32(config.STEPS_PER_EPOCH))
            meta = {"command": cmd.strip(), "device": device_info(),
                    "total_seconds": time.perf_counter() - t_start, "calls": calls,
                    "runs": runs}
            atomic_write_text(os.path.splitext(args.out)[0] + "_configs.json",
                              json.dumps(meta, indent=1, default=str))
    print(f"wrote {args.out} ({len(rows)} runs, {time.perf_counter() - t_start:.0f}s)")


if __name__ == "__main__":
    main()
