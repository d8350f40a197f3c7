r"""Datasets behind one loader interface: embedded offline ones and any prepared TFDS dataset.

``load(name)`` returns a :class:`Dataset`: train/test splits, the number of
classes, the per-example input shape and normalisation statistics computed on the
train split (inputs are standardised per channel, :math:`(x - \mu) / \sigma`).

Names:

- ``"mnist1d"``: MNIST-1D (Greydanus, 2020) generated offline with the ``mnist1d``
  package's ``make_dataset`` and default arguments (never its download path):
  4000 train / 1000 test signals of length 40, 10 classes.
- ``"digits"``: scikit-learn's 8x8 handwritten digits as ``(8, 8, 1)`` images, a
  fixed stratified 80/20 split (1437 / 360).
- ``"tfds:NAME"``: any TFDS dataset already prepared in ``array_record`` format
  under the data dir (e.g. ``tfds:mnist``); a missing one raises
  :class:`DatasetNotPreparedError` saying how to prepare it, a damaged one (a
  missing, truncated or unreadable file) :class:`DatasetCorruptError`.

The embedded datasets are written as TFDS datasets in ``array_record`` format the
first time they are used (no TensorFlow needed, nothing downloaded, nothing
printed) and read back with ``tfds.data_source``, the same path as any TFDS
dataset. The build goes to a temp folder that is renamed into place once complete,
under a file lock, with a manifest (file sizes, sha256, record counts) written
last; a prepared folder is verified against it on every load (sizes; hashes of
files whose modification time changed) and rebuilt when it fails, so a build
killed at any moment, or files damaged later, cost one rebuild, never a broken
dataset. :func:`verify` runs the full check (every hash and record count).

The data dir is the ``data_dir`` argument, else ``$BUDGETAX_DATA_DIR``, else
``~/.cache/budgetax/tensorflow_datasets``; a data dir that is a file (or cannot be
created) raises :class:`DataDirError`.

Small datasets are put on the device whole and batched inside the compiled
training loop (:func:`budgetax.data.batching.device_batch_indices`; the device
copies are made once per dataset and device, :meth:`Dataset.device_arrays`); larger ones are
streamed from their data source by :class:`budgetax.data.batching.Prefetcher`.

Example:
  >>> from budgetax import data
  >>> ds = data.load("mnist1d")                         # doctest: +SKIP
  >>> ds.x_train.shape, ds.num_classes, ds.input_shape  # doctest: +SKIP
  ((4000, 40), 10, (40,))

References:
  Greydanus. Scaling down Deep Learning (MNIST-1D). 2020. arXiv:2011.14439.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from budgetax import _validate
from budgetax.data import _builders, batching
from budgetax.data._builders import EMBEDDED
from budgetax.data._builders import ensure_prepared as _ensure_prepared
from budgetax.data._errors import DataDirError, DatasetCorruptError, DatasetNotPreparedError
from budgetax.data.batching import (
    Prefetcher,
    batch_indices,
    batch_position,
    check_batch_size,
    device_batch_indices,
    epoch_permutation,
)

__all__ = [
    "DATASETS",
    "DataDirError",
    "Dataset",
    "DatasetCorruptError",
    "DatasetNotPreparedError",
    "Prefetcher",
    "batch_indices",
    "batch_position",
    "batching",
    "check_batch_size",
    "default_data_dir",
    "device_batch_indices",
    "epoch_permutation",
    "load",
    "verify",
]

DATASETS = tuple(sorted(EMBEDDED))
DEFAULT_MAX_DEVICE_BYTES = 256 * 2**20


def default_data_dir() -> str:
    """``$BUDGETAX_DATA_DIR`` if set, else ``~/.cache/budgetax/tensorflow_datasets``."""
    env = os.environ.get("BUDGETAX_DATA_DIR")
    if env:
        return os.path.expanduser(env)
    return os.path.join(os.path.expanduser("~"), ".cache", "budgetax", "tensorflow_datasets")


def _stack(records: Sequence[dict], key: str) -> np.ndarray:
    return np.stack([np.asarray(r[key]) for r in records])


def _source_dir(source) -> str:
    info = getattr(source, "dataset_info", None)
    return os.fspath(getattr(info, "data_dir", "")) or "its data dir"


def _read(source, keys, idx=None, chunk: int = 8192):
    """Reads ``keys`` of the records ``idx`` (all by default) from a random-access source.

    A record file that cannot be read raises :class:`DatasetCorruptError` naming its folder.
    """
    if idx is None:
        idx = np.arange(len(source))
    idx = [int(i) for i in np.asarray(idx).reshape(-1)]
    getter = getattr(source, "__getitems__", None)
    out = {k: [] for k in keys}
    for s in range(0, len(idx), chunk):
        part = idx[s:s + chunk]
        try:
            recs = getter(part) if getter is not None else [source[i] for i in part]
        except (OSError, RuntimeError) as err:
            raise _unreadable(source, str(err)) from err
        if any(r[k] is None for r in recs for k in keys):  # a reader that lost its file
            raise _unreadable(source, "records read back empty")
        for k in keys:
            out[k].append(_stack(recs, k))
    return {k: (np.concatenate(v) if v else np.zeros((0,))) for k, v in out.items()}


def _unreadable(source, why: str) -> DatasetCorruptError:
    folder = _source_dir(source)
    return DatasetCorruptError(f"cannot read the records of the dataset in {folder!r} ({why}). "
                               + _REPAIR.format(folder=folder))


_REPAIR = ("Delete {folder!r} and prepare the dataset again (an embedded dataset is rebuilt "
           "by the next load), or point --data-dir / $BUDGETAX_DATA_DIR at a good copy.")


@dataclass(eq=False)
class Dataset:
    """A classification dataset: splits, shapes and normalisation statistics.

    The arrays (``x_train``, ``y_train``, ``x_test``, ``y_test``) are read from the
    TFDS data sources on first access, standardised with the train statistics,
    float32 inputs and int32 labels, in the order of the source's ``index``
    feature when it has one. For streaming, :meth:`gather` reads any examples.

    Attributes:
      name: the name it was loaded by.
      num_classes: number of classes.
      input_shape: per-example input shape.
      mean: per-channel (or scalar) mean of the raw train inputs.
      std: per-channel (or scalar) standard deviation of the raw train inputs.
      num_train: train-split size.
      num_test: test-split size.
      sources: ``{"train": source, "test": source}`` random-access TFDS data sources.
      data_dir: the data dir it was read from.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    num_train: int
    num_test: int
    sources: dict[str, Any] = field(repr=False)
    data_dir: str = ""
    x_key: str = "x"
    y_key: str = "label"
    _order: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    # device copies: not an __init__ field, so dataclasses.replace() starts a fresh one
    _device_cache: dict = field(default_factory=dict, init=False, repr=False)

    def normalize(self, x) -> np.ndarray:
        """Standardises raw inputs with the train statistics (float32)."""
        return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

    def _size(self, split) -> int:
        _validate.one_of("split", split, ("train", "test"))
        return self.num_train if split == "train" else self.num_test

    def gather(self, split: str, idx) -> tuple[np.ndarray, np.ndarray]:
        """Normalised inputs and int32 labels of examples ``idx`` of ``split``.

        ``idx`` are integers in ``[0, n)`` for the split's size ``n``.
        """
        n = self._size(split)
        idx = np.asarray(idx)
        if idx.dtype == np.bool_ or not np.issubdtype(idx.dtype, np.integer) and idx.size:
            raise TypeError(f"idx must be integer indices, got {idx!r}")
        idx = idx.reshape(-1).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"idx must be in [0, {n}) for the {split} split, got values in "
                             f"[{idx.min()}, {idx.max()}]")
        if split in self._cache:
            x, y = self._cache[split]
            return x[idx], y[idx]
        order = self._order.get(split)
        rec_idx = idx if order is None else order[idx]
        recs = _read(self.sources[split], (self.x_key, self.y_key), rec_idx)
        return self.normalize(recs[self.x_key]), recs[self.y_key].astype(np.int32)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The whole split ``(x, y)`` in memory (read once, then cached)."""
        n = self._size(split)
        if split not in self._cache:
            self._cache[split] = self.gather(split, np.arange(n))
        return self._cache[split]

    def device_arrays(self, device=None) -> tuple:
        """``(x_train, y_train, x_test, y_test)`` as JAX arrays on ``device`` (or the default).

        Uploaded once per device (and per version of the in-memory arrays), then
        reused: repeated training calls do not copy the dataset to the device again.
        """
        import jax

        host = (self.x_train, self.y_train, self.x_test, self.y_test)
        where = device if device is not None else ("default", jax.config.jax_default_device)
        entry = self._device_cache.get(where)
        if entry is None or any(a is not b for a, b in zip(entry[0], host, strict=True)):
            # device=None: uncommitted arrays on the default device, as jnp.asarray makes
            entry = (host, tuple(jax.device_put(a, device) for a in host))
            self._device_cache[where] = entry
        return entry[1]

    @property
    def x_train(self) -> np.ndarray:
        return self.arrays("train")[0]

    @property
    def y_train(self) -> np.ndarray:
        return self.arrays("train")[1]

    @property
    def x_test(self) -> np.ndarray:
        return self.arrays("test")[0]

    @property
    def y_test(self) -> np.ndarray:
        return self.arrays("test")[1]

    @property
    def train_bytes(self) -> int:
        """Bytes of the normalised float32 train inputs."""
        return self.num_train * int(np.prod(self.input_shape)) * 4

    def fits_on_device(self, max_bytes: int = DEFAULT_MAX_DEVICE_BYTES) -> bool:
        """Whether the train + test inputs are small enough to keep on the device."""
        max_bytes = _validate.positive_int("max_bytes", max_bytes)
        return self.train_bytes * (1 + self.num_test / max(self.num_train, 1)) <= max_bytes

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per epoch, ``num_train // batch_size`` (the remainder is dropped)."""
        return self.num_train // check_batch_size(batch_size, self.num_train)


