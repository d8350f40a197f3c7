r"""``train`` / ``train_many``: a whole budget as ``lax.scan`` chunks inside one ``jax.jit``.

A run of budget ``T`` with ``E = num_evals`` evaluations is cut into ``E`` chunks
of ``floor(T/E)`` or ``ceil(T/E)`` steps; after each chunk the model is evaluated
on the test set and, for the budgeted-convergence diagnostics of Li et al., on
the full training set: the loss :math:`L(\theta) = \frac1N\sum_i \ell_i(\theta)`
and the norm of its full gradient :math:`\lVert \nabla L(\theta) \rVert_2`, which
should be small at the end of a well-annealed budget. The budget is a static
argument of the compiled function: a second run with the same budget, config
and data shapes reuses it; a different budget compiles once more.

The compiled core is a pure function of ``(key, peak_lr)`` given the static
config and the data, which is what :func:`train_many` ``jax.vmap``s over seeds
and learning rates. Everything random in a run comes from its key: the model
initialisation and the batch order (``split(key)``) and, for
``precision="bf16_sr"``, the stochastic-rounding stream (a seed drawn from
``fold_in(key, SR_STREAM)``), so each vmapped run has its own and the
``OptimizerSpec.seed`` field is not part of the compiled configuration.

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from budgetax import _validate
from budgetax import models as _models
from budgetax.data import Dataset, Prefetcher, check_batch_size, device_batch_indices
from budgetax.data import load as _load
from budgetax.training.optim import OptimizerSpec
from budgetax.training.steps import (
    ModelFns,
    TrainState,
    eval_sums,
    full_gradient,
    global_norm,
    make_model_fns,
    train_step,
)

__all__ = ["History", "SR_STREAM", "TRAIN_METRICS", "EVAL_METRICS", "eval_steps", "make_core",
           "sr_seed", "train", "train_many", "trace_count"]

TRAIN_METRICS = ("loss", "accuracy", "grad_norm", "update_norm", "lr")
EVAL_METRICS = ("test_loss", "test_accuracy", "train_loss", "train_accuracy", "full_grad_norm")
DATA_MODES = ("auto", "device", "stream")

_TRACES = {"device": 0, "many": 0, "stream": 0}

SR_STREAM = 0x5352  # fold_in tag of the stochastic-rounding stream of a run's key


def trace_count(kind: str = "device") -> int:
    """How many times the compiled core was traced (= compiled) in this process.

    ``kind``: ``"device"`` (:func:`train` on on-device data), ``"many"``
    (:func:`train_many`) or ``"stream"`` (streamed chunks).
    """
    return _TRACES[kind]


@dataclasses.dataclass(frozen=True)
class _Static:
    """The hashable, static part of a run (everything but key, peak lr and data).

    ``spec`` has ``peak_lr`` and ``seed`` normalised to 0: both are per-run inputs.
    """

    model: str
    model_kwargs: tuple
    input_shape: tuple
    num_classes: int
    batch_size: int
    spec: OptimizerSpec
    num_evals: int
    eval_batch_size: int
    diagnostics: bool


@functools.lru_cache(maxsize=64)
def _model_fns(model, model_kwargs, input_shape, num_classes, precision) -> ModelFns:
    dtype = None if precision == "float32" else jnp.bfloat16
    pdtype = jnp.float32 if precision == "float32" else jnp.bfloat16

    def build(rngs):
        return _models.create(model, input_shape=input_shape, num_classes=num_classes,
                              rngs=rngs, dtype=dtype, param_dtype=pdtype, **dict(model_kwargs))

    return make_model_fns(build)


def _fns(cfg: _Static) -> ModelFns:
    return _model_fns(cfg.model, cfg.model_kwargs, cfg.input_shape, cfg.num_classes,
                      cfg.spec.precision)


def eval_steps(budget: int, num_evals: int) -> np.ndarray:
    """Steps after which a run of ``budget`` evaluates: ``min(num_evals, budget)`` chunk ends.

    The first ``budget mod E`` chunks have ``ceil(budget/E)`` steps, the rest
    ``floor(budget/E)``, so evaluation ``k`` is within one step of ``k/E`` of the
    budget and the last one is at ``budget``.

    Example:
      >>> eval_steps(100, 4).tolist()
      [25, 50, 75, 100]
    """
    groups = _groups(budget, num_evals)
    lengths = [length for n, length in groups for _ in range(n)]
    return np.cumsum(lengths)


def _groups(budget: int, num_evals: int) -> list[tuple[int, int]]:
    e = min(num_evals, budget)
    q, r = divmod(budget, e)
    return [(n, length) for n, length in ((r, q + 1), (e - r, q)) if n > 0]


def _find_lr(opt_state):
    """The learning rate kept in an optimizer state (AutoWU), NaN if there is none."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        name = str(getattr(path[-1], "name", getattr(path[-1], "key", ""))) if path else ""
        if name in ("lr", "learning_rate", "current_lr") and jnp.ndim(leaf) == 0:
            return leaf
    return jnp.float32(jnp.nan)


