'''Training core: jitted train/eval steps with a static budget, a declarative optimizer spec.

``train`` runs a whole budget of optimizer steps as ``lax.scan`` chunks inside one
``jax.jit`` (the budget is a static argument: same budget and shapes -> no
recompilation), evaluates at evenly spaced fractions of the budget and at its end,
and returns a :class:`History` of plain NumPy arrays. ``train_many`` vmaps the same
pure core over seeds x peak learning rates.

Usage (copy-paste)::

    from budgetax import data, training

    ds = data.load("mnist1d")                      # built offline on first use
    spec = training.OptimizerSpec(
        optimizer="adam",       # sgd | momentum | adam | adamw | lamb | adamp | sgdp
        schedule="linear",      # any budgetax.profiles name, or "autowu"
        peak_lr=1e-2, warmup_steps=0, sample_every=1,
        schedule_kwargs={},     # profile knobs, e.g. {"beta": 0.5} for rex
        momentum=0.9, demon=False, weight_decay=0.0,
        precision="float32",    # float32 | bf16 | bf16_sr | bf16_kahan
    )
    h = training.train(ds, model="mlp", budget=2000, batch_size=100,
                       optimizer=spec, seed=0, num_evals=4)
    h.final                 # {'test_accuracy': ..., 'test_loss': ..., 'train_loss': ...,
                            #  'train_accuracy': ..., 'full_grad_norm': ...}
    h.eval_steps            # array([ 500, 1000, 1500, 2000])
    h.eval["test_accuracy"] # one value per evaluation
    h.train["loss"]         # per-step: loss, accuracy, grad_norm, update_norm, lr
    h.diverged, h.diverged_step   # NaN loss -> reported, never raised
    h.to_dict()             # JSON-friendly

    # the same pure core vmapped: 3 seeds x 2 learning rates in one compiled call
    hs = training.train_many(ds, seeds=[0, 1, 2], peak_lrs=[3e-3, 1e-2],
                             model="cnn1d", budget=2000, optimizer=spec)

    # the sweep engine: budgets x schedules x lrs x seeds, one compiled program per budget,
    # runs sharded over all devices, SQLite store + orbax checkpoints, resumable
    spec = training.SweepSpec(dataset="mnist1d", model="mlp", full_budget=3000,
                              budgets=(0.1, 0.5, 1.0), schedules=("linear", "rex", "cosine"),
                              peak_lrs=(3e-3, 1e-2), seeds=(0, 1, 2))
    result = training.sweep(spec, "my-sweep")     # run it again: resumes
    training.report.write_report("my-sweep")      # results.md + plots

    # the pure core, to jit / vmap / shard yourself
    core, data_args = training.make_core(ds, model="mlp", budget=2000, optimizer=spec)
    keys = jax.numpy.stack([jax.random.key(s) for s in range(8)])
    states, train_m, eval_m = jax.jit(core)(keys, jax.numpy.full((8,), 1e-2), *data_args)

Models: ``"mlp"`` (2x100 ReLU, MNIST-1D paper), ``"cnn1d"`` (3 conv x 25 ch,
kernel 5, stride 2), ``"resnet"`` (CIFAR-style; ``model_kwargs={"depth": 1, "width": 16}``).
Precision ``bf16*`` trains bfloat16 parameters and activations (float32 accumulation).

References:
  Li, Yumer, Ramanan. Budgeted Training: Rethinking Deep Neural Network Training
  Under Resource Constraints. ICLR 2020. arXiv:1905.04753.
  Greydanus. Scaling down Deep Learning (MNIST-1D). 2020. arXiv:2011.14439.
'''

from budgetax.training import report, store
from budgetax.training.engine import (
    SweepResult,
    SweepSpec,
    SweepSpecMismatchError,
    sweep,
    sweep_trace_count,
)
from budgetax.training.loop import (
    EVAL_METRICS,
    TRAIN_METRICS,
    History,
    eval_steps,
    make_core,
    trace_count,
    train,
    train_many,
)
from budgetax.training.optim import OPTIMIZERS, PRECISIONS, SCHEDULES, OptimizerSpec
from budgetax.training.steps import TrainState, eval_sums, full_gradient, train_step

__all__ = [
    "EVAL_METRICS",
    "History",
    "OPTIMIZERS",
    "OptimizerSpec",
    "PRECISIONS",
    "SCHEDULES",
    "SweepResult",
    "SweepSpec",
    "SweepSpecMismatchError",
    "TRAIN_METRICS",
    "TrainState",
    "eval_steps",
    "eval_sums",
    "make_core",
    "report",
    "store",
    "sweep",
    "sweep_trace_count",
    "full_gradient",
    "train",
    "train_many",
    "train_step",
    "trace_count",
]
