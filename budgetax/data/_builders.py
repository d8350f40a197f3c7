"""TFDS builders (array_record, no TensorFlow) for the embedded offline datasets.

:func:`ensure_prepared` builds one into ``<data_dir>/<name>/<version>`` so that a
reader only ever finds a complete, verified folder there:

1. under an exclusive file lock (``<data_dir>/<name>/.build.lock``), concurrent
   builders of the same data dir wait for each other;
2. TFDS writes the dataset into a private temp folder ``<data_dir>/<name>/.build-*``;
3. every record file's record count is read back and compared with TFDS's shard
   lengths, then the manifest (sizes, sha256, record counts;
   :mod:`budgetax.data._manifest`) is written last, and checked once in full;
4. the folder is renamed into place (a damaged folder it replaces is first renamed
   aside to ``.stale-*``, then deleted).

A process killed at any moment leaves either the previous state, no version
folder, or a complete one, plus ``.build-*`` / ``.stale-*`` leftovers that the
next call deletes. A version folder counts as prepared only when its manifest
verifies, so a folder damaged later (a truncated or missing record file, a broken
``dataset_info.json``, a missing manifest) is rebuilt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid

import numpy as np

from budgetax.data import _manifest
from budgetax.data._errors import DataDirError

# name used by budgetax -> TFDS registered name of its builder
EMBEDDED = {"digits": "budgetax_digits", "mnist1d": "budgetax_mnist1d"}
VERSION = "1.0.0"
_LOCK = ".build.lock"
_LEFTOVERS = (".build-", ".stale-", "incomplete.")
_logger = logging.getLogger("budgetax.data")


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

        # TFDS prints "Downloading and preparing dataset Unknown size ..." and
        # "... downloaded and prepared" to stdout: nothing is downloaded here.
        def _log_download_bytes(self):
            pass

        def _log_download_done(self):
            pass

    _Builder.name = tfds_name
    # A one-part module name makes TFDS skip its package-resource lookup of the
    # builder's code path (which needs the optional `importlib_resources`).
    _Builder.__module__ = "budgetax_embedded_data"
    _Builder.__name__ = _Builder.__qualname__ = tfds_name
    _BUILDERS[tfds_name] = _Builder
    return _Builder


_WHERE = "pass a directory with --data-dir, data_dir= or $BUDGETAX_DATA_DIR"


def resolve_data_dir(data_dir) -> str:
    """``data_dir`` as a path string (``~`` expanded); ``DataDirError`` if it is not a folder.

    A missing folder is fine (it is created when a dataset is built there).
    """
    if not isinstance(data_dir, str | os.PathLike):
        raise TypeError(f"data_dir must be a str or os.PathLike, got {data_dir!r}")
    path = os.path.expanduser(os.fspath(data_dir))
    if not isinstance(path, str) or not path:
        raise ValueError(f"data_dir must be a non-empty path, got {data_dir!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise DataDirError(f"the data dir {path!r} is a file, not a directory: {_WHERE} "
                           "(it is created if missing)")
    return path


def _make_dirs(path: str, data_dir: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        what = err.strerror or type(err).__name__
        raise DataDirError(f"cannot create {path!r} for the data dir {data_dir!r} ({what}): "
                           f"{_WHERE} that is writable") from err


@contextlib.contextmanager
def _file_lock(path: str, *, blocking: bool = True):
    """An exclusive advisory lock (``fcntl.flock``) on ``path``; yields whether it is held.

    The kernel releases it when the process dies, however it dies. Where ``fcntl``
    does not exist (non-POSIX) it yields True without locking.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield True
        return
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepared_dir(data_dir: str, tfds_name: str) -> str:
    """``<data_dir>/<tfds_name>/<VERSION>``, the folder a reader opens."""
    return os.path.join(data_dir, tfds_name, VERSION)


def problems(data_dir: str, tfds_name: str, *, checksums: bool = False) -> list[str]:
    """What is wrong with the prepared folder of an embedded dataset (``[]``: nothing)."""
    return _manifest.problems(prepared_dir(data_dir, tfds_name), checksums=checksums,
                              expect={"dataset": tfds_name, "version": VERSION})


