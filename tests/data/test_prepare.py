"""Prepared datasets: verification, rebuild of damaged or half-written ones, kills, concurrency,
and clear errors for a bad data dir or a damaged TFDS dataset."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from budgetax import cli, data
from budgetax.data import _builders, _manifest
from tests.data.helpers import TINY, build_tiny_tfds, built_data_dir, dataset, no_network

NAME, TFDS_NAME = "digits", "budgetax_digits"
TRAIN_FILE = f"{TFDS_NAME}-train.array_record-00000-of-00001"
TEST_FILE = f"{TFDS_NAME}-test.array_record-00000-of-00001"
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _prepared_copy(tmp_path) -> str:
    """A data dir holding a copy (modification times kept) of the cleanly built digits."""
    dst = tmp_path / "data"
    shutil.copytree(os.path.join(built_data_dir(), TFDS_NAME), dst / TFDS_NAME)
    return str(dst)


def _version_dir(data_dir) -> str:
    return _builders.prepared_dir(str(data_dir), TFDS_NAME)


def _assert_equals_clean(ds):
    ref = dataset(NAME)
    for a, b in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test),
                    (ref.x_train, ref.y_train, ref.x_test, ref.y_test), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ds.mean, ref.mean)
    np.testing.assert_array_equal(ds.std, ref.std)


def _assert_clean_folder(data_dir):
    """Verifies in full, and nothing but the version folder and the lock file is left."""
    data.verify(NAME, data_dir=data_dir, checksums=True)
    assert sorted(os.listdir(os.path.join(data_dir, TFDS_NAME))) == [".build.lock", "1.0.0"]


def _overwrite(path, text):
    with open(path, "w") as f:
        f.write(text)


def _flip_byte(path, offset=-100):
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


# what each damage does to the version folder, and a word the problem report must contain
DAMAGES = {
    "truncated_small": (lambda v: os.truncate(os.path.join(v, TRAIN_FILE), 1000), "1000 bytes"),
    "truncated_tail": (lambda v: os.truncate(os.path.join(v, TRAIN_FILE),
                                             os.path.getsize(os.path.join(v, TRAIN_FILE)) - 4096),
                       TRAIN_FILE),
    "missing_train": (lambda v: os.remove(os.path.join(v, TRAIN_FILE)), "missing"),
    "missing_test": (lambda v: os.remove(os.path.join(v, TEST_FILE)), "missing"),
    "garbage_info": (lambda v: _overwrite(os.path.join(v, "dataset_info.json"), "{garbage"),
                     "dataset_info.json"),
    "empty_info": (lambda v: _overwrite(os.path.join(v, "dataset_info.json"), ""),
                   "dataset_info.json"),
    "missing_info": (lambda v: os.remove(os.path.join(v, "dataset_info.json")),
                     "dataset_info.json"),
    "broken_features": (lambda v: _overwrite(os.path.join(v, "features.json"), "{"),
                        "features.json"),
    "flipped_byte": (lambda v: _flip_byte(os.path.join(v, TRAIN_FILE)), "sha256"),
    "missing_manifest": (lambda v: os.remove(os.path.join(v, _manifest.MANIFEST)), "missing"),
    "garbage_manifest": (lambda v: _overwrite(os.path.join(v, _manifest.MANIFEST), "[1, 2"),
                         "unreadable"),
    "half_written_manifest": (lambda v: _overwrite(os.path.join(v, _manifest.MANIFEST),
                                                   '{"format": 1, "files": {"x": '),
                              "unreadable"),
}


# ------------------------------------------------------------------ verification
def test_a_clean_build_verifies_and_its_manifest_describes_the_files(tmp_path):
    data_dir = str(tmp_path)
    with no_network():
        data.load(NAME, data_dir=data_dir)
    _assert_clean_folder(data_dir)
    v = _version_dir(data_dir)
    manifest = json.loads(open(os.path.join(v, _manifest.MANIFEST)).read())
    assert manifest["splits"] == {"train": 1437, "test": 360}
    assert set(manifest["files"]) == {TRAIN_FILE, TEST_FILE, "dataset_info.json", "features.json"}
    assert manifest["files"][TRAIN_FILE]["records"] == 1437
    assert manifest["files"][TEST_FILE]["records"] == 360
    for name, entry in manifest["files"].items():
        assert entry["size"] == os.path.getsize(os.path.join(v, name))
        assert entry["sha256"] == _manifest.sha256(os.path.join(v, name))


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_embedded_dataset_is_reported_and_rebuilt(tmp_path, damage, caplog):
    data_dir = _prepared_copy(tmp_path)
    data.verify(NAME, data_dir=data_dir)
    apply, word = DAMAGES[damage]
    apply(_version_dir(data_dir))
    with pytest.raises(data.DatasetCorruptError) as err:
        data.verify(NAME, data_dir=data_dir)
    assert word in str(err.value) and _version_dir(data_dir) in str(err.value)
    with caplog.at_level(logging.WARNING, logger="budgetax.data"), no_network():
        ds = data.load(NAME, data_dir=data_dir)
    assert any("damaged" in r.getMessage() and word in r.getMessage() for r in caplog.records)
    _assert_equals_clean(ds)
    _assert_clean_folder(data_dir)


def test_a_folder_prepared_without_a_manifest_is_rebuilt(tmp_path):
    """A folder a build left with dataset_info.json but no manifest is not prepared."""
    data_dir = _prepared_copy(tmp_path)
    v = _version_dir(data_dir)
    os.remove(os.path.join(v, _manifest.MANIFEST))
    os.truncate(os.path.join(v, TEST_FILE), 70000)
    assert os.path.isfile(os.path.join(v, "dataset_info.json"))
    assert not _builders.is_prepared(data_dir, TFDS_NAME)
    _assert_equals_clean(data.load(NAME, data_dir=data_dir))
    _assert_clean_folder(data_dir)


def test_the_happy_path_does_not_rebuild_nor_hash_unchanged_files(tmp_path, monkeypatch):
    data_dir = _prepared_copy(tmp_path)

    def no_build(*args):
        raise AssertionError("rebuilt a dataset that verifies")

    hashed = []
    real_sha = _manifest.sha256
    monkeypatch.setattr(_builders, "_build", no_build)
    monkeypatch.setattr(_manifest, "sha256", lambda p: hashed.append(p) or real_sha(p))
    _assert_equals_clean(data.load(NAME, data_dir=data_dir))
    assert hashed == []  # sizes and modification times only
    # a touched file (same bytes, new modification time) is hashed, matches, is kept
    path = os.path.join(_version_dir(data_dir), TRAIN_FILE)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    _assert_equals_clean(data.load(NAME, data_dir=data_dir))
    assert hashed == [path]


def test_same_size_damage_with_the_old_mtime_needs_the_full_check(tmp_path):
    """The documented limit of the cheap check, and what checksums=True adds."""
    data_dir = _prepared_copy(tmp_path)
    path = os.path.join(_version_dir(data_dir), TRAIN_FILE)
    st = os.stat(path)
    _flip_byte(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    data.verify(NAME, data_dir=data_dir, checksums=False)
    with pytest.raises(data.DatasetCorruptError, match="sha256"):
        data.verify(NAME, data_dir=data_dir, checksums=True)


def test_verify_of_what_is_not_prepared(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError, match="load"):
        data.verify(NAME, data_dir=str(tmp_path))
    with pytest.raises(TypeError, match="checksums.*1"):
        data.verify(NAME, data_dir=str(tmp_path), checksums=1)
    with pytest.raises(data.DatasetNotPreparedError, match="tfds build mnist"):
        data.verify("tfds:mnist", data_dir=str(tmp_path))


def test_leftovers_of_killed_builds_are_removed(tmp_path):
    data_dir = _prepared_copy(tmp_path)
    root = os.path.join(data_dir, TFDS_NAME)
    for junk in (".build-abc/budgetax_digits/1.0.0", ".stale-def", "incomplete.XYZ_1.0.0"):
        os.makedirs(os.path.join(root, junk))
        _overwrite(os.path.join(root, junk, "f"), "x")
    _assert_equals_clean(data.load(NAME, data_dir=data_dir))
    _assert_clean_folder(data_dir)


def test_an_embedded_name_through_tfds_is_verified_too(tmp_path):
    data_dir = _prepared_copy(tmp_path)
    os.truncate(os.path.join(_version_dir(data_dir), TRAIN_FILE), 100)
    ds = data.load(f"tfds:{TFDS_NAME}", data_dir=data_dir)
    np.testing.assert_array_equal(ds.x_train, dataset(NAME).x_train)
    _assert_clean_folder(data_dir)


# ------------------------------------------------------------------ messages
def test_preparing_prints_nothing(tmp_path, capfd):
    """No 'Downloading ... Unknown size' (nothing is downloaded), no progress bars."""
    with no_network():
        ds = data.load(NAME, data_dir=str(tmp_path))
    assert ds.num_train == 1437
    out, err = capfd.readouterr()
    assert out == "" and "Downloading" not in err and "Unknown size" not in err
    assert "prepared" not in err and "examples/s" not in err


def test_the_not_prepared_message_names_the_cli_flag(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.load("tfds:mnist", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "--data-dir / $BUDGETAX_DATA_DIR" in msg
    # the only --data_dir is the flag of the `tfds build` command it quotes
    assert msg.count("--data_dir") == 1 and f"tfds build mnist --file_format=array_record " \
        f"--data_dir={tmp_path}" in msg


# ------------------------------------------------------------------ bad data dir
@pytest.mark.parametrize("name", [NAME, "mnist1d", "tfds:mnist"])
def test_a_data_dir_that_is_a_file_is_one_clear_error(tmp_path, name):
    path = tmp_path / "not_a_dir"
    path.write_text("x")
    with pytest.raises(data.DataDirError) as err:
        data.load(name, data_dir=str(path))
    assert isinstance(err.value, ValueError)
    msg = str(err.value)
    assert repr(str(path)) in msg and "is a file" in msg and "--data-dir" in msg
    with pytest.raises(data.DataDirError, match="is a file"):
        data.verify(name, data_dir=path)  # PathLike accepted
    assert path.read_text() == "x"


def test_a_data_dir_below_a_file_is_one_clear_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(data.DataDirError, match=r"cannot create.*file/sub.*--data-dir"):
        data.load(NAME, data_dir=str(path / "sub"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_data_dir_is_one_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(data.DataDirError, match="writable"):
            data.load(NAME, data_dir=str(ro))
    finally:
        ro.chmod(0o755)


def test_bad_data_dir_arguments():
    with pytest.raises(TypeError, match="data_dir.*3"):
        data.load(NAME, data_dir=3)
    with pytest.raises(ValueError, match="data_dir.*''"):
        data.load(NAME, data_dir="")


def test_the_cli_prints_a_data_dir_error_as_one_line(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    code = cli.main(["demo", "--data-dir", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("budgetax demo: error: ")
    assert str(path) in err and "Traceback" not in err


# ------------------------------------------------------------------ tfds datasets
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    build_tiny_tfds(str(d))
    return str(d)


def _tiny_copy(tiny_dir, tmp_path):
    shutil.copytree(tiny_dir, tmp_path / "tiny")
    return str(tmp_path / "tiny"), str(tmp_path / "tiny" / TINY / "0.1.0")


TINY_TRAIN = f"{TINY}-train.array_record-00000-of-00001"
TFDS_DAMAGES = {
    "truncated_small": (lambda v: os.truncate(os.path.join(v, TINY_TRAIN), 1000), "unreadable"),
    "truncated_tail": (lambda v: os.truncate(os.path.join(v, TINY_TRAIN),
                                             os.path.getsize(os.path.join(v, TINY_TRAIN)) - 100),
                       "unreadable"),
    "missing": (lambda v: os.remove(os.path.join(v, TINY_TRAIN)), "is missing"),
    "garbage_info": (lambda v: _overwrite(os.path.join(v, "dataset_info.json"), "{garbage"),
                     "metadata cannot be read"),
    "missing_info": (lambda v: os.remove(os.path.join(v, "dataset_info.json")),
                     "metadata cannot be read"),
}


def test_a_prepared_tfds_dataset_loads(tiny_dir):
    ds = data.load(f"tfds:{TINY}", data_dir=tiny_dir)
    assert ds.num_train == 48 and ds.num_test == 16 and ds.input_shape == (3,)
    data.verify(f"tfds:{TINY}", data_dir=tiny_dir)


@pytest.mark.parametrize("damage", sorted(TFDS_DAMAGES))
def test_a_damaged_tfds_dataset_is_one_clear_error(tiny_dir, tmp_path, damage):
    data_dir, version_dir = _tiny_copy(tiny_dir, tmp_path)
    apply, word = TFDS_DAMAGES[damage]
    apply(version_dir)
    before = sorted(os.walk(data_dir))
    for fn in (data.load, data.verify):
        with pytest.raises(data.DatasetCorruptError) as err:
            fn(f"tfds:{TINY}", data_dir=data_dir)
        msg = str(err.value)
        assert isinstance(err.value, ValueError) and word in msg
        assert os.path.join(data_dir, TINY) in msg and "prepare the dataset again" in msg
    assert sorted(os.walk(data_dir)) == before  # a user's TFDS folder is left as it is


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_record_read_error_after_loading_names_the_folder(tiny_dir, tmp_path, split):
    """Files damaged after load: the train reader is open already (it read the statistics),
    the test reader opens on first use; both end in one clear error."""
    data_dir, version_dir = _tiny_copy(tiny_dir, tmp_path)
    ds = data.load(f"tfds:{TINY}", data_dir=data_dir)
    os.truncate(os.path.join(version_dir, f"{TINY}-{split}.array_record-00000-of-00001"), 10)
    with pytest.raises(data.DatasetCorruptError, match="cannot read the records") as err:
        ds.gather(split, np.arange(4))
    assert version_dir in str(err.value)


# ------------------------------------------------------------------ kills and concurrency
_CHILD = textwrap.dedent("""
    import hashlib, os, signal, sys, time
    data_dir, kill_at = sys.argv[1], sys.argv[2]
    final = os.path.join(data_dir, "budgetax_digits", "1.0.0")
    if kill_at != "none":
        # kill_at = "<rename>:<before|after>": SIGKILL around one rename of the build
        which, when = kill_at.split(":")
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            src, dst = os.fspath(src), os.fspath(dst)
            hit = {"manifest": os.path.basename(dst) == "budgetax_manifest.json",
                   "retire": src == final, "install": dst == final}[which]
            if hit and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, *args, **kwargs)
            if hit and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
    import tensorflow_datasets  # noqa: F401  (imported before "ready": delays hit the build)
    from budgetax import data
    from budgetax.data import _builders
    real_build = _builders._build

    def build(*args):
        print("built", flush=True)
        return real_build(*args)

    _builders._build = build
    print("ready", flush=True)
    barrier = sys.argv[3] if len(sys.argv) > 3 else ""
    while barrier and not os.path.exists(barrier):
        time.sleep(0.005)
    ds = data.load("digits", data_dir=data_dir)
    h = hashlib.sha256()
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        h.update(a.tobytes())
    print("digest", h.hexdigest(), flush=True)
