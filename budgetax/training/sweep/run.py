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
step is deterministic). A directory holding another spec or another task is refused,
except a spec that only lacks some of the given budgets, schedules, lrs or seeds:
the sweep is then extended, and only the missing runs are trained.

``spec.strategy`` chooses how the runs are trained
(:mod:`budgetax.training.sweep.strategies`): every run from scratch (``"grid"``),
one trunk per group of schedules whose learning rate does not depend on the budget
with each budget branched from it (``"branch"``), or successive halving over each
schedule's lrs (``"halving"``); ``auto_lrs`` widens the lr grid past its edges.

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
import math
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
from budgetax.training.sweep.selection import lr_extension
from budgetax.training.sweep.spec import (
    SweepSpec,
    SweepSpecMismatchError,
    grid_groups,
    plan_groups,
    plan_trunks,
)
from budgetax.training.sweep.store import STORE_NAME, Store, encode_curves
from budgetax.training.sweep.strategies import prune, score_curves
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
        done = int(starts[step]) if step < len(starts) else prog.budget
        return _hist_target(group_runs, carry_like, done, step, metric_names)

    restored = ckpt.latest(target)
    if restored is not None:
        start_seg, tree = restored
        carry = _restored_carry(group_runs, tree)
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
            ckpt.save(done, _hist_tree(
                group_runs, carry, {k: np.concatenate(v, axis=1) for k, v in train_hist.items()},
                {k: np.concatenate(v, axis=1) for k, v in eval_hist.items()}, metric_names))
    seconds = time.perf_counter() - t_start
    dstep = core.to_host(carry.diverged_step)
    train_all = {k: np.concatenate(v, axis=1) for k, v in train_hist.items()}
    eval_all = {k: np.concatenate(v, axis=1) for k, v in eval_hist.items()}
    results = _results(prog, mine, train_all, eval_all, dstep, metric_names)
    timing = {"budget": budget, "runs": real, "padded_runs": group_runs.padded,
              "devices": mesh.devices.size, "seconds": seconds,
              "run_steps_per_second": real * (budget - steps_done) / max(seconds, 1e-9),
              "resumed": restored is not None, "steps": real * budget}
    return results, timing


def _results(prog, mine, train_all, eval_all, dstep, metric_names, *, pruned=None):
    """The store rows of the runs ``mine`` from their host histories.

    ``train_all``: ``{name: [R, budget]}``; ``eval_all``: ``{name: [R, E]}``;
    ``dstep``: ``[>= R]`` diverged steps; ``pruned``: the step each run was
    pruned at (``None``: not pruned), for successive halving.
    """
    train_names, eval_names = metric_names["train"], metric_names["eval"]
    steps = [int(s) for s in core.eval_steps(prog.budget, prog.num_evals)]
    results = []
    for j, r in enumerate(mine):
        ev = {k: [float(x) for x in eval_all[k][j]] for k in eval_names}
        diverged = int(dstep[j]) >= 0
        stop = None if pruned is None else pruned[j]
        status = "diverged" if diverged else ("pruned" if stop is not None else "done")
        results.append({
            "run_id": r["run_id"],
            "status": status,
            "diverged_step": int(dstep[j]) if diverged else None,
            "pruned_step": None if diverged else stop,
            "final": {} if status == "pruned" else {k: v[-1] for k, v in ev.items()},
            "best": _best(ev),
            "eval_steps": steps,
            "eval_history": ev,
            "curves": encode_curves({k: train_all[k][j] for k in train_names}, train_names),
        })
    return results


def _leaves(carry) -> dict:
    """A carry's leaves keyed by their index (the checkpoint's ``carry`` entry)."""
    return {f"{i:05d}": a for i, a in enumerate(jax.tree.leaves(carry))}


def _restored_carry(group_runs, tree):
    """The carry of ``group_runs`` from a restored checkpoint tree."""
    leaves = tree["carry"]
    return jax.tree.unflatten(jax.tree.structure(group_runs.abstract_carry()),
                              [leaves[f"{i:05d}"] for i in range(len(leaves))])


