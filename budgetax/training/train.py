r"""``train`` and ``train_many``: thin drivers of the training core.

``train`` runs one run of a :class:`~budgetax.training.Task` for exactly
``budget`` optimizer steps; ``train_many`` runs seeds x peak learning rates
together, ``jax.vmap``-ped and sharded over the devices. Both are the core of
:mod:`budgetax.training.core`: the budget is static (a second run with the same
budget, task and shapes compiles nothing), the run is a pure function of its key
and peak learning rate, and a run whose loss or update turns non-finite is frozen
at its last finite state and reported as diverged with its step, as in a sweep.

References:
  Li, Yumer, Ramanan. Budgeted Training. ICLR 2020. arXiv:1905.04753.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from budgetax import _validate
from budgetax.data import Dataset
from budgetax.training import core
from budgetax.training.hosts import check_devices
from budgetax.training.optim import OptimizerSpec
from budgetax.training.presets import preset
from budgetax.training.task import Task

__all__ = ["History", "as_task", "train", "train_many"]


def as_task(task, *, model: str | None = None, model_kwargs: dict | None = None,
            data: str = "auto", data_dir: str | None = None) -> Task:
    """A :class:`Task`, or a dataset (name or :class:`Dataset`) + ``model`` made into a preset."""
    if isinstance(task, Task):
        if model is not None or model_kwargs is not None:
            raise ValueError("model= and model_kwargs= are for built-in datasets; a Task "
                             "brings its own model")
        return task
    if isinstance(task, str | Dataset):
        return preset(task, "mlp" if model is None else model, model_kwargs=model_kwargs,
                      data=data, data_dir=data_dir)
    raise TypeError(f"task must be a budgetax.training.Task or a dataset (a name or a "
                    f"budgetax.data.Dataset), got {task!r}")


@dataclasses.dataclass
class History:
    """What a run returns: plain NumPy arrays and dicts (plus the final model state).

    Attributes:
      config: the run's settings (JSON-friendly).
      eval_steps: ``[E]`` steps after which the model was evaluated (the last is the budget).
      eval: ``{name: [E] array}``: ``test_<metric>`` on the task's held-out data and,
        with diagnostics, ``train_<metric>`` and ``full_grad_norm`` on the whole
        training set (eval mode).
      train: ``{name: [budget] array}`` per step: ``loss``, the loss's metrics,
        ``grad_norm``, ``update_norm``, ``lr`` (NaN after a divergence).
      diverged: whether the run's loss or update turned non-finite.
      diverged_step: the step at which it was frozen (``None`` if it was not).
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
        (and not before epoch ``min_epochs``). ``steps_per_epoch``, when given, is a
        positive int.

        Returns:
          ``budgetax.ranking.EarlyStop(stop_epoch, compute_saved, loss_given_up)``
          as Python numbers.
        """
        from budgetax import ranking

        if steps_per_epoch is None:
            spe = self.config.get("steps_per_epoch") or 1
        else:
            spe = _validate.positive_int("steps_per_epoch", steps_per_epoch)
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


def _config(prog: core.Program, optimizer: OptimizerSpec, seed: int, peak_lr: float) -> dict:
    task = prog.task
    return {
        "task": task.identity(), "budget": prog.budget, "batch_size": prog.batch_size,
        "num_evals": prog.num_evals,
        "optimizer": dict(optimizer.to_dict(), peak_lr=float(peak_lr)), "seed": seed,
        "data": "stream" if task.streamed else "device",
        "epochs": prog.budget * prog.batch_size / task.num_train,
        "steps_per_epoch": max(1, task.num_train // prog.batch_size),
    }


def _drive(prog, devices, seeds, lrs, optimizer):
    """Runs ``(seed, lr)`` pairs through the core; one :class:`History` each."""
    runs = core.Runs(prog, core.make_mesh(devices), seeds, lrs, [0] * len(seeds))
    t0 = time.perf_counter()
    carry, train_m, eval_m, dstep = runs.run()
    seconds = time.perf_counter() - t0
    states = carry.states
    steps = core.eval_steps(prog.budget, prog.num_evals)
    out = []
    for i, (seed, lr) in enumerate(zip(seeds, lrs, strict=True)):
        pick = lambda a, i=i: a[i]
        d = int(dstep[i])
        out.append(History(config=_config(prog, optimizer, seed, lr), eval_steps=steps,
                           eval={k: v[i] for k, v in eval_m.items()},
                           train={k: v[i] for k, v in train_m.items()},
                           diverged=d >= 0, diverged_step=d if d >= 0 else None,
                           seconds=seconds, params=jax.tree.map(pick, states.params),
                           rest=jax.tree.map(pick, states.rest)))
    return out


def train(task, *, budget: int, batch_size: int = 100, optimizer: OptimizerSpec | None = None,
          seed: int = 0, peak_lr: float | None = None, num_evals: int = 4,
          eval_batch_size: int = 1000, diagnostics: bool | int = True,
          model: str | None = None,
          model_kwargs: dict | None = None, data: str = "auto",
          data_dir: str | None = None,
          divergence_factor: float | None = core.DIVERGENCE_FACTOR) -> History:
    """Trains a task for exactly ``budget`` optimizer steps.

    In-memory training data is put on the device and batches are drawn inside the
    compiled loop; a random-access source is streamed from the host, chunk by
    chunk, by a background thread (the same batches).

    Args:
      task: a :class:`Task`; or a built-in dataset (a name for
        :func:`budgetax.data.load` or a :class:`budgetax.data.Dataset`) with ``model``,
        made into :func:`budgetax.training.preset`.
      budget: number of optimizer steps ``T`` (static: compiled into the run).
      batch_size: examples per step (``<=`` the training-set size).
      optimizer: an :class:`OptimizerSpec` (default: Adam, linear decay from 1e-2).
      seed: the run's seed (model init, batch order and, for ``bf16_sr``, the
        stochastic-rounding stream; ``optimizer.seed`` is not used).
      peak_lr: overrides ``optimizer.peak_lr`` (a traced input: no recompilation).
      num_evals: evaluations, evenly spaced over the budget; the last at its end.
      eval_batch_size: batch size of evaluation passes.
      diagnostics: also evaluate on the whole training set (``train_*`` metrics and
        the full-gradient norm); an int N: on a fixed random subset of N training
        examples (the same for every run; much cheaper on a large training set).
      model, model_kwargs, data, data_dir: for a built-in dataset (see
        :func:`budgetax.training.preset`); ``model=None`` is ``"mlp"``, and
        ``model_kwargs`` must name the model's knobs.
      divergence_factor: a minibatch loss above this multiple of the run's first
        (positive) minibatch loss counts as a divergence; ``None``: only non-finite
        losses and updates do.

    Returns:
      A :class:`History`. A divergence does not raise: the run is frozen at its last
      good state, ``history.diverged`` is True and ``history.diverged_step`` is its step.

    Example:
      >>> from budgetax import training
      >>> spec = training.OptimizerSpec("adam", "linear", peak_lr=1e-2)
      >>> h = training.train("mnist1d", model="mlp", budget=200, optimizer=spec)  # doctest: +SKIP
      >>> h.final["test_accuracy"]                                                 # doctest: +SKIP
    """
    seed = _validate.seed("seed", seed)
    task = as_task(task, model=model, model_kwargs=model_kwargs, data=data, data_dir=data_dir)
    prog = core.make_program(task, budget, optimizer, batch_size=batch_size,
                             num_evals=num_evals, eval_batch_size=eval_batch_size,
                             diagnostics=diagnostics, divergence_factor=divergence_factor)
    optimizer = optimizer or OptimizerSpec()
    lr = optimizer.peak_lr if peak_lr is None else _validate.real("peak_lr", peak_lr, low=0.0)
    return _drive(prog, jax.devices()[:1], [seed], [lr], optimizer)[0]


def train_many(task, *, seeds=(0,), peak_lrs=None, budget: int, batch_size: int = 100,
               optimizer: OptimizerSpec | None = None, num_evals: int = 4,
               eval_batch_size: int = 1000, diagnostics: bool | int = True,
               model: str | None = None, model_kwargs: dict | None = None,
               data: str = "auto", data_dir: str | None = None, devices=None,
               divergence_factor: float | None = core.DIVERGENCE_FACTOR) -> list[History]:
    """Runs the grid ``seeds x peak_lrs`` together: vmapped, sharded over ``devices``.

    Every run is the same pure function of ``(key, peak_lr)`` as :func:`train`, so
    run ``(seed, lr)`` matches ``train(..., seed=seed, peak_lr=lr)`` up to
    floating-point reassociation under vmap; each run has its own
    stochastic-rounding stream (``bf16_sr``).

    Args:
      task, budget, batch_size, optimizer, num_evals, eval_batch_size, diagnostics,
      model, model_kwargs, data, data_dir, divergence_factor: as in :func:`train`.
      seeds: the seeds (distinct ints).
      peak_lrs: the peak learning rates, a sequence of distinct numbers (default:
        ``optimizer.peak_lr`` only).
      devices: the devices to shard the runs over (default: ``jax.devices()``).

    Returns:
      A list of :class:`History`, seed-major: ``[(s0, lr0), (s0, lr1), ..., (s1, lr0), ...]``;
      ``history.seconds`` is the wall time of the whole call.

    Example:
      >>> from budgetax import training
      >>> hs = training.train_many("mnist1d", seeds=[0, 1], peak_lrs=[1e-3, 1e-2],
      ...                          budget=200)  # doctest: +SKIP
      >>> len(hs)                               # doctest: +SKIP
      4
    """
    task = as_task(task, model=model, model_kwargs=model_kwargs, data=data, data_dir=data_dir)
    prog = core.make_program(task, budget, optimizer, batch_size=batch_size,
                             num_evals=num_evals, eval_batch_size=eval_batch_size,
                             diagnostics=diagnostics, divergence_factor=divergence_factor)
    optimizer = optimizer or OptimizerSpec()
    if isinstance(seeds, str) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of ints, got {seeds!r}")
    seeds = [_validate.seed("seeds", s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of ints, got []")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds has duplicates (the same run twice), got {seeds!r}")
    if peak_lrs is not None and (isinstance(peak_lrs, str)
                                 or not hasattr(peak_lrs, "__iter__")):
        raise TypeError(f"peak_lrs must be a sequence of numbers (e.g. [{peak_lrs!r}]), "
                        f"got {peak_lrs!r}")
    lrs = [optimizer.peak_lr] if peak_lrs is None else [
        _validate.real("peak_lrs", v, low=0.0) for v in peak_lrs]
    if not lrs:
        raise ValueError("peak_lrs must be a non-empty sequence, got []")
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"peak_lrs has duplicates (the same run twice), got {lrs!r}")
    grid = [(s, lr) for s in seeds for lr in lrs]
    devices = check_devices(devices)
    return _drive(prog, devices, [s for s, _ in grid], [lr for _, lr in grid], optimizer)
