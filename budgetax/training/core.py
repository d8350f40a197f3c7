r"""The training core: ``R`` runs of one budget, vmapped and sharded, advanced segment by segment.

Every driver (:func:`budgetax.training.train`, :func:`~budgetax.training.train_many`,
:func:`~budgetax.training.sweep`, ``budgetax demo``) runs its runs through this
module. A run is a pure function of ``(key, peak_lr, schedule_index)`` given the
static :class:`Program` (task, budget, optimizer spec, schedule choices, batch
size, evaluation settings):

- its key gives the model initialisation and the batch order
  (``init_key, data_key = split(key)``) and, for ``precision="bf16_sr"``, its
  stochastic-rounding stream (a seed drawn from ``fold_in(key, SR_STREAM)``);
- its schedule is ``lax.switch(schedule_index, profiles)`` over the program's
  ``choices``, so runs with different schedules share one compiled program.

A budget of ``T`` steps with ``E`` evaluations is cut into ``E`` segments of
``floor(T/E)`` or ``ceil(T/E)`` steps (:func:`eval_steps`). One compiled program
advances all runs by up to ``Lmax`` steps (steps past a segment's length are
skipped with ``lax.cond``) and initialises them when it starts at step 0, so a
budget is one compilation and the host can checkpoint between segments. After
each segment the runs are evaluated (``test_*`` metrics on the task's held-out
data, and with ``diagnostics`` the full-training-set ``train_*`` metrics and the
norm of the full gradient, the budgeted-convergence diagnostics of Li et al.; an
int ``diagnostics=N`` computes them on a fixed random subset of N training
examples, the same for every run, which is much cheaper on large training sets).

Data: an in-memory training set is put on the device once and batches are drawn
inside the program (:func:`budgetax.data.device_batch_indices`); a random-access
source is streamed: the host gathers each run's batches for the next chunk of
steps in a background thread while the device trains on the current one. Both
draw the same batches.

Divergence, one rule for every driver: a run whose loss or update turns
non-finite, or whose minibatch loss exceeds ``divergence_factor`` times its
first minibatch loss (when that is positive; a blown-up run at chance accuracy
with a loss of 1e21 is not "done"), is frozen at its last good state, its step is
reported (``diverged_step``) and its per-step metrics are NaN from there; the
other runs of the program are unaffected (runs are independent under ``vmap``).

Sharding: the run axis is sharded over the mesh's devices
(``NamedSharding(mesh, P("runs"))``), the data replicated. Evaluation runs one
run after another on each device (``lax.map`` inside ``shard_map``): a vmapped
convolution with per-run weights becomes a grouped convolution, twice as slow
on CPU (benchmarks/results/sweep_throughput_cnn1d.md).

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import warnings
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from budgetax import _validate, profiles
from budgetax.data.batching import (
    check_batch_size,
    device_batch_indices,
    steps_batch_indices,
)
from budgetax.training import task as _task
from budgetax.training.optim import OptimizerSpec
from budgetax.training.steps import (
    ModelFns,
    TrainState,
    eval_means,
    full_gradient,
    global_norm,
    make_model_fns,
    train_step,
)
from budgetax.training.task import Task

__all__ = ["SR_STREAM", "STEP_METRICS", "Carry", "Program", "Runs", "eval_steps",
           "make_mesh", "segments", "sr_seed", "take_runs"]

SR_STREAM = 0x5352  # fold_in tag of the stochastic-rounding stream of a run's key
STEP_METRICS = ("grad_norm", "update_norm", "lr")  # added by the loop to the loss's metrics
STREAM_CHUNK = 64  # steps per host-to-device transfer of streamed batches
DIVERGENCE_FACTOR = 100.0  # a loss above this multiple of the first loss: diverged


# ------------------------------------------------------------------ planning
def segments(budget: int, num_evals: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths, starts)`` of the ``min(num_evals, budget)`` segments of a budget.

    The first ``budget mod E`` segments have ``ceil(budget/E)`` steps, the rest
    ``floor(budget/E)``.
    """
    e = min(num_evals, budget)
    q, r = divmod(budget, e)
    lengths = np.array([q + 1] * r + [q] * (e - r), np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return lengths, starts


def eval_steps(budget: int, num_evals: int) -> np.ndarray:
    """Steps after which a run of ``budget`` evaluates: ``min(num_evals, budget)`` segment ends.

    Evaluation ``k`` is within one step of ``k/E`` of the budget; the last is at ``budget``.

    Example:
      >>> eval_steps(100, 4).tolist()
      [25, 50, 75, 100]
    """
    budget = _validate.positive_int("budget", budget)
    num_evals = _validate.positive_int("num_evals", num_evals)
    lengths, starts = segments(budget, num_evals)
    return starts + lengths


def sr_seed(key) -> jax.Array:
    """The stochastic-rounding seed of the run with key ``key`` (traceable int32 scalar)."""
    return jax.random.randint(jax.random.fold_in(key, SR_STREAM), (), 0,
                              jnp.iinfo(jnp.int32).max, dtype=jnp.int32)


def make_mesh(devices) -> jax.sharding.Mesh:
    """A one-axis mesh ``("runs",)`` over ``devices``."""
    return jax.sharding.Mesh(np.asarray(list(devices)), ("runs",),
                             axis_types=(jax.sharding.AxisType.Auto,))


@dataclasses.dataclass(frozen=True)
class Program:
    """The static part of a group of runs: everything but their keys, peak lrs and schedules.

    Attributes:
      task: the :class:`Task`.
      budget: the number of optimizer steps ``T``.
      spec: the :class:`OptimizerSpec` with ``peak_lr`` and ``seed`` normalised to 0
        (both are per-run inputs).
      choices: ``((profile name, kwargs pairs), ...)``, the schedules a run picks
        from by index; ``()`` for the spec's own ``"autowu"`` schedule.
      batch_size, num_evals, eval_batch_size, diagnostics: as in :func:`train`.
      divergence_factor: the blow-up rule's factor (``None``: non-finite values only).
    """

    task: Task
    budget: int
    spec: OptimizerSpec
    choices: tuple
    batch_size: int
    num_evals: int
    eval_batch_size: int
    diagnostics: bool | int
    divergence_factor: float | None = DIVERGENCE_FACTOR

    @property
    def streamed(self) -> bool:
        return self.task.streamed

    def metric_names(self) -> dict:
        """``{"train": per-step names, "eval": per-evaluation names}``."""
        names = self.task.metric_names(self.diagnostics)
        return {"train": names["train"] + STEP_METRICS, "eval": names["eval"]}


def check_diagnostics(value) -> bool | int:
    """``diagnostics``: ``True`` (whole training set), ``False`` or a positive int (a subset)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, int) or value < 1:
        raise (TypeError if not isinstance(value, int) else ValueError)(
            f"diagnostics must be a bool or a positive int (examples), got {value!r}")
    return value


def diagnostic_indices(task: Task, diagnostics) -> np.ndarray | None:
    """The training examples of the diagnostics: ``None`` for all, else a fixed sorted subset."""
    if diagnostics is True or diagnostics >= task.num_train:
        return None
    perm = np.random.default_rng(0).permutation(task.num_train)
    return np.sort(perm[:diagnostics])


def make_program(task: Task, budget: int, optimizer: OptimizerSpec | None, *,
                 schedules: tuple | None = None, batch_size: int = 100, num_evals: int = 4,
                 eval_batch_size: int = 1000, diagnostics: bool | int = True,
                 divergence_factor: float | None = DIVERGENCE_FACTOR) -> Program:
    """A validated :class:`Program` (every argument checked now, not when traced).

    ``schedules``: the profile names runs may pick from (a sweep); ``None`` uses
    the optimizer spec's own schedule and its knobs.
    """
    if not isinstance(task, Task):
        raise TypeError(f"task must be a budgetax.training.Task, got {task!r}")
    budget = _validate.positive_int("budget", budget)
    batch_size = check_batch_size(batch_size, task.num_train)
    num_evals = _validate.positive_int("num_evals", num_evals)
    eval_batch_size = _validate.positive_int("eval_batch_size", eval_batch_size)
    diagnostics = check_diagnostics(diagnostics)
    if divergence_factor is not None:
        divergence_factor = _validate.real("divergence_factor", divergence_factor, low=1.0,
                                           low_open=True)
    if optimizer is None:
        optimizer = OptimizerSpec()
    if not isinstance(optimizer, OptimizerSpec):
        raise TypeError(f"optimizer must be an OptimizerSpec, got {optimizer!r}")
    optimizer.build(budget)  # eager validation (warmup, missing transforms, ...)
    if schedules is None:
        choices = (() if optimizer.schedule == "autowu"
                   else ((optimizer.schedule, optimizer.schedule_kwargs),))
    else:
        choices = tuple((name, ()) for name in schedules)
    spec = dataclasses.replace(optimizer, peak_lr=0.0, seed=0)
    prog = Program(task=task, budget=budget, spec=spec, choices=choices,
                   batch_size=batch_size, num_evals=num_evals,
                   eval_batch_size=eval_batch_size, diagnostics=diagnostics,
                   divergence_factor=divergence_factor)
    task.metric_names(diagnostics)  # checks the loss and metrics on a batch now
    return prog


@functools.lru_cache(maxsize=64)
def model_fns(task: Task, precision: str) -> ModelFns:
    """The :class:`ModelFns` of a task's model at a precision (cached per task object)."""
    return make_model_fns(lambda rngs: task.build_model(rngs, precision))


def _find_lr(opt_state):
    """The learning rate kept in an optimizer state (AutoWU), NaN if there is none."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        name = str(getattr(path[-1], "name", getattr(path[-1], "key", ""))) if path else ""
        if name in ("lr", "learning_rate", "current_lr") and jnp.ndim(leaf) == 0:
            return leaf
    return jnp.float32(jnp.nan)


def _profile(choices, index):
    fns = [functools.partial(profiles.get(name), **dict(kw)) if kw else profiles.get(name)
           for name, kw in choices]
    if len(fns) == 1:
        return fns[0]
    return lambda p: jax.lax.switch(index, fns, p)


def _tx(prog: Program, peak, index, seed=None):
    """The optimizer of a run and its ``lr_fn(step, opt_state)`` for the metrics."""
    if not prog.choices:  # AutoWU: the learning rate lives in the optimizer state
        return prog.spec.build(prog.budget, peak, sr_seed=seed), (lambda s, o: _find_lr(o))
    prof = _profile(prog.choices, index)
    tx = prog.spec.build(prog.budget, peak, sr_seed=seed, profile=prof)
    sched = prog.spec.learning_rate(prog.budget, peak, profile=prof)
    return tx, (lambda step, opt_state: sched(step))


class Carry(NamedTuple):
    """The in-flight state of ``R`` runs (leading run axis everywhere)."""

    states: Any                 # TrainState
    perms: jax.Array            # [R, n] int32 epoch permutations ([R, 1] when streamed)
    diverged_step: jax.Array    # [R] int32, -1 while the run is alive
    first_loss: jax.Array       # [R] float32, the minibatch loss of step 0 (blow-up rule)


def _init_carry(prog: Program, keys, lrs, sched_idx):
    fns = model_fns(prog.task, prog.spec.precision)

    def one(key, peak, index):
        init_key, _ = jax.random.split(key)
        tx, _ = _tx(prog, peak, index, sr_seed(key))
        params, rest = fns.init(init_key)
        return TrainState(params, rest, tx.init(params), jnp.int32(0))

    r = keys.shape[0]
    width = 1 if prog.streamed else prog.task.num_train
    return Carry(jax.vmap(one)(keys, lrs, sched_idx), jnp.zeros((r, width), jnp.int32),
                 jnp.full((r,), -1, jnp.int32), jnp.full((r,), jnp.nan, jnp.float32))


@functools.lru_cache(maxsize=256)
def abstract_carry(prog: Program, runs: int) -> Carry:
    """The shapes and dtypes of the carry of ``runs`` runs (traced, never computed)."""
    return jax.eval_shape(functools.partial(_init_carry, prog),
                          jax.ShapeDtypeStruct((runs,), jax.random.key(0).dtype),
                          jax.ShapeDtypeStruct((runs,), jnp.float32),
                          jax.ShapeDtypeStruct((runs,), jnp.int32))


def carry_bytes_per_run(prog: Program) -> int:
    """Bytes of one run's carried state (parameters, optimizer state, permutation)."""
    one = abstract_carry(prog, 1)
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(one))


