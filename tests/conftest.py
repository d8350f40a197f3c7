"""Shared test fixtures."""

from __future__ import annotations

import jax
import pytest


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
