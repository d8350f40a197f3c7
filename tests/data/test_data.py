"""Tests of budgetax.data: embedded datasets, TFDS path, batching, streaming."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from budgetax import data
from budgetax.data import _builders
from tests.data.helpers import NetworkBlocked, built_data_dir, dataset, no_network


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ embedded
def test_mnist1d_shapes_dtypes():
    ds = dataset("mnist1d")
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.num_classes == 10 and ds.input_shape == (40,)
    assert ds.num_train == 4000 and ds.num_test == 1000


def test_mnist1d_matches_the_package_and_train_stats():
    """Same examples, same order as mnist1d.make_dataset; standardised by train stats only."""
    import mnist1d.data

    state = np.random.get_state()
    raw = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    np.random.set_state(state)
    x = raw["x"].astype(np.float32)
    mu, sd = x.astype(np.float64).mean(), x.astype(np.float64).std()
    ds = dataset("mnist1d")
    np.testing.assert_array_equal(ds.y_train, raw["y"])
    np.testing.assert_array_equal(ds.y_test, raw["y_test"])
    np.testing.assert_allclose(ds.x_train, (x - mu) / sd, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (raw["x_test"] - mu) / sd, atol=1e-5)
    assert abs(float(ds.x_test.mean())) > 1e-4  # test set is not re-standardised on itself


def test_loading_leaves_global_numpy_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    _builders.mnist1d_arrays()
    assert np.random.rand() == expected


def test_mnist1d_class_balance():
    ds = dataset("mnist1d")
    total = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
    np.testing.assert_array_equal(total, np.full(10, 500))  # 5000 samples, 500 per template
    frac = np.bincount(ds.y_train, minlength=10) / 4000
    assert frac.min() > 0.08 and frac.max() < 0.12


def test_digits_shapes_split_and_balance():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = dataset("digits")
    assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
    assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    assert ds.y_train.dtype == np.int32 and ds.x_train.dtype == np.float32
    per_class = np.bincount(ref.target, minlength=10)
    got = np.bincount(ds.y_train, minlength=10) + np.bincount(ds.y_test, minlength=10)
    np.testing.assert_array_equal(got, per_class)
    # stratified 80/20: every class within one example of 80% in train
    assert np.all(np.abs(np.bincount(ds.y_train, minlength=10) - 0.8 * per_class) <= 1)
    # normalisation with the train split's statistics: raw pixels 0..16
    raw_train = ds.x_train * ds.std + ds.mean
    assert raw_train.min() > -1e-4 and raw_train.max() < 16 + 1e-3
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-4
    # the split is a partition of sklearn's images
    all_x = np.concatenate([ds.x_train, ds.x_test]) * ds.std + ds.mean
    key = lambda a: sorted(map(bytes, np.rint(a.reshape(len(a), -1)).astype(np.int8)))
    assert key(all_x) == key(ref.images)


def test_determinism_across_processes(tmp_path):
    """A fresh process, network blocked, builds byte-identical datasets in a new data dir."""
    script = f"""
import hashlib, json, socket, sys
import numpy as np
def refuse(*a, **k):
    raise RuntimeError("network")
socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse
from budgetax import data
out = {{}}
for name in ("mnist1d", "digits"):
    ds = data.load(name, data_dir={str(tmp_path)!r})
    h = hashlib.sha256()
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    out[name] = h.hexdigest()
print(json.dumps(out))
"""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    other = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("mnist1d", "digits"):
        ds = dataset(name)
        assert other[name] == _digest(ds.x_train, ds.y_train, ds.x_test, ds.y_test)


def test_socket_guard_blocks_and_build_is_offline(tmp_path):
    with no_network() as attempts:
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("example.com", 80), timeout=1)
        attempts.clear()
        ds = data.load("digits", data_dir=str(tmp_path))
        assert ds.num_train == 1437
    assert attempts == []


def test_killed_build_leaves_no_corrupt_cache(tmp_path, monkeypatch):
    def boom():
        raise KeyboardInterrupt("killed mid-build")

    monkeypatch.setitem(_builders._ARRAYS, "budgetax_digits", boom)
    monkeypatch.setattr(_builders, "_BUILDERS", {})
    with pytest.raises(KeyboardInterrupt):
        data.load("digits", data_dir=str(tmp_path))
    assert not _builders.is_prepared(str(tmp_path), "budgetax_digits")
    assert not os.path.exists(_builders.prepared_dir(str(tmp_path), "budgetax_digits"))
    monkeypatch.undo()
    # a stale half-written folder is cleaned up and the next load builds it properly
    stale = tmp_path / "budgetax_digits" / "incomplete.ABC_1.0.0"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "junk").write_text("x")
    ds = data.load("digits", data_dir=str(tmp_path))
    assert ds.num_train == 1437 and not stale.exists()


def test_tfds_name_reads_a_prepared_dataset():
    ds = data.load("tfds:budgetax_digits", data_dir=built_data_dir())
    ref = dataset("digits")
    assert ds.input_shape == ref.input_shape and ds.num_classes == 10
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
    with no_network():
        with pytest.raises(data.DatasetNotPreparedError) as err:
            data.load("tfds:mnist", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "mnist" in msg and "tfds build" in msg and str(tmp_path) in msg
    assert "array_record" in msg


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"digits.*mnist1d.*tfds:NAME.*'cifar'"):
        data.load("cifar", data_dir=built_data_dir())
    with pytest.raises(TypeError):
        data.load(3)


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BUDGETAX_DATA_DIR", str(tmp_path / "here"))
    assert data.default_data_dir() == str(tmp_path / "here")
    monkeypatch.delenv("BUDGETAX_DATA_DIR")
    assert data.default_data_dir().endswith(os.path.join(".cache", "budgetax",
                                                         "tensorflow_datasets"))


# ------------------------------------------------------------------ batching
def _loop_sampler(keys, n, b, steps):
    """The training loop's sampler, as the loop runs it: a jitted lax.scan over steps."""
    import jax.numpy as jnp

    def body(carry, _):
        perms, t = carry
        perms, idx = data.device_batch_indices(keys, perms, t, n, b)
        return (perms, t + 1), idx

    @jax.jit
    def run(keys):
        perms0 = jnp.zeros((keys.shape[0], n), jnp.int32)
        return jax.lax.scan(body, (perms0, jnp.int32(0)), None, length=steps)[1]

    return np.asarray(run(keys)).transpose(1, 0, 2)  # [R, steps, b]


@pytest.mark.parametrize("n,b", [(20, 5), (12, 12), (7, 1), (23, 5)])
def test_every_example_exactly_once_per_epoch(n, b):
    """On the training loop's code path (device_batch_indices in a scan), for 2 runs."""
    import jax.numpy as jnp

    keys = jnp.stack([jax.random.key(3), jax.random.key(4)])
    spe = n // b
    got = _loop_sampler(keys, n, b, 3 * spe)
    for r in range(2):
        epochs = []
        for e in range(3):
            seen = got[r, e * spe:(e + 1) * spe].ravel()
            assert len(set(seen.tolist())) == spe * b  # no repeats within an epoch
            assert seen.min() >= 0 and seen.max() < n
            if n % b == 0:
                assert sorted(seen.tolist()) == list(range(n))
            epochs.append(seen)
        if n > 2:
            assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch
    assert not np.array_equal(got[0], got[1])  # each run its own order
    # the same batches as batch_indices and as the streaming Prefetcher
    for t in (0, spe - 1, spe, 3 * spe - 1):
        np.testing.assert_array_equal(got[1, t], np.asarray(data.batch_indices(keys[1], t, n, b)))
    with data.Prefetcher(lambda i: (i, i), n, b, keys[0], [(0, 3 * spe)]) as p:
        (_, streamed), = list(p)
    np.testing.assert_array_equal(streamed, got[0])