# ------------------------------------------------------------------ programs
def _advance(prog: Program, lmax: int, keys, lrs, sched_idx, carry, t0, length, data):
    """Advances every run by ``length <= lmax`` steps from ``t0`` (initialising at 0).

    The scan always has ``lmax`` steps; a step past ``length`` is computed and
    discarded (the same ``where`` that freezes a diverged run). Every step of every
    program is therefore the same compiled body, whatever the segment lengths, so a
    run's result does not depend on where it stopped to evaluate or branch (a
    ``lax.cond`` around the extra steps compiled them differently and changed the
    last bits).

    ``data`` is the on-device training set (in-memory tasks) or the runs' batches
    ``[lmax, R, batch, ...]`` (streamed tasks). Returns ``(carry, {name: [R, lmax]})``,
    NaN past ``length``.
    """
    task, fns = prog.task, model_fns(prog.task, prog.spec.precision)
    data_keys = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
    carry = jax.lax.cond(t0 == 0, lambda: _init_carry(prog, keys, lrs, sched_idx),
                         lambda: carry)
    n = task.num_train

    def step_one(state, alive, first, peak, index, batch):
        tx, lr_fn = _tx(prog, peak, index)  # update does not depend on the SR seed
        new, metrics = train_step(task, fns, tx, lr_fn, state, batch)
        ok = alive & jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["update_norm"])
        if prog.divergence_factor is not None:
            first = jnp.where(alive & (state.step == 0), metrics["loss"], first)
            ok = ok & ~((first > 0) & (metrics["loss"] > prog.divergence_factor * first))
        new = jax.tree.map(lambda a, o: jnp.where(ok, a, o), new, state)
        metrics = {k: jnp.where(alive, v, jnp.nan) for k, v in metrics.items()}
        return new, ok, first, metrics

    def run_step(c, i):
        t = t0 + i
        active = i < length
        if prog.streamed:
            perms, batch = c.perms, jax.tree.map(lambda a: a[i], data)
        else:
            perms, idx = device_batch_indices(data_keys, c.perms, t, n, prog.batch_size)
            perms = jnp.where(active, perms, c.perms)
            batch = jax.tree.map(lambda a: a[idx], data)
        alive = (c.diverged_step < 0) & active
        states, ok, first, m = jax.vmap(step_one)(c.states, alive, c.first_loss, lrs,
                                                  sched_idx, batch)
        dstep = jnp.where(alive & ~ok, t, c.diverged_step)
        return Carry(states, perms, dstep, first), m

    carry, metrics = jax.lax.scan(run_step, carry, jnp.arange(lmax))
    return carry, {k: v.T for k, v in metrics.items()}


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


