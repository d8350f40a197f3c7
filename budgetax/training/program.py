r"""The static :class:`Program` of a group of runs: its validation and what it fixes.

A run of the training core (:mod:`budgetax.training.core`) is a pure function of
``(key, peak_lr, schedule_index)`` given its :class:`Program` (task, budget,
optimizer spec, schedule choices, batch size, evaluation settings). This module
builds and checks a program (:func:`make_program`, every argument checked when
it is made, not when traced) and derives from it what every run shares: the
segments of its budget (:func:`segments`, :func:`eval_steps`), the model
functions of its task (:func:`model_fns`), the training examples of its
diagnostics (:func:`diagnostic_indices`), the optimizer of one run
(:func:`run_optimizer`), and what its compiled functions are made for: the
program without its budget (:func:`compiled_key`), which they take as data
(:func:`budget_data`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from budgetax import _validate, profiles
from budgetax.data.batching import check_batch_size
from budgetax.training.optim import OptimizerSpec
from budgetax.training.steps import ModelFns, make_model_fns
from budgetax.training.task import Task

__all__ = ["DIVERGENCE_FACTOR", "SR_STREAM", "STEP_METRICS", "Program", "budget_data",
           "check_diagnostics", "compiled_key", "diagnostic_indices", "eval_steps",
           "make_program", "model_fns", "run_optimizer", "segments", "sr_seed"]

SR_STREAM = 0x5352  # fold_in tag of the stochastic-rounding stream of a run's key
STEP_METRICS = ("grad_norm", "update_norm", "lr")  # added by the loop to the loss's metrics
DIVERGENCE_FACTOR = 100.0  # a loss above this multiple of the first loss: diverged


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


@dataclasses.dataclass(frozen=True)
class Program:
    """The static part of a group of runs: everything but their keys, peak lrs and schedules.

    Attributes:
      task: the :class:`Task`.
      budget: the number of optimizer steps ``T`` (``None`` in a
        :func:`compiled_key`, whose programs take it as data).
      spec: the :class:`OptimizerSpec` with ``peak_lr`` and ``seed`` normalised to 0
        (both are per-run inputs).
      choices: ``((name, kwargs pairs), ...)`` for registered profiles and
        ``(name, profile)`` for a custom one (a callable ``p -> multiplier``), the
        schedules a run picks from by index; ``()`` for the spec's own
        ``"autowu"`` schedule.
      batch_size, num_evals, eval_batch_size, diagnostics: as in :func:`train`
        (``num_evals`` is ``None`` in a :func:`compiled_key`).
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

    ``schedules``: the schedules runs may pick from (a sweep): profile names, or
    callables ``p -> multiplier`` with a ``name`` (a
    :class:`~budgetax.training.sweep.custom.CustomSchedule`); ``None`` uses the
    optimizer spec's own schedule and its knobs.
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
        choices = tuple((s, ()) if isinstance(s, str) else (s.name, s) for s in schedules)
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
    fns = [kw if callable(kw) else
           functools.partial(profiles.get(name), **dict(kw)) if kw else profiles.get(name)
           for name, kw in choices]
    if len(fns) == 1:
        return fns[0]
    return lambda p: jax.lax.switch(index, fns, p)


def compiled_key(prog: Program) -> Program:
    """The program the compiled functions of ``prog`` are made and cached for.

    A program with schedule choices takes its budget as data (:func:`budget_data`),
    so its key leaves the budget out (``None``), and the number of evaluations (the
    host's segments): every budget and evaluation count with the same shapes share
    one compilation. AutoWU's budget stays static.
    """
    if not prog.choices:
        return dataclasses.replace(prog, num_evals=None)
    return dataclasses.replace(prog, budget=None, num_evals=None)


def budget_data(prog: Program):
    """The budget of ``prog`` as data: a :class:`budgetax.schedules.BudgetSteps` of host ints.

    The argument :func:`run_optimizer` takes as ``steps``; for AutoWU (a static budget)
    ``None``.
    """
    if not prog.choices:
        return None
    return prog.spec.budget_steps(prog.budget, _profile(prog.choices, 0))


def run_optimizer(prog: Program, peak, index, seed=None, steps=None):
    """The optimizer of a run and its ``lr_fn(step, opt_state)`` for the metrics.

    ``peak``: the run's peak learning rate; ``index``: its schedule among the
    program's ``choices``; ``seed``: its stochastic-rounding seed (:func:`sr_seed`);
    ``steps``: the budget as data (:func:`budget_data`, possibly traced; needed when
    ``prog``'s budget is left out, see :func:`compiled_key`).
    """
    if not prog.choices:  # AutoWU: the learning rate lives in the optimizer state
        return prog.spec.build(prog.budget, peak, sr_seed=seed), (lambda s, o: _find_lr(o))
    prof = _profile(prog.choices, index)
    budget = prog.budget if steps is None else steps
    tx = prog.spec.build(budget, peak, sr_seed=seed, profile=prof)
    sched = prog.spec.learning_rate(budget, peak, profile=prof)
    return tx, (lambda step, opt_state: sched(step))
