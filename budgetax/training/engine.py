r"""The sweep engine: budgets x schedules x peak learning rates x seeds in shared compiled programs.

For each budget ``T`` (a static argument: one compilation per budget), one jitted
program trains many runs together with ``jax.vmap``. Each run is a pure function
of ``(key, peak_lr, schedule_index)``: the schedule is picked per run by a
``lax.switch`` over the sweep's profiles, so runs with different schedules share
the program. The run axis is sharded over all devices with
``jax.sharding.NamedSharding`` (one CPU, N emulated CPUs, one GPU or a TPU slice
run the same code); when the runs of a budget do not fit in memory they are
split into groups of at most ``max_runs_per_program`` runs.

A program advances its runs by one *segment* (``budget / num_evals`` steps, as in
:func:`budgetax.training.eval_steps`) and evaluates them; the host calls it once
per segment, so the in-flight state of a budget can be checkpointed with orbax
every ``checkpoint_every`` segments. Results go to a SQLite store
(:class:`budgetax.training.store.Store`), one row per run, each group of runs
written in one transaction. Re-running a sweep into the same directory resumes
it: finished groups are skipped, in-flight ones continue from their checkpoint,
and the final store is identical to that of an uninterrupted sweep (the grouping
of runs is fixed when the sweep is planned and every step is deterministic).

A run whose loss or update becomes NaN/inf is frozen at its last finite state
and recorded as ``diverged`` (its per-step metrics are NaN from that step on);
runs are independent under ``vmap``, so the others are unchanged.

Multi-host (several processes, e.g. a TPU pod slice or GPUs on several
machines): call ``jax.distributed.initialize()`` first in every process, then run
the same sweep with the same output directory on a shared file system. The mesh
spans ``jax.devices()`` (all processes' devices); inputs are built shard by shard
with ``jax.make_array_from_callback``, results are gathered with
``multihost_utils.process_allgather``, and only process 0 writes the store and the
checkpoints. (Tested here on one process with up to 4 emulated CPU devices only.)

Example:
  >>> from budgetax import training
  >>> spec = training.SweepSpec(full_budget=200, budgets=(0.5, 1.0), schedules=("linear", "rex"),
  ...                           peak_lrs=(1e-2,), seeds=(0,))
  >>> result = training.sweep(spec, "/tmp/budgetax-sweep-doctest", progress=False)  # doctest: +SKIP
  >>> len(result.runs)                                                             # doctest: +SKIP
  4

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
  Chen, Wolfe, Kyrillidis. REX. MLSys 2022. arXiv:2107.04197.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from budgetax import _validate, profiles, schedules
from budgetax.data import Dataset
from budgetax.data import load as _load
from budgetax.data.batching import device_batch_indices
from budgetax.training.loop import (
    EVAL_METRICS,
    TRAIN_METRICS,
    _evaluate_device,
    _fns,
    _groups,
    _prepare,
    eval_steps,
    sr_seed,
)
from budgetax.training.optim import OptimizerSpec
from budgetax.training.steps import TrainState, train_step
from budgetax.training.store import STORE_NAME, Store, encode_curves

__all__ = ["DEFAULT_SCHEDULES", "SWEEP_SCHEDULES", "SweepResult", "SweepSpec",
           "SweepSpecMismatchError", "plan_groups", "sweep", "sweep_trace_count"]

SWEEP_SCHEDULES = tuple(sorted(profiles.PROFILES))
DEFAULT_SCHEDULES = ("linear", "rex", "cosine", "step", "exponential", "constant", "wsd",
                     "one_cycle")
CHECKPOINT_DIR = "checkpoints"
_TRACES = {"sweep": 0}


def sweep_trace_count() -> int:
    """How many times a sweep program was traced (= compiled) in this process."""
    return _TRACES["sweep"]


class SweepSpecMismatchError(ValueError):
    """The output directory holds a sweep with a different spec."""


def _tuple(name, values, check):
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence, got {values!r}")
    values = tuple(check(name, v) for v in values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence, got ()")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates, got {values!r}")
    return values


def _schedule_name(name, value):
    if value not in SWEEP_SCHEDULES:
        raise ValueError(f"{name} must name profiles from {list(SWEEP_SCHEDULES)}, got "
                         f"{value!r} (AutoWU has no peak lr to sweep and its own state: train it "
                         f"with budgetax.training.train)")
    return value


def _fraction(name, value):
    return _validate.real(name, value, low=0.0, high=1.0, low_open=True)


def _lr(name, value):
    return _validate.real(name, value, low=0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains (the part that defines its results).

    Attributes:
      dataset: a name for :func:`budgetax.data.load` (``"mnist1d"``, ``"digits"``, ``"tfds:NAME"``).
      model: ``"mlp"``, ``"cnn1d"`` or ``"resnet"``; ``model_kwargs`` its knobs.
      optimizer: the base :class:`OptimizerSpec` (optimizer, momentum, Demon,
        precision, warmup, ...); its ``schedule`` and ``peak_lr`` are replaced per run.
      full_budget: steps of the full budget; ``budgets`` are fractions of it
        (``steps_for_budget(full_steps=full_budget, fraction=f)``).
      schedules: profile names (:data:`SWEEP_SCHEDULES`), default knobs.
      peak_lrs: peak learning rates; ``seeds``: run seeds (model init, batch order).
      batch_size, num_evals, eval_batch_size, diagnostics: as in :func:`budgetax.training.train`.

    Example:
      >>> spec = SweepSpec(full_budget=1000, budgets=(0.1, 1.0), schedules=("linear", "rex"))
      >>> spec.budget_steps()
      [100, 1000]
      >>> len(spec.runs())    # 2 budgets x 2 schedules x 3 lrs x 3 seeds
      36
    """

    dataset: str = "mnist1d"
    model: str = "mlp"
    model_kwargs: tuple = ()
    optimizer: OptimizerSpec = dataclasses.field(default_factory=OptimizerSpec)
    full_budget: int = 3000
    budgets: tuple = (0.05, 0.1, 0.25, 0.5, 1.0)
    schedules: tuple = DEFAULT_SCHEDULES
    peak_lrs: tuple = (3e-3, 1e-2, 3e-2)
    seeds: tuple = (0, 1, 2)
    batch_size: int = 100
    num_evals: int = 4
    eval_batch_size: int = 1000
    diagnostics: bool = True

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        if not isinstance(self.dataset, str):
            raise TypeError(f"dataset must be a dataset name (str), got {self.dataset!r}")
        if isinstance(self.model_kwargs, dict):
            set_("model_kwargs", tuple(sorted(self.model_kwargs.items())))
        set_("model_kwargs", tuple((k, tuple(v) if isinstance(v, list) else v)
                                   for k, v in self.model_kwargs))
        if not isinstance(self.optimizer, OptimizerSpec):
            raise TypeError(f"optimizer must be an OptimizerSpec, got {self.optimizer!r}")
        if self.optimizer.schedule == "autowu":
            raise ValueError("optimizer.schedule='autowu' cannot be swept: AutoWU has no peak "
                             "lr and its own state; train it with budgetax.training.train")
        set_("full_budget", _validate.positive_int("full_budget", self.full_budget))
        set_("budgets", _tuple("budgets", self.budgets, _fraction))
        set_("schedules", _tuple("schedules", self.schedules, _schedule_name))
        set_("peak_lrs", _tuple("peak_lrs", self.peak_lrs, _lr))
        set_("seeds", _tuple("seeds", self.seeds, _validate.seed))
        for name in ("batch_size", "num_evals", "eval_batch_size"):
            set_(name, _validate.positive_int(name, getattr(self, name)))
        set_("diagnostics", _validate.boolean("diagnostics", self.diagnostics))
        # the base optimizer, normalised: schedule/peak_lr/seed are per run
        set_("optimizer", dataclasses.replace(self.optimizer, schedule=self.schedules[0],
                                              peak_lr=0.0, seed=0, schedule_kwargs=()))

    def budget_steps(self) -> list[int]:
        """The budgets in steps."""
        return [schedules.steps_for_budget(full_steps=self.full_budget, fraction=f)
                for f in self.budgets]

    def runs(self) -> list[dict]:
        """Every run, budget-major, then schedule, peak lr, seed."""
        out = []
        for f, steps in zip(self.budgets, self.budget_steps(), strict=True):
            for s in self.schedules:
                for lr in self.peak_lrs:
                    for seed in self.seeds:
                        out.append({"run_id": f"T{steps}/{s}/lr{lr:g}/seed{seed}",
                                    "budget_fraction": f, "budget": steps, "schedule": s,
                                    "peak_lr": lr, "seed": seed})
        return out

    def to_dict(self) -> dict:
        """JSON-friendly (stored in the results store; compared on resume)."""
        d = dataclasses.asdict(self)
        d["optimizer"] = self.optimizer.to_dict()
        d["model_kwargs"] = {k: list(v) if isinstance(v, tuple) else v
                             for k, v in self.model_kwargs}
        for k in ("budgets", "schedules", "peak_lrs", "seeds"):
            d[k] = list(d[k])
        return json.loads(json.dumps(d))


