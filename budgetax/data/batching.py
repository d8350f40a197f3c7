r"""Batch sampling: a per-epoch permutation from the run's key, on device or streamed.

Step ``t`` of a run with ``n`` examples and batch ``b`` uses
``steps_per_epoch = n // b`` batches per epoch (the last ``n mod b`` examples of
each epoch's permutation are dropped, a different set every epoch):

.. math::

   e = \lfloor t / s \rfloor, \quad i = t \bmod s, \quad
   \pi_e = \mathrm{permutation}(\mathrm{fold\_in}(k, e), n), \quad
   \text{batch}_t = \pi_e[i b : (i + 1) b].

:func:`batch_position` is the one place this rule is written (``e`` and the
offset ``i b``, for ints, NumPy or traced steps) and :func:`batch_indices` the one
place the batch is cut from the epoch's permutation. Three callers share them:

- :func:`batch_indices` alone, for any single step (traceable);
- :func:`device_batch_indices`, the sampler of the compiled training loop on
  on-device data: it keeps each run's permutation in the loop carry and redraws it
  once per epoch (a ``lax.cond`` on the step), then calls :func:`batch_indices`;
- :class:`Prefetcher`, for streamed data: it draws each epoch's permutation once on
  the host, calls :func:`batch_indices` (vmapped over the steps of a chunk) and
  gathers the examples from any random-access source (a ``tfds.data_source``
  split) in a background thread,

so that streamed and on-device runs see identical batches.

Every helper validates its arguments eagerly (also while being traced: sizes are
static Python ints) and raises ``TypeError``/``ValueError`` naming the argument and
showing its value; a step may be a traced value, whose dtype is checked.
"""

from __future__ import annotations

import functools
import numbers
import queue
import threading
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from budgetax import _validate

__all__ = ["Prefetcher", "batch_indices", "batch_position", "check_batch_size",
           "device_batch_indices", "epoch_permutation", "steps_batch_indices"]

_POLL_SECONDS = 0.05


def check_batch_size(batch_size, num_examples: int) -> int:
    """Validates ``1 <= batch_size <= num_examples`` eagerly (``ValueError`` naming both).

    Example:
      >>> check_batch_size(64, 1437)
      64
    """
    num_examples = _validate.positive_int("num_examples", num_examples)
    return _validate.positive_int_at_most("batch_size", batch_size, num_examples,
                                          "the number of training examples")


def _sizes(num_examples, batch_size) -> tuple[int, int]:
    n = _validate.positive_int("num_examples", num_examples)
    return n, check_batch_size(batch_size, n)


def _check_step(name: str, step) -> None:
    """An int >= 0, or an integer array (NumPy values >= 0; JAX values may be traced)."""
    if isinstance(step, bool | np.bool_):
        raise TypeError(f"{name} must be an int or an integer array, got {step!r}")
    if isinstance(step, numbers.Integral):
        _validate.nonnegative_int(name, step)
        return
    dtype = getattr(step, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name} must be an int or an integer array, got {step!r}")
    if isinstance(step, np.ndarray | np.generic) and np.size(step) and np.min(step) < 0:
        raise ValueError(f"{name} must be >= 0, got {step!r}")


