r"""The training core: ``R`` runs of a budget, vmapped and sharded, advanced segment by segment.

Every driver (:func:`budgetax.training.train`, :func:`~budgetax.training.train_many`,
:func:`~budgetax.training.sweep`, ``budgetax demo``) runs its runs through this
module. A run is a pure function of ``(key, peak_lr, schedule_index)`` given the
static :class:`Program` (task, budget, optimizer spec, schedule choices, batch
size, evaluation settings; :mod:`budgetax.training.program`):

- its key gives the model initialisation and the batch order
  (``init_key, data_key = split(key)``) and, for ``precision="bf16_sr"``, its
  stochastic-rounding stream (a seed drawn from ``fold_in(key, SR_STREAM)``);
- its schedule is ``lax.switch(schedule_index, profiles)`` over the program's
  ``choices``, so runs with different schedules share one compiled program.

A budget of ``T`` steps with ``E`` evaluations is cut into ``E`` segments of
``floor(T/E)`` or ``ceil(T/E)`` steps (:func:`eval_steps`). One compiled program
advances all runs by a loop of a piece's steps (at most :data:`PIECE`, a traced
count) and initialises them when it starts at step 0, and the host can checkpoint
between segments. The budget is an argument of the program too
(:func:`~budgetax.training.program.budget_data`, the schedule's integers as
:class:`budgetax.schedules.BudgetSteps`), so every budget of a sweep is one
compilation (:func:`~budgetax.training.program.compiled_key`), and every step of
every program is the same compiled body. On the CPU backend a model with a
convolution is advanced by a one-step program called once per step instead
(:func:`dispatches_steps`: XLA:CPU runs a convolution's gradient several times
slower inside a loop), again the same compiled body at every step. After each
segment the runs are evaluated (:mod:`budgetax.training.evaluation`: ``test_*``
metrics on the task's held-out data, and with ``diagnostics`` the full-training-set
``train_*`` metrics and the norm of the full gradient, the budgeted-convergence
diagnostics of Li et al.; an int ``diagnostics=N`` computes them on a fixed random
subset of N training examples, the same for every run, which is much cheaper on
large training sets).

Data: an in-memory training set is put on the device once
(:mod:`budgetax.training.device_data`) and batches are drawn inside the program
(:func:`budgetax.data.device_batch_indices`); a random-access source is streamed:
the host gathers each run's batches for the next chunk of steps in a background
thread while the device trains on the current one
(:mod:`budgetax.training.streaming`). Both draw the same batches.

Divergence, one rule for every driver: a run whose loss or update turns
non-finite, or whose minibatch loss exceeds ``divergence_factor`` times its
first minibatch loss (when that is positive; a blown-up run at chance accuracy
with a loss of 1e21 is not "done"), is frozen at its last good state, its step is
reported (``diverged_step``) and its per-step metrics are NaN from there; the
other runs of the program are unaffected (runs are independent under ``vmap``).

Sharding: the run axis is sharded over the mesh's devices
(``NamedSharding(mesh, P("runs"))``), the data replicated
(:mod:`budgetax.training.hosts` moves arrays between the host and the mesh, in
one process or many).

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from budgetax.data.batching import device_batch_indices
from budgetax.training.device_data import device_data
from budgetax.training.evaluation import (
    evaluate_program,
    evaluate_stepped,
    evaluate_streamed,
    say_non_finite,
)
from budgetax.training.hosts import barrier, make_mesh, put, put_keys, to_host
from budgetax.training.program import (
    DIVERGENCE_FACTOR,
    SR_STREAM,
    STEP_METRICS,
    Program,
    budget_data,
    check_diagnostics,
    compiled_key,
    diagnostic_indices,
    eval_steps,
    make_program,
    model_fns,
    run_optimizer,
    segments,
    sr_seed,
)
from budgetax.training.steps import TrainState, train_step
from budgetax.training.streaming import STREAM_CHUNK, ChunkStream
from budgetax.training.task import split_loss

PIECE = 256  # the most steps one call of an in-memory task's program runs (its metrics' width)

# The names other modules import from here (the core's surface): the program, host
# and data helpers live in their own modules and are re-exported.
__all__ = ["DIVERGENCE_FACTOR", "PIECE", "SR_STREAM", "STEP_METRICS", "STREAM_CHUNK", "Carry",
           "Program", "Runs", "abstract_carry", "barrier", "carry_bytes_per_run",
           "check_diagnostics", "device_data", "diagnostic_indices", "dispatches_steps",
           "eval_steps",
           "make_mesh", "make_program", "model_fns", "put", "put_keys", "segments",
           "sr_seed", "take_runs", "to_host"]


# ------------------------------------------------------------------ the carry
class Carry(NamedTuple):
    """The in-flight state of ``R`` runs (leading run axis everywhere)."""

    states: Any                 # TrainState
    perms: jax.Array            # [R, n] int32 epoch permutations ([R, 1] when streamed)
    diverged_step: jax.Array    # [R] int32, -1 while the run is alive
    first_loss: jax.Array       # [R] float32, the minibatch loss of step 0 (blow-up rule)


def _init_carry(prog: Program, keys, lrs, sched_idx, steps):
    fns = model_fns(prog.task, prog.spec.precision)

    def one(key, peak, index):
        init_key, _ = jax.random.split(key)
        tx, _ = run_optimizer(prog, peak, index, sr_seed(key), steps)
        params, rest = fns.init(init_key)
        return TrainState(params, rest, tx.init(params), jnp.int32(0))

    r = keys.shape[0]
    width = 1 if prog.streamed else prog.task.num_train
    return Carry(jax.vmap(one)(keys, lrs, sched_idx), jnp.zeros((r, width), jnp.int32),
                 jnp.full((r,), -1, jnp.int32), jnp.full((r,), jnp.nan, jnp.float32))


@functools.lru_cache(maxsize=256)
def abstract_carry(prog: Program, runs: int) -> Carry:
    """The shapes and dtypes of the carry of ``runs`` runs (traced, never computed)."""
    return jax.eval_shape(functools.partial(_init_carry, prog, steps=budget_data(prog)),
                          jax.ShapeDtypeStruct((runs,), jax.random.key(0).dtype),
                          jax.ShapeDtypeStruct((runs,), jnp.float32),
                          jax.ShapeDtypeStruct((runs,), jnp.int32))


def carry_bytes_per_run(prog: Program) -> int:
    """Bytes of one run's carried state (parameters, optimizer state, permutation)."""
    one = abstract_carry(prog, 1)
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(one))


