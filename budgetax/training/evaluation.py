r"""Evaluation of a group of runs: dataset means of the task's metrics, one batch at a time.

After a segment the runs are evaluated: the ``test_*`` metrics on the task's
held-out data and, with ``diagnostics``, the ``train_*`` metrics and the norm of
the full gradient (``full_grad_norm``) on the training set or a fixed subset of
it (:func:`~budgetax.training.program.diagnostic_indices`), the
budgeted-convergence diagnostics of Li et al.

One procedure, :func:`evaluate`, defines the numbers: the examples are cut into
batches of ``eval_batch_size`` (the last one shorter), each batch's means are
weighted by its size and summed in order, and the sums divided by the number of
examples. It runs in two places:

- in-memory data (:func:`evaluate_program`): inside one compiled program, the
  full batches under ``lax.scan``, one run after another on each device
  (``lax.map`` inside ``shard_map``: a vmapped convolution with per-run weights
  becomes a grouped convolution, about twice as slow on CPU);
- a random-access source (:func:`evaluate_streamed`): the host gathers each
  batch and one compiled program adds it to every run's sums;
- in-memory data of a model whose steps the core dispatches one by one (a
  convolution on CPU, :func:`~budgetax.training.core.dispatches_steps`;
  :func:`evaluate_stepped`, and ``stepped`` streamed evaluation): one program
  call per run and batch, because XLA:CPU
  runs a convolution's gradient several times slower inside ``lax.map`` or
  ``lax.scan`` than in a program's entry computation.

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from budgetax.training import task as _task
from budgetax.training.hosts import put
from budgetax.training.program import Program, diagnostic_indices, model_fns
from budgetax.training.steps import eval_means, full_gradient, global_norm
from budgetax.training.task import Task

__all__ = ["evaluate", "evaluate_program", "evaluate_stepped", "evaluate_streamed",
           "say_non_finite"]


# ------------------------------------------------------------------ one run, one batch
def _means(prog: Program, kind: str, state, batch) -> dict:
    """Batch means of one run (with the gradient of the mean loss as ``_grad`` for ``"train"``)."""
    task, fns = prog.task, model_fns(prog.task, prog.spec.precision)
    if kind == "train":
        means, g = full_gradient(task, fns, state.params, state.rest, batch)
        return dict(means, _grad=g)
    return eval_means(task, fns, state.params, state.rest, batch)


def _accumulate(prog: Program, kind: str, state, acc, batch, weight):
    """Adds ``weight`` x the batch means of one run to ``acc``."""
    return jax.tree.map(lambda a, m: a + weight * m, acc, _means(prog, kind, state, batch))


def _zero_acc(prog: Program, kind: str, state, batch):
    out = jax.eval_shape(functools.partial(_means, prog, kind), state, batch)
    return jax.tree.map(lambda a: jnp.zeros(a.shape, jnp.float32), out)


def _finish(kind: str, acc, count) -> dict:
    """Dataset means from weighted sums; ``{"train_*", "full_grad_norm"}`` or ``{"test_*"}``."""
    out = {f"{kind}_{k}": v / count for k, v in acc.items() if k != "_grad"}
    if "_grad" in acc:
        out["full_grad_norm"] = global_norm(jax.tree.map(lambda a: a / count, acc["_grad"]))
    return out


_finish_runs = jax.jit(jax.vmap(_finish, in_axes=(None, 0, None)), static_argnums=0)


# ------------------------------------------------------------------ the procedure
def evaluate(prog: Program, eval_data, train_data, sums) -> dict:
    """Every evaluation metric: ``{"test_*"}`` on ``eval_data``, with diagnostics
    ``{"train_*", "full_grad_norm"}`` on ``train_data``.

    ``eval_data`` (``None``: no held-out set) and ``train_data`` (the diagnostics'
    examples) are whatever ``sums`` reads. For each, the ``n`` examples are cut
    into ``full`` batches of ``size = min(eval_batch_size, n)`` and a last batch of
    the ``rem`` others; the sums start at zero, add ``size`` x the means of each
    full batch in order, then ``rem`` x those of the last one, and are divided by
    ``n``. ``sums`` does the arithmetic where the runs are: ``size(data)``,
    ``batch(data, lo, hi)``, ``zero(kind, batch)``, ``add(kind, acc, batch,
    weight)``, ``add_full(kind, acc, data, first, full, size)`` (the full batches,
    ``first`` the first one, already read) and ``finish(kind, acc, n)``.
    """
    parts = []
    if eval_data is not None:
        parts.append(("test", eval_data))
    if prog.diagnostics:
        parts.append(("train", train_data))
    out = {}
    for kind, data in parts:
        n = sums.size(data)
        size = min(prog.eval_batch_size, n)
        full, rem = divmod(n, size)
        first = sums.batch(data, 0, size)
        acc = sums.zero(kind, first)
        if full:
            acc = sums.add_full(kind, acc, data, first, full, size)
        if rem:
            acc = sums.add(kind, acc, sums.batch(data, full * size, n), jnp.float32(rem))
        out.update(sums.finish(kind, acc, jnp.float32(n)))
    return out


# ------------------------------------------------------------------ in-memory data
class _InMemory:
    """The sums of one run on on-device data, traced (the full batches under ``lax.scan``)."""

    def __init__(self, prog: Program, state):
        self.prog, self.state = prog, state

    def size(self, data) -> int:
        return jax.tree.leaves(data)[0].shape[0]

    def batch(self, data, lo: int, hi: int):
        return jax.tree.map(lambda a: a[lo:hi], data)

    def zero(self, kind, batch):
        return _zero_acc(self.prog, kind, self.state, batch)

    def add(self, kind, acc, batch, weight):
        return _accumulate(self.prog, kind, self.state, acc, batch, weight)

    def add_full(self, kind, acc, data, first, full, size):
        del first  # the scan reads every full batch from ``data``
        stacked = jax.tree.map(lambda a: a[:full * size].reshape(full, size, *a.shape[1:]),
                               data)
        acc, _ = jax.lax.scan(lambda a, b: (self.add(kind, a, b, jnp.float32(size)), None),
                              acc, stacked)
        return acc

    def finish(self, kind, acc, count):
        return _finish(kind, acc, count)


@functools.lru_cache(maxsize=64)
def evaluate_program(prog: Program, mesh):
    """In-memory data: a jitted ``(states, eval_data, train_data) -> {name: [R]}``."""

    def local(states, eval_data, train_data):
        return jax.lax.map(lambda s: evaluate(prog, eval_data, train_data, _InMemory(prog, s)),
                           states)

    def program(states, eval_data, train_data):
        return jax.shard_map(local, mesh=mesh, in_specs=(P("runs"), P(), P()),
                             out_specs=P("runs"), check_vma=False)(states, eval_data,
                                                                   train_data)

    return jax.jit(program)


# ------------------------------------------------------------------ in-memory data, stepped
@functools.lru_cache(maxsize=64)
def _run_batch_program(prog: Program, mesh, kind: str, size: int):
    """``(states, run, acc, data, lo, weight) -> acc``: one run, the batch ``[lo, lo + size)``."""

    def program(states, run, acc, data, lo, weight):
        state = jax.tree.map(lambda a: a[run], states)
        batch = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, lo, size), data)
        return _accumulate(prog, kind, state, acc, batch, weight)

    return jax.jit(program, donate_argnums=(2,))


class _Stepped:
    """The sums of every run on on-device data, one program call per run and batch.

    For the models whose training steps are dispatched one by one
    (:func:`budgetax.training.core.dispatches_steps`: a convolution on CPU, where
    XLA runs a convolution's gradient several times slower inside a loop, the
    ``lax.map`` and ``lax.scan`` of :func:`evaluate_program`). The same procedure,
    the same batches and order of sums; a run's sums are its own arrays.
    """

    def __init__(self, prog: Program, mesh, states, padded: int):
        self.prog, self.mesh, self.states, self.padded = prog, mesh, states, padded
        repl = NamedSharding(mesh, P())
        self._scalar = lambda v, dtype=np.int32: put(np.asarray(v, dtype), repl)
        self._runs = [self._scalar(r) for r in range(padded)]

    def size(self, data) -> int:
        return jax.tree.leaves(data)[0].shape[0]

    def batch(self, data, lo: int, hi: int):
        return data, lo, hi

    def zero(self, kind, batch):
        data, lo, hi = batch
        one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), self.states)
        shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct((hi - lo, *a.shape[1:]), a.dtype),
                              data)
        zero = _zero_acc(self.prog, kind, one, shapes)
        return [jax.tree.map(lambda z: self._scalar(np.zeros(z.shape), z.dtype), zero)
                for _ in range(self.padded)]

    def add(self, kind, acc, batch, weight):
        data, lo, hi = batch
        program = _run_batch_program(self.prog, self.mesh, kind, hi - lo)
        lo, weight = self._scalar(lo), self._scalar(weight, np.float32)
        return [program(self.states, self._runs[r], a, data, lo, weight)
                for r, a in enumerate(acc)]

    def add_full(self, kind, acc, data, first, full, size):
        for j in range(full):
            acc = self.add(kind, acc, self.batch(data, j * size, (j + 1) * size),
                           jnp.float32(size))
        return acc

    def finish(self, kind, acc, count):
        stacked = _finish_runs(kind, jax.tree.map(lambda *a: jnp.stack(a), *acc), count)
        return _to_runs(self.mesh)(stacked)


@functools.lru_cache(maxsize=16)
def _to_runs(mesh):
    """A jitted identity whose output is sharded over the runs (as the other paths' is)."""
    return jax.jit(lambda tree: tree, out_shardings=NamedSharding(mesh, P("runs")))


def evaluate_stepped(prog: Program, mesh, states, padded: int, eval_data, train_data) -> dict:
    """In-memory data, one program call per run and batch: ``{name: [padded]}``."""
    return evaluate(prog, eval_data, train_data, _Stepped(prog, mesh, states, padded))


# ------------------------------------------------------------------ streamed data
@functools.lru_cache(maxsize=64)
def _accumulate_program(prog: Program, mesh, kind: str):
    """Streamed data: ``(states, acc, batch, weight) -> acc`` for every run (one batch)."""

    def local(states, acc, batch, weight):
        return jax.lax.map(lambda sa: _accumulate(prog, kind, sa[0], sa[1], batch, weight),
                           (states, acc))

    def program(states, acc, batch, weight):
        return jax.shard_map(local, mesh=mesh, in_specs=(P("runs"), P("runs"), P(), P()),
                             out_specs=P("runs"), check_vma=False)(states, acc, batch, weight)

    return jax.jit(program, donate_argnums=(1,))


@functools.lru_cache(maxsize=64)
def _accumulate_run_program(prog: Program, mesh, kind: str):
    """Streamed data, one run: ``(states, run, acc, batch, weight) -> acc`` (row ``run`` added)."""

    def program(states, run, acc, batch, weight):
        state = jax.tree.map(lambda a: a[run], states)
        mine = _accumulate(prog, kind, state, jax.tree.map(lambda a: a[run], acc), batch,
                           weight)
        return jax.tree.map(lambda a, m: a.at[run].set(m), acc, mine)

    runs = NamedSharding(mesh, P("runs"))
    return jax.jit(program, out_shardings=runs, donate_argnums=(2,))


class _Streamed:
    """The sums of every run on a source: the host gathers each batch, the device adds it.

    ``stepped`` (the models whose training steps the core dispatches one by one, as
    for :func:`evaluate_stepped`): one program call per run and batch instead of a
    ``lax.map`` over the runs.

    A part of the data is ``(source, indices)`` (``None``: all its examples).
    """

    def __init__(self, prog: Program, mesh, states, padded: int, stepped: bool = False):
        self.prog, self.mesh, self.states, self.padded = prog, mesh, states, padded
        self._runs = NamedSharding(mesh, P("runs"))
        self._repl = NamedSharding(mesh, P())
        self._rows = ([put(np.int32(r), self._repl) for r in range(padded)] if stepped
                      else None)

    def _idx(self, data):
        source, idx = data
        return np.arange(_task.source_len(source)) if idx is None else idx

    def size(self, data) -> int:
        return len(self._idx(data))

    def batch(self, data, lo: int, hi: int):
        return _task.gather(data[0], self._idx(data)[lo:hi])

    def zero(self, kind, batch):
        one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), self.states)
        zero = _zero_acc(self.prog, kind, one, batch)
        return jax.tree.map(lambda z: put(np.zeros((self.padded, *z.shape), z.dtype),
                                          self._runs), zero)

    def add(self, kind, acc, batch, weight):
        batch = jax.tree.map(lambda a: put(a, self._repl), batch)
        if self._rows is not None:
            program = _accumulate_run_program(self.prog, self.mesh, kind)
            for run in self._rows:
                acc = program(self.states, run, acc, batch, weight)
            return acc
        return _accumulate_program(self.prog, self.mesh, kind)(self.states, acc, batch, weight)

    def add_full(self, kind, acc, data, first, full, size):
        for j in range(full):
            batch = first if j == 0 else self.batch(data, j * size, (j + 1) * size)
            acc = self.add(kind, acc, batch, jnp.float32(size))
        return acc

    def finish(self, kind, acc, count):
        return _finish_runs(kind, acc, count)