def _build(cfg: _Static, budget: int, peak_lr, sr_seed=None):
    tx = cfg.spec.build(budget, peak_lr, sr_seed=sr_seed)
    sched = cfg.spec.learning_rate(budget, peak_lr)
    if sched is None:
        lr_fn = lambda step, opt_state: _find_lr(opt_state)
    else:
        lr_fn = lambda step, opt_state: sched(step)
    return tx, lr_fn


def sr_seed(key) -> jax.Array:
    """The stochastic-rounding seed of the run with key ``key`` (traceable int32 scalar)."""
    return jax.random.randint(jax.random.fold_in(key, SR_STREAM), (), 0,
                              jnp.iinfo(jnp.int32).max, dtype=jnp.int32)


def _init_state(cfg: _Static, budget: int, fns, key, peak_lr):
    """The initial state and the data key of the run with key ``key``."""
    init_key, data_key = jax.random.split(key)
    tx, _ = _build(cfg, budget, peak_lr, sr_seed=sr_seed(key))
    params, rest = fns.init(init_key)
    return TrainState(params, rest, tx.init(params), jnp.int32(0)), data_key


def _padded(x, y, size):
    """Pads to a multiple of ``size`` and reshapes to ``[chunks, size, ...]`` with a mask."""
    n = x.shape[0]
    k = -(-n // size)
    pad = k * size - n
    mask = jnp.arange(k * size) < n
    xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    yp = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]) if pad else y
    return (xp.reshape(k, size, *x.shape[1:]), yp.reshape(k, size),
            mask.reshape(k, size))


def _evaluate_device(cfg, fns, state, x_train, y_train, x_test, y_test):
    size = min(cfg.eval_batch_size, x_test.shape[0])
    xs, ys, ms = _padded(x_test, y_test, size)

    def add(acc, batch):
        s = eval_sums(fns, state.params, state.rest, *batch)
        return jax.tree.map(jnp.add, acc, s), None

    zero = (jnp.float32(0), jnp.float32(0), jnp.float32(0))
    (loss, correct, count), _ = jax.lax.scan(add, zero, (xs, ys, ms))
    out = {"test_loss": loss / count, "test_accuracy": correct / count}
    if cfg.diagnostics:
        size = min(cfg.eval_batch_size, x_train.shape[0])
        xs, ys, ms = _padded(x_train, y_train, size)
        gzero = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)

        def addg(acc, batch):
            total, correct, g = full_gradient(fns, state.params, state.rest, *batch)
            return (acc[0] + total, acc[1] + correct, jax.tree.map(jnp.add, acc[2], g)), None

        (tl, tc, g), _ = jax.lax.scan(addg, (jnp.float32(0), jnp.float32(0), gzero),
                                      (xs, ys, ms))
        n = x_train.shape[0]
        out.update(train_loss=tl / n, train_accuracy=tc / n,
                   full_grad_norm=global_norm(jax.tree.map(lambda a: a / n, g)))
    else:
        nan = jnp.float32(jnp.nan)
        out.update(train_loss=nan, train_accuracy=nan, full_grad_norm=nan)
    return out