def _hist_target(group_runs, carry_like, done_steps, n_evals, names):
    """The abstract checkpoint tree of a group, a trunk or a halving group at a stop."""
    sds = group_runs.sharded_like
    return {"carry": _leaves([sds(a.shape, a.dtype) for a in carry_like]),
            "train": {k: sds((group_runs.padded, done_steps), np.float32)
                      for k in names["train"]},
            # at least one column: orbax does not store empty arrays (the first is unused)
            "eval": {k: sds((group_runs.padded, max(n_evals, 1)), np.float32)
                     for k in names["eval"]}}


def _hist_tree(group_runs, carry, train, evals, names):
    to_runs = group_runs.to_runs
    return {"carry": _leaves(carry),
            "train": {k: to_runs(train[k]) for k in names["train"]},
            "eval": {k: to_runs(evals[k]) for k in names["eval"]}}


def _run_trunk(progs, trunk, branches, runs, mesh, ckpt, progress, metric_names, finished,
               complete):
    """Trains a trunk of branched runs and every unfinished branch; stores each branch group.

    The trunk (the longest budget's program) stops at each branch step and at the
    evaluation steps of the shorter budgets up to their branch steps; at a branch
    step it is checkpointed, then the branch's runs are copied out of it and
    trained to their budget on their own program. ``complete(group, results,
    timing)`` stores a branch group.
    """
    longest = trunk["budget"]
    prog = progs[longest]
    choices = [name for name, _ in prog.choices]
    cells = trunk["cells"]
    seeds = [c[2] for c in cells]
    lrs = [c[1] for c in cells]
    idx = [choices.index(c[0]) for c in cells]
    names = metric_names
    need_eval = sorted({int(e) for b in branches
                        for e in core.eval_steps(b["budget"], prog.num_evals)
                        if e <= b["branch_step"]})
    stops = sorted(set(need_eval) | {b["branch_step"] for b in branches})
    trunk_runs = core.Runs(prog, mesh, seeds, lrs, idx, stops=stops, evaluate=need_eval)
    real = trunk_runs.real
    carry_like = jax.tree.leaves(trunk_runs.abstract_carry())

    def target(step, metadata):
        if jax.tree.leaves(metadata["carry"])[0].shape[0] != trunk_runs.padded:
            return None
        end = stops[step - 1]
        return _hist_target(trunk_runs, carry_like, end,
                            sum(e <= end for e in need_eval), names)

    restored = ckpt.latest(target)
    train_parts = {k: [] for k in names["train"]}
    evals_at: dict = {}
    if restored is not None:
        start_seg, tree = restored
        carry = _restored_carry(trunk_runs, tree)
        hist = core.to_host({k: tree[k] for k in ("train", "eval")})
        for k in names["train"]:
            train_parts[k].append(hist["train"][k][:real])
        done_evals = [e for e in need_eval if e <= stops[start_seg - 1]]
        for j, e in enumerate(done_evals):
            evals_at[e] = {k: hist["eval"][k][:real, j] for k in names["eval"]}
    else:
        start_seg, carry = 0, None
    done_steps = stops[start_seg - 1] if start_seg else 0
    if progress is not None:
        progress.advance(real * done_steps)
    pending = [b for b in branches if b["group_id"] not in finished]
    last_stop = max(b["branch_step"] for b in pending)
    clock = {"t": time.perf_counter(), "prev_end": done_steps}

    def branch_at(end, seg, carry, train):
        """Checkpoints the trunk at ``end`` (segments ``..seg`` done), trains its branches."""
        here = [b for b in pending if b["branch_step"] == end]
        if not here:
            return
        if end < last_stop and seg + 1 != start_seg:  # the trunk goes on: keep its state
            done_ev = [e for e in need_eval if e <= end]
            ckpt.save(seg + 1, _hist_tree(
                trunk_runs, carry, train,
                {k: np.stack([evals_at[e][k] for e in done_ev], axis=1)
                 if done_ev else np.full((real, 1), np.nan, np.float32)
                 for k in names["eval"]}, names))
        # the trunk's steps since the previous branch step count for these branches
        trunk_seconds = time.perf_counter() - clock["t"]
        trunk_steps = real * (end - clock["prev_end"])
        for j, b in enumerate(here):
            results, timing = _run_branch(progs[b["budget"]], b, carry, train,
                                          evals_at, runs, mesh, progress, names)
            timing["seconds"] += trunk_seconds / len(here)
            timing["steps"] += trunk_steps // len(here) + (j < trunk_steps % len(here))
            timing["resumed"] = restored is not None
            complete(b, results, timing)
        clock["t"], clock["prev_end"] = time.perf_counter(), end

    if start_seg:  # resumed at a branch step: its branches first
        train = {k: np.concatenate(v, axis=1) for k, v in train_parts.items()}
        branch_at(done_steps, start_seg - 1, carry, train)
        if done_steps >= last_stop:
            return
    for seg, state, tm, ev in trunk_runs.segments(carry, start_seg):
        carry, end = state, stops[seg]
        for k in names["train"]:
            train_parts[k].append(tm[k])
        if ev:
            evals_at[end] = ev
        if progress is not None:
            progress.advance(real * int(trunk_runs.lengths[seg]))
        if any(b["branch_step"] == end for b in pending):
            train = {k: np.concatenate(v, axis=1) for k, v in train_parts.items()}
            train_parts = {k: [v] for k, v in train.items()}
            branch_at(end, seg, carry, train)
        if end >= last_stop:
            break


