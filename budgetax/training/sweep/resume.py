"""A given spec against the one stored in a sweep directory: resume, extend or refuse.

A stored spec is first read as the spec it is today (:func:`comparable`: fields
added since it was written take the values it was trained with; halving's options
are left out when the strategy does not prune, as they change nothing). The sweep
then resumes when the two are equal, is *extended* when the given spec only adds
budgets, schedules, lrs or seeds, and is refused otherwise (naming every
difference). :func:`prepare` makes every check before it returns what to write,
so a refused call leaves the store as it was. :func:`auto_added_lrs` finds the lrs an
earlier ``auto_lrs`` call added, so that the same call resumes its widened grid.
"""

from __future__ import annotations

import dataclasses
import os

from budgetax.training.sweep.plan import BranchGroup, GridGroup, Plan, grid_groups, make_plan
from budgetax.training.sweep.spec import SweepSpec, SweepSpecMismatchError
from budgetax.training.sweep.store import STORE_NAME, Store

__all__ = ["CUSTOM_FIELD", "GRID_FIELDS", "auto_added_lrs", "check", "comparable", "extends",
           "prepare"]

# fields added to SweepSpec after stores were written: a stored spec without them had these
_SPEC_ADDED = {"strategy": "grid", "prune_rate": 3, "prune_at": [0.25, 0.5],
               "prune_estimator": "tse_e"}
GRID_FIELDS = ("budgets", "schedules", "peak_lrs", "seeds")
# {custom schedule: {budget: digest}}: grows with the grid, each stored entry kept
CUSTOM_FIELD = "custom_schedules"
_PRUNE_FIELDS = ("prune_rate", "prune_at", "prune_estimator")


def comparable(spec: dict) -> dict:
    """A stored or given spec as compared on resume: fields it predates filled in, and
    halving's options left out when the strategy does not prune (they change nothing)."""
    spec = {**_SPEC_ADDED, **spec}
    if "halving" not in spec["strategy"]:
        spec = {k: v for k, v in spec.items() if k not in _PRUNE_FIELDS}
    return spec


def extends(stored: dict, given: dict) -> bool:
    """Whether ``given`` adds budgets, schedules, lrs or seeds to ``stored`` and changes
    nothing else (both :func:`comparable`)."""
    if stored == given:
        return False
    grown = (*GRID_FIELDS, CUSTOM_FIELD)
    same = all(stored.get(k) == given.get(k) for k in set(stored) | set(given)
               if k not in grown)
    mine, theirs = stored.get(CUSTOM_FIELD, {}), given.get(CUSTOM_FIELD, {})
    kept = all(theirs.get(name, {}).get(t) == d
               for name, per in mine.items() for t, d in per.items())
    return same and kept and all(set(stored.get(k, ())) <= set(given[k]) for k in GRID_FIELDS)


def _extension(stored_rows: list[dict], stored_plan: Plan, spec: SweepSpec,
               max_runs_per_program: int | None):
    """``(meta, idx, rows)`` that extend a stored sweep to ``spec`` (:meth:`Store.extend`).

    The new runs are planned as grid groups (trained from scratch, whatever the
    strategy), padded among themselves; the stored groups' run indices follow the
    new plan order.
    """
    runs = spec.runs()
    old_id = {r["idx"]: r["run_id"] for r in stored_rows}
    new_idx = {r["run_id"]: i for i, r in enumerate(runs)}
    groups = [dataclasses.replace(g, run_idx=tuple(new_idx[old_id[i]] for i in g.run_idx))
              for g in stored_plan.groups]
    round_ = 1 + max((g.extension for g in groups), default=0)
    have = set(old_id.values())
    added = grid_groups(spec, runs, lambda r: r["run_id"] not in have, max_runs_per_program,
                        cls=GridGroup, extension=round_)
    rows = [dict(runs[i], idx=i, group_id=g.group_id) for g in added for i in g.run_idx]
    plan = dataclasses.replace(stored_plan, groups=tuple(groups + added))
    return ({"spec": spec.to_dict(), "plan": plan.to_dict()},
            {r["run_id"]: new_idx[r["run_id"]] for r in stored_rows}, rows)


def _largest_program(plan: Plan, finished: set) -> int:
    """The most runs one program of ``plan``'s unfinished groups and trunks holds."""
    sizes = [len(g.run_idx) for g in plan.groups
             if not isinstance(g, BranchGroup) and g.group_id not in finished]
    sizes += [len(t.cells) for t in plan.trunks
              if any(g.group_id not in finished for g in plan.branches(t))]
    return max(sizes, default=0)


