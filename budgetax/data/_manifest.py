r"""The manifest of a prepared dataset folder: what makes a folder count as prepared.

A build writes ``budgetax_manifest.json`` into the dataset's version folder last,
atomically (temp file, fsync, rename), after every other file is complete:

.. code-block:: json

   {"format": 1, "dataset": "budgetax_digits", "version": "1.0.0",
    "splits": {"train": 1437, "test": 360},
    "files": {"dataset_info.json": {"size": 835, "mtime_ns": 1700000000000000000,
                                    "sha256": "..."},
              "budgetax_digits-train.array_record-00000-of-00001":
                  {"size": 393216, "mtime_ns": ..., "sha256": "...", "records": 1437},
              ...}}

A folder without a readable manifest is not prepared. :func:`problems` checks it:

- cheap, on every load: every listed file exists with its size; a file whose
  modification time differs from the recorded one (copied, touched or rewritten
  in place) is hashed and must match its sha256;
- full (``checksums=True``, run once right after a build and by
  :func:`budgetax.data.verify`): every sha256, and the record count of every
  ``array_record`` file read back from its footer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any

from budgetax import _io

MANIFEST = "budgetax_manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


def sha256(path: str) -> str:
    """The sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def count_records(path: str) -> int | None:
    """Records of an ``array_record`` file, read from its footer; ``None`` if unreadable."""
    from array_record.python import array_record_module

    try:
        reader = array_record_module.ArrayRecordReader(path)
    except (OSError, RuntimeError, ValueError):
        return None
    try:
        return int(reader.num_records()) if reader.ok() else None
    except (OSError, RuntimeError, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            reader.close()


def is_record_file(name: str) -> bool:
    return ".array_record-" in name


def write(version_dir: str, *, dataset: str, version: str, splits: dict[str, int]) -> dict:
    """Flushes every file of ``version_dir`` to disk, then writes its manifest (last, atomically).

    Returns:
      The manifest written.
    """
    files: dict[str, dict[str, Any]] = {}
    for name in sorted(os.listdir(version_dir)):
        path = os.path.join(version_dir, name)
        if name == MANIFEST or not os.path.isfile(path):
            continue
        _fsync(path)
        st = os.stat(path)
        entry: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                 "sha256": sha256(path)}
        if is_record_file(name):
            entry["records"] = count_records(path)
        files[name] = entry
    manifest = {"format": FORMAT, "dataset": dataset, "version": version,
                "splits": dict(splits), "files": files}
    _io.atomic_write_json(os.path.join(version_dir, MANIFEST), manifest)
    return manifest


def read(version_dir: str) -> tuple[dict | None, str | None]:
    """``(manifest, None)``, or ``(None, why)`` when it is missing or unreadable."""
    path = os.path.join(version_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None, f"{MANIFEST} is missing (the build did not finish)"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"{MANIFEST} is unreadable ({err})"
    ok = (isinstance(manifest, dict) and manifest.get("format") == FORMAT
          and isinstance(manifest.get("files"), dict) and manifest["files"])
    if not ok:
        return None, f"{MANIFEST} is not a format-{FORMAT} manifest"
    return manifest, None


def problems(version_dir: str, *, checksums: bool = False,
             expect: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with a prepared folder (``[]`` if nothing).

    Args:
      version_dir: the dataset's version folder.
      checksums: also hash every file and count the records of every record file.
      expect: manifest fields that must have these values (e.g. ``{"dataset": ...}``).

    Returns:
      One line per problem, each naming the file.
    """
    if not os.path.isdir(version_dir):
        return [f"{version_dir} is not a folder"]
    manifest, why = read(version_dir)
    if manifest is None:
        return [why]
    out = [f"{MANIFEST}: {k} is {manifest.get(k)!r}, expected {v!r}"
           for k, v in (expect or {}).items() if manifest.get(k) != v]
    for name, entry in manifest["files"].items():
        path = os.path.join(version_dir, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out.append(f"{name} is missing")
            continue
        except OSError as err:
            out.append(f"{name} cannot be read ({err.strerror})")
            continue
        try:
            size, mtime, digest = int(entry["size"]), entry.get("mtime_ns"), entry["sha256"]
        except (KeyError, TypeError, ValueError):
            out.append(f"{MANIFEST}: the entry of {name} is malformed")
            continue
        if st.st_size != size:
            out.append(f"{name} has {st.st_size} bytes, expected {size}")
            continue
        if checksums or st.st_mtime_ns != mtime:
            try:
                actual = sha256(path)
            except OSError as err:
                out.append(f"{name} cannot be read ({err.strerror})")
                continue
            if actual != digest:
                out.append(f"{name} has sha256 {actual[:12]}..., expected {digest[:12]}...")
                continue
        if checksums and "records" in entry:
            n = count_records(path)
            if n != entry["records"]:
                out.append(f"{name} has {n} readable records, expected {entry['records']}")
    return out