def _run_branch(prog, branch, carry, train, evals_at, runs, mesh, progress, names):
    """Trains one branch from the trunk's state at its branch step; its runs' results."""
    s, budget, rows = branch["branch_step"], prog.budget, branch["rows"]
    mine = [runs[i] for i in branch["run_idx"]]
    choices = [name for name, _ in prog.choices]
    t0 = time.perf_counter()
    evs = [int(e) for e in core.eval_steps(budget, prog.num_evals)]
    train_b = {k: [train[k][rows, :s]] for k in names["train"]}
    eval_b = {e: {k: v[rows] for k, v in evals_at[e].items()} for e in evs if e <= s}
    if s < budget:
        br = core.Runs(prog, mesh, [r["seed"] for r in mine], [r["peak_lr"] for r in mine],
                       [choices.index(r["schedule"]) for r in mine], start=s,
                       stops=[e for e in evs if e > s])
        sub = core.take_runs(carry, rows, mesh, br.padded)
        for seg, state, tm, ev in br.segments(sub):
            sub = state
            for k in names["train"]:
                train_b[k].append(tm[k])
            eval_b[int(br.starts[seg] + br.lengths[seg])] = ev
            if progress is not None:
                progress.advance(len(rows) * int(br.lengths[seg]))
        dstep = core.to_host(sub.diverged_step)
        padded = br.padded
    else:
        dstep = core.to_host(carry.diverged_step)[rows]
        padded = len(rows)
    train_all = {k: np.concatenate(v, axis=1) for k, v in train_b.items()}
    eval_all = {k: np.stack([eval_b[e][k] for e in evs], axis=1) for k in names["eval"]}
    results = _results(prog, mine, train_all, eval_all, dstep, names)
    seconds = time.perf_counter() - t0
    steps = len(rows) * (budget - s)
    timing = {"budget": budget, "runs": len(mine), "padded_runs": padded,
              "devices": mesh.devices.size, "seconds": seconds,
              "run_steps_per_second": steps / max(seconds, 1e-9), "resumed": False,
              "steps": steps}
    return results, timing


def halving_plan(spec: SweepSpec, budget: int, cells: list[tuple]) -> list[tuple[int, int]]:
    """``[(rung step, runs alive after it)]`` of successive halving on one group's runs.

    The number of survivors does not depend on the scores: each schedule keeps
    ``ceil(n / prune_rate)`` of its ``n`` lrs at every rung.
    """
    rungs = sorted({min(budget - 1, max(1, round(f * budget))) for f in spec.prune_at})
    rungs = [r for r in rungs if 0 < r < budget]
    per_cell: dict = {}
    for c in cells:
        per_cell[c] = per_cell.get(c, 0) + 1
    counts: dict = {}
    for (sched, _), n in per_cell.items():
        counts.setdefault(sched, []).append(n)
    out = []
    for r in rungs:
        for sched, ns in counts.items():
            counts[sched] = sorted(ns)[:math.ceil(len(ns) / spec.prune_rate)]
        out.append((r, sum(sum(ns) for ns in counts.values())))
    return out


