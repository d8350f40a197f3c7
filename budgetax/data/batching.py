r"""Batch sampling: a per-epoch permutation from the run's key, on device or streamed.

Step ``t`` of a run with ``n`` examples and batch ``b`` uses
``steps_per_epoch = n // b`` batches per epoch (the last ``n mod b`` examples of
each epoch's permutation are dropped, a different set every epoch):

.. math::

   e = \lfloor t / s \rfloor, \quad i = t \bmod s, \quad
   \pi_e = \mathrm{permutation}(\mathrm{fold\_in}(k, e), n), \quad
   \text{batch}_t = \pi_e[i b : (i + 1) b].

:func:`batch_indices` computes this inside a compiled loop (small datasets live
on the device, no host round trip per step); :class:`Prefetcher` computes the
same indices on the host and gathers the examples from any random-access source
(a ``tfds.data_source`` split) in a background thread, a chunk of steps at a time,
so that streamed and on-device runs see identical batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from budgetax import _validate

__all__ = ["Prefetcher", "batch_indices", "check_batch_size", "epoch_permutation"]


def check_batch_size(batch_size, num_examples: int) -> int:
    """Validates ``1 <= batch_size <= num_examples`` eagerly (``ValueError`` naming both)."""
    batch_size = _validate.positive_int("batch_size", batch_size)
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size must be <= the number of training examples ({num_examples}), "
            f"got {batch_size}")
    return batch_size


def epoch_permutation(key: jax.Array, epoch, num_examples: int) -> jax.Array:
    """The permutation of ``range(num_examples)`` used in ``epoch`` (int32)."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples).astype(jnp.int32)


def batch_indices(key: jax.Array, step, num_examples: int, batch_size: int) -> jax.Array:
    """Indices of the examples of batch ``step`` (traceable; ``step`` may be traced).

    Args:
      key: the run's data key.
      step: the optimizer step ``t`` (0-based).
      num_examples: training-set size ``n`` (static).
      batch_size: batch size ``b`` (static), ``b <= n``.

    Returns:
      int32 array ``[batch_size]``: every example appears exactly once among the
      ``n // b`` batches of an epoch when ``b`` divides ``n`` (at most once otherwise).

    Example:
      >>> import jax
      >>> idx = batch_indices(jax.random.key(0), 3, num_examples=10, batch_size=5)
      >>> idx.shape
      (5,)
    """
    steps_per_epoch = num_examples // batch_size
    step = jnp.asarray(step, jnp.int32)
    epoch = step // steps_per_epoch
    i = step % steps_per_epoch
    perm = epoch_permutation(key, epoch, num_examples)
    return jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)


class Prefetcher:
    """Background-thread loader: yields chunks of batches gathered from a random-access source.

    Chunk ``c`` covers steps ``starts[c] .. starts[c] + lengths[c] - 1``; it is a
    tuple ``(x, y)`` of NumPy arrays ``[length, batch, ...]`` built with the same
    indices as :func:`batch_indices`. A bounded queue keeps at most ``prefetch``
    chunks ahead of the consumer. Errors in the worker are re-raised in the consumer.

    Args:
      gather: ``indices -> (x, y)`` NumPy arrays for a 1-D int array of example indices.
      num_examples: training-set size.
      batch_size: batch size.
      key: the run's data key.
      chunks: a list of ``(start_step, num_steps)``.
      prefetch: queue depth (chunks prepared ahead).

    Example:
      >>> import numpy as np, jax
      >>> xs, ys = np.arange(12.0)[:, None], np.arange(12)
      >>> p = Prefetcher(lambda i: (xs[i], ys[i]), 12, 4, jax.random.key(0), [(0, 3)])
      >>> x, y = next(iter(p))
      >>> sorted(y.ravel().tolist()) == list(range(12))
      True
    """

    _DONE = object()

    def __init__(self, gather: Callable, num_examples: int, batch_size: int, key: jax.Array,
                 chunks, *, prefetch: int = 2):
        self._gather = gather
        self._n = num_examples
        self._b = check_batch_size(batch_size, num_examples)
        self._key = key
        self._chunks = list(chunks)
        self._queue: queue.Queue = queue.Queue(maxsize=_validate.positive_int("prefetch",
                                                                               prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._started = False

    def _indices(self, start: int, length: int) -> np.ndarray:
        spe = self._n // self._b
        perms: dict[int, np.ndarray] = {}
        out = np.empty((length, self._b), np.int64)
        for j, t in enumerate(range(start, start + length)):
            e, i = divmod(t, spe)
            if e not in perms:
                perms[e] = np.asarray(jax.device_get(epoch_permutation(self._key, e, self._n)))
            out[j] = perms[e][i * self._b:(i + 1) * self._b]
        return out

    def _work(self):
        try:
            for start, length in self._chunks:
                if self._stop.is_set():
                    return
                idx = self._indices(start, length)
                x, y = self._gather(idx.reshape(-1))
                x = np.asarray(x).reshape(length, self._b, *np.shape(x)[1:])
                y = np.asarray(y).reshape(length, self._b)
                while not self._stop.is_set():
                    try:
                        self._queue.put((x, y), timeout=0.1)
                        break
                    except queue.Full:
                        continue
            self._queue.put(self._DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._queue.put(err)

    def __iter__(self):
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        """Stops the worker (it exits at its next queue operation)."""
        self._stop.set()
