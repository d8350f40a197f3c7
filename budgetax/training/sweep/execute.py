"""Training a sweep's planned groups: one runner, and one small function per kind of group.

Every group (and every trunk of branched groups) goes through a :class:`GroupRun`:
its checkpoint is restored when there is a verified one that fits the plan, its
program is advanced segment by segment with each segment's metrics recorded in
its :class:`History` and counted in the progress display, it is checkpointed where
its strategy says, and it is timed. What differs between strategies is only what
happens between two segments, written in one function per kind of group
(:data:`RUNNERS`, chosen by the type of the planned group):

- :func:`grid`: checkpoint every ``checkpoint_every`` segments;
- :func:`halving`: at each rung, score the runs, keep the best lrs
  (:func:`~budgetax.training.sweep.strategies.prune`), copy the survivors out and
  checkpoint;
- :func:`trunk`: at each branch step, checkpoint and train the branches
  (:func:`branch`) from a copy of the trunk's state.

A new strategy is a new kind of group (:mod:`budgetax.training.sweep.plan`) and a
new function here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import socket
import time

import jax
import numpy as np

from budgetax.training import core
from budgetax.training.sweep.checkpoints import Checkpoints
from budgetax.training.sweep.plan import (
    BranchGroup,
    GridGroup,
    Group,
    HalvingGroup,
    LawGroup,
    Plan,
    Trunk,
    halving_cells,
    halving_plan,
    halving_steps,
)
from budgetax.training.sweep.progress import Progress
from budgetax.training.sweep.resume import CUSTOM_FIELD, GRID_FIELDS, comparable
from budgetax.training.sweep.selection import MINIBATCH_LOSS, minibatch_loss
from budgetax.training.sweep.spec import SweepSpec
from budgetax.training.sweep.store import Store, encode_curves
from budgetax.training.sweep.strategies import prune, score_curves

__all__ = ["RUNNERS", "Context", "GroupRun", "History", "branch", "checkpoint_identity",
           "grid", "halving", "run", "trunk", "unfinished"]


@dataclasses.dataclass
class Context:
    """What every group of one sweep is trained with.

    ``progs``: the program of each budget; ``names``: ``{"train": [...], "eval":
    [...]}``; ``store``: where finished groups go (written by the ``writer``
    process); ``finished``: the groups stored before; ``sweep_id``: a digest of the
    task and the settings that shape a group's runs (:func:`checkpoint_identity`),
    recorded with every checkpoint; ``session``: this call's row of the store's
    ``sessions`` table (made when its first group starts; ``started``: when the call
    began, UTC); ``compiled``: the budgets trained here; ``run_steps``: the
    run-steps of the groups stored here.
    """

    spec: SweepSpec
    plan: Plan
    progs: dict
    mesh: object
    names: dict
    progress: Progress
    store: Store
    out_dir: str
    writer: bool
    checkpoint_every: int
    finished: set
    sweep_id: str = ""
    session: int | None = None
    started: str = dataclasses.field(default_factory=lambda: time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    compiled: set = dataclasses.field(default_factory=set)
    run_steps: int = 0
    runs: list = dataclasses.field(init=False)  # the spec's runs, in plan order

    def __post_init__(self):
        self.runs = self.spec.runs()

    def complete(self, group: Group, results: list[dict], timing: dict) -> None:
        """Stores a finished group (its runs and timing, one transaction) and says so."""
        self.compiled.add(group.budget)
        self.run_steps += timing["steps"]
        if self.writer:
            self.store.complete_group(group.group_id, results, timing)
            self.record_session()
        self.progress.group_done(group, results, timing)

    def record_session(self, *, start: bool = False) -> None:
        """This call's time so far in the store's ``sessions`` table (process 0); its row is
        made when its first group starts (``start``)."""
        if not self.writer or (self.session is None and not start):
            return
        if self.session is None:
            self.session = self.store.start_session(self.started, socket.gethostname())
        self.store.update_session(self.session, self.progress.seconds,
                                  self.progress.compile_seconds, self.run_steps)

    def runs_of(self, prog: core.Program, mine: list[dict], **kw) -> core.Runs:
        """The runs ``mine`` (dicts with ``seed``, ``peak_lr``, ``schedule``) on ``prog``."""
        choices = [name for name, _ in prog.choices]
        return core.Runs(prog, self.mesh, [r["seed"] for r in mine],
                         [r["peak_lr"] for r in mine],
                         [choices.index(r["schedule"]) for r in mine], **kw)


class History:
    """The host metrics of ``runs`` runs: per step (``train``, ``[runs, budget]``) and at
    ``eval_steps`` (``eval``, ``[runs, E]``), NaN where not (yet) trained; ``per_run``:
    integer arrays of one value per run (their initial value given)."""

    def __init__(self, names: dict, runs: int, budget: int, eval_steps, **per_run: int):
        self.eval_steps = [int(e) for e in eval_steps]
        self.train = {k: np.full((runs, budget), np.nan, np.float32) for k in names["train"]}
        self.eval = {k: np.full((runs, len(self.eval_steps)), np.nan, np.float32)
                     for k in names["eval"]}
        self.per_run = {k: np.full((runs,), v, np.int32) for k, v in per_run.items()}

    def record(self, rows, start: int, end: int, train: dict, evals: dict) -> None:
        """Steps ``start..end-1`` of the runs ``rows`` (their evaluation at ``end`` if any)."""
        for k, v in self.train.items():
            v[rows, start:end] = train[k]
        if evals:
            j = self.eval_steps.index(end)
            for k, v in self.eval.items():
                v[rows, j] = evals[k]

    def tree(self, to_runs) -> dict:
        """The checkpoint entries (``to_runs``: host rows -> run-sharded array)."""
        return {"train": {k: to_runs(v) for k, v in self.train.items()},
                "eval": {k: to_runs(v) for k, v in self.eval.items()},
                **{k: to_runs(v) for k, v in self.per_run.items()}}

    def load(self, tree: dict) -> None:
        """Restores the arrays from a checkpoint's host tree (padded rows dropped)."""
        tree = core.to_host(tree)
        for part, arrays in (("train", self.train), ("eval", self.eval)):
            for k, v in arrays.items():
                v[...] = tree[part][k][:len(v)]
        for k, v in self.per_run.items():
            v[...] = tree[k][:len(v)]