def _evaluate_one(prog: Program, state, eval_data, diag_data) -> dict:
    """Every evaluation metric of one run on in-memory data (batches of ``eval_batch_size``).

    ``diag_data``: the training examples of the diagnostics (all, or a fixed subset).
    """
    out = {}
    parts = []
    if eval_data is not None:
        parts.append(("test", eval_data))
    if prog.diagnostics:
        parts.append(("train", diag_data))
    for kind, data in parts:
        n = jax.tree.leaves(data)[0].shape[0]
        size = min(prog.eval_batch_size, n)
        full, rem = divmod(n, size)
        first = jax.tree.map(lambda a: a[:size], data)
        acc = _zero_acc(prog, kind, state, first)
        if full:
            stacked = jax.tree.map(lambda a: a[:full * size].reshape(full, size, *a.shape[1:]),
                                   data)
            acc, _ = jax.lax.scan(
                lambda a, b: (_accumulate(prog, kind, state, a, b, jnp.float32(size)), None),
                acc, stacked)
        if rem:
            tail = jax.tree.map(lambda a: a[full * size:], data)
            acc = _accumulate(prog, kind, state, acc, tail, jnp.float32(rem))
        out.update(_finish(kind, acc, jnp.float32(n)))
    return out


def _say_non_finite(task: Task, ev: dict, alive: np.ndarray, real: int) -> None:
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