def halving_steps(runs: int, plan, budget: int, upto: int) -> int:
    """Run-steps successive halving trains up to step ``upto`` (``plan``: :func:`halving_plan`)."""
    bounds = [0] + [r for r, _ in plan] + [budget]
    alive = [runs] + [n for _, n in plan]
    return sum(n * (min(b, upto) - a) for a, b, n in zip(bounds, bounds[1:], alive)
               if a < upto)


def _run_halving(prog, group, runs, mesh, ckpt, progress, metric_names, spec, steps_per_epoch):
    """Trains one group with successive halving over each schedule's peak lrs."""
    names = metric_names
    mine = [runs[i] for i in group["run_idx"]]
    choices = [name for name, _ in prog.choices]
    budget, R = prog.budget, len(mine)
    cells = [(r["schedule"], r["peak_lr"]) for r in mine]
    evs = [int(e) for e in core.eval_steps(budget, prog.num_evals)]
    plan = halving_plan(spec, budget, cells)
    rungs = [r for r, _ in plan]
    stops_all = sorted(set(evs) | set(rungs))
    train_all = {k: np.full((R, budget), np.nan, np.float32) for k in names["train"]}
    eval_all = {k: np.full((R, len(evs)), np.nan, np.float32) for k in names["eval"]}
    pruned = np.full((R,), -1, np.int32)
    dstep = np.full((R,), -1, np.int32)

    def runs_of(alive, start):
        sel = [mine[i] for i in alive]
        return core.Runs(prog, mesh, [r["seed"] for r in sel], [r["peak_lr"] for r in sel],
                         [choices.index(r["schedule"]) for r in sel], start=start,
                         stops=[x for x in stops_all if x > start], evaluate=evs)

    full = runs_of(list(range(R)), 0)

    def target(step, metadata):
        alive_n = plan[step - 1][1]
        sub = runs_of(list(range(alive_n)), rungs[step - 1])
        if (metadata["pruned"].shape[0] != full.padded
                or jax.tree.leaves(metadata["carry"])[0].shape[0] != sub.padded):
            return None
        like = jax.tree.leaves(sub.abstract_carry())
        sds = full.sharded_like
        return {"carry": _leaves([sub.sharded_like(a.shape, a.dtype) for a in like]),
                "train": {k: sds((full.padded, budget), np.float32) for k in names["train"]},
                "eval": {k: sds((full.padded, len(evs)), np.float32) for k in names["eval"]},
                "pruned": sds((full.padded,), np.int32), "dstep": sds((full.padded,), np.int32)}

    restored = ckpt.latest(target)
    if restored is not None:
        phase, tree = restored
        hist = core.to_host({k: tree[k] for k in ("train", "eval", "pruned", "dstep")})
        train_all = {k: np.array(v[:R]) for k, v in hist["train"].items()}
        eval_all = {k: np.array(v[:R]) for k, v in hist["eval"].items()}
        pruned, dstep = np.array(hist["pruned"][:R]), np.array(hist["dstep"][:R])
        alive = [i for i in range(R) if pruned[i] < 0]
        start = rungs[phase - 1]
        cur = runs_of(alive, start)
        carry = _restored_carry(cur, tree)
        if progress is not None:
            progress.advance(halving_steps(R, plan, budget, start))
    else:
        phase, alive, start, cur, carry = 0, list(range(R)), 0, full, None
    trained = 0
    t0 = time.perf_counter()
    while True:
        end = rungs[phase] if phase < len(rungs) else budget
        for seg, state, tm, ev in cur.segments(carry):
            carry, a = state, int(cur.starts[seg])
            b = a + int(cur.lengths[seg])
            for k in names["train"]:
                train_all[k][alive, a:b] = tm[k]
            if ev:
                for k in names["eval"]:
                    eval_all[k][alive, evs.index(b)] = ev[k]
            trained += len(alive) * (b - a)
            if progress is not None:
                progress.advance(len(alive) * (b - a))
            if b >= end:
                break
        dstep[alive] = core.to_host(carry.diverged_step)[:len(alive)]
        if phase >= len(rungs):
            break
        scores = score_curves(train_all["loss"][alive, :end], steps_per_epoch,
                              spec.prune_estimator)
        keep = prune([cells[i] for i in alive], scores, spec.prune_rate)
        rows = [j for j, k in enumerate(keep) if k]
        for j, k in enumerate(keep):
            if not k:
                pruned[alive[j]] = end
        alive = [alive[j] for j in rows]
        phase += 1
        cur = runs_of(alive, end)
        carry = core.take_runs(carry, rows, mesh, cur.padded)
        ckpt.save(phase, {"carry": _leaves(carry),
                          "train": {k: full.to_runs(v) for k, v in train_all.items()},
                          "eval": {k: full.to_runs(v) for k, v in eval_all.items()},
                          "pruned": full.to_runs(pruned), "dstep": full.to_runs(dstep)})
    seconds = time.perf_counter() - t0
    results = _results(prog, mine, train_all, eval_all, dstep, names,
                       pruned=[int(p) if p >= 0 else None for p in pruned])
    timing = {"budget": budget, "runs": R, "padded_runs": full.padded,
              "devices": mesh.devices.size, "seconds": seconds,
              "run_steps_per_second": trained / max(seconds, 1e-9),
              "resumed": restored is not None,
              "steps": halving_steps(R, plan, budget, budget)}
    return results, timing