def test_batch_position_rule():
    # 4 batches of 5 per epoch of 23 examples
    assert [data.batch_position(t, 23, 5) for t in (0, 3, 4, 9)] == [(0, 0), (0, 15), (1, 0),
                                                                       (2, 5)]


def test_remainder_is_dropped_without_repeats():
    n, b = 23, 5
    key = jax.random.key(0)
    seen = np.concatenate([np.asarray(data.batch_indices(key, i, n, b)) for i in range(4)])
    assert len(set(seen.tolist())) == 20 and seen.min() >= 0 and seen.max() < n


def test_batch_size_checks():
    with pytest.raises(ValueError, match="batch_size.*1437"):
        data.check_batch_size(1438, 1437)
    with pytest.raises(ValueError, match="batch_size"):
        data.check_batch_size(0, 10)
    with pytest.raises(TypeError, match="batch_size"):
        data.check_batch_size(2.0, 10)


def test_prefetcher_streams_the_same_batches():
    xs = np.arange(30, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    ys = np.arange(30)
    key = jax.random.key(7)
    chunks = [(0, 4), (4, 4), (8, 3)]
    p = data.Prefetcher(lambda i: (xs[i], ys[i]), 30, 6, key, chunks, prefetch=1)
    got = list(p)
    assert [g[0].shape for g in got] == [(4, 6, 3), (4, 6, 3), (3, 6, 3)]
    flat = np.concatenate([g[1] for g in got])
    for t in range(11):
        np.testing.assert_array_equal(flat[t], np.asarray(data.batch_indices(key, t, 30, 6)))
    np.testing.assert_array_equal(got[0][0][..., 0], got[0][1])


def test_prefetcher_reraises_worker_errors():
    def bad(i):
        raise OSError("disk gone")

    p = data.Prefetcher(bad, 10, 2, jax.random.key(0), [(0, 2)])
    with pytest.raises(OSError, match="disk gone"):
        list(p)


def _new_threads(before, wait=3.0):
    """Threads started since ``before`` that are still alive after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _chunks_gather(fail_at=None):
    xs, ys = np.arange(12, dtype=np.float32)[:, None], np.arange(12)
    calls = []

    def gather(i):
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at:
            raise OSError("disk gone")
        return xs[i], ys[i]

    return gather


@pytest.mark.parametrize("fail_at", [None, 3], ids=["done", "error"])
def test_prefetcher_close_stops_a_worker_blocked_on_a_full_queue(fail_at):
    """The consumer stops early; the worker, with a full queue, must not hang on put()."""
    before = set(threading.enumerate())
    p = data.Prefetcher(_chunks_gather(fail_at), 12, 2, jax.random.key(0),
                        [(0, 1), (1, 1), (2, 1)], prefetch=1)
    it = iter(p)
    next(it)
    time.sleep(0.3)  # the worker fills the queue and then has _DONE / the error to hand over
    p.close()
    assert _new_threads(before) == []
    with pytest.raises(RuntimeError, match="closed"):
        iter(p)


def test_prefetcher_context_manager_and_abandoned_iteration():
    before = set(threading.enumerate())
    with data.Prefetcher(_chunks_gather(), 12, 2, jax.random.key(0),
                         [(0, 1), (1, 1), (2, 1)], prefetch=1) as p:
        for _ in p:
            break
    assert _new_threads(before) == []


def test_prefetcher_iterates_twice():
    p = data.Prefetcher(_chunks_gather(), 12, 2, jax.random.key(1), [(0, 2), (2, 3), (5, 1)],
                        prefetch=1)
    first = list(p)
    result = []
    t = threading.Thread(target=lambda: result.append(list(p)), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "second iteration hangs"
    assert len(result[0]) == len(first) == 3
    for a, b in zip(first, result[0], strict=True):
        np.testing.assert_array_equal(a[1], b[1])
    p.close()
