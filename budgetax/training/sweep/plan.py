"""How a sweep's runs are split into compiled programs: the typed plan and all planning.

A :class:`Plan` is fixed when a sweep is planned and stored with it (``meta.plan``,
JSON: :meth:`Plan.to_dict`); a resumed sweep reads it back (:meth:`Plan.from_dict`),
so its runs are grouped as before whatever the devices. Its groups (one compiled
program's batch of runs, the unit of checkpointing and of a store transaction):

- :class:`GridGroup`: runs of one budget trained from step 0 to the budget;
- :class:`HalvingGroup`: the same, with successive halving over each schedule's lrs
  (:func:`halving_plan`);
- :class:`BranchGroup`: runs of one budget copied out of a :class:`Trunk` (the
  longest budget's runs of the schedules that branch, :func:`branched_schedules`)
  at ``branch_step`` and trained on to their budget;
- :class:`LawGroup`: the runs of a ``law`` sweep waiting for its law
  (:mod:`budgetax.training.sweep.law`), which plans the ones it trains as new groups.

The strategies themselves are described in :mod:`budgetax.training.sweep.strategies`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, ClassVar

import jax
import numpy as np

from budgetax.training import core

if TYPE_CHECKING:
    from budgetax.training.sweep.spec import SweepSpec

__all__ = ["BranchGroup", "GridGroup", "Group", "HalvingGroup", "LawGroup", "Plan", "Trunk",
           "branched_schedules", "grid_groups", "halving_plan", "halving_steps", "lr_values",
           "make_plan",
           "memory_limited_runs", "plan_groups", "plan_trunks", "runs_per_program",
           "shared_prefix", "steps_to_train"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Group:
    """Runs of one budget that share a compiled program.

    ``run_idx``: their positions in the spec's runs (:meth:`SweepSpec.runs`);
    ``extension`` > 0: added by extending a sweep (padded among themselves).
    """

    kind: ClassVar[str]
    group_id: str
    budget: int
    budget_fraction: float
    run_idx: tuple[int, ...]
    extension: int = 0

    def to_dict(self) -> dict:
        d = {"group_id": self.group_id, "kind": self.kind, "budget": self.budget,
             "budget_fraction": self.budget_fraction, "run_idx": list(self.run_idx)}
        return d | ({"extension": self.extension} if self.extension else {})


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridGroup(Group):
    """Runs trained from step 0 to their budget."""

    kind: ClassVar[str] = "grid"


@dataclasses.dataclass(frozen=True, kw_only=True)
class HalvingGroup(Group):
    """Runs trained with successive halving over each schedule's peak lrs."""

    kind: ClassVar[str] = "halving"


