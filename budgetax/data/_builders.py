"""TFDS builders (array_record, no TensorFlow) for the embedded offline datasets."""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np

# name used by budgetax -> TFDS registered name of its builder
EMBEDDED = {"digits": "budgetax_digits", "mnist1d": "budgetax_mnist1d"}
VERSION = "1.0.0"


def mnist1d_arrays():
    """MNIST-1D with the package's default arguments (4000/1000 split), generated offline.

    ``mnist1d.data.make_dataset`` seeds NumPy's global generator; its state is
    restored afterwards so that loading data never changes the caller's randomness.
    """
    import mnist1d.data

    state = np.random.get_state()
    try:
        d = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    finally:
        np.random.set_state(state)
    return {
        "train": (d["x"].astype(np.float32), d["y"].astype(np.int64)),
        "test": (d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)),
    }


def digits_arrays():
    """sklearn's 8x8 digits as (8, 8, 1) images in [0, 16], a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


_ARRAYS = {"budgetax_mnist1d": mnist1d_arrays, "budgetax_digits": digits_arrays}
_SHAPES = {"budgetax_mnist1d": (40,), "budgetax_digits": (8, 8, 1)}
_CLASSES = {"budgetax_mnist1d": 10, "budgetax_digits": 10}

_BUILDERS: dict = {}


def builder_class(tfds_name: str):
    """The ``tfds.core.GeneratorBasedBuilder`` subclass for an embedded dataset (made once)."""
    if tfds_name in _BUILDERS:
        return _BUILDERS[tfds_name]
    import tensorflow_datasets as tfds

    arrays_fn, shape, classes = _ARRAYS[tfds_name], _SHAPES[tfds_name], _CLASSES[tfds_name]

    class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(VERSION)
        RELEASE_NOTES = {str(VERSION): "Generated offline by budgetax."}

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"{tfds_name}: embedded offline dataset of budgetax.",
                features=tfds.features.FeaturesDict({
                    "x": tfds.features.Tensor(shape=shape, dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=classes),
                    "index": np.int64,
                }),
                supervised_keys=("x", "label"),
            )

        def _split_generators(self, dl_manager):
            arrays = arrays_fn()
            return {split: self._generate_examples(*xy) for split, xy in arrays.items()}

        def _generate_examples(self, x, y):
            for i in range(len(y)):
                yield i, {"x": x[i], "label": int(y[i]), "index": i}

    _Builder.name = tfds_name
    # A one-part module name makes TFDS skip its package-resource lookup of the
    # builder's code path (which needs the optional `importlib_resources`).
    _Builder.__module__ = "budgetax_embedded_data"
    _Builder.__name__ = _Builder.__qualname__ = tfds_name
    _BUILDERS[tfds_name] = _Builder
    return _Builder


@contextlib.contextmanager
def _file_lock(path: str):
    """An exclusive advisory lock (``fcntl.flock``) held while building; no-op where unsupported."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepared_dir(data_dir: str, tfds_name: str) -> str:
    return os.path.join(data_dir, tfds_name, VERSION)


def is_prepared(data_dir: str, tfds_name: str) -> bool:
    return os.path.isfile(os.path.join(prepared_dir(data_dir, tfds_name), "dataset_info.json"))


def ensure_prepared(data_dir: str, tfds_name: str) -> None:
    """Builds the embedded dataset under ``data_dir`` unless it is there already.

    The build is atomic: TFDS writes into ``incomplete.*`` and renames the version
    folder at the end, so a killed build leaves no version folder and the next call
    builds again (clearing the leftovers). A file lock serialises concurrent builds.
    """
    if is_prepared(data_dir, tfds_name):
        return
    import tensorflow_datasets as tfds

    root = os.path.join(data_dir, tfds_name)
    os.makedirs(root, exist_ok=True)
    with _file_lock(os.path.join(root, ".build.lock")):
        if is_prepared(data_dir, tfds_name):
            return
        for entry in os.listdir(root):  # leftovers of a killed build
            if entry.startswith("incomplete.") or entry == VERSION:
                shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
        builder = builder_class(tfds_name)(data_dir=data_dir, file_format="array_record")
        dl_config = tfds.download.DownloadConfig(try_download_gcs=False)
        with _quiet_tfds():
            builder.download_and_prepare(download_config=dl_config)


@contextlib.contextmanager
def _quiet_tfds():
    """Hides TFDS progress bars during a build, restoring the previous setting."""
    from tensorflow_datasets.core.utils import tqdm_utils

    was_active = getattr(tqdm_utils, "_active", True)
    tqdm_utils.disable_progress_bar()
    try:
        yield
    finally:
        if was_active:
            tqdm_utils.enable_progress_bar()