def _channel_stats(source, x_key, n, input_shape, chunk=8192):
    """Mean / std over examples (and spatial axes for images) in float64, one pass."""
    axes = (0,) if len(input_shape) < 3 else tuple(range(len(input_shape)))
    total = 0
    s1 = s2 = None
    for start in range(0, n, chunk):
        x = _read(source, (x_key,), np.arange(start, min(n, start + chunk)))[x_key]
        x = x.astype(np.float64)
        if len(input_shape) < 3:
            x = x.reshape(-1)  # one scalar statistic for signals / flat features
            red = (0,)
        else:
            red = axes
        cnt = x.size if len(input_shape) < 3 else int(np.prod([x.shape[a] for a in red]))
        a, b = x.sum(axis=red), (x * x).sum(axis=red)
        s1 = a if s1 is None else s1 + a
        s2 = b if s2 is None else s2 + b
        total += cnt
    mean = s1 / total
    var = np.maximum(s2 / total - mean * mean, 0.0)
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def _missing_message(name: str, data_dir: str) -> str:
    return (
        f"TFDS dataset {name!r} is not prepared in array_record format under {data_dir!r}. "
        "budgetax cannot download it here. Prepare it on a machine with network access, "
        f"e.g. `tfds build {name} --file_format=array_record --data_dir={data_dir}` or "
        f"`python -c \"import tensorflow_datasets as tfds; tfds.data_source('{name}', "
        f"data_dir='{data_dir}')\"`, then copy that folder here (or point --data-dir / "
        "$BUDGETAX_DATA_DIR at it)."
    )