def _device_run(cfg: _Static, budget: int, keys, peak_lrs, x_train, y_train, x_test, y_test):
    """The pure core: ``R`` whole runs on on-device data, a function of ``(keys[R], peak_lrs[R])``.

    The step counter and the epoch's permutations live outside the per-run
    ``vmap`` so that each permutation is drawn once per epoch (a ``lax.cond`` on
    the unbatched step), not at every step. Run ``r`` is exactly the run of
    ``(keys[r], peak_lrs[r])``: batch ``t`` is ``batch_indices(data_key_r, t, n, b)``
    (computed by :func:`budgetax.data.device_batch_indices`).
    """
    fns = _fns(cfg)
    n, b = x_train.shape[0], cfg.batch_size

    def init_one(key, peak):
        return _init_state(cfg, budget, fns, key, peak)

    def step_one(state, peak, x, y):
        tx, lr_fn = _build(cfg, budget, peak)  # update does not depend on the SR seed
        return train_step(fns, tx, lr_fn, state, x, y)

    def eval_one(state):
        return _evaluate_device(cfg, fns, state, x_train, y_train, x_test, y_test)

    states, data_keys = jax.vmap(init_one)(keys, peak_lrs)

    def body(carry, _):
        states, perms, t = carry
        perms, idx = device_batch_indices(data_keys, perms, t, n, b)  # idx: [R, b]
        states, metrics = jax.vmap(step_one)(states, peak_lrs, x_train[idx], y_train[idx])
        return (states, perms, t + 1), metrics

    def chunk(length):
        def run(carry, _):
            carry, metrics = jax.lax.scan(body, carry, None, length=length)
            # evaluations one run after another (lax.map), not vmapped: a vmapped conv
            # with per-run weights becomes a grouped conv, 2x slower on CPU for the CNN
            # (benchmarks/results/sweep_throughput_cnn1d.md); neutral for the MLP
            return carry, (metrics, jax.lax.map(eval_one, carry[0]))
        return run

    perms0 = jnp.zeros((keys.shape[0], n), jnp.int32)
    carry = (states, perms0, jnp.int32(0))
    train_parts, eval_parts = [], []
    for n_chunks, length in _groups(budget, cfg.num_evals):
        carry, (metrics, ev) = jax.lax.scan(chunk(length), carry, None, length=n_chunks)
        # metrics: [n_chunks, length, R] -> [R, n_chunks * length]; ev: [n_chunks, R] -> [R, n]
        train_parts.append(jax.tree.map(lambda a: a.reshape(-1, a.shape[-1]).T, metrics))
        eval_parts.append(jax.tree.map(lambda a: a.T, ev))
    train_m = jax.tree.map(lambda *a: jnp.concatenate(a, axis=1), *train_parts)
    eval_m = jax.tree.map(lambda *a: jnp.concatenate(a, axis=1), *eval_parts)
    return carry[0], train_m, eval_m


def _counted_device(cfg, budget, keys, peak_lrs, x_train, y_train, x_test, y_test):
    _TRACES["device"] += 1
    return _device_run(cfg, budget, keys, peak_lrs, x_train, y_train, x_test, y_test)


def _counted_many(cfg, budget, keys, peak_lrs, x_train, y_train, x_test, y_test):
    _TRACES["many"] += 1
    return _device_run(cfg, budget, keys, peak_lrs, x_train, y_train, x_test, y_test)


_device_jit = jax.jit(_counted_device, static_argnames=("cfg", "budget"))
_many_jit = jax.jit(_counted_many, static_argnames=("cfg", "budget"))


# ------------------------------------------------------------------ streaming
def _stream_init(cfg, budget, key, peak_lr):
    state, _ = _init_state(cfg, budget, _fns(cfg), key, peak_lr)
    return state


def _stream_chunk(cfg, budget, state, peak_lr, xb, yb):
    _TRACES["stream"] += 1
    fns = _fns(cfg)
    tx, lr_fn = _build(cfg, budget, peak_lr)

    def body(state, batch):
        return train_step(fns, tx, lr_fn, state, *batch)

    return jax.lax.scan(body, state, (xb, yb))


def _stream_eval(cfg, params, rest, x, y, mask):
    return eval_sums(_fns(cfg), params, rest, x, y, mask)


def _stream_grad(cfg, params, rest, x, y, mask):
    return full_gradient(_fns(cfg), params, rest, x, y, mask)


_stream_init_jit = jax.jit(_stream_init, static_argnames=("cfg", "budget"))
_stream_chunk_jit = jax.jit(_stream_chunk, static_argnames=("cfg", "budget"), donate_argnums=(2,))
_stream_eval_jit = jax.jit(_stream_eval, static_argnames=("cfg",))
_stream_grad_jit = jax.jit(_stream_grad, static_argnames=("cfg",))