@dataclasses.dataclass
class SweepResult:
    """What :func:`sweep` returns: the directory, the spec and every run's row from the store."""

    out_dir: str
    spec: SweepSpec
    runs: list[dict]
    groups: list[dict]
    compiled_budgets: int
    seconds: float


# ------------------------------------------------------------------ program
@dataclasses.dataclass(frozen=True)
class _SweepStatic:
    cfg: Any  # loop._Static
    choices: tuple


class _Carry(NamedTuple):
    states: Any          # TrainState, leading run axis
    perms: jax.Array     # [R, n] int32, the epoch permutation of each run
    diverged_step: jax.Array  # [R] int32, -1 while the run is alive


def _profile(choices, index):
    fns = [profiles.get(name) for name in choices]
    if len(fns) == 1:
        return fns[0]
    return lambda p: jax.lax.switch(index, fns, p)


def _tx(scfg, budget, peak, index, seed=None):
    prof = _profile(scfg.choices, index)
    tx = scfg.cfg.spec.build(budget, peak, sr_seed=seed, profile=prof)
    sched = scfg.cfg.spec.learning_rate(budget, peak, profile=prof)
    return tx, (lambda step, opt_state: sched(step))


def _segments(budget, num_evals):
    lengths = np.array([length for n, length in _groups(budget, num_evals) for _ in range(n)])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return lengths, starts