def _corrupt(name: str, folder: str, found: Sequence[str]) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"the prepared dataset {name!r} in {folder!r} is damaged: {'; '.join(found)}. "
        + _REPAIR.format(folder=folder))


def _record_problems(sources, splits=("train", "test")) -> list[str]:
    """Missing files and record counts that differ from TFDS's shard lengths."""
    from budgetax.data import _manifest

    out = []
    for split in splits:
        info = sources[split].dataset_info.splits[split]
        for path, expected in zip(info.filepaths, info.shard_lengths, strict=True):
            path = os.fspath(path)
            if not os.path.isfile(path):
                out.append(f"{os.path.basename(path)} is missing")
                continue
            n = _manifest.count_records(path)
            if n != int(expected):
                got = "unreadable" if n is None else f"{n} records"
                out.append(f"{os.path.basename(path)} is {got}, expected {int(expected)} records")
    return out


def _open_tfds(name: str, data_dir: str):
    """``(sources, x_key, y_key, num_classes, input_shape)`` of a prepared TFDS dataset.

    The files of the train and test splits must exist and hold the record counts
    TFDS recorded (read from each file's footer), else :class:`DatasetCorruptError`.
    """
    import tensorflow_datasets as tfds
    from google.protobuf import json_format, message
    from tensorflow_datasets.core.dataset_info import DatasetInfoFileError

    base = name.split(":")[0].split("/")[0]
    version_root = os.path.join(data_dir, base)
    if not os.path.isdir(version_root):
        raise DatasetNotPreparedError(_missing_message(name, data_dir))
    try:
        sources = tfds.data_source(name, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise DatasetNotPreparedError(_missing_message(name, data_dir)) from err
    except (DatasetInfoFileError, json_format.Error, message.DecodeError,
            json.JSONDecodeError, RuntimeError) as err:
        # a version folder whose metadata cannot be read
        raise _corrupt(name, version_root, [f"its metadata cannot be read ({err})"]) from err
    except (AssertionError, FileNotFoundError, NotImplementedError, ValueError) as err:
        raise DatasetNotPreparedError(_missing_message(name, data_dir) + f" ({err})") from err
    if "train" not in sources or "test" not in sources:
        raise ValueError(f"dataset {name!r} needs 'train' and 'test' splits, has {list(sources)}")
    found = _record_problems(sources)
    if found:
        raise _corrupt(name, _source_dir(sources["train"]), found)
    info = sources["train"].dataset_info
    keys = info.supervised_keys
    if not keys or len(keys) != 2:
        raise ValueError(f"dataset {name!r} has no (input, label) supervised_keys")
    x_key, y_key = keys
    num_classes = int(info.features[y_key].num_classes)
    input_shape = tuple(int(s) for s in info.features[x_key].shape)
    return sources, x_key, y_key, num_classes, input_shape


def _resolve(name, data_dir) -> tuple[str, str, bool]:
    """``(tfds_name, data_dir, embedded)`` for a dataset name, validated."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    data_dir = (_builders.resolve_data_dir(data_dir) if data_dir is not None
                else _builders.resolve_data_dir(default_data_dir()))
    if name in EMBEDDED:
        return EMBEDDED[name], data_dir, True
    if name.startswith("tfds:") and len(name) > 5:
        tfds_name = name[5:]
        return tfds_name, data_dir, tfds_name in EMBEDDED.values()
    raise ValueError(
        f"dataset must be one of {list(DATASETS)} or 'tfds:NAME' (a prepared TFDS "
        f"dataset, e.g. 'tfds:mnist'), got {name!r}")


def verify(name: str, *, data_dir: str | os.PathLike | None = None,
           checksums: bool = True) -> None:
    """Checks a prepared dataset in full, without building or changing anything.

    For an embedded dataset it compares every file with the manifest written when
    it was built: size, sha256 (with ``checksums=True``; otherwise only for files
    whose modification time changed, as :func:`load` does) and the record count
    read back from each record file. For a ``tfds:`` dataset (TFDS records no
    checksums of the files it writes) it checks that every record file of the
    train and test splits exists and holds the number of records TFDS recorded.

    Args:
      name: as in :func:`load`.
      data_dir: the TFDS data dir; default :func:`default_data_dir`.
      checksums: hash every file of an embedded dataset (a bool).

    Returns:
      None when the dataset verifies.

    Raises:
      DatasetNotPreparedError: the dataset is not prepared under the data dir.
      DatasetCorruptError: it is damaged; the message lists every problem found.
      DataDirError: the data dir is a file.

    Example:
      >>> import tempfile
      >>> tmp = tempfile.TemporaryDirectory()
      >>> d = tmp.name
      >>> _ = load("digits", data_dir=d)
      >>> verify("digits", data_dir=d)         # None: it verifies
      >>> import os, glob
      >>> f = glob.glob(os.path.join(d, "budgetax_digits", "*", "*-train.array_record*"))[0]
      >>> os.truncate(f, 1000)
      >>> try:
      ...     verify("digits", data_dir=d)
      ... except DatasetCorruptError as err:
      ...     print("has 1000 bytes" in str(err))
      True
      >>> load("digits", data_dir=d).num_train   # rebuilt
      1437
      >>> tmp.cleanup()

    References:
      TFDS array_record data sources: https://www.tensorflow.org/datasets/api_docs/python/tfds/data_source
    """
    _validate.boolean("checksums", checksums)
    tfds_name, data_dir, embedded = _resolve(name, data_dir)
    if not embedded:
        _open_tfds(tfds_name, data_dir)
        return
    folder = _builders.prepared_dir(data_dir, tfds_name)
    if not os.path.lexists(folder):
        raise DatasetNotPreparedError(
            f"dataset {name!r} is not prepared under {data_dir!r}; "
            f"budgetax.data.load({name!r}) builds it")
    found = _builders.problems(data_dir, tfds_name, checksums=checksums)
    if found:
        raise _corrupt(name, folder, found)


def load(name: str, *, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads a dataset by name: ``"mnist1d"``, ``"digits"`` or ``"tfds:NAME"``.

    Embedded datasets are built (once, atomically, under a file lock) as
    array_record TFDS datasets under the data dir, and rebuilt when the prepared
    folder fails verification; every dataset is read with ``tfds.data_source``.

    Args:
      name: ``"mnist1d"``, ``"digits"`` or ``"tfds:NAME"`` (``NAME`` as TFDS spells
        it, optionally with a config/version, e.g. ``"tfds:mnist"``).
      data_dir: the TFDS data dir; default :func:`default_data_dir`.

    Returns:
      A :class:`Dataset`.

    Raises:
      ValueError: unknown name (the message lists the valid ones).
      DataDirError: the data dir is a file, or it cannot be created or written
        (a ``ValueError``).
      DatasetNotPreparedError: a ``tfds:`` dataset that is not prepared under the data dir.
      DatasetCorruptError: a ``tfds:`` dataset whose files are missing, truncated
        or unreadable (a ``ValueError``).

    Example:
      >>> ds = load("digits")   # doctest: +SKIP
      >>> ds.input_shape        # doctest: +SKIP
      (8, 8, 1)
    """
    tfds_name, data_dir, embedded = _resolve(name, data_dir)
    if embedded:
        _ensure_prepared(data_dir, tfds_name)
    sources, x_key, y_key, num_classes, input_shape = _open_tfds(tfds_name, data_dir)
    order = {}
    for split in ("train", "test"):
        feats = sources[split].dataset_info.features
        if "index" in feats.keys():
            index = _read(sources[split], ("index",))["index"]
            order[split] = np.argsort(index, kind="stable")
    n_train, n_test = len(sources["train"]), len(sources["test"])
    # statistics over the train split (in source order: sums do not depend on order)
    mean, std = _channel_stats(sources["train"], x_key, n_train, input_shape)
    return Dataset(name=name, num_classes=num_classes, input_shape=input_shape, mean=mean,
                   std=std, num_train=n_train, num_test=n_test, sources=dict(sources),
                   data_dir=data_dir, x_key=x_key, y_key=y_key, _order=order)