def _steps_to_train(spec, todo, trunks) -> int:
    """Run-steps left to train (for the progress display)."""
    runs = spec.runs()
    total = 0
    for g in todo:
        if g.get("kind") == "halving":
            cells = [(runs[i]["schedule"], runs[i]["peak_lr"]) for i in g["run_idx"]]
            total += halving_steps(len(cells), halving_plan(spec, g["budget"], cells),
                                   g["budget"], g["budget"])
        elif g.get("kind") == "branch":
            total += len(g["rows"]) * (g["budget"] - g["branch_step"])
        else:
            total += len(g["run_idx"]) * g["budget"]
    for t in trunks:
        mine = [g for g in todo if g.get("trunk") == t["trunk_id"]]
        total += len(t["cells"]) * max(g["branch_step"] for g in mine)
    return total


# fields added to SweepSpec after stores were written: a stored spec without them had these
_SPEC_ADDED = {"strategy": "grid", "prune_rate": 3, "prune_at": [0.25, 0.5],
               "prune_estimator": "tse_e"}


_GRID_FIELDS = ("budgets", "schedules", "peak_lrs", "seeds")
_PRUNE_FIELDS = ("prune_rate", "prune_at", "prune_estimator")


def _comparable(spec: dict) -> dict:
    """A stored or given spec as compared on resume: fields it predates filled in, and
    halving's options left out when the strategy does not prune (they change nothing)."""
    spec = {**_SPEC_ADDED, **spec}
    if "halving" not in spec["strategy"]:
        spec = {k: v for k, v in spec.items() if k not in _PRUNE_FIELDS}
    return spec


def _extends(stored: dict, given: dict) -> bool:
    """Whether ``given`` adds budgets, schedules, lrs or seeds to ``stored`` and changes nothing."""
    if stored == given:
        return False
    same = all(stored.get(k) == v for k, v in given.items() if k not in _GRID_FIELDS)
    return same and all(set(stored.get(k, ())) <= set(given[k]) for k in _GRID_FIELDS)


def _extend(store: Store, spec: SweepSpec, runs: list[dict], max_runs_per_program) -> None:
    """Adds the runs of ``spec`` that ``store`` lacks; the stored runs are kept as they are.

    The new runs are planned as grid groups (trained from scratch, whatever the
    strategy), padded among themselves; the stored groups' run indices follow the
    new plan order.
    """
    stored_rows = store.runs()
    old_id = {r["idx"]: r["run_id"] for r in stored_rows}
    new_idx = {r["run_id"]: i for i, r in enumerate(runs)}
    plan = store.get_meta("plan")
    for g in plan["groups"]:
        g["run_idx"] = [new_idx[old_id[i]] for i in g["run_idx"]]
    round_ = 1 + max((g.get("extension", 0) for g in plan["groups"]), default=0)
    have = set(old_id.values())
    added = grid_groups(spec, runs, lambda r: r["run_id"] not in have, max_runs_per_program,
                        extension=round_)
    rows = [dict(runs[i], idx=i, group_id=g["group_id"]) for g in added for i in g["run_idx"]]
    plan["groups"] = plan["groups"] + added
    store.extend({"spec": spec.to_dict(), "plan": plan},
                 {r["run_id"]: new_idx[r["run_id"]] for r in stored_rows}, rows)