def _host_batches(dataset: Dataset, split: str, size: int):
    n = dataset.num_train if split == "train" else dataset.num_test
    for start in range(0, n, size):
        idx = np.arange(start, min(n, start + size))
        x, y = dataset.gather(split, idx)
        pad = size - len(idx)
        mask = np.arange(size) < len(idx)
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros((pad,), y.dtype)])
        yield x, y, mask


def _evaluate_stream(cfg, dataset, state):
    size = min(cfg.eval_batch_size, dataset.num_test)
    loss = correct = count = 0.0
    for x, y, m in _host_batches(dataset, "test", size):
        a, b, c = _stream_eval_jit(cfg, state.params, state.rest, x, y, m)
        loss, correct, count = loss + a, correct + b, count + c
    out = {"test_loss": loss / count, "test_accuracy": correct / count}
    if cfg.diagnostics:
        size = min(cfg.eval_batch_size, dataset.num_train)
        tl = tc = 0.0
        g = None
        for x, y, m in _host_batches(dataset, "train", size):
            a, b, gi = _stream_grad_jit(cfg, state.params, state.rest, x, y, m)
            tl, tc = tl + a, tc + b
            g = gi if g is None else jax.tree.map(jnp.add, g, gi)
        n = dataset.num_train
        out.update(train_loss=tl / n, train_accuracy=tc / n,
                   full_grad_norm=global_norm(jax.tree.map(lambda a: a / n, g)))
    else:
        out.update(train_loss=np.nan, train_accuracy=np.nan, full_grad_norm=np.nan)
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _stream_run(cfg, budget, key, peak_lr, dataset: Dataset, prefetch: int):
    state = _stream_init_jit(cfg, budget, key, peak_lr)
    data_key = jax.random.split(key)[1]
    chunks, start = [], 0
    for n_chunks, length in _groups(budget, cfg.num_evals):
        for _ in range(n_chunks):
            chunks.append((start, length))
            start += length
    train_parts, evals = [], []
    with Prefetcher(lambda idx: dataset.gather("train", idx), dataset.num_train,
                    cfg.batch_size, data_key, chunks, prefetch=prefetch) as loader:
        for xb, yb in loader:
            state, metrics = _stream_chunk_jit(cfg, budget, state, peak_lr, xb, yb)
            train_parts.append(metrics)
            evals.append(_evaluate_stream(cfg, dataset, state))
    train_m = jax.tree.map(lambda *a: jnp.concatenate(a), *train_parts)
    eval_m = {k: np.stack([e[k] for e in evals]) for k in EVAL_METRICS}
    return state, train_m, eval_m


# ------------------------------------------------------------------- results
@dataclasses.dataclass
class History:
    """What a run returns: plain NumPy arrays and dicts (plus the final model state).

    Attributes:
      config: the run's settings (JSON-friendly).
      eval_steps: ``[E]`` steps after which the model was evaluated (the last is the budget).
      eval: ``{name: [E] array}`` for ``test_loss``, ``test_accuracy``, ``train_loss``,
        ``train_accuracy``, ``full_grad_norm`` (full training set, eval mode).
      train: ``{name: [budget] array}`` per-step ``loss``, ``accuracy``, ``grad_norm``,
        ``update_norm``, ``lr``.
      diverged: whether a minibatch loss became NaN/inf.
      diverged_step: the first such step (``None`` if none), read off ``train["loss"]``.
      seconds: wall-clock seconds of the run (including compilation, if any).
      params: the final parameters (an ``nnx.State``; not in :meth:`to_dict`).
      rest: the final non-parameter model state (batch-norm statistics).
    """

    config: dict
    eval_steps: np.ndarray
    eval: dict
    train: dict
    diverged: bool
    diverged_step: int | None
    seconds: float
    params: Any = dataclasses.field(default=None, repr=False)
    rest: Any = dataclasses.field(default=None, repr=False)

    @property
    def final(self) -> dict:
        """The last evaluation: ``{name: float}``."""
        return {k: float(v[-1]) for k, v in self.eval.items()}

    def early_stop(self, *, threshold: float = 0.05, patience: int = 3,
                   smoothing: float = 0.5, min_epochs: int = 0,
                   steps_per_epoch: int | None = None):
        """When the elasticity stopping rule would have stopped this run, and what it costs.

        Replays :func:`budgetax.ranking.early_stop` on the run's per-step training
        loss (epochs of ``config["steps_per_epoch"]`` steps unless given): stop once
        the smoothed elasticity of the epoch loss with respect to training time,
        :math:`|(dL/L)/(dt/t)|`, stayed below ``threshold`` for ``patience`` epochs
        (and not before epoch ``min_epochs``).

        Returns:
          ``budgetax.ranking.EarlyStop(stop_epoch, compute_saved, loss_given_up)``
          as Python numbers.
        """
        from budgetax import ranking

        spe = steps_per_epoch or self.config.get("steps_per_epoch") or 1
        out = ranking.early_stop(self.train["loss"], spe, threshold=threshold,
                                 patience=patience, smoothing=smoothing, min_epochs=min_epochs)
        return ranking.EarlyStop(int(out.stop_epoch), float(out.compute_saved),
                                 float(out.loss_given_up))

    def to_dict(self, per_step: bool = False) -> dict:
        """A JSON-serialisable dict (per-step curves only if ``per_step``)."""
        d = {
            "config": self.config,
            "eval_steps": [int(s) for s in self.eval_steps],
            "eval": {k: [float(x) for x in v] for k, v in self.eval.items()},
            "final": self.final,
            "diverged": bool(self.diverged),
            "diverged_step": self.diverged_step,
            "seconds": float(self.seconds),
        }
        if per_step:
            d["train"] = {k: [float(x) for x in v] for k, v in self.train.items()}
        return d