# ------------------------------------------------------------------ programs
# (tests/conftest.py counts compilations by wrapping ``core._advance``: the step
# program looks it up here at trace time)
def _advance(prog: Program, lmax: int, keys, lrs, sched_idx, steps, carry, t0, length, data,
             index=None, buf=None):
    """Advances every run by ``length <= lmax`` steps from ``t0`` (initialising at 0).

    ``prog`` is a :func:`~budgetax.training.program.compiled_key`: its budget is
    ``steps`` (:func:`~budgetax.training.program.budget_data`), an argument like
    ``t0`` and ``length``, so one compiled program serves every budget of a sweep.
    The steps are a loop of ``length`` (traced) iterations of one compiled body, so
    a run's result does not depend on where it stopped to evaluate or branch.

    ``data`` is the on-device training set (in-memory tasks) or the runs' batches
    ``[lmax, R, batch, ...]`` (streamed tasks). Returns ``(carry, {name: [R, lmax]})``,
    NaN past ``length``.

    With ``index`` (the step dispatch of :func:`dispatches_steps`) the program is one
    step instead: step ``t0 + index`` of the piece (initialising when that is step 0),
    its metrics written into column ``index`` of ``buf`` ``{name: [R, lmax]}``, which
    is returned in their place. The host calls it once per step of the piece.
    """
    task, fns = prog.task, model_fns(prog.task, prog.spec.precision)
    data_keys = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
    first_step = t0 == 0 if index is None else t0 + index == 0
    carry = jax.lax.cond(first_step, lambda: _init_carry(prog, keys, lrs, sched_idx, steps),
                         lambda: carry)
    n = task.num_train

    def step_one(state, alive, first, peak, index, batch):
        tx, lr_fn = run_optimizer(prog, peak, index, steps=steps)  # not on the SR seed
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
        if prog.streamed:
            perms, batch = c.perms, jax.tree.map(lambda a: a[i], data)
        else:
            perms, idx = device_batch_indices(data_keys, c.perms, t, n, prog.batch_size)
            batch = jax.tree.map(lambda a: a[idx], data)
        alive = c.diverged_step < 0
        states, ok, first, m = jax.vmap(step_one)(c.states, alive, c.first_loss, lrs,
                                                  sched_idx, batch)
        dstep = jnp.where(alive & ~ok, t, c.diverged_step)
        return Carry(states, perms, dstep, first), m

    if index is not None:
        carry, m = run_step(carry, index)
        return carry, {k: b.at[:, index].set(m[k]) for k, b in buf.items()}
    shapes = jax.eval_shape(run_step, carry, jnp.int32(0))[1]
    buf = {k: jnp.full((lmax, *v.shape), jnp.nan, v.dtype) for k, v in shapes.items()}

    def body(i, c_buf):
        c, b = c_buf
        c, m = run_step(c, i)
        return c, {k: b[k].at[i].set(m[k]) for k in b}

    carry, buf = jax.lax.fori_loop(0, length, body, (carry, buf))
    return carry, {k: v.T for k, v in buf.items()}


