"""Tests of budgetax.data: embedded datasets, TFDS path, batching, streaming."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys

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
@pytest.mark.parametrize("n,b", [(20, 5), (12, 12), (7, 1)])
def test_every_example_exactly_once_per_epoch(n, b):
    key = jax.random.key(3)
    spe = n // b
    idx_fn = jax.jit(data.batch_indices, static_argnums=(2, 3))
    epochs = []
    for e in range(3):
        seen = np.concatenate([np.asarray(idx_fn(key, e * spe + i, n, b)) for i in range(spe)])
        assert sorted(seen.tolist()) == list(range(n))
        epochs.append(seen)
    if n > 2:
        assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch


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