def _leaves(carry) -> dict:
    """A carry's leaves keyed by their index (the checkpoint's ``carry`` entry)."""
    return {f"{i:05d}": a for i, a in enumerate(jax.tree.leaves(carry))}


def _shapes(tree) -> list:
    return [(jax.tree_util.keystr(p), tuple(a.shape))
            for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]]


class GroupRun:
    """One group's (or trunk's) runs from restore to timing.

    ``runs``: the :class:`core.Runs` the history's rows belong to (checkpointed
    padded to its size; ``None``: nothing trained here); ``hist``: their
    :class:`History`; ``ckpt``: their :class:`Checkpoints` (``None``: never
    checkpointed).
    """

    def __init__(self, ctx: Context, ckpt: Checkpoints | None, runs: core.Runs | None,
                 hist: History):
        self.ctx, self.ckpt, self.runs, self.hist = ctx, ckpt, runs, hist
        self.resumed = False
        self.trained = 0  # run-steps trained here (not restored)
        self._start()

    def _start(self):
        self.t0, self.c0 = time.perf_counter(), self.ctx.progress.compile_seconds

    def restore(self, carry_runs):
        """``(step, carry)`` of the latest checkpoint, or ``None``; the history restored.

        ``carry_runs(step)``: the :class:`core.Runs` whose carry checkpoint ``step``
        holds (``None``: no such step). A checkpoint whose arrays do not have the
        shapes this plan gives them (made for another device count) is discarded.
        """

        def target(step, metadata):
            runs = carry_runs(step)
            if runs is None:
                return None
            like = {"carry": _leaves([runs.sharded_like(a.shape, a.dtype)
                                      for a in jax.tree.leaves(runs.abstract_carry())]),
                    **self.hist.tree(lambda a: self.runs.sharded_like(
                        (self.runs.padded, *a.shape[1:]), a.dtype))}
            return like if _shapes(metadata) == _shapes(like) else None

        restored = self.ckpt.latest(target)
        self._start()
        if restored is None:
            return None
        step, tree = restored
        self.resumed = True
        self.hist.load({k: v for k, v in tree.items() if k != "carry"})
        leaves = tree["carry"]
        structure = jax.tree.structure(carry_runs(step).abstract_carry())
        return step, jax.tree.unflatten(structure, [leaves[f"{i:05d}"]
                                                    for i in range(len(leaves))])

    def segments(self, runs: core.Runs, carry=None, start_seg: int = 0, rows=slice(None)):
        """``runs.segments``, each recorded in the history at ``rows`` and counted in the
        progress display; yields ``(segment, its end step, carry)``."""
        for seg, state, train, evals in runs.segments(carry, start_seg):
            start = int(runs.starts[seg])
            end = start + int(runs.lengths[seg])
            self.hist.record(rows, start, end, train, evals)
            self.trained += runs.real * (end - start)
            self.ctx.progress.advance(runs.real * (end - start))
            yield seg, end, state

    def save(self, step: int, carry) -> None:
        """Checkpoints ``carry`` and the history as ``step``."""
        self.ckpt.save(step, {"carry": _leaves(carry), **self.hist.tree(self.runs.to_runs)})
        self.ctx.record_session()

    def timing(self, budget: int, runs: int, padded: int, steps: int) -> dict:
        """The group's row of the store's ``groups`` table (``steps``: run-steps it needs;
        the rate excludes compilation)."""
        seconds = time.perf_counter() - self.t0
        compiling = min(self.ctx.progress.compile_seconds - self.c0, seconds)
        return {"budget": budget, "runs": runs, "padded_runs": padded,
                "devices": self.ctx.mesh.devices.size, "seconds": seconds,
                "compile_seconds": compiling,
                "run_steps_per_second": self.trained / max(seconds - compiling, 1e-9),
                "resumed": self.resumed, "steps": steps}


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


