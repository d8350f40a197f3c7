r"""Functional train and eval steps of a :class:`~budgetax.training.Task`'s model.

The model is split with ``nnx.split(model, nnx.Param, ...)``: ``params`` are
trained, ``rest`` holds the other state (batch-norm statistics, dropout RNG
streams). A train step evaluates the task's loss on a batch in training mode,
its gradient with respect to ``params``, one optimizer update
(``update(g, s, params, value=loss)``) and the per-step metrics: ``loss``, the
loss's own metrics, ``grad_norm`` :math:`\lVert g \rVert_2`, ``update_norm``
:math:`\lVert \theta_{t+1} - \theta_t \rVert_2` and ``lr``. Evaluation steps run
in eval mode and return batch means, which the caller weights by batch size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from budgetax.training.task import Task, split_loss

__all__ = [
    "ModelFns",
    "TrainState",
    "eval_means",
    "full_gradient",
    "global_norm",
    "make_model_fns",
    "train_step",
]


class TrainState(NamedTuple):
    """Everything a run carries from step to step (a pytree).

    Divergence is tracked by the training core next to the state (the step at
    which the run was frozen), not here.
    """

    params: Any
    rest: Any
    opt_state: Any
    step: jax.Array  # int32, updates applied so far


class ModelFns(NamedTuple):
    """Static pieces of a model: graphdefs in train / eval mode and an init function."""

    graphdef_train: Any
    graphdef_eval: Any
    init: Any  # key -> (params, rest)


def make_model_fns(build) -> ModelFns:
    """Splits the model made by ``build(rngs)`` into static graphdefs and an ``init(key)``.

    Args:
      build: ``rngs -> nnx.Module``.

    Returns:
      :class:`ModelFns`; ``init(key)`` is traceable (use a ``jax.random.key``).
    """
    abstract = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    abstract.train()
    graphdef_train = nnx.split(abstract, nnx.Param, ...)[0]
    abstract.eval()
    graphdef_eval = nnx.split(abstract, nnx.Param, ...)[0]

    def init(key):
        model = build(nnx.Rngs(key))
        _, params, rest = nnx.split(model, nnx.Param, ...)
        return params, rest

    return ModelFns(graphdef_train, graphdef_eval, init)


def global_norm(tree) -> jax.Array:
    """:math:`\\sqrt{\\sum_i \\lVert x_i \\rVert^2}` in float32 over a pytree."""
    return jnp.asarray(optax.tree.norm(optax.tree.cast(tree, jnp.float32)), jnp.float32)


def _f32(metrics: dict) -> dict:
    return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def train_step(task: Task, fns: ModelFns, tx, lr_fn, state: TrainState, batch):
    """One update on ``batch``; returns ``(new_state, metrics)``.

    Args:
      task: the :class:`Task` (its ``loss``).
      fns: the model's :class:`ModelFns`.
      tx: an ``optax.GradientTransformationExtraArgs``.
      lr_fn: ``(step, opt_state) -> learning rate`` for the metrics.
      state: the :class:`TrainState`.
      batch: a batch pytree (leading axis: examples).

    Returns:
      The new state and a dict of float32 scalars: ``loss``, the loss's metrics,
      ``grad_norm``, ``update_norm``, ``lr``.
    """

    def objective(params, rest):
        model = nnx.merge(fns.graphdef_train, params, rest, copy=True)
        loss, metrics = split_loss(task.name, task.loss(model, batch))
        return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

    (loss, (aux, new_rest)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params, state.rest)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, updates)
    delta = jax.tree.map(lambda a, b: a.astype(jnp.float32) - b.astype(jnp.float32),
                         params, state.params)
    metrics = {"loss": loss.astype(jnp.float32), **_f32(aux),
               "grad_norm": global_norm(grads), "update_norm": global_norm(delta),
               "lr": jnp.asarray(lr_fn(state.step, state.opt_state), jnp.float32)}
    return TrainState(params, new_rest, opt_state, state.step + 1), metrics


def eval_means(task: Task, fns: ModelFns, params, rest, batch) -> dict:
    """Batch means in eval mode: ``loss`` and the eval metrics (float32 scalars)."""
    model = nnx.merge(fns.graphdef_eval, params, rest, copy=True)
    loss, metrics = split_loss(task.name, task.loss(model, batch))
    if task.eval_metrics is not None:
        metrics = {k: v for k, v in task.eval_metrics(model, batch).items() if k != "loss"}
    return {"loss": loss.astype(jnp.float32), **_f32(metrics)}


def full_gradient(task: Task, fns: ModelFns, params, rest, batch):
    """Batch means (eval mode) and the gradient of the mean loss with respect to ``params``."""

    def objective(p):
        means = eval_means(task, fns, p, rest, batch)
        return means["loss"], means

    (_, means), g = jax.value_and_grad(objective, has_aux=True)(params)
    return means, jax.tree.map(lambda a: a.astype(jnp.float32), g)