def _prepare(dataset, model, budget, batch_size, optimizer, num_evals, eval_batch_size,
             diagnostics, model_kwargs, data_dir):
    if isinstance(dataset, str):
        dataset = _load(dataset, data_dir=data_dir)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a budgetax.data.Dataset or a name, got {dataset!r}")
    budget = _validate.positive_int("budget", budget)
    batch_size = check_batch_size(batch_size, dataset.num_train)
    num_evals = _validate.positive_int("num_evals", num_evals)
    eval_batch_size = _validate.positive_int("eval_batch_size", eval_batch_size)
    if model not in _models.MODELS:
        raise ValueError(f"model must be one of {sorted(_models.MODELS)}, got {model!r}")
    if optimizer is None:
        optimizer = OptimizerSpec()
    if not isinstance(optimizer, OptimizerSpec):
        raise TypeError(f"optimizer must be an OptimizerSpec, got {optimizer!r}")
    optimizer.build(budget)  # eager validation (warmup, missing transforms, ...)
    kw = tuple(sorted((model_kwargs or {}).items()))
    kw = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in kw)
    cfg = _Static(model=model, model_kwargs=kw, input_shape=tuple(dataset.input_shape),
                  num_classes=int(dataset.num_classes), batch_size=batch_size,
                  spec=dataclasses.replace(optimizer, peak_lr=0.0, seed=0), num_evals=num_evals,
                  eval_batch_size=eval_batch_size, diagnostics=bool(diagnostics))
    return dataset, budget, cfg, optimizer


