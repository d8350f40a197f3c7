"""Crash-safe file output: a killed process never leaves a truncated results file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically: a temp file in the same folder, fsync, rename.

    Readers see either the old file or the new one, never a partial write. The
    file gets the usual permissions of a new file (``0o666`` less the umask), not
    the private ``0o600`` of a temp file.

    Example:
      >>> import tempfile, pathlib
      >>> p = atomic_write_text(pathlib.Path(tempfile.mkdtemp()) / "r.md", "# ok\\n")
      >>> p.read_text()
      '# ok\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``atomic_write_text(path, json.dumps(obj, indent=2) + "\\n")``."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")