def _results(ctx: Context, prog, mine, hist: History, dstep, *, pruned=None) -> list[dict]:
    """The store rows of the runs ``mine`` from their history.

    ``dstep``: ``[>= R]`` diverged steps; ``pruned``: the step each run was pruned
    at (``None``: not pruned), for successive halving. Without full-training-set
    diagnostics a run's ``final`` also holds its
    :data:`~budgetax.training.sweep.selection.MINIBATCH_LOSS` (what picks its cell's lr;
    in a ``law`` sweep always: what its law predicts).
    """
    steps = [int(s) for s in core.eval_steps(prog.budget, prog.num_evals)]
    names = tuple(hist.train)

    def final(j, ev):
        out = {k: v[-1] for k, v in ev.items()}
        if ("train_loss" not in ev or ctx.spec.strategy == "law") and "loss" in hist.train:
            out[MINIBATCH_LOSS] = minibatch_loss(hist.train["loss"][j], prog.budget,
                                                 ctx.plan.steps_per_epoch)
        return out

    results = []
    for j, r in enumerate(mine):
        ev = {k: [float(x) for x in v[j]] for k, v in hist.eval.items()}
        diverged = int(dstep[j]) >= 0
        stop = None if pruned is None else pruned[j]
        status = "diverged" if diverged else ("pruned" if stop is not None else "done")
        results.append({
            "run_id": r["run_id"],
            "status": status,
            "diverged_step": int(dstep[j]) if diverged else None,
            "pruned_step": None if diverged else stop,
            "final": {} if status == "pruned" else final(j, ev),
            "best": _best(ev),
            "eval_steps": steps,
            "eval_history": ev,
            "curves": encode_curves({k: hist.train[k][j] for k in names}, names),
        })
    return results


def grid(ctx: Context, group: Group, ckpt: Checkpoints) -> None:
    """Trains a group from step 0 to its budget, checkpointed every ``checkpoint_every``
    segments, and stores it."""
    prog = ctx.progs[group.budget]
    mine = [ctx.runs[i] for i in group.run_idx]
    runs = ctx.runs_of(prog, mine, pad_to=ctx.plan.padded_size(group))
    evs = core.eval_steps(prog.budget, prog.num_evals)
    run = GroupRun(ctx, ckpt, runs, History(ctx.names, runs.real, prog.budget, evs))
    start_seg, carry = run.restore(lambda step: runs) or (0, None)
    ctx.progress.advance(runs.real * int(runs.starts[start_seg]))
    every = ctx.checkpoint_every or 10**9
    for seg, _, state in run.segments(runs, carry, start_seg):
        carry = state
        if seg + 1 < len(runs.lengths) and (seg + 1) % every == 0:
            run.save(seg + 1, carry)
    ctx.complete(group, _results(ctx, prog, mine, run.hist, core.to_host(carry.diverged_step)),
                 run.timing(prog.budget, runs.real, runs.padded, runs.real * prog.budget))


