"""A task's data: arrays or random-access sources, gathered by index, checked and narrowed."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from budgetax.training.task_errors import TaskError

__all__ = ["gather", "is_source", "source_len"]


def is_source(data) -> bool:
    """Whether ``data`` is a random-access source (not an in-memory pytree of arrays)."""
    if data is None or isinstance(data, Mapping | list | tuple | np.ndarray | jax.Array):
        return False
    return hasattr(data, "__len__") and (hasattr(data, "gather") or hasattr(data, "__getitem__"))


def source_len(data) -> int:
    """Number of examples of in-memory data or of a source."""
    if is_source(data):
        return len(data)
    return int(jax.tree.leaves(data)[0].shape[0])


def gather(data, idx) -> Any:
    """The examples ``idx`` (a 1-D integer array) of ``data`` as a batch pytree of NumPy arrays."""
    idx = np.asarray(idx).reshape(-1)
    if not is_source(data):
        return jax.tree.map(lambda a: np.asarray(a)[idx], data)
    if hasattr(data, "gather"):
        return jax.tree.map(np.asarray, data.gather(idx))
    items = [int(i) for i in idx]
    getter = getattr(data, "__getitems__", None)
    recs = getter(items) if getter is not None else [data[i] for i in items]
    return jax.tree.map(lambda *r: np.stack([np.asarray(v) for v in r]), *recs)


def _check_arrays(name: str, data) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise TaskError(f"{name} must be a pytree of arrays with a leading example axis or a "
                        f"random-access source, got {data!r}")
    sizes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TaskError(f"{name}{jax.tree_util.keystr(path)} must be an array, "
                            f"got {type(leaf).__name__}")
        if len(leaf.shape) == 0:
            raise TaskError(f"{name}{jax.tree_util.keystr(path)} has no leading example axis "
                            f"(a scalar)")
        sizes[jax.tree_util.keystr(path) or "[]"] = int(leaf.shape[0])
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{name}'s leading dimensions disagree: {sizes}")
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError(f"{name} has no examples")
    return n


_NARROW = {"int64": np.int32, "uint64": np.uint32, "float64": np.float32,
           "complex128": np.complex64}


def _narrowed(name: str, data) -> list[str]:
    """The 64-bit leaves of ``data`` JAX will compute in 32 bits, as ``name['y'] int64 -> int32``.

    Nothing when ``jax_enable_x64`` is set. In-memory integers that do not fit in 32
    bits (they would wrap around) are refused.
    """
    if jax.config.jax_enable_x64:
        return []
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        dtype = getattr(leaf, "dtype", None)
        to = _NARROW.get(getattr(dtype, "name", ""))
        if to is None:
            continue
        where = f"{name}{jax.tree_util.keystr(path)}"
        if np.issubdtype(to, np.integer) and isinstance(leaf, np.ndarray) and leaf.size:
            info = np.iinfo(to)
            low, high = leaf.min(), leaf.max()
            if low < info.min or high > info.max:
                raise ValueError(f"{where} is {dtype} with values in [{low}, {high}], which do "
                                 f"not fit in {np.dtype(to).name} (JAX computes in 32 bits "
                                 f"unless jax_enable_x64 is set): give values that fit")
        out.append(f"{where} {dtype} -> {np.dtype(to).name}")
    return out


def _say_narrowed(task: str, narrowed: list[str]) -> None:
    if narrowed:
        warnings.warn(f"task {task!r}: {', '.join(narrowed)} (JAX computes in 32 bits unless "
                      f"jax_enable_x64 is set); give 32-bit arrays to silence this",
                      UserWarning, stacklevel=4)