def is_prepared(data_dir: str, tfds_name: str) -> bool:
    """Whether the embedded dataset is prepared and passes the cheap verification."""
    return not problems(data_dir, tfds_name)


def _leftovers(root: str) -> list[str]:
    try:
        return [e for e in os.listdir(root) if e.startswith(_LEFTOVERS)]
    except OSError:
        return []


def _remove_leftovers(root: str) -> None:
    """Deletes what killed builds left behind (call with the lock held)."""
    for entry in _leftovers(root):
        path = os.path.join(root, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _build(build_data_dir: str, tfds_name: str) -> str:
    """Builds the dataset with TFDS under ``build_data_dir``; returns its verified folder."""
    import tensorflow_datasets as tfds

    builder = builder_class(tfds_name)(data_dir=build_data_dir, file_format="array_record")
    dl_config = tfds.download.DownloadConfig(try_download_gcs=False)
    with _quiet_tfds():
        builder.download_and_prepare(download_config=dl_config)
    built = prepared_dir(build_data_dir, tfds_name)
    splits = {}
    for split, info in builder.info.splits.items():
        paths = [os.fspath(p) for p in info.filepaths]
        counts = [_manifest.count_records(p) for p in paths]
        if counts != [int(n) for n in info.shard_lengths]:
            raise RuntimeError(f"building {tfds_name}: the {split} files hold {counts} records, "
                               f"TFDS wrote {list(info.shard_lengths)}")
        splits[split] = int(info.num_examples)
    _manifest.write(built, dataset=tfds_name, version=VERSION, splits=splits)
    found = problems(build_data_dir, tfds_name, checksums=True)
    if found:
        raise RuntimeError(f"building {tfds_name}: the new files fail verification: {found}")
    return built


def _install(built: str, final: str, root: str) -> None:
    """Renames the built folder to ``final``, first moving a damaged ``final`` aside."""
    if os.path.lexists(final):
        stale = os.path.join(root, f".stale-{uuid.uuid4().hex}")
        os.replace(final, stale)
        os.replace(built, final)
        _fsync_dir(root)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(stale)
    else:
        os.replace(built, final)
        _fsync_dir(root)


def ensure_prepared(data_dir: str, tfds_name: str) -> None:
    """Makes sure the embedded dataset is prepared and verifies under ``data_dir``.

    The happy path only reads: it checks the manifest (sizes, and hashes of files
    whose modification time changed) and returns. Otherwise, under the build lock,
    it checks again (another process may have just built it), deletes leftovers of
    killed builds, builds into a temp folder and renames it into place (see the
    module docstring). A damaged folder is reported in a warning on the
    ``budgetax.data`` logger and replaced.

    Raises:
      DataDirError: the data dir is a file, or cannot be created or written.
    """
    data_dir = resolve_data_dir(data_dir)
    root = os.path.join(data_dir, tfds_name)
    final = prepared_dir(data_dir, tfds_name)
    if os.path.isdir(final) and not problems(data_dir, tfds_name):
        if _leftovers(root):  # a build killed after its rename: tidy up if nobody builds
            with contextlib.suppress(OSError), \
                    _file_lock(os.path.join(root, _LOCK), blocking=False) as held:
                if held:
                    _remove_leftovers(root)
        return
    _make_dirs(root, data_dir)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_file_lock(os.path.join(root, _LOCK)))
        except OSError as err:
            raise _not_writable(data_dir, err) from err
        damaged = problems(data_dir, tfds_name) if os.path.lexists(final) else []
        if os.path.lexists(final) and not damaged:
            return
        if damaged:
            _logger.warning("budgetax: the prepared dataset %s is damaged (%s); rebuilding it",
                            final, "; ".join(damaged))
        _remove_leftovers(root)
        try:
            tmp = tempfile.mkdtemp(prefix=".build-", dir=root)
        except OSError as err:
            raise _not_writable(data_dir, err) from err
        try:
            _install(_build(tmp, tfds_name), final, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _not_writable(data_dir: str, err: OSError) -> DataDirError:
    return DataDirError(f"cannot write to the data dir {data_dir!r} ({err.strerror or err}): "
                        f"{_WHERE} that is writable")


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
