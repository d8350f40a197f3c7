"""Tests of the sweep's progress display: compilation is shown while it happens."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
from jax import monitoring

from budgetax.training.sweep import progress as progress_mod
from budgetax.training.sweep.progress import COMPILING, Progress


def _fresh_program():
    """A function JAX has not compiled yet in this process (a new constant each time)."""
    k = float(np.random.default_rng().integers(1, 10**9))
    return jax.jit(lambda x: jnp.sin(x * k) @ jnp.cos(x.T + k))


def test_the_bar_says_compiling_while_jax_compiles(monkeypatch):
    monkeypatch.setattr(progress_mod.sys, "stderr", _Tty())
    bar = Progress(100, enabled=True)
    seen = []

    def during(event, value, **kwargs):  # registered after the display's own listener
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append((bar.compiling, bar._bar.tasks[0].fields["rate"]))

    monitoring.register_scalar_listener(during)
    try:
        bar.advance(10)
        _fresh_program()(jnp.ones((8, 8))).block_until_ready()
        assert seen and seen[0] == (True, COMPILING)
        assert not bar.compiling and bar._bar.tasks[0].fields["rate"].endswith("/s")
        assert bar.compile_seconds > 0
        assert bar._bar.console.stderr  # the bar on stderr: stdout keeps the table
    finally:
        monitoring.unregister_scalar_listener(during)
        bar.close()


def test_each_line_says_how_long_it_compiled(capsys):
    bar = Progress(100, enabled=True)  # not a terminal: one line per group
    try:
        _fresh_program()(jnp.ones((64, 64))).block_until_ready()
        bar._compile_since_line = max(bar._compile_since_line, 0.1)  # a slow compile
        bar.line("budget 100% (10 steps)")
        bar.line("budget 50% (5 steps)")  # nothing compiled since the previous line
    finally:
        bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("budget 100% (10 steps); compiling took ")
    assert lines[1] == "budget 50% (5 steps)"


def test_the_display_stops_listening_when_closed():
    bar = Progress(10, enabled=True)
    bar.close()
    bar.close()  # twice is harmless
    seconds = bar.compile_seconds
    _fresh_program()(jnp.ones((4, 4))).block_until_ready()
    assert bar.compile_seconds == seconds
    quiet = Progress(10, enabled=False)  # disabled: no listener at all
    assert quiet._listeners is None
    quiet.close()


class _Tty(io.StringIO):
    def isatty(self):
        return True
