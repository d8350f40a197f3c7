r"""The sweep driver: budgets x schedules x peak learning rates x seeds of a task, resumable.

For each budget ``T`` (one compilation per budget), the training core
(:mod:`budgetax.training.core`) trains many runs together: each run is a pure
function of ``(key, peak_lr, schedule_index)``, the schedule picked per run by a
``lax.switch`` over the sweep's profiles, the run axis sharded over all devices.
When the runs of a budget do not fit in memory they are split into groups of at
most ``max_runs_per_program`` runs (all groups of a budget share one shape).

The host advances a group one segment (``budget / num_evals`` steps) at a time
and checkpoints its in-flight state with orbax every ``checkpoint_every``
segments. Results go to a SQLite store (:class:`budgetax.training.sweep.store.Store`),
one row per run, each group written in one transaction. Re-running a sweep into
the same directory resumes it: finished groups are skipped, in-flight ones
continue from their checkpoint, and the stored runs equal those of an
uninterrupted sweep (the grouping is fixed when the sweep is planned and every
step is deterministic). A directory holding another spec or another task is refused.

Multi-host (several processes, e.g. a TPU pod slice or GPUs on several
machines): call ``jax.distributed.initialize()`` first in every process, then run
the same sweep with the same output directory on a shared file system. The mesh
spans ``jax.devices()`` (all processes' devices); inputs are built shard by shard
with ``jax.make_array_from_callback``, results are gathered with
``multihost_utils.process_allgather``, and only process 0 writes the store and the
checkpoints.

Example:
  >>> from budgetax import training
  >>> spec = training.SweepSpec(full_budget=200, budgets=(0.5, 1.0), schedules=("linear", "rex"),
  ...                           peak_lrs=(1e-2,), seeds=(0,))
  >>> task = training.preset("mnist1d", "mlp")                          # doctest: +SKIP
  >>> result = training.sweep(task, spec, "/tmp/sweep-doctest", progress=False)  # doctest: +SKIP
  >>> len(result.runs)                                                  # doctest: +SKIP
  4

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
  Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import socket
import time

import jax
import numpy as np

from budgetax import _validate
from budgetax.training import core
from budgetax.training.sweep.checkpoints import CHECKPOINT_DIR, Checkpoints
from budgetax.training.sweep.progress import Progress
from budgetax.training.sweep.spec import SweepSpec, SweepSpecMismatchError, plan_groups
from budgetax.training.sweep.store import STORE_NAME, Store, encode_curves
from budgetax.training.train import as_task

__all__ = ["LOCK_NAME", "SweepBusyError", "SweepResult", "sweep"]

LOCK_NAME = ".budgetax-sweep.lock"


class SweepBusyError(RuntimeError):
    """Another process is running a sweep in the same output directory."""


@contextlib.contextmanager
def _exclusive(out_dir: str, writer: bool):
    """An exclusive lock on ``out_dir`` while the sweep runs (process 0 only).

    ``flock`` is released by the operating system when its process dies, so the
    lock a killed sweep leaves behind never blocks the next one.
    """
    if not writer:
        yield
        return
    path = os.path.join(out_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown process"
            raise SweepBusyError(f"out_dir {out_dir!r} is in use by another sweep ({holder}); "
                                 f"wait for it to finish, or use another output directory"
                                 ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclasses.dataclass
class SweepResult:
    """What :func:`sweep` returns: the directory, the spec and every run's row from the store.

    ``metrics``: ``{"train": per-step names, "eval": per-evaluation names}`` of the task.
    """

    out_dir: str
    spec: SweepSpec
    runs: list[dict]
    groups: list[dict]
    compiled_budgets: int
    seconds: float
    metrics: dict = dataclasses.field(default_factory=dict)


def _best(eval_hist: dict) -> dict:
    """The best value of each evaluation metric over the run's evaluations."""
    best = {}
    for k, v in eval_hist.items():
        v = np.asarray(v, np.float64)
        if not np.isfinite(v).any():
            continue
        if k.endswith("accuracy"):
            best[k] = float(np.nanmax(v))
            best[f"{k}_eval"] = int(np.nanargmax(v))
        elif k.endswith("loss"):
            best[k] = float(np.nanmin(v))
    return best