def _has_convolution(jaxpr) -> bool:
    """Whether a jaxpr (or one nested in it: scans, conds, custom derivatives) convolves."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns") and _has_convolution(inner):
                    return True
    return False


@functools.lru_cache(maxsize=64)
def _step_convolves(prog: Program) -> bool:
    """Whether the gradient of the task's loss has a convolution (traced on a sample batch)."""
    task, fns = prog.task, model_fns(prog.task, prog.spec.precision)
    params, rest = jax.eval_shape(fns.init, jax.random.key(0))

    def loss(p, r, batch):
        model = nnx.merge(fns.graphdef_train, p, r, copy=True)
        return split_loss(task.name, task.loss(model, batch))[0]

    batch = task.sample_batch(2)
    return _has_convolution(jax.make_jaxpr(jax.grad(loss))(params, rest, batch).jaxpr)


def dispatches_steps(prog: Program, mesh) -> bool:
    """Whether the runs of ``prog`` on ``mesh`` advance by one program call per step.

    On the CPU backend, a model with a convolution: XLA:CPU rewrites a convolution
    into the form its fast (Eigen) convolution takes only in a program's entry
    computation, so in a scan's loop body the backward convolutions (the kernel's
    and the input's gradients) run as naive loops, several times slower than the
    same step called on its own. There the program is one step and the host calls it
    once per step; elsewhere a piece is one
    scan. The choice depends on the task's model, its precision and the backend
    only, so every program of a sweep makes the same one, and each of its steps runs
    the same compiled body wherever a segment starts, stops or branches.
    """
    return mesh.devices.flat[0].platform == "cpu" and _step_convolves(compiled_key(prog))


@functools.lru_cache(maxsize=64)
def _advance_program(prog: Program, mesh, lmax: int):
    runs, repl = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    data_sh = NamedSharding(mesh, P(None, "runs")) if prog.streamed else repl
    return jax.jit(functools.partial(_advance, prog, lmax),
                   in_shardings=(runs, runs, runs, repl, runs, repl, repl, data_sh),
                   out_shardings=(runs, runs), donate_argnums=(4,))


@functools.lru_cache(maxsize=64)
def _step_program(prog: Program, mesh, lmax: int):
    """The one-step form of :func:`_advance` (``index``, ``buf``: the last two arguments)."""
    runs, repl = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    data_sh = NamedSharding(mesh, P(None, "runs")) if prog.streamed else repl
    return jax.jit(functools.partial(_advance, prog, lmax),
                   in_shardings=(runs, runs, runs, repl, runs, repl, repl, data_sh, repl, runs),
                   out_shardings=(runs, runs), donate_argnums=(4, 9))


