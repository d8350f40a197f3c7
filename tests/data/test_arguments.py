"""Argument validation of the batching helpers and Dataset methods: TypeError/ValueError
naming the argument and showing the value; traced steps still pass under jax.jit."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from budgetax import data
from tests.data.helpers import dataset

KEY = jax.random.key(0)
KEYS = jnp.stack([jax.random.key(1), jax.random.key(2)])


def _raises(err, name, value, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` raises ``err`` whose message names ``name`` and shows ``value``."""
    with pytest.raises(err) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert name in msg and re.search(re.escape(repr(value)) if value is not None else "", msg), msg


@pytest.mark.parametrize("fn", ["batch_position", "batch_indices"])
@pytest.mark.parametrize("arg,value,err", [
    ("num_examples", 0, ValueError), ("num_examples", -3, ValueError),
    ("num_examples", True, TypeError), ("num_examples", 10.0, TypeError),
    ("batch_size", 0, ValueError), ("batch_size", 11, ValueError),
    ("batch_size", True, TypeError), ("batch_size", 2.5, TypeError),
    ("step", -1, ValueError), ("step", True, TypeError), ("step", 1.0, TypeError),
    ("step", "3", TypeError),
])
def test_sizes_and_step_are_checked(fn, arg, value, err):
    kwargs = {"step": 3, "num_examples": 10, "batch_size": 5, arg: value}
    call = getattr(data, fn)
    if fn == "batch_indices":
        _raises(err, arg, value, call, KEY, **kwargs)
    else:
        _raises(err, arg, value, call, **kwargs)


def test_array_steps():
    epochs, offsets = data.batch_position(np.arange(6), 10, 5)
    np.testing.assert_array_equal(epochs, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(offsets, [0, 5, 0, 5, 0, 5])
    with pytest.raises(ValueError, match=r"step must be >= 0, got array\(\[ 0, -1\]\)"):
        data.batch_position(np.array([0, -1]), 10, 5)
    with pytest.raises(TypeError, match=r"step must be an int.*array\(\[0\.5\]\)"):
        data.batch_position(np.array([0.5]), 10, 5)
    with pytest.raises(TypeError, match="step must be an int.*True"):
        data.batch_position(np.bool_(True), 10, 5)


def test_keys_and_permutations_are_checked():
    _raises(TypeError, "key", 0, data.batch_indices, 0, 1, 10, 5)
    _raises(TypeError, "key", None, data.epoch_permutation, np.zeros(2, np.float32), 0, 10)
    with pytest.raises(ValueError, match=r"key must be a single key, got shape \(2,\)"):
        data.batch_indices(KEYS, 1, 10, 5)
    with pytest.raises(ValueError, match=r"permutation must have shape \(10,\).*\(9,\)"):
        data.batch_indices(KEY, 1, 10, 5, permutation=jnp.arange(9))
    # with a permutation the key is not used (the training loop passes it anyway)
    perm = data.epoch_permutation(KEY, 0, 10)
    np.testing.assert_array_equal(data.batch_indices(None, 1, 10, 5, permutation=perm),
                                  np.asarray(perm)[5:])
    _raises(ValueError, "epoch", -1, data.epoch_permutation, KEY, -1, 10)
    _raises(TypeError, "epoch", False, data.epoch_permutation, KEY, False, 10)
    _raises(ValueError, "num_examples", 0, data.epoch_permutation, KEY, 0, 0)
    # raw uint32 keys work as before
    raw = jax.random.PRNGKey(0)
    assert data.epoch_permutation(raw, 1, 7).shape == (7,)


def test_device_batch_indices_checks_shapes():
    perms = jnp.zeros((2, 10), jnp.int32)
    with pytest.raises(ValueError, match=r"perms must have shape \(2, 10\).*\(2, 9\)"):
        data.device_batch_indices(KEYS, jnp.zeros((2, 9), jnp.int32), 0, 10, 5)
    with pytest.raises(ValueError, match=r"keys must be a \[R\] batch of keys, got shape \(\)"):
        data.device_batch_indices(KEY, perms, 0, 10, 5)
    _raises(ValueError, "batch_size", 11, data.device_batch_indices, KEYS, perms, 0, 10, 11)
    _raises(ValueError, "step", -2, data.device_batch_indices, KEYS, perms, -2, 10, 5)
    raw = jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)])  # [2, 2] uint32
    _, idx = data.device_batch_indices(raw, perms, 0, 10, 5)
    assert idx.shape == (2, 5)