def memory_limited_runs(prog: core.Program, devices, fraction=0.5) -> int | None:
    """How many runs fit in ``fraction`` of the devices' memory, or None when it is not known.

    A run needs its carried state (parameters, optimizer state, batch-norm
    statistics, epoch permutation), counted 4 times (the donated input, the
    output, gradients and updates of the same size, the frozen copy kept for
    divergence masking). Activations of small models are ignored. CPU devices
    report no memory limit: host memory is not split.
    """
    limits = []
    for d in devices:  # the devices of this process (the others' are alike)
        if getattr(d, "process_index", 0) != jax.process_index():
            continue
        stats = d.memory_stats() if hasattr(d, "memory_stats") else None
        if not stats or "bytes_limit" not in stats:
            return None
        limits.append(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    if not limits:
        return None
    per_run = 4 * core.carry_bytes_per_run(prog)
    return max(1, int(fraction * min(limits) // max(per_run, 1)) * len(devices))


def _run_group(prog, group, group_size, runs, mesh, ckpt, checkpoint_every, progress,
               metric_names):
    """Trains one group to the end and returns its results (rows) and timing."""
    choices = [name for name, _ in prog.choices]
    mine = [runs[i] for i in group["run_idx"]]
    group_runs = core.Runs(prog, mesh, [r["seed"] for r in mine], [r["peak_lr"] for r in mine],
                           [choices.index(r["schedule"]) for r in mine], pad_to=group_size)
    train_names, eval_names = metric_names["train"], metric_names["eval"]
    real, lengths, starts = group_runs.real, group_runs.lengths, group_runs.starts
    carry_like = jax.tree.leaves(group_runs.abstract_carry())

    def target(step, metadata):
        """The abstract, run-sharded tree of checkpoint ``step`` (None if it does not fit)."""
        if jax.tree.leaves(metadata["carry"])[0].shape[0] != group_runs.padded:
            return None  # planned for another device count: start the group again
        sds = group_runs.sharded_like
        done = int(starts[step]) if step < len(starts) else prog.budget
        return {"carry": {f"{i:05d}": sds(a.shape, a.dtype) for i, a in enumerate(carry_like)},
                "train": {k: sds((group_runs.padded, done), np.float32) for k in train_names},
                "eval": {k: sds((group_runs.padded, step), np.float32) for k in eval_names}}

    restored = ckpt.latest(target)
    if restored is not None:
        start_seg, tree = restored
        carry = jax.tree.unflatten(jax.tree.structure(group_runs.abstract_carry()),
                                   [tree["carry"][f"{i:05d}"] for i in range(len(carry_like))])
        hist = core.to_host({k: tree[k] for k in ("train", "eval")})
        train_hist = {k: [hist["train"][k][:real]] for k in train_names}
        eval_hist = {k: [hist["eval"][k][:real]] for k in eval_names}
    else:
        start_seg, carry = 0, None
        train_hist = {k: [] for k in train_names}
        eval_hist = {k: [] for k in eval_names}
    budget = prog.budget
    steps_done = int(starts[start_seg]) if start_seg < len(starts) else budget
    if progress is not None:
        progress.advance(real * steps_done)
    t_start = time.perf_counter()
    for seg, state, tm, ev in group_runs.segments(carry, start_seg):
        carry = state
        for k in train_names:
            train_hist[k].append(tm[k])
        for k in eval_names:
            eval_hist[k].append(ev[k][:, None])
        if progress is not None:
            progress.advance(real * int(lengths[seg]))
        done = seg + 1
        if done < len(lengths) and done % checkpoint_every == 0:
            to_runs = group_runs.to_runs
            ckpt.save(done, {
                "carry": {f"{i:05d}": a for i, a in enumerate(jax.tree.leaves(carry))},
                "train": {k: to_runs(np.concatenate(train_hist[k], axis=1))
                          for k in train_names},
                "eval": {k: to_runs(np.concatenate(eval_hist[k], axis=1)) for k in eval_names}})
    seconds = time.perf_counter() - t_start
    dstep = core.to_host(carry.diverged_step)
    train_all = {k: np.concatenate(v, axis=1) for k, v in train_hist.items()}
    eval_all = {k: np.concatenate(v, axis=1) for k, v in eval_hist.items()}
    steps = [int(s) for s in core.eval_steps(budget, prog.num_evals)]
    results = []
    for j, r in enumerate(mine):
        ev = {k: [float(x) for x in eval_all[k][j]] for k in eval_names}
        diverged = int(dstep[j]) >= 0
        results.append({
            "run_id": r["run_id"],
            "status": "diverged" if diverged else "done",
            "diverged_step": int(dstep[j]) if diverged else None,
            "final": {k: v[-1] for k, v in ev.items()},
            "best": _best(ev),
            "eval_steps": steps,
            "eval_history": ev,
            "curves": encode_curves({k: train_all[k][j] for k in train_names}, train_names),
        })
    timing = {"budget": budget, "runs": real, "padded_runs": group_runs.padded,
              "devices": mesh.devices.size, "seconds": seconds,
              "run_steps_per_second": real * (budget - steps_done) / max(seconds, 1e-9),
              "resumed": restored is not None}
    return results, timing


def _check_meta(store: Store, key: str, given: dict, out_dir: str):
    stored = store.get_meta(key)
    if stored == given:
        return
    stored = stored or {}
    diffs = [f"{k}: stored {stored.get(k)!r}, given {given.get(k)!r}"
             for k in sorted(set(stored) | set(given)) if stored.get(k) != given.get(k)]
    raise SweepSpecMismatchError(
        f"out_dir {out_dir!r} holds a sweep with a different {key} ({'; '.join(diffs)}); "
        f"resume it with the same arguments, or use another output directory")


def sweep(task, spec: SweepSpec, out_dir: str, *, resume: bool = True, overwrite: bool = False,
          max_runs_per_program: int | None = None, checkpoint_every: int = 1,
          devices=None, progress: bool = True) -> SweepResult:
    """Runs (or resumes) the sweep ``spec`` of ``task`` into ``out_dir`` and returns its results.

    Args:
      task: a :class:`budgetax.training.Task` (or a built-in dataset name, trained
        with the MLP preset; see :func:`budgetax.training.preset`).
      spec: a :class:`SweepSpec`.
      out_dir: the sweep directory (``results.sqlite``, ``checkpoints/``; created if missing).
      resume: continue the sweep stored in ``out_dir`` (the default). With
        ``resume=False`` an existing store is an error unless ``overwrite``.
      overwrite: delete an existing store and checkpoints first.
      max_runs_per_program: at most this many runs share one compiled program (for
        memory). Default: all runs of a budget, or on devices that report their
        memory (GPU, TPU) as many as fit in half of it (an estimate from the
        size of a run's state). Fixed when the sweep is planned.
      checkpoint_every: checkpoint in-flight groups every this many segments
        (``num_evals`` segments per budget); 0 disables checkpoints.
      devices: the devices to shard the runs over (default: ``jax.devices()``).
      progress: show a progress display on stderr.

    Returns:
      A :class:`SweepResult` with every run's row (``status``: ``done`` or ``diverged``).

    Raises:
      SweepSpecMismatchError: ``out_dir`` holds a sweep with another spec or task.
      ValueError / TypeError: bad arguments, naming the argument and its value.
    """
    task = as_task(task)
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"spec must be a SweepSpec, got {spec!r}")
    if not isinstance(out_dir, str | os.PathLike):
        raise TypeError(f"out_dir must be a path, got {out_dir!r}")
    out_dir = os.fspath(out_dir)
    _validate.boolean("resume", resume)
    _validate.boolean("overwrite", overwrite)
    _validate.boolean("progress", progress)
    if max_runs_per_program is not None:
        max_runs_per_program = _validate.positive_int("max_runs_per_program",
                                                      max_runs_per_program)
    checkpoint_every = _validate.nonnegative_int("checkpoint_every", checkpoint_every)
    t0 = time.perf_counter()
    budgets = spec.budget_steps()
    # eager validation of the whole spec against the task (batch size, warmup per budget, ...)
    progs = {steps: core.make_program(task, steps, spec.optimizer, schedules=spec.schedules,
                                      batch_size=spec.batch_size, num_evals=spec.num_evals,
                                      eval_batch_size=spec.eval_batch_size,
                                      diagnostics=spec.diagnostics,
                                      divergence_factor=spec.divergence_factor)
             for steps in budgets}
    metric_names = {k: list(v) for k, v in progs[budgets[0]].metric_names().items()}
    writer = jax.process_index() == 0
    path = os.path.join(out_dir, STORE_NAME)
    if os.path.exists(path) and not (overwrite or resume):
        raise FileExistsError(f"out_dir {out_dir!r} already holds a sweep "
                              f"({STORE_NAME}); resume it, or pass overwrite=True")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"out_dir {out_dir!r} is a file; give a directory")
    os.makedirs(out_dir, exist_ok=True)
    with _exclusive(out_dir, writer):
        if overwrite and writer and os.path.exists(path):
            os.remove(path)
            shutil.rmtree(os.path.join(out_dir, CHECKPOINT_DIR), ignore_errors=True)
        runs = spec.runs()
        spec_dict = spec.to_dict()
        devices = list(jax.devices() if devices is None else devices)
        mesh = core.make_mesh(devices)
        if writer:  # process 0 plans the sweep and writes the store; the others read it
            with Store(path) as store:
                if store.get_meta("plan") is None:
                    if max_runs_per_program is None:
                        fits = [memory_limited_runs(progs[s], devices) for s in budgets]
                        fits = [f for f in fits if f is not None]
                        max_runs_per_program = min(fits) if fits else None
                    groups = plan_groups(spec, max_runs_per_program)
                    rows = sorted((dict(runs[i], idx=i, group_id=g["group_id"])
                                   for g in groups for i in g["run_idx"]),
                                  key=lambda r: r["idx"])
                    store.initialise({
                        "spec": spec_dict, "task": task.identity(), "metrics": metric_names,
                        "table_metric": list(task.table_metric(spec.diagnostics)),
                        "plan": {"groups": groups, "steps_per_epoch": max(
                            1, task.num_train // spec.batch_size)}}, rows)
        core.barrier("budgetax-sweep-planned")
        with Store(path, readonly=not writer) as store:
            _check_meta(store, "spec", spec_dict, out_dir)
            _check_meta(store, "task", task.identity(), out_dir)
            groups = store.get_meta("plan")["groups"]
            finished = store.finished_groups()
            for g in groups:  # checkpoints of groups stored just before a kill: not needed
                if g["group_id"] in finished:
                    Checkpoints(out_dir, g["group_id"], writer).remove()
            todo = [g for g in groups if g["group_id"] not in finished]
            bar = Progress(sum(len(g["run_idx"]) * g["budget"] for g in todo),
                           progress and writer)
            compiled = set()
            try:
                for g in todo:
                    steps = g["budget"]
                    bar.describe(f"budget {g['budget_fraction']:.0%} ({steps} steps), "
                                 f"{len(g['run_idx'])} runs")
                    ckpt = Checkpoints(out_dir, g["group_id"], writer)
                    size = max(len(h["run_idx"]) for h in groups if h["budget"] == steps)
                    results, timing = _run_group(
                        progs[steps], g, size, runs, mesh, ckpt,
                        checkpoint_every if checkpoint_every > 0 else 10**9, bar, metric_names)
                    compiled.add(steps)
                    if writer:
                        store.complete_group(g["group_id"], results, timing)
                    ckpt.remove()
                    n_div = sum(r["status"] == "diverged" for r in results)
                    bar.line(f"budget {g['budget_fraction']:>5.0%} ({steps:>6} steps) "
                             f"{len(results):>4} runs, {timing['run_steps_per_second']:,.0f} "
                             f"run-steps/s on {timing['devices']} device(s)"
                             + (f" in {jax.process_count()} processes"
                                if jax.process_count() > 1 else "")
                             + f", {timing['seconds']:.1f}s"
                             + (f", {n_div} diverged" if n_div else "")
                             + (" (resumed)" if timing["resumed"] else ""))
            finally:
                bar.close()
            ckpt_root = os.path.join(out_dir, CHECKPOINT_DIR)
            if writer and os.path.isdir(ckpt_root) and not os.listdir(ckpt_root):
                os.rmdir(ckpt_root)
            core.barrier("budgetax-sweep-stored")
            rows = store.runs()
            group_rows = store.groups()
    return SweepResult(out_dir=out_dir, spec=spec, runs=rows, groups=group_rows,
                       compiled_budgets=len(compiled), seconds=time.perf_counter() - t0,
                       metrics=metric_names)
