"""The in-memory data of a task on a mesh: uploaded once, then reused.

An in-memory task's training set, held-out set and diagnostics examples are put
on the mesh (replicated) the first time a group of runs needs them and kept,
per task object, for the next groups and calls (``train`` after ``train``, the
budgets of a sweep). The cache holds one mesh and diagnostics setting per task
and lets go of a task's arrays when the task itself is gone.
"""

from __future__ import annotations

import weakref

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from budgetax.training import task as _task
from budgetax.training.hosts import put
from budgetax.training.program import diagnostic_indices
from budgetax.training.task import Task

__all__ = ["device_data"]

# {task: {(mesh, diagnostics): (train, eval, diagnostics data)}}, at most one entry per task
_DEVICE_DATA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def device_data(task: Task, mesh, diagnostics) -> tuple:
    """``(train, eval, diagnostics)`` in-memory data of ``task`` on ``mesh`` (replicated).

    ``None`` for a part the task streams from a source or does not have; the
    diagnostics data is the training set itself when the diagnostics use all of it.
    Uploaded once per task, mesh and diagnostics setting.
    """
    cache = _DEVICE_DATA.setdefault(task, {})
    key = (mesh, diagnostics)
    if key not in cache:
        repl = NamedSharding(mesh, P())
        to_dev = lambda d: None if d is None or _task.is_source(d) else jax.tree.map(
            lambda a: put(a, repl), d)
        cache.clear()  # one mesh at a time per task
        train = to_dev(task.train_data)
        idx = diagnostic_indices(task, diagnostics) if diagnostics else None
        diag = train if idx is None or train is None else to_dev(
            _task.gather(task.train_data, idx))
        cache[key] = (train, to_dev(task.eval_data), diag)
    return cache[key]