def _check_key(name: str, key, batched: bool = False) -> int | None:
    """A PRNG key (``jax.random.key`` or a raw uint32 ``[2]`` key); returns the batch size."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        base = 0
    elif dtype == jnp.uint32 and shape is not None and len(shape) >= 1 and shape[-1] == 2:
        base = 1
    else:
        raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")
    if len(shape) != base + int(batched):
        what = "a [R] batch of keys" if batched else "a single key"
        raise ValueError(f"{name} must be {what}, got shape {tuple(shape)}")
    return shape[0] if batched else None


def epoch_permutation(key: jax.Array, epoch, num_examples: int) -> jax.Array:
    """The permutation of ``range(num_examples)`` used in ``epoch`` (int32).

    Example:
      >>> import jax
      >>> sorted(epoch_permutation(jax.random.key(0), 0, 5).tolist())
      [0, 1, 2, 3, 4]
    """
    _check_key("key", key)
    _check_step("epoch", epoch)
    num_examples = _validate.positive_int("num_examples", num_examples)
    return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples).astype(jnp.int32)


def batch_position(step, num_examples: int, batch_size: int):
    """``(epoch, offset)`` of batch ``step``: it is ``perm_epoch[offset : offset + batch_size]``.

    ``epoch = step // s`` and ``offset = (step mod s) * batch_size`` with
    ``s = num_examples // batch_size`` batches per epoch. Works on Python ints,
    NumPy arrays and traced JAX values alike.

    Example:
      >>> batch_position(7, num_examples=10, batch_size=3)   # 3 batches per epoch
      (2, 3)
    """
    _check_step("step", step)
    num_examples, batch_size = _sizes(num_examples, batch_size)
    steps_per_epoch = num_examples // batch_size
    return step // steps_per_epoch, (step % steps_per_epoch) * batch_size


def batch_indices(key: jax.Array, step, num_examples: int, batch_size: int, *,
                  permutation=None) -> jax.Array:
    """Indices of the examples of batch ``step`` (traceable; ``step`` may be traced).

    Args:
      key: the run's data key.
      step: the optimizer step ``t`` (0-based).
      num_examples: training-set size ``n`` (static).
      batch_size: batch size ``b`` (static), ``b <= n``.
      permutation: the permutation of ``step``'s epoch,
        ``epoch_permutation(key, step // (n // b), n)``, when the caller keeps it
        (then ``key`` is not used); drawn from ``key`` otherwise.

    Returns:
      int32 array ``[batch_size]``: every example appears exactly once among the
      ``n // b`` batches of an epoch when ``b`` divides ``n`` (at most once otherwise).

    Example:
      >>> import jax
      >>> idx = batch_indices(jax.random.key(0), 3, num_examples=10, batch_size=5)
      >>> idx.shape
      (5,)
    """
    _check_step("step", step)
    num_examples, batch_size = _sizes(num_examples, batch_size)
    if permutation is None:
        _check_key("key", key)
    elif np.shape(permutation) != (num_examples,):
        raise ValueError(f"permutation must have shape ({num_examples},) (num_examples,), "
                         f"got shape {np.shape(permutation)}")
    epoch, offset = batch_position(jnp.asarray(step, jnp.int32), num_examples, batch_size)
    if permutation is None:
        permutation = epoch_permutation(key, epoch, num_examples)
    return jax.lax.dynamic_slice_in_dim(jnp.asarray(permutation), offset, batch_size)


def device_batch_indices(keys: jax.Array, perms: jax.Array, step, num_examples: int,
                         batch_size: int):
    """One step of the training loop's on-device sampler for ``R`` runs (jittable).

    ``perms`` ``[R, n]`` carries each run's permutation of the current epoch from
    step to step; at the first batch of an epoch it is redrawn (one ``lax.cond``
    on the unbatched step, so once per epoch, not at every step). Visit the steps
    in order from ``0`` (the initial ``perms`` is not read at step 0). Row ``r`` of
    the result is ``batch_indices(keys[r], step, n, b)``.

    Args:
      keys: ``[R]`` data keys.
      perms: ``[R, n]`` int32, the carried permutations.
      step: the (unbatched, possibly traced) step.
      num_examples, batch_size: as in :func:`batch_indices` (static).

    Returns:
      ``(perms, idx)``: the permutations to carry on and the ``[R, b]`` indices.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
      >>> perms, idx = device_batch_indices(keys, jnp.zeros((2, 10), jnp.int32), 0, 10, 5)
      >>> idx.shape
      (2, 5)
    """
    runs = _check_key("keys", keys, batched=True)
    _check_step("step", step)
    num_examples, batch_size = _sizes(num_examples, batch_size)
    if np.shape(perms) != (runs, num_examples):
        raise ValueError(f"perms must have shape ({runs}, {num_examples}) (runs, num_examples), "
                         f"got shape {np.shape(perms)}")
    epoch, offset = batch_position(jnp.asarray(step, jnp.int32), num_examples, batch_size)
    draw = jax.vmap(epoch_permutation, in_axes=(0, None, None))
    perms = jax.lax.cond(offset == 0, lambda: draw(keys, epoch, num_examples), lambda: perms)
    idx = jax.vmap(lambda k, p: batch_indices(k, step, num_examples, batch_size,
                                              permutation=p))(keys, perms)
    return perms, idx


def _check_chunks(chunks) -> list[tuple[int, int]]:
    """``chunks`` as a list of ``(start_step >= 0, num_steps >= 1)`` int pairs."""
    if isinstance(chunks, str | bytes) or not isinstance(chunks, Iterable):
        raise TypeError(f"chunks must be a list of (start_step, num_steps) pairs, got {chunks!r}")
    out = []
    for i, chunk in enumerate(chunks):
        ok = (isinstance(chunk, tuple | list) and len(chunk) == 2
              and all(isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)
                      for v in chunk))
        if not ok:
            raise TypeError(f"chunks[{i}] must be a (start_step, num_steps) pair of ints, "
                            f"got {chunk!r}")
        if chunk[0] < 0 or chunk[1] < 1:
            raise ValueError(f"chunks[{i}] must have start_step >= 0 and num_steps >= 1, "
                             f"got {chunk!r}")
        out.append((int(chunk[0]), int(chunk[1])))
    return out


def steps_batch_indices(key: jax.Array, start: int, length: int, num_examples: int,
                        batch_size: int) -> np.ndarray:
    """Host ``[length, batch_size]`` indices of steps ``start .. start + length - 1``.

    Row ``i`` is ``batch_indices(key, start + i, num_examples, batch_size)``, the
    batches the on-device sampler draws; each epoch's permutation is drawn once.
    """
    steps = np.arange(start, start + length)
    epochs, _ = batch_position(steps, num_examples, batch_size)
    out = np.empty((length, batch_size), np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        perm = epoch_permutation(key, int(e), num_examples)  # once per epoch
        take = functools.partial(batch_indices, key, num_examples=num_examples,
                                 batch_size=batch_size, permutation=perm)
        out[sel] = np.asarray(jax.vmap(take)(jnp.asarray(steps[sel], jnp.int32)))
    return out


class _Failure:
    """An exception raised by the worker, on its way to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def _put(q: queue.Queue, stop: threading.Event, item) -> bool:
    """Puts ``item`` unless ``stop`` is set first (never blocks for good); True if put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


class Prefetcher:
    """Background-thread loader: yields chunks of batches gathered from a random-access source.

    Chunk ``c`` covers steps ``starts[c] .. starts[c] + lengths[c] - 1``; it is a
    tuple ``(x, y)`` of NumPy arrays ``[length, batch, ...]`` built with
    :func:`batch_indices`. A bounded queue keeps at most ``prefetch`` chunks ahead
    of the consumer. Errors in the worker are re-raised in the consumer.

    Every iteration starts its own worker thread and yields all chunks from the
    first (iterating twice gives the same chunks twice). A worker never blocks for
    good: it stops when its iteration is closed (``break`` out of a ``for`` loop
    closes it when the generator is collected), or at :meth:`close`, which also
    waits for the threads to end. Use it as a context manager to be sure::

        with Prefetcher(...) as loader:
            for x, y in loader:
                ...

    After :meth:`close`, iterating raises ``RuntimeError``.

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
      >>> with Prefetcher(lambda i: (xs[i], ys[i]), 12, 4, jax.random.key(0), [(0, 3)]) as p:
      ...     x, y = next(iter(p))
      >>> sorted(y.ravel().tolist()) == list(range(12))
      True
    """

    _DONE = object()

    def __init__(self, gather: Callable, num_examples: int, batch_size: int, key: jax.Array,
                 chunks, *, prefetch: int = 2):
        if not callable(gather):
            raise TypeError(f"gather must be a callable indices -> (x, y), got {gather!r}")
        self._gather = gather
        self._n, self._b = _sizes(num_examples, batch_size)
        _check_key("key", key)
        self._key = key
        self._chunks = _check_chunks(chunks)
        self._prefetch = _validate.positive_int("prefetch", prefetch)
        self._lock = threading.Lock()
        self._workers: list[tuple[threading.Event, threading.Thread]] = []
        self._closed = False

    def _indices(self, start: int, length: int) -> np.ndarray:
        return steps_batch_indices(self._key, start, length, self._n, self._b)

    def _work(self, q: queue.Queue, stop: threading.Event):
        try:
            for start, length in self._chunks:
                if stop.is_set():
                    return
                idx = self._indices(start, length)
                x, y = self._gather(idx.reshape(-1))
                x = np.asarray(x).reshape(length, self._b, *np.shape(x)[1:])
                y = np.asarray(y).reshape(length, self._b)
                if not _put(q, stop, (x, y)):
                    return
            _put(q, stop, self._DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            _put(q, stop, _Failure(err))

    def __iter__(self):
        with self._lock:
            if self._closed:
                raise RuntimeError("this Prefetcher is closed; make a new one to iterate again")
            stop = threading.Event()
            q: queue.Queue = queue.Queue(maxsize=self._prefetch)
            thread = threading.Thread(target=self._work, args=(q, stop), daemon=True,
                                      name="budgetax-prefetcher")
            self._workers = [w for w in self._workers if w[1].is_alive()]
            self._workers.append((stop, thread))
        thread.start()
        return self._consume(q, stop)

    def _consume(self, q: queue.Queue, stop: threading.Event):
        try:
            while True:
                try:
                    item = q.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if stop.is_set():
                        raise RuntimeError("the Prefetcher was closed during iteration") from None
                    continue
                if item is self._DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            stop.set()  # the worker ends at its next queue operation

    def close(self, timeout: float | None = 10.0):
        """Stops every worker thread and waits (up to ``timeout`` s each) for it to end."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for stop, _ in workers:
            stop.set()
        for _, thread in workers:
            thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
