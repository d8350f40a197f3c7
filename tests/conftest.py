"""Shared test fixtures."""

from __future__ import annotations

import contextlib
import os

import jax
import pytest

# the CLI's persistent compilation cache stays off in tests (no files under ~/.cache)
os.environ.setdefault("BUDGETAX_COMPILE_CACHE", "off")

# The suite's programs are small: its time is XLA's compile time, much of it in LLVM's
# optimisation passes, which the CPU backend's optimisation level 0 skips (the strategies
# tests take 65 s instead of 105 s). Results can differ from the default level's in their
# last bits, so every process of a test uses the same flags: subprocesses inherit them
# (``budgetax.launch.xla_flags`` keeps them when it sets a device count).
# ``BUDGETAX_TEST_XLA_OPT=default`` runs the suite at XLA's default level.
_TEST_XLA_FLAGS = ([] if os.environ.get("BUDGETAX_TEST_XLA_OPT") == "default"
                   else ["--xla_backend_optimization_level=0"])
_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(_flags + [f for f in _TEST_XLA_FLAGS if f not in _flags])


class TraceCounter:
    """``jax.jit`` that counts how many times the function is traced (= compiled).

    A cache hit does not retrace, so ``traces`` is the number of compilations.
    """

    def __init__(self, fn, **jit_kwargs):
        self.traces = 0

        def counted(*args, **kwargs):
            self.traces += 1
            return fn(*args, **kwargs)

        self._jitted = jax.jit(counted, **jit_kwargs)

    def __call__(self, *args, **kwargs):
        return self._jitted(*args, **kwargs)


@pytest.fixture
def counting_jit():
    """``counting_jit(fn, **jit_kwargs)`` -> a jitted callable with a ``.traces`` count."""
    return TraceCounter


# the metric names of the classification presets (budgetax.training.preset)
TRAIN_METRICS = ("loss", "accuracy", "grad_norm", "update_norm", "lr")
EVAL_METRICS = ("test_loss", "test_accuracy", "train_loss", "train_accuracy", "full_grad_norm")


_TRACES = {"n": 0}


def _count_core_traces():
    """Wraps the training core's step program so that every trace (= compilation) is counted."""
    from budgetax.training import core

    original = core._advance

    def counted(*args, **kwargs):
        _TRACES["n"] += 1
        return original(*args, **kwargs)

    core._advance = counted
    core._advance_program.cache_clear()


_count_core_traces()


class _Since:
    def __init__(self):
        self.start = _TRACES["n"]

    def __getitem__(self, key):
        assert key == "n"
        return _TRACES["n"] - self.start


@contextlib.contextmanager
def core_traces():
    """How often the training core's step program was traced (= compiled) inside the block.

    Yields ``traced`` with ``traced["n"]`` the count so far.
    """
    yield _Since()


def interrupt(monkeypatch, owner, name: str, run, *, call: int = 1, after: bool = False):
    """Runs ``run()`` with ``owner.name`` raising KeyboardInterrupt at its ``call``-th call.

    ``after``: the call completes first (e.g. a checkpoint is saved), then the
    interrupt comes, as a Ctrl-C right after it. ``owner.name`` is restored after.
    """
    original = getattr(owner, name)
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call and not after:
            raise KeyboardInterrupt
        out = original(*args, **kwargs)
        if calls["n"] == call:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(owner, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(owner, name, original)
