"""A ``lax.cond`` that stays a conditional under ``jax.vmap``.

Under ``jax.vmap`` a batched predicate turns ``lax.cond`` into a ``select`` that
runs both branches for every element. :func:`cond_any` has a custom batching rule
(``jax.custom_batching.custom_vmap``) that reduces the predicate with ``any`` over
the batch and runs the batched true branch only when some element needs it (its
result selected per element), so an expensive branch that is rarely taken (a test
every few steps, a warmup that ends) costs nothing on the steps where no element
takes it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["cond_any"]


def cond_any(pred, true_fn, false_fn, operand, *, map_true=False):
    """``lax.cond(pred, true_fn, false_fn, operand)`` that stays a conditional under ``vmap``.

    Batched, it runs ``true_fn`` (for all elements, selected per element) iff any
    element needs it. The branches must not close over batched values: pass them in
    ``operand``.

    With ``map_true``, the batched ``true_fn`` runs one element at a time
    (``lax.map``) instead of as one batched computation. This is for a branch of
    LAPACK calls such as AutoWU's Gaussian process: batched ``trsm`` and ``potrf``
    over a batch dimension are split over XLA's intra-op thread pool and wait on it
    from inside a pool thread. On a 2-core machine that handoff costs more than the
    solves, and it can deadlock (both pool threads waiting on tasks queued behind
    them). One element at a time, each element's result is the unbatched
    computation, bit for bit.
    """

    @custom_vmap
    def cond(pred, operand):
        return lax.cond(pred, true_fn, false_fn, operand)

    @cond.def_vmap
    def cond_batched(axis_size, in_batched, pred, operand):
        pred_batched, op_batched = in_batched
        preds = pred if pred_batched else jnp.broadcast_to(pred, (axis_size,))
        axes = jax.tree.map(lambda b: 0 if b else None, op_batched)
        if map_true:
            def v_true(op):
                full = jax.tree.map(
                    lambda a, b: a if b else jnp.broadcast_to(a, (axis_size,) + a.shape),
                    op, op_batched)
                return lax.map(true_fn, full)
        else:
            v_true = jax.vmap(true_fn, in_axes=(axes,))
        v_false = jax.vmap(false_fn, in_axes=(axes,))

        def some(args):
            p, op = args
            t, f = v_true(op), v_false(op)
            return jax.tree.map(
                lambda a, b: jnp.where(p.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), t, f)

        out = cond_any(jnp.any(preds), some, lambda args: v_false(args[1]), (preds, operand))
        return out, jax.tree.map(lambda _: True, out)

    return cond(pred, operand)