def halving(ctx: Context, group: Group, ckpt: Checkpoints) -> None:
    """Trains a group with successive halving over each schedule's peak lrs, and stores it.

    At each rung the runs still training are scored, the pruned ones stop there and
    the survivors go on as a smaller program (checkpointed with the histories).
    """
    prog = ctx.progs[group.budget]
    budget, spec = prog.budget, ctx.spec
    mine = [ctx.runs[i] for i in group.run_idx]
    cells = halving_cells(ctx.runs, group)
    evs = [int(e) for e in core.eval_steps(budget, prog.num_evals)]
    plan = halving_plan(spec, budget, cells)
    rungs = [r for r, _ in plan]
    stops = sorted(set(evs) | set(rungs))

    def runs_of(alive, start):
        return ctx.runs_of(prog, [mine[i] for i in alive], start=start,
                           stops=[x for x in stops if x > start], evaluate=evs)

    full = runs_of(range(len(mine)), 0)
    hist = History(ctx.names, len(mine), budget, evs, pruned=-1, dstep=-1)
    pruned, dstep = hist.per_run["pruned"], hist.per_run["dstep"]
    run = GroupRun(ctx, ckpt, full, hist)
    restored = run.restore(lambda phase: runs_of(range(plan[phase - 1][1]), rungs[phase - 1])
                           if 0 < phase <= len(plan) else None)
    phase, carry = restored or (0, None)
    alive = [i for i in range(len(mine)) if pruned[i] < 0]
    start = rungs[phase - 1] if phase else 0
    ctx.progress.advance(halving_steps(len(mine), plan, budget, start))
    cur = runs_of(alive, start) if phase else full
    while True:
        end = rungs[phase] if phase < len(rungs) else budget
        for _, stop, state in run.segments(cur, carry, rows=alive):
            carry = state
            if stop >= end:
                break
        dstep[alive] = core.to_host(carry.diverged_step)[:len(alive)]
        if phase >= len(rungs):
            break
        scores = score_curves(hist.train["loss"][alive, :end], ctx.plan.steps_per_epoch,
                              spec.prune_estimator)
        keep = prune([cells[i] for i in alive], scores, spec.prune_rate)
        pruned[[i for i, k in zip(alive, keep) if not k]] = end
        rows = [j for j, k in enumerate(keep) if k]
        alive = [alive[j] for j in rows]
        phase += 1
        cur = runs_of(alive, end)
        carry = core.take_runs(carry, rows, ctx.mesh, cur.padded)
        run.save(phase, carry)
    ctx.complete(group, _results(ctx, prog, mine, hist, dstep,
                                 pruned=[int(p) if p >= 0 else None for p in pruned]),
                 run.timing(budget, len(mine), full.padded,
                            halving_steps(len(mine), plan, budget, budget)))


def trunk(ctx: Context, trunk: Trunk, ckpt: Checkpoints) -> None:
    """Trains a trunk of branched runs and every unfinished branch; stores each branch.

    The trunk (the longest budget's program) stops at each branch step and at the
    evaluation steps of the shorter budgets up to their branch steps; at a branch
    step it is checkpointed, then the branch's runs are copied out of it and
    trained to their budget on their own program (:func:`branch`). The trunk's
    steps since the previous branch step count for the branches made there.
    """
    prog = ctx.progs[trunk.budget]
    branches = ctx.plan.branches(trunk)
    mine = [{"schedule": s, "peak_lr": lr, "seed": seed} for s, lr, seed in trunk.cells]
    need_eval = sorted({int(e) for b in branches
                        for e in core.eval_steps(b.budget, prog.num_evals)
                        if e <= b.branch_step})
    stops = sorted(set(need_eval) | {b.branch_step for b in branches})
    runs = ctx.runs_of(prog, mine, stops=stops, evaluate=need_eval)
    run = GroupRun(ctx, ckpt, runs, History(ctx.names, runs.real, trunk.budget, need_eval))
    start_seg, carry = run.restore(lambda step: runs) or (0, None)
    done = stops[start_seg - 1] if start_seg else 0
    ctx.progress.advance(runs.real * done)
    pending = [b for b in branches if b.group_id not in ctx.finished]
    last_stop = max(b.branch_step for b in pending)
    since, since_step, since_c = time.perf_counter(), done, ctx.progress.compile_seconds
    resumed_stop = [(start_seg - 1, done, carry)] if start_seg else []
    for seg, end, state in itertools.chain(resumed_stop,
                                           run.segments(runs, carry, start_seg)):
        carry = state
        here = [b for b in pending if b.branch_step == end]
        if here:
            if end < last_stop and seg + 1 != start_seg:  # the trunk goes on: keep its state
                run.save(seg + 1, carry)
            seconds, steps = time.perf_counter() - since, runs.real * (end - since_step)
            compiling = ctx.progress.compile_seconds - since_c
            for j, b in enumerate(here):  # the trunk's time and steps since the last branch
                results, timing = branch(ctx, b, carry, run.hist)
                timing["seconds"] += seconds / len(here)
                timing["compile_seconds"] += compiling / len(here)
                timing["steps"] += steps // len(here) + (j < steps % len(here))
                timing["run_steps_per_second"] = timing["steps"] / max(
                    timing["seconds"] - timing["compile_seconds"], 1e-9)
                timing["resumed"] = run.resumed
                ctx.complete(b, results, timing)
            since, since_step = time.perf_counter(), end
            since_c = ctx.progress.compile_seconds
        if end >= last_stop:
            break