def _init_carry(scfg, budget, keys, lrs, sched_idx, num_train):
    fns = _fns(scfg.cfg)

    def one(key, peak, index):
        init_key, _ = jax.random.split(key)
        tx, _ = _tx(scfg, budget, peak, index, sr_seed(key))
        params, rest = fns.init(init_key)
        return TrainState(params, rest, tx.init(params), jnp.int32(0))

    r = keys.shape[0]
    return _Carry(jax.vmap(one)(keys, lrs, sched_idx), jnp.zeros((r, num_train), jnp.int32),
                  jnp.full((r,), -1, jnp.int32))


def _abstract_carry(scfg, budget, num_train, runs):
    """The shapes and dtypes of the carry of ``runs`` runs (traced, never computed)."""
    return jax.eval_shape(functools.partial(_init_carry, scfg, budget, num_train=num_train),
                          jax.ShapeDtypeStruct((runs,), jax.random.key(0).dtype),
                          jax.ShapeDtypeStruct((runs,), jnp.float32),
                          jax.ShapeDtypeStruct((runs,), jnp.int32))


def _segment(scfg, budget, mesh, keys, lrs, sched_idx, carry, seg, x_train, y_train, x_test,
             y_test):
    """Runs segment ``seg`` of every run (initialising them at ``seg == 0``) and evaluates.

    Returns ``(carry, train_metrics {name: [R, Lmax]}, eval_metrics {name: [R]})``;
    steps past the segment's length are NaN.
    """
    _TRACES["sweep"] += 1
    cfg = scfg.cfg
    fns = _fns(cfg)
    n, b = x_train.shape[0], cfg.batch_size
    lengths, starts = _segments(budget, cfg.num_evals)
    length = jnp.asarray(lengths)[seg]
    t0 = jnp.asarray(starts, jnp.int32)[seg]
    data_keys = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
    carry = jax.lax.cond(seg == 0,
                         lambda: _init_carry(scfg, budget, keys, lrs, sched_idx, n),
                         lambda: carry)

    def step_one(state, alive, peak, index, x, y):
        tx, lr_fn = _tx(scfg, budget, peak, index)
        new, metrics = train_step(fns, tx, lr_fn, state, x, y)
        ok = alive & jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["update_norm"])
        new = jax.tree.map(lambda a, o: jnp.where(ok, a, o), new, state)
        metrics = {k: jnp.where(alive, v, jnp.nan) for k, v in metrics.items()}
        return new, ok, metrics

    nan_metrics = {k: jnp.full((keys.shape[0],), jnp.nan, jnp.float32) for k in TRAIN_METRICS}

    def body(c, i):
        def run(c):
            t = t0 + i
            perms, idx = device_batch_indices(data_keys, c.perms, t, n, b)
            alive = c.diverged_step < 0
            states, ok, m = jax.vmap(step_one)(c.states, alive, lrs, sched_idx,
                                               x_train[idx], y_train[idx])
            dstep = jnp.where(alive & ~ok, t, c.diverged_step)
            return _Carry(states, perms, dstep), m

        return jax.lax.cond(i < length, run, lambda c: (c, nan_metrics), c)

    carry, metrics = jax.lax.scan(body, carry, jnp.arange(int(lengths.max())))
    metrics = {k: v.T for k, v in metrics.items()}

    # Each device evaluates its own runs one after another (lax.map inside shard_map): a
    # vmapped conv with per-run weights becomes a grouped conv, twice as slow on CPU.
    def evaluate_local(states, x_train, y_train, x_test, y_test):
        return jax.lax.map(
            lambda s: _evaluate_device(cfg, fns, s, x_train, y_train, x_test, y_test), states)

    ev = jax.shard_map(evaluate_local, mesh=mesh,
                       in_specs=(P("runs"), P(), P(), P(), P()), out_specs=P("runs"),
                       check_vma=False)(
        carry.states, x_train, y_train, x_test, y_test)
    return carry, metrics, ev