""")


def _child(data_dir, kill_at="none", barrier=""):
    args = [sys.executable, "-c", _CHILD, str(data_dir), kill_at] + ([barrier] if barrier else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=REPO)


def _wait_ready(proc):
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()[-2000:]


def _clean_digest():
    import hashlib

    ref = dataset(NAME)
    h = hashlib.sha256()
    for a in (ref.x_train, ref.y_train, ref.x_test, ref.y_test):
        h.update(a.tobytes())
    return h.hexdigest()


def _damage(data_dir):
    os.truncate(os.path.join(_version_dir(data_dir), TRAIN_FILE), 5000)


def _recover_and_check(data_dir):
    with no_network():
        ds = data.load(NAME, data_dir=str(data_dir))
    _assert_equals_clean(ds)
    _assert_clean_folder(str(data_dir))


@pytest.mark.parametrize("kill_at", ["manifest:before", "manifest:after", "retire:before",
                                     "retire:after", "install:before", "install:after"])
def test_a_rebuild_killed_at_each_rename_is_detected_and_rebuilt(tmp_path, kill_at):
    data_dir = _prepared_copy(tmp_path)
    _damage(data_dir)
    proc = _child(data_dir, kill_at)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert "built" in out and "digest" not in out
    _recover_and_check(data_dir)


@pytest.mark.parametrize("start,seed", [("fresh", 0), ("fresh", 1), ("fresh", 2),
                                        ("damaged", 3), ("damaged", 4), ("damaged", 5)])
def test_preparation_killed_after_a_random_delay_is_rebuilt(tmp_path, start, seed):
    data_dir = _prepared_copy(tmp_path) if start == "damaged" else str(tmp_path / "data")
    if start == "damaged":
        _damage(data_dir)
    # a digits build takes about 0.4 s: kill somewhere in it (or just after it)
    delay = float(np.random.default_rng(seed).uniform(0.0, 0.6))
    proc = _child(data_dir)
    _wait_ready(proc)
    assert proc.stdout.readline().strip() == "built"  # the build has started
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=300)
    _recover_and_check(data_dir)


def test_two_processes_preparing_one_data_dir_build_once(tmp_path):
    data_dir, barrier = tmp_path / "data", tmp_path / "go"
    procs = [_child(data_dir, barrier=str(barrier)) for _ in range(2)]
    for p in procs:
        _wait_ready(p)
    barrier.write_text("")
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        outs.append(out)
    assert sum(out.count("built") for out in outs) == 1
    digests = [line.split()[1] for out in outs for line in out.splitlines()
               if line.startswith("digest")]
    assert digests == [_clean_digest()] * 2
    _assert_clean_folder(str(data_dir))