@dataclasses.dataclass(frozen=True, kw_only=True)
class BranchGroup(Group):
    """Runs that branch from trunk ``trunk`` at ``branch_step``; ``rows``: their
    positions among the trunk's runs."""

    kind: ClassVar[str] = "branch"
    trunk: str
    branch_step: int
    rows: tuple[int, ...]

    def to_dict(self) -> dict:
        return super().to_dict() | {"trunk": self.trunk, "branch_step": self.branch_step,
                                    "rows": list(self.rows)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LawGroup(Group):
    """The runs of a ``law`` sweep that wait for the law (every budget: ``budget`` 0): never
    trained as a group; :mod:`budgetax.training.sweep.law` moves the ones to train into
    new groups and marks the rest ``predicted``."""

    kind: ClassVar[str] = "law"


@dataclasses.dataclass(frozen=True)
class Trunk:
    """The longest budget's runs of branching schedules: ``cells`` ``(schedule, lr, seed)``."""

    trunk_id: str
    budget: int
    cells: tuple[tuple[str, float, int], ...]

    def to_dict(self) -> dict:
        return {"trunk_id": self.trunk_id, "budget": self.budget,
                "cells": [list(c) for c in self.cells]}


_KINDS = {cls.kind: cls for cls in (GridGroup, HalvingGroup, BranchGroup, LawGroup)}


def _group(d: dict) -> Group:
    """A stored group (a store written before the strategies has no ``kind``: grid)."""
    cls = _KINDS[d.get("kind", "grid")]
    fields = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in d.items() if k in fields}
    for k in ("run_idx", "rows"):
        if k in kw:
            kw[k] = tuple(kw[k])
    return cls(**kw)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The groups and trunks of a sweep, and the steps of an epoch (halving's estimators)."""

    groups: tuple[Group, ...]
    trunks: tuple[Trunk, ...] = ()
    steps_per_epoch: int | None = None

    def to_dict(self) -> dict:
        d = {"groups": [g.to_dict() for g in self.groups],
             "trunks": [t.to_dict() for t in self.trunks]}
        return d | ({} if self.steps_per_epoch is None
                    else {"steps_per_epoch": self.steps_per_epoch})

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(tuple(_group(g) for g in d["groups"]),
                   tuple(Trunk(t["trunk_id"], t["budget"], tuple(tuple(c) for c in t["cells"]))
                         for t in d.get("trunks", [])),
                   d.get("steps_per_epoch"))

    def branches(self, trunk: Trunk) -> list[BranchGroup]:
        return [g for g in self.groups
                if isinstance(g, BranchGroup) and g.trunk == trunk.trunk_id]

    def padded_size(self, group: Group) -> int:
        """The runs every program of ``group``'s budget and extension round is padded to."""
        return max(len(h.run_idx) for h in self.groups
                   if h.budget == group.budget and not isinstance(h, BranchGroup | LawGroup)
                   and h.extension == group.extension)


def _split(items: list, limit: int | None) -> list[list]:
    k = 1 if limit is None else math.ceil(len(items) / limit)
    return [[items[int(i)] for i in part] for part in np.array_split(np.arange(len(items)), k)]


def _halving_split(runs: list[dict], idx: list[int], limit: int | None) -> list[list[int]]:
    """``idx`` (one budget's runs) in groups of whole schedules: successive halving
    prunes among a schedule's lrs, so all of a schedule's runs train in one program."""
    units: dict = {}
    for i in idx:
        units.setdefault(runs[i]["schedule"], []).append(i)
    size = max(len(u) for u in units.values())
    if limit is not None and size > limit:
        raise ValueError(
            f"max_runs_per_program={limit} is too small for successive halving: it prunes "
            f"among a schedule's peak lrs, and a schedule's {size} runs (lrs x seeds) at "
            f"budget {runs[idx[0]]['budget']} must train in one program; give "
            f"max_runs_per_program >= {size}, or strategy 'grid' or 'branch'")
    per = None if limit is None else limit // size
    return [[i for unit in part for i in unit] for part in _split(list(units.values()), per)]


def grid_groups(spec: SweepSpec, runs: list[dict], include, max_runs_per_program: int | None,
                *, cls: type[Group] = GridGroup, extension: int = 0) -> list[Group]:
    """Per budget, the ``runs`` (the spec's, in plan order) passing ``include``, as groups.

    Each budget's runs are split into balanced groups of at most
    ``max_runs_per_program`` (:class:`HalvingGroup`: of whole schedules, refused when one
    schedule's runs exceed it); ``extension`` > 0 marks the groups added by extending
    a sweep (``T{steps}/x{extension}/g{g}``), padded among themselves.
    """
    tag = f"x{extension}/" if extension else ""
    out = []
    for f, steps in zip(spec.budgets, spec.budget_steps(), strict=True):
        idx = [i for i, r in enumerate(runs) if r["budget"] == steps and include(r)]
        if not idx:
            continue
        parts = (_halving_split(runs, idx, max_runs_per_program) if cls is HalvingGroup
                 else _split(idx, max_runs_per_program))
        for g, part in enumerate(parts):
            out.append(cls(group_id=f"T{steps}/{tag}g{g}", budget=steps, budget_fraction=f,
                           run_idx=tuple(part), extension=extension))
    return out


def make_plan(spec: SweepSpec, max_runs_per_program: int | None,
              steps_per_epoch: int | None = None) -> Plan:
    """The plan of ``spec``: groups of at most ``max_runs_per_program`` runs (balanced)."""
    runs = spec.runs()
    if spec.strategy == "law":  # the anchors now; the others wait for the law
        from budgetax.training.sweep.law import anchor_runs

        anchors = anchor_runs(spec, runs)
        groups = grid_groups(spec, runs, lambda r: r["run_id"] in
                             {runs[i]["run_id"] for i in anchors}, max_runs_per_program)
        rest = tuple(i for i in range(len(runs)) if i not in anchors)
        if rest:
            groups.append(LawGroup(group_id="law", budget=0, budget_fraction=0.0,
                                   run_idx=rest))
        return Plan(tuple(groups), (), steps_per_epoch)
    branched = (branched_schedules(spec) if spec.strategy in ("branch", "branch+halving")
                else {})
    cls = HalvingGroup if spec.strategy in ("halving", "branch+halving") else GridGroup
    groups = grid_groups(spec, runs, lambda r: r["schedule"] not in branched,
                         max_runs_per_program, cls=cls)
    trunks = []
    if branched:
        longest = max(spec.budget_steps())
        cells = [(s, lr, seed) for s in spec.schedules if s in branched
                 for lr in spec.peak_lrs for seed in spec.seeds]
        where = {(r["budget"], r["schedule"], r["peak_lr"], r["seed"]): i
                 for i, r in enumerate(runs)}
        for k, part in enumerate(_split(cells, max_runs_per_program)):
            trunks.append(Trunk(f"trunk{k}", longest, tuple(part)))
            for j, (f, steps) in enumerate(zip(spec.budgets, spec.budget_steps(),
                                               strict=True)):
                # every run of the trunk branches where the first of them must: the
                # branch program has the trunk's shape, like the grid program of
                # these runs (vmapped programs of other sizes may round differently)
                step = min(branched[s][j] for s, _, _ in part)
                groups.append(BranchGroup(
                    group_id=f"T{steps}/trunk{k}", budget=steps, budget_fraction=f,
                    trunk=f"trunk{k}", branch_step=int(step), rows=tuple(range(len(part))),
                    run_idx=tuple(where[(steps, *c)] for c in part)))
    return Plan(tuple(groups), tuple(trunks), steps_per_epoch)


def plan_groups(spec: SweepSpec, max_runs_per_program: int | None) -> list[dict]:
    """The groups of :func:`make_plan` as stored:
    ``[{"group_id", "kind", "budget", "budget_fraction", "run_idx": [...]}]``, a
    branch group with ``trunk``, ``branch_step`` and ``rows``."""
    return [g.to_dict() for g in make_plan(spec, max_runs_per_program).groups]


def plan_trunks(spec: SweepSpec, max_runs_per_program: int | None) -> list[dict]:
    """The trunks of a branched sweep: ``[{"trunk_id", "budget", "cells": [[s, lr, seed]]}]``."""
    return [t.to_dict() for t in make_plan(spec, max_runs_per_program).trunks]


# ------------------------------------------------------------------ branching
LR_BLOCK = 512  # steps per call of a schedule's learning-rate program (lr_values)


@functools.lru_cache(maxsize=64)
def _lr_program(optimizer, profile):
    """A jitted ``(budget steps, peak, counts) -> lrs`` of one schedule: the budget and the
    peak are arguments, as in training, so every budget and peak share a compilation."""
    return jax.jit(lambda steps, peak, counts: jax.vmap(
        optimizer.learning_rate(steps, peak, profile=profile))(counts))


@functools.lru_cache(maxsize=256)
def lr_values(optimizer, profile, budget: int, peak: float) -> np.ndarray:
    """The learning rate of every step of a run (float32, as training computes it).

    ``profile``: the schedule's ``p -> multiplier`` (``SweepSpec.profile(name)``). The
    steps are computed in blocks of :data:`LR_BLOCK`, so that every budget and peak of
    a schedule share one compiled program.
    """
    program = _lr_program(optimizer, profile)
    steps, peak = optimizer.budget_steps(budget, profile), np.float32(peak)
    blocks = [program(steps, peak, np.arange(start, start + LR_BLOCK, dtype=np.int32))
              for start in range(0, budget, LR_BLOCK)]
    return np.concatenate([np.asarray(b) for b in blocks])[:budget]


def shared_prefix(optimizer, profile, budget: int, longest: int, peak_lrs) -> int:
    """Steps at the start of ``budget`` whose learning rate equals the ``longest`` budget's.

    The learning rates of both budgets are computed for every peak lr; the prefix
    ends one step before the first step where they differ (a margin against a
    last-bit difference at the boundary), or is the whole budget when they never
    differ (``constant``), or the longest budget itself. Branching at this step
    reproduces the budget's own run.
    """
    if budget == longest:
        return budget  # the trunk is the longest budget's own run
    out = budget
    for peak in peak_lrs:
        a = lr_values(optimizer, profile, budget, float(peak))
        b = lr_values(optimizer, profile, longest, float(peak))[:budget]
        differ = np.flatnonzero(a != b)
        if differ.size:
            out = min(out, max(int(differ[0]) - 1, 0))
    return out


def branched_schedules(spec) -> dict[str, list[int]]:
    """``{schedule: [branch step per budget]}`` of the spec's schedules that branch.

    A schedule branches when its learning rate is shared with the longest budget
    over at least half of every budget (and the optimizer does not depend on the
    budget: not with Demon). The longest budget's branch step is the budget: its
    runs are the trunk's.
    """
    if spec.optimizer.demon or spec.optimizer.schedule == "autowu":
        return {}
    budgets = spec.budget_steps()
    longest = max(budgets)
    out = {}
    for name in spec.schedules:
        steps = [shared_prefix(spec.optimizer, spec.profile(name), t, longest, spec.peak_lrs)
                 for t in budgets]
        shorter = [(s, t) for s, t in zip(steps, budgets, strict=True) if t < longest]
        if shorter and all(2 * s >= t for s, t in shorter):
            out[name] = steps
    return out


# ------------------------------------------------------------------ halving
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


def halving_cells(spec_runs: list[dict], group: Group) -> list[tuple[str, float]]:
    """``(schedule, peak lr)`` of each run of ``group`` (successive halving's cells)."""
    return [(spec_runs[i]["schedule"], spec_runs[i]["peak_lr"]) for i in group.run_idx]


# ------------------------------------------------------------------ sizes
def steps_to_train(spec: SweepSpec, plan: Plan, todo: list[Group], trunks: list[Trunk]) -> int:
    """Run-steps left to train (for the progress display)."""
    runs = spec.runs()
    total = 0
    for g in todo:
        if isinstance(g, HalvingGroup):
            cells = halving_cells(runs, g)
            total += halving_steps(len(cells), halving_plan(spec, g.budget, cells),
                                   g.budget, g.budget)
        elif isinstance(g, BranchGroup):
            total += len(g.rows) * (g.budget - g.branch_step)
        elif isinstance(g, LawGroup):
            continue
        else:
            total += len(g.run_idx) * g.budget
    for t in trunks:
        total += len(t.cells) * max(g.branch_step for g in plan.branches(t) if g in todo)
    return total


def runs_per_program(progs, devices) -> int | None:
    """The runs that fit in one program of each of ``progs`` (:func:`memory_limited_runs`),
    or None when the devices do not say."""
    fits = [f for f in (memory_limited_runs(p, devices) for p in progs) if f is not None]
    return min(fits) if fits else None


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