def prepare(path: str | None, task, spec: SweepSpec, metric_names: dict,
            max_runs_per_program: int | None, default_runs_per_program, out_dir: str):
    """What running ``spec`` on ``task`` writes into the store at ``path``, every check done
    first: a function of the open store, or ``None`` when the stored sweep is resumed as
    it is (``path`` ``None``: a new store, as with ``overwrite``). Nothing is written
    here, so a refused call leaves the directory as it was.

    ``max_runs_per_program``: the caller's (``None``: not given;
    ``default_runs_per_program()`` then gives the planned value). On resume a
    stored plan is kept: a smaller given value than its unfinished programs hold is
    refused rather than ignored.

    Raises:
      SweepSpecMismatchError: the store holds another task, or a spec that ``spec``
        neither equals nor extends.
      ValueError: ``max_runs_per_program`` below the stored plan's programs, or one
        that the strategy cannot plan with.
    """
    stored_spec = stored_task = None
    if path is not None and os.path.isfile(path):
        with Store(path, readonly=True) as store:
            stored_spec, stored_task = store.get_meta("spec"), store.get_meta("task")
            if stored_spec is not None:
                _refuse_unless_equal("task", stored_task, task.identity(), out_dir)
                stored_plan = Plan.from_dict(store.get_meta("plan"))
                finished = store.finished_groups()
                stored_rows = store.runs()
    limit = max_runs_per_program
    if stored_spec is None:  # a new sweep (or one killed before its plan was stored)
        if limit is None:
            limit = default_runs_per_program()
        new = make_plan(spec, limit, max(1, task.num_train // spec.batch_size))
        runs = spec.runs()
        rows = sorted((dict(runs[i], idx=i, group_id=g.group_id)
                       for g in new.groups for i in g.run_idx), key=lambda r: r["idx"])
        meta = {"spec": spec.to_dict(), "task": task.identity(), "metrics": metric_names,
                "table_metric": list(task.table_metric(spec.diagnostics)),
                "plan": new.to_dict()}
        return lambda store: store.initialise(meta, rows)
    stored, given = comparable(stored_spec), comparable(spec.to_dict())
    if limit is not None:
        largest = _largest_program(stored_plan, finished)
        if largest > limit:
            raise ValueError(
                f"max_runs_per_program={limit} is less than the {largest} runs of a program "
                f"of the sweep stored in {out_dir!r} (fixed when it was planned): resume "
                f"without max_runs_per_program or with at least {largest}, or use another "
                f"output directory")
    if stored == given:
        return None
    if not extends(stored, given):
        _refuse_unless_equal("spec", stored, given, out_dir)
    if limit is None:
        limit = default_runs_per_program()
    extension = _extension(stored_rows, stored_plan, spec, limit)
    return lambda store: store.extend(*extension)


def _refuse_unless_equal(key: str, stored, given, out_dir: str) -> None:
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


def check(store: Store, key: str, given: dict, out_dir: str) -> None:
    """Raises :class:`SweepSpecMismatchError` unless the stored ``key`` (``spec`` or
    ``task``) equals ``given``, naming each field that differs."""
    stored = store.get_meta(key)
    if key == "spec" and stored is not None:
        stored, given = comparable(stored), comparable(given)
    _refuse_unless_equal(key, stored, given, out_dir)


def auto_added_lrs(spec: SweepSpec, out_dir: str) -> tuple[float, ...]:
    """The lrs an earlier ``auto_lrs`` call added past the edges of ``spec``'s grid in
    ``out_dir``: the stored spec is ``spec`` with more peak lrs, all outside its range."""
    path = os.path.join(out_dir, STORE_NAME)
    if not os.path.isfile(path):
        return ()
    with Store(path, readonly=True) as store:
        stored = store.get_meta("spec")
    if stored is None:
        return ()
    stored, given = comparable(stored), comparable(spec.to_dict())
    have, want = stored.pop("peak_lrs", ()), given.pop("peak_lrs")
    extra = tuple(sorted(set(have) - set(want)))
    if stored != given or not set(want) <= set(have):
        return ()
    if all(lr < min(want) or lr > max(want) for lr in extra):
        return extra
    return ()
