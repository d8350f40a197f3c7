r"""The sweep driver: budgets x schedules x peak learning rates x seeds of a task, resumable.

For each budget ``T`` (one compilation per budget), the training core
(:mod:`budgetax.training.core`) trains many runs together, each a pure function of
``(key, peak_lr, schedule_index)``, the run axis sharded over all devices; runs that
do not fit in memory are split into groups of at most ``max_runs_per_program``
(:mod:`budgetax.training.sweep.plan`). A group is advanced one segment (``budget /
num_evals`` steps) at a time and checkpointed with orbax every ``checkpoint_every``
segments (:mod:`budgetax.training.sweep.execute`). Results go to a SQLite store
(:class:`budgetax.training.sweep.store.Store`), one row per run, each group written in
one transaction. Re-running a sweep into the same directory resumes it: finished
groups are skipped, in-flight ones continue from their checkpoint, and the stored
runs equal those of an uninterrupted sweep (the grouping is fixed when the sweep is
planned and every step is deterministic). A directory holding another spec or another
task is refused, except a spec that only lacks some of the given budgets, schedules,
lrs or seeds: the sweep is then extended, and only the missing runs are trained
(:mod:`budgetax.training.sweep.resume`).

``spec.strategy`` chooses how the runs are trained (grid, branched decays, successive
halving: :mod:`budgetax.training.sweep.strategies`); ``auto_lrs`` widens the lr grid
past its edges.

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
import os
import shutil
import time

import jax

from budgetax import _validate
from budgetax.training import core
from budgetax.training.hosts import check_devices
from budgetax.training.sweep import execute, law
from budgetax.training.sweep import resume as resume_
from budgetax.training.sweep.checkpoints import CHECKPOINT_DIR
from budgetax.training.sweep.lock import LOCK_NAME, SweepBusyError, exclusive
from budgetax.training.sweep.plan import Plan, runs_per_program, steps_to_train
from budgetax.training.sweep.progress import Progress
from budgetax.training.sweep.selection import default_select, lr_extension
from budgetax.training.sweep.spec import SweepSpec, SweepSpecMismatchError  # noqa: F401
from budgetax.training.sweep.store import STORE_NAME, Store
from budgetax.training.train import as_task

__all__ = ["LOCK_NAME", "SweepBusyError", "SweepResult", "sweep"]

@dataclasses.dataclass
class SweepResult:
    """What :func:`sweep` returns: the directory, the spec and every run's row from the store.

    ``compiled_budgets``: how many budgets this call trained runs of (0: nothing was
    left to train); their programs share compilations (one per shape, whatever the
    budget). ``metrics``: ``{"train": per-step names, "eval": per-evaluation names}``
    of the task.
    """

    out_dir: str
    spec: SweepSpec
    runs: list[dict]
    groups: list[dict]
    compiled_budgets: int
    seconds: float
    metrics: dict = dataclasses.field(default_factory=dict)


def sweep(task, spec: SweepSpec, out_dir: str, *, resume: bool = True, overwrite: bool = False,
          max_runs_per_program: int | None = None, checkpoint_every: int = 1,
          devices=None, progress: bool = True, auto_lrs: int = 0) -> SweepResult:
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
      auto_lrs: at most this many peak lrs added past the grid's edges: while some
        (budget, schedule)'s best lr (by the final training loss, or without
        diagnostics the last epoch's mean minibatch loss:
        :func:`~budgetax.training.sweep.selection.default_select`) is the smallest
        or largest of the grid, the
        grid is extended by one geometric step on that side and only the new runs
        are trained (the stored ones are kept). 0 (the default): the grid as given.

    A directory holding a sweep of the same task whose spec has a subset of
    ``spec``'s budgets, schedules, lrs and seeds (and nothing else changed) is
    *extended*: only the missing runs are trained, from scratch.

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
        max_runs_per_program = _validate.positive_int("max_runs_per_program", max_runs_per_program)
    checkpoint_every = _validate.nonnegative_int("checkpoint_every", checkpoint_every)
    auto_lrs = _validate.nonnegative_int("auto_lrs", auto_lrs)
    t0 = time.perf_counter()
    kw = dict(max_runs_per_program=max_runs_per_program, checkpoint_every=checkpoint_every,
              devices=devices, progress=progress)
    added = 0
    if auto_lrs and resume and not overwrite:  # rerun of the same call: keep the added lrs
        extra = resume_.auto_added_lrs(spec, out_dir)
        spec = dataclasses.replace(spec, peak_lrs=tuple(sorted(spec.peak_lrs + extra)))
        added = len(extra)
    result = _sweep(task, spec, out_dir, resume=resume, overwrite=overwrite, **kw)
    select = default_select(result.metrics["eval"])
    while added < auto_lrs:
        new = lr_extension(result.runs, spec.peak_lrs, select, False)[:auto_lrs - added]
        if not new:
            break
        spec = dataclasses.replace(spec, peak_lrs=tuple(sorted(spec.peak_lrs + tuple(new))))
        added += len(new)
        result = _sweep(task, spec, out_dir, resume=True, overwrite=False, **kw)
    result.seconds = time.perf_counter() - t0
    return result


def _sweep(task, spec, out_dir, *, resume, overwrite, max_runs_per_program, checkpoint_every,
           devices, progress) -> SweepResult:
    """One sweep of ``spec`` (:func:`sweep` without ``auto_lrs``; ``seconds`` is its caller's)."""
    progs = spec.programs(task)
    metric_names = {k: list(v) for k, v in next(iter(progs.values())).metric_names().items()}
    writer = jax.process_index() == 0
    devices = check_devices(devices)
    path = os.path.join(out_dir, STORE_NAME)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"out_dir {out_dir!r} is a file; give a directory")
    if os.path.exists(path) and not (overwrite or resume):
        raise FileExistsError(f"out_dir {out_dir!r} already holds a sweep "
                              f"({STORE_NAME}); resume it, or pass overwrite=True")
    os.makedirs(out_dir, exist_ok=True)
    with exclusive(out_dir, writer):
        mesh = core.make_mesh(devices)
        if writer:  # process 0 plans the sweep and writes the store; the others read it
            write = resume_.prepare(None if overwrite else path, task, spec, metric_names,
                                    max_runs_per_program,
                                    lambda: runs_per_program(progs.values(), devices), out_dir)
            if overwrite and os.path.exists(path):
                os.remove(path)
                shutil.rmtree(os.path.join(out_dir, CHECKPOINT_DIR), ignore_errors=True)
            if write is not None:
                with Store(path) as store:
                    write(store)
        core.barrier("budgetax-sweep-planned")
        with Store(path, readonly=not writer) as store:
            resume_.check(store, "spec", spec.to_dict(), out_dir)
            resume_.check(store, "task", task.identity(), out_dir)
            plan = Plan.from_dict(store.get_meta("plan"))
            finished = store.finished_groups()
            todo, trunks = execute.unfinished(plan, finished, out_dir, writer)
            bar = Progress(steps_to_train(spec, plan, todo, trunks), progress and writer,
                           listen=writer)
            ctx = execute.Context(spec, plan, progs, mesh, metric_names, bar, store, out_dir,
                                  writer, checkpoint_every, finished,
                                  execute.checkpoint_identity(spec, task.identity()))
            try:
                while True:
                    for item in [g for g in todo if g.kind != "branch"] + trunks:
                        execute.run(ctx, item)
                    if spec.strategy != "law":
                        break
                    if writer:  # the law's next step, planned from what is stored
                        law.advance(store, spec, ctx.plan)
                    core.barrier("budgetax-sweep-law")
                    ctx.plan = Plan.from_dict(store.get_meta("plan"))
                    ctx.finished = store.finished_groups()
                    todo, trunks = execute.unfinished(ctx.plan, ctx.finished, out_dir, writer)
                    if not todo:
                        break
                    bar.add(steps_to_train(spec, ctx.plan, todo, trunks))
            finally:
                bar.close()
                with contextlib.suppress(Exception):  # never mask why the sweep stopped
                    ctx.record_session()
            ckpt_root = os.path.join(out_dir, CHECKPOINT_DIR)
            if writer and os.path.isdir(ckpt_root) and not os.listdir(ckpt_root):
                os.rmdir(ckpt_root)
            core.barrier("budgetax-sweep-stored")
            rows, group_rows = store.runs(), store.groups()
    return SweepResult(out_dir=out_dir, spec=spec, runs=rows, groups=group_rows,
                       compiled_budgets=len(ctx.compiled), seconds=0.0,
                       metrics=metric_names)