@functools.lru_cache(maxsize=64)
def _advance_program(prog: Program, mesh, lmax: int):
    runs, repl = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    data_sh = NamedSharding(mesh, P(None, "runs")) if prog.streamed else repl
    return jax.jit(functools.partial(_advance, prog, lmax),
                   in_shardings=(runs, runs, runs, runs, repl, repl, data_sh),
                   out_shardings=(runs, runs), donate_argnums=(3,))


@functools.lru_cache(maxsize=64)
def _evaluate_program(prog: Program, mesh):
    """In-memory data: ``(states, eval_data, train_data) -> {name: [R]}``."""

    def local(states, eval_data, train_data):
        return jax.lax.map(lambda s: _evaluate_one(prog, s, eval_data, train_data), states)

    def program(states, eval_data, train_data):
        return jax.shard_map(local, mesh=mesh, in_specs=(P("runs"), P(), P()),
                             out_specs=P("runs"), check_vma=False)(states, eval_data,
                                                                   train_data)

    return jax.jit(program)


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
def _zero_program(prog: Program, mesh, runs: int):
    """A jitted ``() -> Carry`` of zeros (PRNG keys included), sharded over the runs."""

    def zeros(a):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):  # e.g. AutoWU's key
            return jnp.broadcast_to(jax.random.key(0), a.shape)
        return jnp.zeros(a.shape, a.dtype)

    shapes = abstract_carry(prog, runs)
    return jax.jit(lambda: jax.tree.map(zeros, shapes),
                   out_shardings=NamedSharding(mesh, P("runs")))