def _config_dict(dataset, cfg, budget, optimizer, seed, peak_lr, data_mode):
    return {
        "dataset": dataset.name, "model": cfg.model, "model_kwargs": dict(cfg.model_kwargs),
        "budget": budget, "batch_size": cfg.batch_size, "num_evals": cfg.num_evals,
        "optimizer": dict(optimizer.to_dict(), peak_lr=float(peak_lr)), "seed": seed,
        "data": data_mode, "epochs": budget * cfg.batch_size / dataset.num_train,
        "steps_per_epoch": max(1, dataset.num_train // cfg.batch_size),
    }


def _history(config, budget, cfg, train_m, eval_m, seconds, params=None, rest=None):
    train_np = {k: np.asarray(v) for k, v in train_m.items()}
    eval_np = {k: np.asarray(v) for k, v in eval_m.items()}
    bad = np.flatnonzero(~np.isfinite(train_np["loss"]))
    diverged_step = int(bad[0]) if bad.size else None
    return History(config=config, eval_steps=eval_steps(budget, cfg.num_evals), eval=eval_np,
                   train=train_np, diverged=diverged_step is not None,
                   diverged_step=diverged_step, seconds=seconds, params=params, rest=rest)


def make_core(dataset, *, model: str = "mlp", budget: int, batch_size: int = 100,
              optimizer: OptimizerSpec | None = None, num_evals: int = 4,
              eval_batch_size: int = 1000, diagnostics: bool = True,
              model_kwargs: dict | None = None, data_dir: str | None = None):
    """The pure, un-jitted core of :func:`train_many`, for sweep engines to jit / shard.

    Returns ``(core, data_args)``: ``core(keys, peak_lrs, *data_args)`` runs ``R``
    complete runs of budget ``budget`` (``keys``: ``[R]`` PRNG keys, ``peak_lrs``:
    ``[R]`` float32) and returns ``(final_states, train_metrics, eval_metrics)`` with
    ``train_metrics[name]`` of shape ``[R, budget]`` and ``eval_metrics[name]`` of
    shape ``[R, E]`` (evaluated after :func:`eval_steps` ``(budget, num_evals)``).
    ``data_args`` are the on-device train/test arrays ``(x_train, y_train, x_test, y_test)``.
    Everything static (model, budget, optimizer spec but its peak lr and seed) is closed over.
    A run's divergence shows as non-finite ``train_metrics["loss"]`` (the first such step
    is :attr:`History.diverged_step`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> core, data_args = make_core("mnist1d", budget=100)   # doctest: +SKIP
      >>> keys = jnp.stack([jax.random.key(s) for s in range(4)])
      >>> out = jax.jit(core)(keys, jnp.full((4,), 1e-2), *data_args)  # doctest: +SKIP
    """
    dataset, budget, cfg, _ = _prepare(dataset, model, budget, batch_size, optimizer,
                                       num_evals, eval_batch_size, diagnostics, model_kwargs,
                                       data_dir)
    data_args = dataset.device_arrays()
    return functools.partial(_device_run, cfg, budget), data_args


def train(dataset, *, model: str = "mlp", budget: int, batch_size: int = 100,
          optimizer: OptimizerSpec | None = None, seed: int = 0, peak_lr: float | None = None,
          num_evals: int = 4, eval_batch_size: int = 1000, diagnostics: bool = True,
          model_kwargs: dict | None = None, data: str = "auto", prefetch: int = 2,
          data_dir: str | None = None) -> History:
    """Trains ``model`` on ``dataset`` for exactly ``budget`` optimizer steps.

    Small datasets are put on the device and the whole run (batch sampling with a
    per-epoch permutation from the run's key, updates, evaluations) is one
    compiled call; larger ones are streamed chunk by chunk from their TFDS data
    source by a background thread (same batches as on-device mode).

    Args:
      dataset: a :class:`budgetax.data.Dataset` or a name for :func:`budgetax.data.load`.
      model: ``"mlp"``, ``"cnn1d"`` or ``"resnet"``.
      budget: number of optimizer steps ``T`` (static: compiled into the run).
      batch_size: examples per step (``<=`` the training-set size).
      optimizer: an :class:`OptimizerSpec` (default: Adam, linear decay from 1e-2).
      seed: the run's seed (model init, batch order and, for ``bf16_sr``, the
        stochastic-rounding stream; ``optimizer.seed`` is not used).
      peak_lr: overrides ``optimizer.peak_lr`` (a traced input: no recompilation).
      num_evals: evaluations, evenly spaced over the budget; the last at its end.
      eval_batch_size: batch size of evaluation passes.
      diagnostics: also compute the full-training-set loss, accuracy and gradient norm.
      model_kwargs: model knobs (e.g. ``{"hidden": (100, 100)}``).
      data: ``"auto"``, ``"device"`` or ``"stream"``.
      prefetch: chunks prepared ahead by the streaming thread.
      data_dir: TFDS data dir for a dataset given by name.

    Returns:
      A :class:`History`. A NaN/inf loss does not raise: ``history.diverged`` is
      True and ``history.diverged_step`` is the first bad step.

    Example:
      >>> from budgetax import training
      >>> spec = training.OptimizerSpec("adam", "linear", peak_lr=1e-2)
      >>> h = training.train("mnist1d", model="mlp", budget=200, optimizer=spec)  # doctest: +SKIP
      >>> h.final["test_accuracy"]                                                 # doctest: +SKIP
    """
    seed = _validate.seed("seed", seed)
    _validate.one_of("data", data, DATA_MODES)
    dataset, budget, cfg, optimizer = _prepare(dataset, model, budget, batch_size, optimizer,
                                               num_evals, eval_batch_size, diagnostics,
                                               model_kwargs, data_dir)
    lr = optimizer.peak_lr if peak_lr is None else _validate.real("peak_lr", peak_lr, low=0.0)
    mode = data if data != "auto" else ("device" if dataset.fits_on_device() else "stream")
    key = jax.random.key(seed)
    lr_arr = jnp.float32(lr)
    t0 = time.perf_counter()
    if mode == "device":
        state, train_m, eval_m = _device_jit(cfg, budget, key[None], lr_arr[None],
                                             *dataset.device_arrays())
        first = lambda a: a[0]
        state = jax.tree.map(first, state)
        train_m, eval_m = jax.tree.map(first, train_m), jax.tree.map(first, eval_m)
    else:
        state, train_m, eval_m = _stream_run(cfg, budget, key, lr_arr, dataset, prefetch)
    jax.block_until_ready(train_m)
    seconds = time.perf_counter() - t0
    return _history(_config_dict(dataset, cfg, budget, optimizer, seed, lr, mode), budget, cfg,
                    train_m, eval_m, seconds, params=state.params, rest=state.rest)


def train_many(dataset, *, seeds=(0,), peak_lrs=None, model: str = "mlp", budget: int,
               batch_size: int = 100, optimizer: OptimizerSpec | None = None,
               num_evals: int = 4, eval_batch_size: int = 1000, diagnostics: bool = True,
               model_kwargs: dict | None = None, data_dir: str | None = None) -> list[History]:
    """Runs the grid ``seeds x peak_lrs`` as one ``jax.vmap``-ped compiled call.

    Every run is the same pure function of ``(key, peak_lr)`` as :func:`train`
    (on-device data), so run ``(seed, lr)`` matches ``train(..., seed=seed,
    peak_lr=lr)`` up to floating-point reassociation under vmap; in particular
    each run has its own stochastic-rounding stream (``bf16_sr``).

    Args:
      dataset, model, budget, batch_size, optimizer, num_evals, eval_batch_size,
      diagnostics, model_kwargs, data_dir: as in :func:`train`.
      seeds: the seeds (ints).
      peak_lrs: the peak learning rates (default: ``optimizer.peak_lr`` only).

    Returns:
      A list of :class:`History`, seed-major: ``[(s0, lr0), (s0, lr1), ..., (s1, lr0), ...]``;
      ``history.seconds`` is the wall time of the whole vmapped call.

    Example:
      >>> from budgetax import training
      >>> hs = training.train_many("mnist1d", seeds=[0, 1], peak_lrs=[1e-3, 1e-2],
      ...                          budget=200)  # doctest: +SKIP
      >>> len(hs)                               # doctest: +SKIP
      4
    """
    dataset, budget, cfg, optimizer = _prepare(dataset, model, budget, batch_size, optimizer,
                                               num_evals, eval_batch_size, diagnostics,
                                               model_kwargs, data_dir)
    seeds = [_validate.seed("seeds", s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of ints, got []")
    lrs = [optimizer.peak_lr] if peak_lrs is None else [
        _validate.real("peak_lrs", v, low=0.0) for v in peak_lrs]
    if not lrs:
        raise ValueError("peak_lrs must be a non-empty sequence, got []")
    grid = [(s, lr) for s in seeds for lr in lrs]
    keys = jnp.stack([jax.random.key(s) for s, _ in grid])
    lr_arr = jnp.asarray([lr for _, lr in grid], jnp.float32)
    t0 = time.perf_counter()
    state, train_m, eval_m = _many_jit(cfg, budget, keys, lr_arr, *dataset.device_arrays())
    jax.block_until_ready(train_m)
    seconds = time.perf_counter() - t0
    out = []
    for i, (s, lr) in enumerate(grid):
        pick = lambda a, i=i: a[i]
        out.append(_history(_config_dict(dataset, cfg, budget, optimizer, s, lr, "device"),
                            budget, cfg, jax.tree.map(pick, train_m),
                            jax.tree.map(pick, eval_m), seconds,
                            params=jax.tree.map(pick, state.params),
                            rest=jax.tree.map(pick, state.rest)))
    return out