def _check_meta(store: Store, key: str, given: dict, out_dir: str):
    stored = store.get_meta(key)
    if key == "spec" and stored is not None:
        stored, given = _comparable(stored), _comparable(given)
    if stored == given:
        return
    stored = stored or {}
    diffs = [f"{k}: stored {stored.get(k)!r}, given {given.get(k)!r}"
             for k in sorted(set(stored) | set(given)) if stored.get(k) != given.get(k)]
    raise SweepSpecMismatchError(
        f"out_dir {out_dir!r} holds a sweep with a different {key} ({'; '.join(diffs)}); "
        f"resume it with the same arguments"
        + (", extend it (the same arguments with more budgets, schedules, lrs or seeds)"
           if key == "spec" else "") + ", or use another output directory")


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
        (budget, schedule)'s best lr (by the final training loss, or the table
        metric without diagnostics) is the smallest or largest of the grid, the
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
        max_runs_per_program = _validate.positive_int("max_runs_per_program",
                                                      max_runs_per_program)
    checkpoint_every = _validate.nonnegative_int("checkpoint_every", checkpoint_every)
    auto_lrs = _validate.nonnegative_int("auto_lrs", auto_lrs)
    t0 = time.perf_counter()
    kw = dict(max_runs_per_program=max_runs_per_program, checkpoint_every=checkpoint_every,
              devices=devices, progress=progress)
    added = 0
    if auto_lrs and resume and not overwrite:  # rerun of the same call: keep the added lrs
        extra = _auto_added_lrs(spec, out_dir)
        spec = dataclasses.replace(spec, peak_lrs=tuple(sorted(spec.peak_lrs + extra)))
        added = len(extra)
    result = _sweep(task, spec, out_dir, resume=resume, overwrite=overwrite, **kw)
    select, higher = (("train_loss", False) if spec.diagnostics
                      else task.table_metric(spec.diagnostics))
    while added < auto_lrs:
        new = lr_extension(result.runs, spec.peak_lrs, select, higher)[:auto_lrs - added]
        if not new:
            break
        spec = dataclasses.replace(spec, peak_lrs=tuple(sorted(spec.peak_lrs + tuple(new))))
        added += len(new)
        result = _sweep(task, spec, out_dir, resume=True, overwrite=False, **kw)
    result.seconds = time.perf_counter() - t0
    return result


def _auto_added_lrs(spec: SweepSpec, out_dir: str) -> tuple[float, ...]:
    """The lrs an earlier ``auto_lrs`` call added past the edges of ``spec``'s grid in
    ``out_dir``: the stored spec is ``spec`` with more peak lrs, all outside its range."""
    path = os.path.join(out_dir, STORE_NAME)
    if not os.path.isfile(path):
        return ()
    with Store(path, readonly=True) as store:
        stored = store.get_meta("spec")
    if stored is None:
        return ()
    stored, given = _comparable(stored), _comparable(spec.to_dict())
    have, want = stored.pop("peak_lrs", ()), given.pop("peak_lrs")
    extra = tuple(sorted(set(have) - set(want)))
    if stored != given or not set(want) <= set(have):
        return ()
    if all(lr < min(want) or lr > max(want) for lr in extra):
        return extra
    return ()