def branch(ctx: Context, group: BranchGroup, carry, trunk_hist: History):
    """Trains one branch from the trunk's state at its branch step: ``(results, timing)``."""
    prog = ctx.progs[group.budget]
    s, budget, rows = group.branch_step, prog.budget, list(group.rows)
    mine = [ctx.runs[i] for i in group.run_idx]
    evs = [int(e) for e in core.eval_steps(budget, prog.num_evals)]
    hist = History(ctx.names, len(rows), budget, evs)
    for k, v in hist.train.items():
        v[:, :s] = trunk_hist.train[k][rows, :s]
    for j, e in enumerate(evs):
        if e <= s:
            for k, v in hist.eval.items():
                v[:, j] = trunk_hist.eval[k][rows, trunk_hist.eval_steps.index(e)]
    if s < budget:
        runs = ctx.runs_of(prog, mine, start=s, stops=[e for e in evs if e > s])
        run = GroupRun(ctx, None, runs, hist)
        sub = core.take_runs(carry, rows, ctx.mesh, runs.padded)
        for _, _, state in run.segments(runs, sub):
            sub = state
        dstep, padded = core.to_host(sub.diverged_step), runs.padded
    else:
        run = GroupRun(ctx, None, None, hist)
        dstep, padded = core.to_host(carry.diverged_step)[rows], len(rows)
    return (_results(ctx, prog, mine, hist, dstep),
            run.timing(budget, len(mine), padded, len(rows) * (budget - s)))


def unfinished(plan: Plan, finished: set, out_dir: str, writer: bool):
    """``(groups, trunks)`` left to train (branch groups are trained by their trunk, a law
    sweep's waiting runs by the groups its law plans); the checkpoints of what is
    finished (stored just before a kill) are removed."""
    todo = [g for g in plan.groups if g.group_id not in finished and not isinstance(g, LawGroup)]
    trunks = [t for t in plan.trunks if any(g in todo for g in plan.branches(t))]
    done = ([g.group_id for g in plan.groups if g.group_id in finished]
            + [t.trunk_id for t in plan.trunks if t not in trunks])
    for name in done:
        Checkpoints(out_dir, name, writer).remove()
    return todo, trunks


def checkpoint_identity(spec: SweepSpec, task_identity: dict) -> str:
    """A digest of what a group's checkpoint depends on besides its runs: the task and the
    spec without its grid and its custom schedules' digests (extending a sweep keeps its
    in-flight checkpoints; a changed custom schedule is refused before they are read)."""
    spec = {k: v for k, v in comparable(spec.to_dict()).items()
            if k not in (*GRID_FIELDS, CUSTOM_FIELD)}
    text = json.dumps({"task": task_identity, "spec": spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


RUNNERS = {GridGroup: grid, HalvingGroup: halving, Trunk: trunk}


def run(ctx: Context, item: Group | Trunk) -> None:
    """Trains a planned group, or a trunk and its branches, by its strategy
    (:data:`RUNNERS`); stores what it finishes; removes its checkpoints after."""
    if isinstance(item, Trunk):
        ckpt = Checkpoints(ctx.out_dir, item.trunk_id, ctx.writer,
                           {"sweep": ctx.sweep_id, "runs": [list(c) for c in item.cells]})
        ctx.progress.describe(f"branched schedules: trunk of {len(item.cells)} runs")
    else:
        ckpt = Checkpoints(ctx.out_dir, item.group_id, ctx.writer,
                           {"sweep": ctx.sweep_id,
                            "runs": [ctx.runs[i]["run_id"] for i in item.run_idx]})
        ctx.progress.describe(f"budget {item.budget_fraction:.0%} ({item.budget} steps), "
                              f"{len(item.run_idx)} runs")
    ctx.record_session(start=True)
    RUNNERS[type(item)](ctx, item, ckpt)
    ckpt.remove()
