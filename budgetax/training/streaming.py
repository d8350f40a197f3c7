"""Streamed training batches: gathered on the host one chunk ahead of the device.

A task whose training set is a random-access source (not in memory) is trained
from batches the host gathers: for a chunk of at most :data:`STREAM_CHUNK` steps,
each run's batches of those steps (the same examples
:func:`budgetax.data.device_batch_indices` draws on the device for an in-memory
set). :class:`ChunkStream` gathers the next chunk in one background thread while
the device trains on the current one.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import jax
import numpy as np

from budgetax.data.batching import steps_batch_indices
from budgetax.training import task as _task
from budgetax.training.task import Task

__all__ = ["STREAM_CHUNK", "ChunkStream", "gather_chunk"]

STREAM_CHUNK = 64  # steps per host-to-device transfer of streamed batches


def gather_chunk(task: Task, seeds, batch_size: int, start: int, length: int, lmax: int):
    """The batches of the runs ``seeds`` at steps ``start..start+length-1``: ``[lmax, R, b, ...]``.

    Steps past ``length`` (up to ``lmax``) are zeros (the program computes and
    discards them).
    """
    n, b = task.num_train, batch_size
    idx = np.stack([steps_batch_indices(jax.random.split(jax.random.key(s))[1], start,
                                        length, n, b) for s in seeds], axis=1)
    flat = _task.gather(task.train_data, idx.reshape(-1))
    out = jax.tree.map(lambda a: a.reshape(length, len(seeds), b, *a.shape[1:]), flat)
    if length < lmax:
        out = jax.tree.map(lambda a: np.concatenate(
            [a, np.zeros((lmax - length, *a.shape[1:]), a.dtype)]), out)
    return out


class ChunkStream:
    """The host batches of a group of runs, each chunk gathered while the previous one trains.

    Args:
      task: a streamed task.
      seeds: the runs' seeds (padded runs included), in run order.
      batch_size: the training batch size.
      lmax: the steps of every chunk's batches (shorter chunks are padded).

    Use :meth:`batches` per segment and :meth:`close` (or ``with``) at the end.
    """

    def __init__(self, task: Task, seeds, batch_size: int, lmax: int):
        self._gather = lambda start, length: gather_chunk(task, seeds, batch_size, start,
                                                          length, lmax)
        self._pool = concurrent.futures.ThreadPoolExecutor(1)

    def batches(self, chunks) -> Iterator:
        """The host batches of each ``(start, length)`` of ``chunks``, in order.

        The next chunk is gathered in the background thread while the caller uses
        the current one.
        """
        chunks = list(chunks)
        if not chunks:
            return
        pending = self._pool.submit(self._gather, *chunks[0])
        for j in range(len(chunks)):
            batches = pending.result()
            if j + 1 < len(chunks):
                pending = self._pool.submit(self._gather, *chunks[j + 1])
            yield batches

    def close(self) -> None:
        """Waits for the background thread and ends it."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
