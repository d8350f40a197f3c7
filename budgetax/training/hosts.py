"""Meshes and host <-> device transfers that work in one process or many.

Every array of the training core is a global array on a one-axis mesh
``("runs",)`` (:func:`make_mesh`). These helpers build such arrays from host data
shard by shard (:func:`put`, :func:`put_keys`), bring them back as NumPy
(:func:`to_host`, gathered from every process) and wait for every process
(:func:`barrier`); in one process they are plain transfers.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["barrier", "check_devices", "make_mesh", "put", "put_keys", "to_host"]


def check_devices(devices) -> list:
    """``devices`` as a non-empty list of distinct JAX devices (``None``: ``jax.devices()``)."""
    if devices is None:
        return list(jax.devices())
    if isinstance(devices, str | bytes) or not hasattr(devices, "__iter__"):
        raise TypeError(f"devices must be a sequence of jax devices (e.g. jax.devices()), "
                        f"got {devices!r}")
    devices = list(devices)
    if not devices:
        raise ValueError("devices must hold at least one jax device, got []")
    bad = [d for d in devices if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(f"devices must be jax devices (e.g. jax.devices()[:2]), got "
                        f"{bad[0]!r} in {devices!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices has duplicates, got {devices!r}")
    return devices


def make_mesh(devices) -> jax.sharding.Mesh:
    """A one-axis mesh ``("runs",)`` over ``devices``."""
    return jax.sharding.Mesh(np.asarray(list(devices)), ("runs",),
                             axis_types=(jax.sharding.AxisType.Auto,))


def put(array, sharding) -> jax.Array:
    """A global array from host data, built shard by shard (multi-process friendly)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def put_keys(seeds, sharding) -> jax.Array:
    """The PRNG keys of ``seeds`` as a global array with ``sharding``."""
    data = np.stack([np.asarray(jax.random.key_data(jax.random.key(s))) for s in seeds])
    raw = put(data, sharding)
    return jax.jit(jax.random.wrap_key_data, out_shardings=sharding)(raw)


def barrier(name: str) -> None:
    """Waits for every process (multi-process runs); a no-op in one process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def to_host(tree):
    """NumPy copies of (possibly sharded, possibly multi-process) arrays."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, tree)