@functools.lru_cache(maxsize=64)
def _nan_metrics_program(prog: Program, mesh, runs: int, lmax: int):
    """A jitted ``() -> {name: NaN [runs, lmax]}``: the metrics buffer of a stepped piece."""
    names = prog.metric_names()["train"]
    return jax.jit(lambda: {k: jnp.full((runs, lmax), jnp.nan, jnp.float32) for k in names},
                   out_shardings=NamedSharding(mesh, P("runs")))


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
        data = budget_data(prog)
        self.steps = None if data is None else jax.tree.map(lambda a: put(a, self._repl), data)
        self._key = compiled_key(prog)
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

    # ------------------------------------------------------------- pieces
    def _piece_length(self) -> int:
        """The most steps one call of the advance program runs (the width of its metrics).

        Streamed tasks: :data:`STREAM_CHUNK` (one host transfer of batches);
        in-memory tasks: :data:`PIECE`. The same for every budget, so that budgets
        share a program; a call runs only the steps of its piece.
        """
        return STREAM_CHUNK if self.prog.streamed else PIECE

    def _chunks(self, seg: int) -> list[tuple[int, int]]:
        """``[(start, length)]`` pieces of segment ``seg``: near-equal, at most ``_lmax`` long."""
        start, length = int(self.starts[seg]), int(self.lengths[seg])
        k = -(-length // self._lmax)
        q, r = divmod(length, k)
        sizes = [q + 1] * r + [q] * (k - r)
        starts = start + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return [(int(a), int(n)) for a, n in zip(starts, sizes, strict=True)]

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
        train_dev, eval_dev, diag_dev = device_data(prog.task, self.mesh, prog.diagnostics)
        lmax = self._lmax
        scalar = lambda v: put(np.int32(v), self._repl)
        stepped = dispatches_steps(prog, self.mesh)
        key = self._key
        if stepped:
            step = _step_program(key, self.mesh, lmax)
            nan_metrics = _nan_metrics_program(key, self.mesh, self.padded, lmax)
            index = [scalar(i) for i in range(min(lmax, int(max(self.lengths))))]

            def advance(keys, lrs, sched_idx, steps, carry, t0, length, batches, n):
                buf = nan_metrics()
                for i in range(n):
                    carry, buf = step(keys, lrs, sched_idx, steps, carry, t0, length,
                                      batches, index[i], buf)
                return carry, buf
        else:
            loop = _advance_program(key, self.mesh, lmax)
            advance = lambda *args: loop(*args[:-1])  # the piece's length is traced
        stream = (ChunkStream(prog.task, self.seeds, prog.batch_size, lmax) if prog.streamed
                  else None)
        first_eval = start_seg == 0
        try:
            for seg in range(start_seg, len(self.lengths)):
                chunks = self._chunks(seg)
                if stream is None:
                    data = [train_dev] * len(chunks)
                else:
                    data = (jax.tree.map(lambda a: put(a, NamedSharding(self.mesh,
                                                                         P(None, "runs"))), b)
                            for b in stream.batches(chunks))
                parts = []
                for (start, length), batches in zip(chunks, data, strict=True):
                    carry, m = advance(self.keys, self.lrs, self.sched_idx, self.steps,
                                       carry, scalar(start), scalar(length), batches, length)
                    parts.append((m, length))
                end = int(self.starts[seg] + self.lengths[seg])
                if self.evaluate is not None and end not in self.evaluate:
                    ev = {}
                elif prog.streamed:
                    ev = evaluate_streamed(key, self.mesh, carry.states, self.padded, stepped)
                elif stepped:
                    ev = evaluate_stepped(key, self.mesh, carry.states, self.padded, eval_dev,
                                          diag_dev)
                else:
                    ev = evaluate_program(key, self.mesh)(carry.states, eval_dev, diag_dev)
                host_m, ev, dstep = to_host(([m for m, _ in parts], ev, carry.diverged_step))
                if first_eval and ev:
                    first_eval = False
                    say_non_finite(prog.task, ev, dstep[:self.real] < 0, self.real)
                train_m = {k: np.concatenate([hm[k][:self.real, :length] for hm, (_, length)
                                              in zip(host_m, parts, strict=True)], axis=1)
                           for k in self.names["train"]}
                yield seg, carry, train_m, {k: v[:self.real] for k, v in ev.items()}
        finally:
            if stream is not None:
                stream.close()

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