def evaluate_streamed(prog: Program, mesh, states, padded: int, stepped: bool = False) -> dict:
    """Every evaluation metric of the ``padded`` runs ``states`` of a streamed task:
    ``{name: [padded]}`` (``stepped``: one program call per run and batch)."""
    task = prog.task
    eval_data = None if task.eval_data is None else (task.eval_data, None)
    idx = diagnostic_indices(task, prog.diagnostics) if prog.diagnostics else None
    return evaluate(prog, eval_data, (task.train_data, idx),
                    _Streamed(prog, mesh, states, padded, stepped))


# ------------------------------------------------------------------ checks
def say_non_finite(task: Task, ev: dict, alive: np.ndarray, real: int) -> None:
    """Warns about evaluation metrics that are not finite at the first evaluation of live runs.

    A run that has not diverged has a finite loss, so a NaN there comes from the
    evaluation itself: NaN in ``eval_data`` (a target), or a metric that divides by
    zero. Said once, at the first evaluation, naming the metrics.
    """
    bad = [k for k, v in ev.items()
           if np.any(~np.isfinite(np.asarray(v[:real], np.float64)) & alive)]
    if bad:
        warnings.warn(
            f"task {task.name!r}: {', '.join(bad)} not finite at the first evaluation of runs "
            f"that have not diverged: the evaluation data (NaN in eval_data or train_data?) "
            f"or the metric (a division by zero?) gives it", UserWarning, stacklevel=3)