def test_traced_steps_pass_and_do_not_recompile(counting_jit):
    f = counting_jit(lambda keys, perms, t: data.device_batch_indices(keys, perms, t, 10, 5))
    perms = jnp.zeros((2, 10), jnp.int32)
    perms, first = f(KEYS, perms, jnp.int32(0))
    _, second = f(KEYS, perms, jnp.int32(1))
    assert f.traces == 1
    for r in range(2):
        np.testing.assert_array_equal(first[r], data.batch_indices(KEYS[r], 0, 10, 5))
        np.testing.assert_array_equal(second[r], data.batch_indices(KEYS[r], 1, 10, 5))
    g = counting_jit(lambda t: data.batch_indices(KEY, t, 10, 5))
    for t in range(3):
        np.testing.assert_array_equal(g(jnp.int32(t)), data.batch_indices(KEY, t, 10, 5))
    assert g.traces == 1
    with pytest.raises(TypeError, match="step must be an int"):
        jax.jit(lambda t: data.batch_indices(KEY, t, 10, 5))(jnp.float32(1))


def _gather(i):
    return np.asarray(i, np.float32)[:, None], np.asarray(i)


@pytest.mark.parametrize("kwargs,err,name,value", [
    ({"gather": None}, TypeError, "gather", None),
    ({"num_examples": 0}, ValueError, "num_examples", 0),
    ({"batch_size": 13}, ValueError, "batch_size", 13),
    ({"batch_size": False}, TypeError, "batch_size", False),
    ({"key": 3}, TypeError, "key", 3),
    ({"chunks": 5}, TypeError, "chunks", 5),
    ({"chunks": "ab"}, TypeError, "chunks", "ab"),
    ({"chunks": [(0, 2), (2,)]}, TypeError, "chunks[1]", (2,)),
    ({"chunks": [(0, 2.0)]}, TypeError, "chunks[0]", (0, 2.0)),
    ({"chunks": [(0, True)]}, TypeError, "chunks[0]", (0, True)),
    ({"chunks": [(0, 0)]}, ValueError, "chunks[0]", (0, 0)),
    ({"chunks": [(-1, 2)]}, ValueError, "chunks[0]", (-1, 2)),
    ({"prefetch": 0}, ValueError, "prefetch", 0),
    ({"prefetch": True}, TypeError, "prefetch", True),
])
def test_prefetcher_arguments(kwargs, err, name, value):
    args = {"gather": _gather, "num_examples": 12, "batch_size": 4, "key": KEY,
            "chunks": [(0, 2)], **kwargs}
    chunks = args.pop("chunks")
    _raises(err, name, value, data.Prefetcher, args.pop("gather"), args.pop("num_examples"),
            args.pop("batch_size"), args.pop("key"), chunks, **args)


def test_prefetcher_accepts_any_iterable_of_pairs():
    with data.Prefetcher(_gather, 12, 4, KEY, iter([[0, 2], (2, 1)])) as p:
        got = [y for _, y in p]
    assert [g.shape for g in got] == [(2, 4), (1, 4)]


def test_check_batch_size_rejects_bools_and_bad_sizes():
    _raises(TypeError, "batch_size", True, data.check_batch_size, True, 10)
    _raises(ValueError, "num_examples", 0, data.check_batch_size, 1, 0)


def test_dataset_methods_check_their_arguments():
    ds = dataset("digits")
    _raises(ValueError, "split", "valid", ds.gather, "valid", [0])
    _raises(ValueError, "split", "val", ds.arrays, "val")
    with pytest.raises(ValueError, match=r"idx must be in \[0, 360\).*\[0, 360\]"):
        ds.gather("test", [0, 360])
    with pytest.raises(ValueError, match=r"idx must be in \[0, 1437\).*\[-1, 2\]"):
        ds.gather("train", [-1, 2])
    with pytest.raises(TypeError, match="idx must be integer indices"):
        ds.gather("train", [0.5])
    with pytest.raises(TypeError, match="idx must be integer indices"):
        ds.gather("train", np.array([True, False]))
    _raises(ValueError, "max_bytes", 0, ds.fits_on_device, 0)
    _raises(TypeError, "max_bytes", 1.5, ds.fits_on_device, 1.5)
    x, y = ds.gather("test", np.array([3, 1]))
    np.testing.assert_array_equal(y, ds.y_test[[3, 1]])
    _raises(TypeError, "batch_size", True, ds.steps_per_epoch, True)
