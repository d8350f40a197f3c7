'''Training: a task interface, one training core, and its drivers (train, train_many, sweep).

A :class:`Task` is what a user brings: a Flax NNX model factory, a loss, data and
optionally held-out data and metrics (:mod:`budgetax.training.task`). The core
(:mod:`budgetax.training.core`) trains ``R`` runs of one budget of a task,
vmapped and sharded over the devices, segment by segment, with evaluation.
``train`` (one run), ``train_many`` (seeds x peak lrs) and ``sweep`` (budgets x
schedules x peak lrs x seeds, stored, checkpointed, resumable) drive it. The
built-in models and datasets are tasks too (:func:`preset`).

Usage (copy-paste)::

    import jax.numpy as jnp
    from flax import nnx
    from budgetax import report, training

    task = training.preset("mnist1d", "mlp")       # or your own training.Task(...)
    spec = training.OptimizerSpec(
        optimizer="adam",       # sgd | momentum | adam | adamw | lamb | adamp | sgdp
        schedule="linear",      # any budgetax.profiles name, or "autowu"
        peak_lr=1e-2, warmup_steps=0, sample_every=1,
        schedule_kwargs={},     # profile knobs, e.g. {"beta": 0.5} for rex
        momentum=0.9, demon=False, weight_decay=0.0,
        precision="float32",    # float32 | bf16 | bf16_sr | bf16_kahan
    )
    h = training.train(task, budget=2000, batch_size=100, optimizer=spec, seed=0,
                       num_evals=4)
    h.final                 # {'test_loss': ..., 'test_accuracy': ..., 'train_loss': ...,
                            #  'train_accuracy': ..., 'full_grad_norm': ...}
    h.eval_steps            # array([ 500, 1000, 1500, 2000])
    h.train["loss"]         # per-step: loss, accuracy, grad_norm, update_norm, lr
    h.diverged, h.diverged_step   # non-finite loss/update -> frozen and reported, never raised

    # 3 seeds x 2 learning rates, vmapped and sharded in one compiled program
    hs = training.train_many(task, seeds=[0, 1, 2], peak_lrs=[3e-3, 1e-2], budget=2000,
                             optimizer=spec)

    # budgets x schedules x lrs x seeds, SQLite store + orbax checkpoints, resumable
    sweep_spec = training.SweepSpec(full_budget=3000, budgets=(0.1, 0.5, 1.0),
                                    schedules=("linear", "rex", "cosine"),
                                    peak_lrs=(3e-3, 1e-2), seeds=(0, 1, 2))
    result = training.sweep(task, sweep_spec, "my-sweep")   # run it again: resumes
    report.write_report("my-sweep")                          # results.md + plots

Models of the presets: ``"mlp"`` (2x100 ReLU, MNIST-1D paper), ``"cnn1d"`` (3 conv x
25 ch, kernel 5, stride 2), ``"resnet"`` (CIFAR-style; ``model_kwargs={"depth": 1,
"width": 16}``). Precision ``bf16*`` trains bfloat16 parameters and activations
(float32 accumulation).

References:
  Li, Yumer, Ramanan. Budgeted Training: Rethinking Deep Neural Network Training
  Under Resource Constraints. ICLR 2020. arXiv:1905.04753.
  Greydanus. Scaling down Deep Learning (MNIST-1D). 2020. arXiv:2011.14439.
'''

from budgetax.training.core import eval_steps
from budgetax.training.optim import OPTIMIZERS, PRECISIONS, SCHEDULES, OptimizerSpec
from budgetax.training.presets import classification_loss, preset
from budgetax.training.steps import TrainState
from budgetax.training.sweep import (
    DEFAULT_SCHEDULES,
    CustomSchedule,
    SweepResult,
    SweepSpec,
    SweepSpecMismatchError,
    sweep,
)
from budgetax.training.task import Task, TaskError
from budgetax.training.task_loading import load_schedule, load_task
from budgetax.training.train import History, train, train_many

__all__ = [
    "DEFAULT_SCHEDULES",
    "CustomSchedule",
    "History",
    "OPTIMIZERS",
    "OptimizerSpec",
    "PRECISIONS",
    "SCHEDULES",
    "SweepResult",
    "SweepSpec",
    "SweepSpecMismatchError",
    "Task",
    "TaskError",
    "TrainState",
    "classification_loss",
    "eval_steps",
    "load_schedule",
    "load_task",
    "preset",
    "sweep",
    "train",
    "train_many",
]