@functools.lru_cache(maxsize=32)
def _program(scfg, budget, mesh):
    runs = NamedSharding(mesh, P("runs"))
    repl = NamedSharding(mesh, P())
    return jax.jit(functools.partial(_segment, scfg, budget, mesh),
                   in_shardings=(runs, runs, runs, runs, repl, repl, repl, repl, repl),
                   out_shardings=(runs, runs, runs), donate_argnums=(3,))


# --------------------------------------------------------------------- host
def _put(array: np.ndarray, sharding) -> jax.Array:
    """A global array from host data, built shard by shard (multi-host friendly)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def _put_keys(seeds, sharding):
    data = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in seeds])
    raw = _put(data, sharding)
    return jax.jit(jax.random.wrap_key_data, out_shardings=sharding)(raw)


def _to_host(tree):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, tree)


def plan_groups(spec: SweepSpec, max_runs_per_program: int | None) -> list[dict]:
    """Splits each budget's runs into groups of at most ``max_runs_per_program`` (balanced).

    Returns ``[{"group_id", "budget", "budget_fraction", "run_idx": [...]}]``; a group is one
    compiled program's batch of runs (the unit of checkpointing and of a store transaction).
    """
    runs = spec.runs()
    out = []
    for f, steps in zip(spec.budgets, spec.budget_steps(), strict=True):
        idx = [i for i, r in enumerate(runs) if r["budget_fraction"] == f]
        k = 1 if max_runs_per_program is None else math.ceil(len(idx) / max_runs_per_program)
        for g, part in enumerate(np.array_split(np.asarray(idx), k)):
            out.append({"group_id": f"T{steps}/g{g}", "budget": steps, "budget_fraction": f,
                        "run_idx": [int(i) for i in part]})
    return out


def _memory_limited_runs(scfg, budget, num_train, devices, fraction=0.5) -> int | None:
    """How many runs fit in ``fraction`` of the devices' memory, or None when it is not known.

    A run needs its carried state (parameters, optimizer state, batch-norm
    statistics, epoch permutation), counted 4 times (the donated input, the
    output, gradients and updates of the same size, the frozen copy kept for
    divergence masking). Activations of small models are ignored. CPU devices
    report no memory limit: host memory is not split.
    """
    limits = []
    for d in devices:
        stats = d.memory_stats() if hasattr(d, "memory_stats") else None
        if not stats or "bytes_limit" not in stats:
            return None
        limits.append(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    one = _abstract_carry(scfg, budget, num_train, 1)
    per_run = 4 * sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(one))
    return max(1, int(fraction * min(limits) // max(per_run, 1)) * len(limits))


class _Checkpoints:
    """Orbax checkpoints of one group's in-flight state, under ``DIR/checkpoints/<group>``."""

    def __init__(self, out_dir, group_id, writer):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.path = os.path.join(os.path.abspath(out_dir), CHECKPOINT_DIR,
                                 group_id.replace("/", "_"))
        self.writer = writer
        self._mngr = None

    def _manager(self):
        if self._mngr is None:
            ocp = self._ocp
            self._mngr = ocp.CheckpointManager(self.path, options=ocp.CheckpointManagerOptions(
                max_to_keep=1, enable_async_checkpointing=False, create=True))
        return self._mngr

    def latest(self):
        if not os.path.isdir(self.path):
            return None
        step = self._manager().latest_step()
        if step is None:
            return None
        return self._manager().restore(step, args=self._ocp.args.StandardRestore())

    def save(self, seg, tree):
        if self.writer:
            self._manager().save(seg, args=self._ocp.args.StandardSave(tree), force=True)
            self._manager().wait_until_finished()

    def remove(self):
        if self._mngr is not None:
            self._mngr.close()
            self._mngr = None
        if self.writer:
            shutil.rmtree(self.path, ignore_errors=True)


