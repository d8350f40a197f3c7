"""Shared test helpers: one offline-built data dir per test process, and a socket guard."""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import socket
import tempfile


class NetworkBlocked(RuntimeError):
    """Raised by the socket guard on any attempt to open a network connection."""


@contextlib.contextmanager
def no_network():
    """Makes every ``socket.connect`` / ``create_connection`` / DNS lookup fail; counts tries."""
    attempts = []
    saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection,
             socket.getaddrinfo)

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise NetworkBlocked(f"network access attempted: {args[1:]!r}")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    try:
        yield attempts
    finally:
        (socket.socket.connect, socket.socket.connect_ex, socket.create_connection,
         socket.getaddrinfo) = saved


@functools.cache
def built_data_dir() -> str:
    """A temporary data dir with both embedded datasets built (offline) once per process."""
    from budgetax import data

    path = tempfile.mkdtemp(prefix="budgetax-test-data-")
    atexit.register(shutil.rmtree, path, True)
    with no_network():
        for name in data.DATASETS:
            data.load(name, data_dir=path)
    return path


@functools.cache
def dataset(name: str):
    """``budgetax.data.load(name)`` from :func:`built_data_dir`, cached per process."""
    from budgetax import data

    return data.load(name, data_dir=built_data_dir())


TINY = "budgetax_test_tiny"  # a TFDS dataset that is not embedded: load("tfds:...") only reads it


def build_tiny_tfds(data_dir: str, num_train: int = 48, num_test: int = 16) -> str:
    """Prepares a small TFDS dataset ``TINY`` (array_record) under ``data_dir``.

    Returns its version folder. It stands for a dataset a user prepared with TFDS:
    budgetax reads it but cannot rebuild it.
    """
    import numpy as np
    import tensorflow_datasets as tfds

    from budgetax.data import _builders

    class Tiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("0.1.0")
        RELEASE_NOTES = {"0.1.0": "test data"}

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=4),
                }),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(num_train, 0),
                    "test": self._generate_examples(num_test, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                yield i, {"image": rng.normal(size=3).astype(np.float32), "label": i % 4}

        def _log_download_bytes(self):
            pass

        def _log_download_done(self):
            pass

    Tiny.name = TINY
    Tiny.__module__ = "budgetax_test_data"
    builder = Tiny(data_dir=data_dir, file_format="array_record")
    with _builders._quiet_tfds():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(builder.data_dir)