def _sweep(task, spec, out_dir, *, resume, overwrite, max_runs_per_program, checkpoint_every,
           devices, progress) -> SweepResult:
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
                if max_runs_per_program is None:
                    fits = [memory_limited_runs(progs[s], devices) for s in budgets]
                    fits = [f for f in fits if f is not None]
                    max_runs_per_program = min(fits) if fits else None
                stored = store.get_meta("spec")
                if stored is not None and _extends(_comparable(stored),
                                                   _comparable(spec_dict)):
                    _extend(store, spec, runs, max_runs_per_program)
                if store.get_meta("plan") is None:
                    groups = plan_groups(spec, max_runs_per_program)
                    trunks = plan_trunks(spec, max_runs_per_program)
                    rows = sorted((dict(runs[i], idx=i, group_id=g["group_id"])
                                   for g in groups for i in g["run_idx"]),
                                  key=lambda r: r["idx"])
                    store.initialise({
                        "spec": spec_dict, "task": task.identity(), "metrics": metric_names,
                        "table_metric": list(task.table_metric(spec.diagnostics)),
                        "plan": {"groups": groups, "trunks": trunks, "steps_per_epoch": max(
                            1, task.num_train // spec.batch_size)}}, rows)
        core.barrier("budgetax-sweep-planned")
        with Store(path, readonly=not writer) as store:
            _check_meta(store, "spec", spec_dict, out_dir)
            _check_meta(store, "task", task.identity(), out_dir)
            plan = store.get_meta("plan")
            groups, trunks = plan["groups"], plan.get("trunks", [])
            finished = store.finished_groups()
            for g in groups:  # checkpoints of groups stored just before a kill: not needed
                if g["group_id"] in finished:
                    Checkpoints(out_dir, g["group_id"], writer).remove()
            todo = [g for g in groups if g["group_id"] not in finished]
            todo_trunks = [t for t in trunks if any(
                g.get("trunk") == t["trunk_id"] for g in todo)]
            for t in trunks:
                if t not in todo_trunks:
                    Checkpoints(out_dir, t["trunk_id"], writer).remove()
            bar = Progress(_steps_to_train(spec, todo, todo_trunks), progress and writer)
            compiled = set()

            def complete(g, results, timing):
                compiled.add(g["budget"])
                if writer:
                    store.complete_group(g["group_id"], results, timing)
                n_div = sum(r["status"] == "diverged" for r in results)
                n_pruned = sum(r["status"] == "pruned" for r in results)
                what = {"branch": f" branched at step {g.get('branch_step')}",
                        "halving": f", {n_pruned} pruned"}.get(g.get("kind"), "")
                bar.line(f"budget {g['budget_fraction']:>5.0%} ({g['budget']:>6} steps) "
                         f"{len(results):>4} runs{what}, "
                         f"{timing['run_steps_per_second']:,.0f} "
                         f"run-steps/s on {timing['devices']} device(s)"
                         + (f" in {jax.process_count()} processes"
                            if jax.process_count() > 1 else "")
                         + f", {timing['seconds']:.1f}s"
                         + (f", {n_div} diverged" if n_div else "")
                         + (" (resumed)" if timing["resumed"] else ""))

            try:
                for g in todo:
                    if g.get("kind") == "branch":
                        continue
                    steps = g["budget"]
                    bar.describe(f"budget {g['budget_fraction']:.0%} ({steps} steps), "
                                 f"{len(g['run_idx'])} runs")
                    ckpt = Checkpoints(out_dir, g["group_id"], writer)
                    if g.get("kind") == "halving":
                        results, timing = _run_halving(
                            progs[steps], g, runs, mesh, ckpt, bar, metric_names, spec,
                            plan["steps_per_epoch"])
                    else:
                        size = max(len(h["run_idx"]) for h in groups
                                   if h["budget"] == steps and h.get("kind") != "branch"
                                   and h.get("extension", 0) == g.get("extension", 0))
                        results, timing = _run_group(
                            progs[steps], g, size, runs, mesh, ckpt,
                            checkpoint_every if checkpoint_every > 0 else 10**9, bar,
                            metric_names)
                    complete(g, results, timing)
                    ckpt.remove()
                for t in todo_trunks:
                    bar.describe(f"branched schedules: trunk of {len(t['cells'])} runs")
                    ckpt = Checkpoints(out_dir, t["trunk_id"], writer)
                    _run_trunk(progs, t, [g for g in groups if g.get("trunk") == t["trunk_id"]],
                               runs, mesh, ckpt, bar, metric_names, finished, complete)
                    ckpt.remove()
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