def _best(eval_hist: dict) -> dict:
    best = {}
    acc = np.asarray(eval_hist["test_accuracy"], np.float64)
    loss = np.asarray(eval_hist["test_loss"], np.float64)
    if np.isfinite(acc).any():
        best["test_accuracy"] = float(np.nanmax(acc))
        best["test_accuracy_eval"] = int(np.nanargmax(acc))
    if np.isfinite(loss).any():
        best["test_loss"] = float(np.nanmin(loss))
    tl = np.asarray(eval_hist["train_loss"], np.float64)
    if np.isfinite(tl).any():
        best["train_loss"] = float(np.nanmin(tl))
    return best


def _run_group(scfg, budget, group, group_size, runs, mesh, data, ckpt, checkpoint_every,
               progress):
    """Trains one group to the end and returns its results (rows) and timing."""
    ndev = mesh.devices.size
    real = len(group["run_idx"])
    padded = -(-group_size // ndev) * ndev  # every group of a budget: one shape, one program
    idx = group["run_idx"] + [group["run_idx"][-1]] * (padded - real)  # pad with copies
    choices = scfg.choices
    runs_sh = NamedSharding(mesh, P("runs"))
    repl = NamedSharding(mesh, P())
    keys = _put_keys([runs[i]["seed"] for i in idx], runs_sh)
    lrs = _put(np.asarray([runs[i]["peak_lr"] for i in idx], np.float32), runs_sh)
    sidx = _put(np.asarray([choices.index(runs[i]["schedule"]) for i in idx], np.int32), runs_sh)
    program = _program(scfg, budget, mesh)
    lengths, starts = _segments(budget, scfg.cfg.num_evals)
    n_train = data[0].shape[0]

    leaves, treedef = jax.tree.flatten(_abstract_carry(scfg, budget, n_train, padded))

    restored = ckpt.latest()
    if restored is not None and int(restored["padded_runs"]) != padded:
        restored = None  # planned for another device count: start the group again
    if restored is not None:
        start_seg = int(restored["seg"])
        carry = treedef.unflatten([_put(restored["carry"][f"{i:05d}"], runs_sh)
                                   for i in range(len(leaves))])
        train_parts = [np.asarray(restored["train"][k]) for k in TRAIN_METRICS]
        train_hist = {k: [train_parts[j]] for j, k in enumerate(TRAIN_METRICS)}
        eval_hist = {k: [np.asarray(restored["eval"][k])] for k in EVAL_METRICS}
    else:
        start_seg = 0
        carry = treedef.unflatten([_put(np.zeros(a.shape, a.dtype), runs_sh) for a in leaves])
        train_hist = {k: [] for k in TRAIN_METRICS}
        eval_hist = {k: [] for k in EVAL_METRICS}
    t_start = time.perf_counter()
    steps_done = int(starts[start_seg]) if start_seg < len(starts) else budget
    if progress is not None:
        progress.advance(real * steps_done)
    for seg in range(start_seg, len(lengths)):
        carry, tm, ev = program(keys, lrs, sidx, carry, _put(np.int32(seg), repl), *data)
        tm, ev = _to_host((tm, ev))
        for k in TRAIN_METRICS:
            train_hist[k].append(tm[k][:, :lengths[seg]])
        for k in EVAL_METRICS:
            eval_hist[k].append(ev[k][:, None])
        if progress is not None:
            progress.advance(real * int(lengths[seg]))
        done = seg + 1
        if done < len(lengths) and done % checkpoint_every == 0:
            host_carry = _to_host(jax.tree.leaves(carry))
            ckpt.save(done, {
                "seg": np.asarray(done, np.int32), "padded_runs": np.asarray(padded, np.int32),
                "carry": {f"{i:05d}": a for i, a in enumerate(host_carry)},
                "train": {k: np.concatenate(train_hist[k], axis=1) for k in TRAIN_METRICS},
                "eval": {k: np.concatenate(eval_hist[k], axis=1) for k in EVAL_METRICS}})
    seconds = time.perf_counter() - t_start
    host = _to_host({"dstep": carry.diverged_step})
    train_all = {k: np.concatenate(v, axis=1) for k, v in train_hist.items()}
    eval_all = {k: np.concatenate(v, axis=1) for k, v in eval_hist.items()}
    steps = [int(s) for s in eval_steps(budget, scfg.cfg.num_evals)]
    results = []
    for j, i in enumerate(group["run_idx"]):
        ev = {k: [float(x) for x in eval_all[k][j]] for k in EVAL_METRICS}
        diverged = int(host["dstep"][j]) >= 0
        results.append({
            "run_id": runs[i]["run_id"],
            "status": "diverged" if diverged else "done",
            "diverged_step": int(host["dstep"][j]) if diverged else None,
            "final": {k: v[-1] for k, v in ev.items()},
            "best": _best(ev),
            "eval_steps": steps,
            "eval_history": ev,
            "curves": encode_curves({k: train_all[k][j] for k in TRAIN_METRICS}, TRAIN_METRICS),
        })
    timing = {"budget": budget, "runs": real, "padded_runs": padded, "devices": ndev,
              "seconds": seconds,
              "run_steps_per_second": real * (budget - steps_done) / max(seconds, 1e-9),
              "resumed": restored is not None}
    return results, timing


class _Progress:
    """A rich progress bar (run-steps, steps/s, ETA) on a terminal; one line per group otherwise."""

    def __init__(self, total_run_steps: int, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self.total = total_run_steps
        if enabled and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("run-steps"),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task("sweep", total=total_run_steps, rate="")
            self._bar.start()
        self._t0 = time.perf_counter()
        self._done = 0

    def describe(self, text: str):
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self, n: int):
        self._done += n
        if self._bar is not None:
            rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f}/s")

    def line(self, text: str):
        if self._bar is not None:
            self._bar.console.print(text)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.stop()


