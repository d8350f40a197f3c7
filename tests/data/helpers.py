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
