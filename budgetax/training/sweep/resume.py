"""A given spec against the one stored in a sweep directory: resume, extend or refuse.

A stored spec is first read as the spec it is today (:func:`comparable`: fields
added since it was written take the values it was trained with; halving's options
are left out when the strategy does not prune, as they change nothing). The sweep
then resumes when the two are equal, is *extended* (:func:`extend`) when the given
spec only adds budgets, schedules, lrs or seeds, and is refused otherwise
(:func:`check`, naming every difference). :func:`auto_added_lrs` finds the lrs an
earlier ``auto_lrs`` call added, so that the same call resumes its widened grid.
"""

from __future__ import annotations

import dataclasses
import os

from budgetax.training.sweep.plan import GridGroup, Plan, grid_groups, make_plan
from budgetax.training.sweep.spec import SweepSpec, SweepSpecMismatchError
from budgetax.training.sweep.store import STORE_NAME, Store

__all__ = ["auto_added_lrs", "check", "comparable", "extend", "extends", "plan"]

# fields added to SweepSpec after stores were written: a stored spec without them had these
_SPEC_ADDED = {"strategy": "grid", "prune_rate": 3, "prune_at": [0.25, 0.5],
               "prune_estimator": "tse_e"}
_GRID_FIELDS = ("budgets", "schedules", "peak_lrs", "seeds")
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
    same = all(stored.get(k) == v for k, v in given.items() if k not in _GRID_FIELDS)
    return same and all(set(stored.get(k, ())) <= set(given[k]) for k in _GRID_FIELDS)


def extend(store: Store, spec: SweepSpec, max_runs_per_program: int | None) -> None:
    """Adds the runs of ``spec`` that ``store`` lacks; the stored runs are kept as they are.

    The new runs are planned as grid groups (trained from scratch, whatever the
    strategy), padded among themselves; the stored groups' run indices follow the
    new plan order.
    """
    runs = spec.runs()
    stored_rows = store.runs()
    old_id = {r["idx"]: r["run_id"] for r in stored_rows}
    new_idx = {r["run_id"]: i for i, r in enumerate(runs)}
    plan = Plan.from_dict(store.get_meta("plan"))
    groups = [dataclasses.replace(g, run_idx=tuple(new_idx[old_id[i]] for i in g.run_idx))
              for g in plan.groups]
    round_ = 1 + max((g.extension for g in groups), default=0)
    have = set(old_id.values())
    added = grid_groups(spec, runs, lambda r: r["run_id"] not in have, max_runs_per_program,
                        cls=GridGroup, extension=round_)
    rows = [dict(runs[i], idx=i, group_id=g.group_id) for g in added for i in g.run_idx]
    plan = dataclasses.replace(plan, groups=tuple(groups + added))
    store.extend({"spec": spec.to_dict(), "plan": plan.to_dict()},
                 {r["run_id"]: new_idx[r["run_id"]] for r in stored_rows}, rows)


def plan(store: Store, task, spec: SweepSpec, metric_names: dict,
         max_runs_per_program: int | None) -> None:
    """Plans the sweep into a new ``store`` (its meta and every run, pending), or extends
    the stored sweep when ``spec`` only adds to it; a store that holds another sweep is
    left for :func:`check` to refuse."""
    stored = store.get_meta("spec")
    if stored is not None and extends(comparable(stored), comparable(spec.to_dict())):
        extend(store, spec, max_runs_per_program)
    if store.get_meta("plan") is not None:
        return
    new = make_plan(spec, max_runs_per_program, max(1, task.num_train // spec.batch_size))
    runs = spec.runs()
    rows = sorted((dict(runs[i], idx=i, group_id=g.group_id)
                   for g in new.groups for i in g.run_idx), key=lambda r: r["idx"])
    store.initialise({"spec": spec.to_dict(), "task": task.identity(), "metrics": metric_names,
                      "table_metric": list(task.table_metric(spec.diagnostics)),
                      "plan": new.to_dict()}, rows)


def check(store: Store, key: str, given: dict, out_dir: str) -> None:
    """Raises :class:`SweepSpecMismatchError` unless the stored ``key`` (``spec`` or
    ``task``) equals ``given``, naming each field that differs."""
    stored = store.get_meta(key)
    if key == "spec" and stored is not None:
        stored, given = comparable(stored), comparable(given)
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