def _check_spec(store: Store, spec_dict: dict, out_dir: str):
    stored = store.get_meta("spec")
    if stored == spec_dict:
        return
    diffs = []
    for k in sorted(set(stored) | set(spec_dict)):
        if stored.get(k) != spec_dict.get(k):
            diffs.append(f"{k}: stored {stored.get(k)!r}, given {spec_dict.get(k)!r}")
    raise SweepSpecMismatchError(
        f"out_dir {out_dir!r} holds a sweep with a different spec ({'; '.join(diffs)}); "
        f"resume it with the same arguments, or use another output directory")


def sweep(spec: SweepSpec, out_dir: str, *, resume: bool = True, overwrite: bool = False,
          max_runs_per_program: int | None = None, checkpoint_every: int = 1,
          devices=None, progress: bool = True, data_dir: str | None = None,
          dataset: Dataset | None = None) -> SweepResult:
    """Runs (or resumes) the sweep ``spec`` into ``out_dir`` and returns its results.

    Args:
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
      data_dir: TFDS data dir for the dataset.
      dataset: an already loaded :class:`budgetax.data.Dataset` named ``spec.dataset``.

    Returns:
      A :class:`SweepResult` with every run's row (``status``: ``done`` or ``diverged``).

    Raises:
      SweepSpecMismatchError: ``out_dir`` holds a sweep with another spec.
      ValueError / TypeError: bad arguments, naming the argument and its value.
    """
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"spec must be a SweepSpec, got {spec!r}")
    if not isinstance(out_dir, str | os.PathLike):
        raise TypeError(f"out_dir must be a path, got {out_dir!r}")
    out_dir = os.fspath(out_dir)
    if max_runs_per_program is not None:
        max_runs_per_program = _validate.positive_int("max_runs_per_program",
                                                      max_runs_per_program)
    checkpoint_every = _validate.nonnegative_int("checkpoint_every", checkpoint_every)
    t0 = time.perf_counter()
    if dataset is None:
        dataset = _load(spec.dataset, data_dir=data_dir)
    elif dataset.name != spec.dataset:
        raise ValueError(f"dataset is {dataset.name!r} but spec.dataset is {spec.dataset!r}")
    budgets = spec.budget_steps()
    # eager validation of the whole spec (batch size, model, warmup per budget, ...)
    statics = {}
    for steps in budgets:
        _, _, cfg, _ = _prepare(dataset, spec.model, steps, spec.batch_size, spec.optimizer,
                                spec.num_evals, spec.eval_batch_size, spec.diagnostics,
                                dict(spec.model_kwargs), data_dir)
        statics[steps] = _SweepStatic(cfg, spec.schedules)
    writer = jax.process_index() == 0
    path = os.path.join(out_dir, STORE_NAME)
    if os.path.exists(path) and (overwrite or not resume):
        if not overwrite:
            raise FileExistsError(f"out_dir {out_dir!r} already holds a sweep "
                                  f"({STORE_NAME}); resume it, or pass overwrite=True")
        if writer:
            os.remove(path)
            shutil.rmtree(os.path.join(out_dir, CHECKPOINT_DIR), ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)
    runs = spec.runs()
    spec_dict = spec.to_dict()
    with Store(path) as store:
        plan = store.get_meta("plan")
        devices = list(jax.devices() if devices is None else devices)
        if plan is None:
            if max_runs_per_program is None:
                n_train = dataset.num_train
                fits = [_memory_limited_runs(statics[s], s, n_train, devices) for s in budgets]
                fits = [f for f in fits if f is not None]
                max_runs_per_program = min(fits) if fits else None
            groups = plan_groups(spec, max_runs_per_program)
            rows = [dict(r, idx=i, group_id=g["group_id"])
                    for g in groups for i, r in ((i, runs[i]) for i in g["run_idx"])]
            rows.sort(key=lambda r: r["idx"])
            if writer:
                store.initialise(spec_dict, {"groups": groups, "steps_per_epoch": max(
                    1, dataset.num_train // spec.batch_size)}, rows)
        else:
            _check_spec(store, spec_dict, out_dir)
            groups = plan["groups"]
        finished = store.finished_groups()
        mesh = jax.sharding.Mesh(np.asarray(devices), ("runs",),
                                 axis_types=(jax.sharding.AxisType.Auto,))
        if writer:  # checkpoints of groups stored just before a kill: no longer needed
            for g in groups:
                if g["group_id"] in finished:
                    _Checkpoints(out_dir, g["group_id"], writer).remove()
        todo = [g for g in groups if g["group_id"] not in finished]
        total = sum(len(g["run_idx"]) * g["budget"] for g in todo)
        bar = _Progress(total, progress)
        compiled = set()
        repl = NamedSharding(mesh, P())  # the data, replicated on every device, once
        data = tuple(jax.device_put(a, repl) for a in dataset.device_arrays())
        try:
            for g in todo:
                steps = g["budget"]
                bar.describe(f"budget {g['budget_fraction']:.0%} ({steps} steps), "
                             f"{len(g['run_idx'])} runs")
                ckpt = _Checkpoints(out_dir, g["group_id"], writer)
                size = max(len(h["run_idx"]) for h in groups if h["budget"] == steps)
                results, timing = _run_group(
                    statics[steps], steps, g, size, runs, mesh, data, ckpt,
                    checkpoint_every if checkpoint_every > 0 else 10**9, bar)
                compiled.add(steps)
                if writer:
                    store.complete_group(g["group_id"], results, timing)
                ckpt.remove()
                n_div = sum(r["status"] == "diverged" for r in results)
                bar.line(f"budget {g['budget_fraction']:>5.0%} ({steps:>6} steps) "
                         f"{len(results):>4} runs, {timing['run_steps_per_second']:,.0f} "
                         f"run-steps/s on {timing['devices']} device(s), "
                         f"{timing['seconds']:.1f}s" + (f", {n_div} diverged" if n_div else "")
                         + (" (resumed)" if timing["resumed"] else ""))
        finally:
            bar.close()
        ckpt_root = os.path.join(out_dir, CHECKPOINT_DIR)
        if writer and os.path.isdir(ckpt_root) and not os.listdir(ckpt_root):
            os.rmdir(ckpt_root)
        rows = store.runs()
        group_rows = store.groups()
    return SweepResult(out_dir=out_dir, spec=spec, runs=rows, groups=group_rows,
                       compiled_budgets=len(compiled), seconds=time.perf_counter() - t0)
