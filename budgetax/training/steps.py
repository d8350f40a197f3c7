r"""Functional train and eval steps over a Flax NNX model split into (graphdef, params, rest).

The model is split with ``nnx.split(model, nnx.Param, ...)``: ``params`` are
trained, ``rest`` holds the other state (batch-norm statistics). A train step
computes the mean cross-entropy on a batch,

.. math:: L(\theta) = -\frac1B \sum_i \log \mathrm{softmax}(f_\theta(x_i))_{y_i},

its gradient, one optimizer update (``update(g, s, params, value=L)``) and the
metrics ``loss``, ``accuracy``, ``grad_norm`` :math:`\lVert g \rVert_2`,
``update_norm`` :math:`\lVert \theta_{t+1} - \theta_t \rVert_2` and ``lr``.
The eval step returns sums (loss, correct, count) so that batches can be added.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = [
    "ModelFns",
    "TrainState",
    "cross_entropy",
    "eval_sums",
    "full_gradient",
    "global_norm",
    "make_model_fns",
    "train_step",
]


class TrainState(NamedTuple):
    """Everything a run carries from step to step (a pytree).

    Divergence is not tracked here: a non-finite ``loss`` metric marks it
    (:class:`budgetax.training.History` reports the first such step).
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


def cross_entropy(logits, labels) -> jax.Array:
    """Per-example softmax cross-entropy in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def _forward(graphdef, params, rest, x):
    model = nnx.merge(graphdef, params, rest, copy=True)
    logits = model(x)
    return logits, nnx.state(model, nnx.Not(nnx.Param))


def train_step(fns: ModelFns, tx, lr_fn, state: TrainState, x, y):
    """One update on batch ``(x, y)``; returns ``(new_state, metrics)``.

    Args:
      fns: the model's :class:`ModelFns`.
      tx: an ``optax.GradientTransformationExtraArgs``.
      lr_fn: ``(step, opt_state) -> learning rate`` for the metrics.
      state: the :class:`TrainState`.
      x: inputs ``[batch, ...]``; y: int labels ``[batch]``.

    Returns:
      The new state and a dict of float32 scalars: ``loss``, ``accuracy``,
      ``grad_norm``, ``update_norm``, ``lr``.
    """

    def loss_fn(params, rest):
        logits, new_rest = _forward(fns.graphdef_train, params, rest, x)
        loss = jnp.mean(cross_entropy(logits, y))
        acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
        return loss, (acc, new_rest)

    (loss, (acc, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params,
                                                                               state.rest)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, updates)
    delta = jax.tree.map(lambda a, b: a.astype(jnp.float32) - b.astype(jnp.float32),
                         params, state.params)
    metrics = {
        "loss": loss.astype(jnp.float32),
        "accuracy": acc,
        "grad_norm": global_norm(grads),
        "update_norm": global_norm(delta),
        "lr": jnp.asarray(lr_fn(state.step, state.opt_state), jnp.float32),
    }
    new_state = TrainState(params, new_rest, opt_state, state.step + 1)
    return new_state, metrics


def eval_sums(fns: ModelFns, params, rest, x, y, mask):
    """Sums over a (masked) batch in eval mode: ``(loss_sum, correct_sum, count)``."""
    logits, _ = _forward(fns.graphdef_eval, params, rest, x)
    m = mask.astype(jnp.float32)
    loss = jnp.sum(cross_entropy(logits, y) * m)
    correct = jnp.sum((jnp.argmax(logits, -1) == y).astype(jnp.float32) * m)
    return loss, correct, jnp.sum(m)


def full_gradient(fns: ModelFns, params, rest, x, y, mask):
    """Sum of per-example losses (eval mode) and its gradient, for a masked batch."""

    def loss_sum(p):
        logits, _ = _forward(fns.graphdef_eval, p, rest, x)
        ce = cross_entropy(logits, y) * mask.astype(jnp.float32)
        correct = jnp.sum((jnp.argmax(logits, -1) == y).astype(jnp.float32)
                          * mask.astype(jnp.float32))
        return jnp.sum(ce), correct

    (total, correct), g = jax.value_and_grad(loss_sum, has_aux=True)(params)
    g = jax.tree.map(lambda a: a.astype(jnp.float32), g)
    return total, correct, g
