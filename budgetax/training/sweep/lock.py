"""The lock of a sweep directory: one sweep at a time writes into it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time

__all__ = ["LOCK_NAME", "SweepBusyError", "exclusive"]

LOCK_NAME = ".budgetax-sweep.lock"


class SweepBusyError(RuntimeError):
    """Another process is running a sweep in the same output directory."""


@contextlib.contextmanager
def exclusive(out_dir: str, writer: bool):
    """An exclusive lock on ``out_dir`` while the sweep runs (process 0 only).

    ``flock`` is released by the operating system when its process dies, so the
    lock a killed sweep leaves behind never blocks the next one.
    """
    if not writer:
        yield
        return
    path = os.path.join(out_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except IsADirectoryError:
        raise ValueError(f"out_dir {out_dir!r} has a directory where its lock file {LOCK_NAME} "
                         f"belongs; remove {path!r}, or use another output directory") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown process"
            raise SweepBusyError(f"out_dir {out_dir!r} is in use by another sweep ({holder}); "
                                 f"wait for it to finish, or use another output directory"
                                 ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