# ------------------------------------------------------------------ host side
def put(array, sharding) -> jax.Array:
    """A global array from host data, built shard by shard (multi-process friendly)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def put_keys(seeds, sharding) -> jax.Array:
    """The PRNG keys of ``seeds`` as a global array with ``sharding``."""
    data = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in seeds])
    raw = put(data, sharding)
    return jax.jit(jax.random.wrap_key_data, out_shardings=sharding)(raw)


def barrier(name: str) -> None:
    """Waits for every process (multi-process runs); a no-op in one process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def to_host(tree):
    """NumPy copies of (possibly sharded, possibly multi-process) arrays."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, tree)


_DEVICE_DATA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=16)
def _take_program(mesh):
    runs = NamedSharding(mesh, P("runs"))
    return jax.jit(lambda carry, rows: jax.tree.map(lambda a: a[rows], carry),
                   out_shardings=runs)


def take_runs(carry: Carry, rows, mesh, padded: int) -> Carry:
    """The runs ``rows`` of ``carry`` (a new carry, padded to ``padded`` runs with the last row).

    The source carry is left as it is (not donated): a branch or the survivors of
    a pruning round continue from the copy while the source may go on.
    """
    rows = [int(r) for r in rows]
    rows = rows + [rows[-1]] * (padded - len(rows))
    return _take_program(mesh)(carry, put(np.asarray(rows, np.int32),
                                           NamedSharding(mesh, P())))


class Runs:
    """``R`` runs of one :class:`Program` on a mesh: the host loop over segments.

    Args:
      prog: the :class:`Program`.
      mesh: a mesh with one axis ``"runs"``; runs are padded (with copies of the
        last run) to a multiple of its size.
      seeds, peak_lrs, schedule_index: one per run.
      pad_to: pad the runs to at least this many (groups of one budget share a shape).
      stops: the steps after which :meth:`segments` yields (sorted, ``<= budget``;
        default: the budget's evaluation steps, :func:`eval_steps`).
      start: the step the first segment starts at (default 0: the runs are
        initialised; a later start continues a carry trained elsewhere, e.g. a
        branch from a shared prefix).
      evaluate: the stops at which the runs are evaluated (default: every stop);
        at the others :meth:`segments` yields empty evaluation metrics.
    """

    def __init__(self, prog: Program, mesh, seeds, peak_lrs, schedule_index, *,
                 pad_to: int | None = None, stops=None, start: int = 0, evaluate=None):
        self.prog, self.mesh = prog, mesh
        self.real = len(seeds)
        ndev = mesh.devices.size
        size = max(self.real, pad_to or 0)
        self.padded = -(-size // ndev) * ndev
        pad = lambda v: list(v) + [list(v)[-1]] * (self.padded - self.real)
        self.seeds = pad(seeds)
        self._runs = NamedSharding(mesh, P("runs"))
        self._repl = NamedSharding(mesh, P())
        self.keys = put_keys(self.seeds, self._runs)
        self.lrs = put(np.asarray(pad(peak_lrs), np.float32), self._runs)
        self.sched_idx = put(np.asarray(pad(schedule_index), np.int32), self._runs)
        if stops is None and start == 0:
            self.lengths, self.starts = segments(prog.budget, prog.num_evals)
        else:
            stops = [int(s) for s in (eval_steps(prog.budget, prog.num_evals)
                                      if stops is None else stops)]
            stops = [s for s in stops if s > start]
            if (not stops or stops != sorted(set(stops)) or stops[-1] > prog.budget
                    or start < 0):
                raise ValueError(f"stops must be increasing steps in ({start}, "
                                 f"{prog.budget}], got {stops!r}")
            self.starts = np.asarray([start] + stops[:-1], np.int64)
            self.lengths = np.asarray(stops, np.int64) - self.starts
        self.evaluate = None if evaluate is None else {int(s) for s in evaluate}
        self._lmax = self._piece_length()
        self.names = prog.metric_names()

    # ------------------------------------------------------------- carry
    def abstract_carry(self) -> Carry:
        return abstract_carry(self.prog, self.padded)

    def sharded_like(self, shape, dtype) -> jax.ShapeDtypeStruct:
        """An abstract array with the run axis (the first) sharded over the mesh."""
        return jax.ShapeDtypeStruct(shape, dtype, sharding=self._runs)

    def to_runs(self, host: np.ndarray) -> jax.Array:
        """Host rows of the real runs, padded to ``padded`` rows, as a run-sharded array."""
        host = np.asarray(host)
        if host.shape[0] < self.padded:
            host = np.concatenate([host, np.repeat(host[-1:], self.padded - host.shape[0], 0)])
        return put(host, self._runs)

    def zero_carry(self) -> Carry:
        """A placeholder carry (the program initialises the runs at step 0)."""
        return _zero_program(self.prog, self.mesh, self.padded)()

    # ------------------------------------------------------------- data
    def _device_data(self):
        """``(train, eval, diagnostics)`` in-memory data on the mesh (replicated).

        Uploaded once per task, mesh and diagnostics setting.
        """
        task, diagnostics = self.prog.task, self.prog.diagnostics
        cache = _DEVICE_DATA.setdefault(task, {})
        key = (self.mesh, diagnostics)
        if key not in cache:
            to_dev = lambda d: None if d is None or _task.is_source(d) else jax.tree.map(
                lambda a: put(a, self._repl), d)
            cache.clear()  # one mesh at a time per task
            train = to_dev(task.train_data)
            idx = diagnostic_indices(task, diagnostics) if diagnostics else None
            diag = train if idx is None or train is None else to_dev(
                _task.gather(task.train_data, idx))
            cache[key] = (train, to_dev(task.eval_data), diag)
        return cache[key]

    def _piece_length(self) -> int:
        """The scan length of the advance program (every call runs this many steps).

        Streamed tasks: :data:`STREAM_CHUNK` (one host transfer), or less when every
        segment is shorter. In-memory tasks: the length that minimises the steps
        computed (a segment is cut into near-equal pieces of at most this many
        steps, and a piece shorter than the program computes and discards the rest)
        plus a per-call cost of 8 steps; for the equal segments of an ordinary
        budget that is the segment length itself, one call per segment.
        """
        lens = [int(n) for n in self.lengths]
        if self.prog.streamed:
            return min(STREAM_CHUNK, max(lens))
        candidates = {max(lens)} | {2 ** k for k in range(max(lens).bit_length())}
        cost = lambda c: sum(-(-n // c) * (c + 8) for n in lens)
        return min(sorted(candidates), key=cost)

    def _chunks(self, seg: int) -> list[tuple[int, int]]:
        """``[(start, length)]`` pieces of segment ``seg``: near-equal, at most ``_lmax`` long."""
        start, length = int(self.starts[seg]), int(self.lengths[seg])
        k = -(-length // self._lmax)
        q, r = divmod(length, k)
        sizes = [q + 1] * r + [q] * (k - r)
        starts = start + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return [(int(a), int(n)) for a, n in zip(starts, sizes, strict=True)]

    def _gather_chunk(self, start: int, length: int, lmax: int):
        """The runs' batches of steps ``start..start+length-1``: ``[lmax, R, b, ...]``."""
        task, n, b = self.prog.task, self.prog.task.num_train, self.prog.batch_size
        idx = np.stack([steps_batch_indices(jax.random.split(jax.random.key(s))[1], start,
                                            length, n, b) for s in self.seeds], axis=1)
        flat = _task.gather(task.train_data, idx.reshape(-1))
        out = jax.tree.map(lambda a: a.reshape(length, len(self.seeds), b, *a.shape[1:]), flat)
        if length < lmax:
            out = jax.tree.map(lambda a: np.concatenate(
                [a, np.zeros((lmax - length, *a.shape[1:]), a.dtype)]), out)
        return out

    def _evaluate_streamed(self, states) -> dict:
        task, prog = self.prog.task, self.prog
        out = {}
        parts = []
        if task.eval_data is not None:
            parts.append(("test", task.eval_data))
        if prog.diagnostics:
            parts.append(("train", task.train_data))
        for kind, data in parts:
            idx = (diagnostic_indices(task, prog.diagnostics) if kind == "train" else None)
            idx = np.arange(_task.source_len(data)) if idx is None else idx
            n = len(idx)
            size = min(prog.eval_batch_size, n)
            program = _accumulate_program(prog, self.mesh, kind)
            acc = None
            for s in range(0, n, size):
                batch = _task.gather(data, idx[s:s + size])
                if acc is None:
                    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype),
                                       states)
                    zero = _zero_acc(prog, kind, one, batch)
                    acc = jax.tree.map(
                        lambda z: put(np.zeros((self.padded, *z.shape), z.dtype), self._runs),
                        zero)
                batch = jax.tree.map(lambda a: put(a, self._repl), batch)
                acc = program(states, acc, batch, jnp.float32(min(n, s + size) - s))
            out.update(_finish_runs(kind, acc, jnp.float32(n)))
        return out

    # ------------------------------------------------------------- the loop
    def segments(self, carry: Carry | None = None, start_seg: int = 0) -> Iterator[tuple]:
        """Trains segment after segment from ``start_seg``; yields after each one.

        Yields ``(seg, carry, train_metrics {name: [R, length]}, eval_metrics {name: [R]})``
        with host NumPy metrics of the real (unpadded) runs (``{}`` for the
        evaluation at a stop not in ``evaluate``). ``carry`` is the state to
        continue from (``None``: start at step 0).
        """
        prog = self.prog
        if carry is None:
            carry = self.zero_carry()
        train_dev, eval_dev, diag_dev = self._device_data()
        lmax = self._lmax
        advance = _advance_program(prog, self.mesh, lmax)
        repl = self._repl
        scalar = lambda v: put(np.int32(v), repl)
        pool = concurrent.futures.ThreadPoolExecutor(1) if prog.streamed else None
        first_eval = start_seg == 0
        try:
            for seg in range(start_seg, len(self.lengths)):
                parts = []
                if prog.streamed:
                    chunks = self._chunks(seg)
                    pending = pool.submit(self._gather_chunk, *chunks[0], lmax)
                    for j, (start, length) in enumerate(chunks):
                        batches = pending.result()
                        if j + 1 < len(chunks):
                            pending = pool.submit(self._gather_chunk, *chunks[j + 1], lmax)
                        batches = jax.tree.map(
                            lambda a: put(a, NamedSharding(self.mesh, P(None, "runs"))),
                            batches)
                        carry, m = advance(self.keys, self.lrs, self.sched_idx, carry,
                                           scalar(start), scalar(length), batches)
                        parts.append((m, length))
                else:
                    for start, length in self._chunks(seg):
                        carry, m = advance(self.keys, self.lrs, self.sched_idx, carry,
                                           scalar(start), scalar(length), train_dev)
                        parts.append((m, length))
                end = int(self.starts[seg] + self.lengths[seg])
                if self.evaluate is not None and end not in self.evaluate:
                    ev = {}
                elif prog.streamed:
                    ev = self._evaluate_streamed(carry.states)
                else:
                    ev = _evaluate_program(prog, self.mesh)(carry.states, eval_dev, diag_dev)
                host_m, ev, dstep = to_host(([m for m, _ in parts], ev, carry.diverged_step))
                if first_eval and ev:
                    first_eval = False
                    _say_non_finite(prog.task, ev, dstep[:self.real] < 0, self.real)
                train_m = {k: np.concatenate([hm[k][:self.real, :length] for hm, (_, length)
                                              in zip(host_m, parts, strict=True)], axis=1)
                           for k in self.names["train"]}
                yield seg, carry, train_m, {k: v[:self.real] for k, v in ev.items()}
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def run(self) -> tuple[Carry, dict, dict, np.ndarray]:
        """All segments: ``(carry, train {name: [R, T]}, eval {name: [R, E]}, diverged [R])``."""
        train_parts, eval_parts = [], []
        carry = None
        for _, state, tm, ev in self.segments():
            carry = state
            train_parts.append(tm)
            eval_parts.append(ev)
        train = {k: np.concatenate([p[k] for p in train_parts], axis=1)
                 for k in self.names["train"]}
        evals = {k: np.stack([p[k] for p in eval_parts], axis=1) for k in self.names["eval"]}
        dstep = to_host(carry.diverged_step)[:self.real]
        return carry, train, evals, dstep
