"""The sweep's progress display: a rich bar on a terminal, lines otherwise.

On a terminal a rich bar shows the run-steps done, the rate and the ETA. Otherwise
(output to a file or a pipe) a line is printed per finished group and, between
them, at most every :attr:`Progress.line_every` seconds at a segment's end (run-steps
done, rate, elapsed time, ETA), so a log shows a long group advancing.

Compilation (tracing, lowering and XLA compilation of a budget's program: the
longest wait of a small sweep) is measured apart from training: the bar says
``compiling…`` in place of its rate, rates exclude it, and each group's line says
how much of its time was compiling. It comes from JAX's monitoring events
(:mod:`jax.monitoring`), heard while the display is open: nothing in the
training loop needs to say when it compiles.
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["COMPILE_EVENTS", "Progress"]


def _clock(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"

# JAX records a scalar under each of these names when the step starts and a duration
# when it ends (jax._src.dispatch.log_elapsed_time)
COMPILE_EVENTS = frozenset({
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
})
COMPILING = "compiling…"


class Progress:
    """A rich progress bar (run-steps, steps/s, ETA) on a terminal; lines otherwise.

    While JAX traces, lowers or compiles a program the bar's rate reads
    ``compiling…``; :meth:`line` appends the compilation seconds since the previous
    line (when at least 0.1 s). ``compile_seconds`` is the total, measured while the
    display is ``enabled`` or, without a display, when ``listen`` (for the timing
    stored with the results).
    """

    line_every = 60.0  # seconds between two progress lines when not on a terminal

    def __init__(self, total_run_steps: int, enabled: bool, *, listen: bool | None = None):
        self.enabled = enabled
        self._bar = None
        self.total = total_run_steps
        self.compile_seconds = 0.0
        self._compile_since_line = 0.0
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._listeners = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as _Bar

            self._bar = _Bar(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn("run-steps"),
                             TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                             TextColumn("ETA"), TimeRemainingColumn(), transient=False,
                             console=Console(stderr=True))  # stdout keeps the table only
            self._task = self._bar.add_task("sweep", total=total_run_steps, rate="")
            self._bar.start()
        self._t0 = self._last_line = time.perf_counter()
        self._done = 0
        self._rate = ""
        if enabled if listen is None else listen:
            self._listen()

    @property
    def compiling(self) -> bool:
        """Whether JAX is tracing, lowering or compiling right now."""
        return self._depth > 0

    def _listen(self):
        try:
            from jax import monitoring
        except ImportError:  # pragma: no cover - jax is a dependency
            return

        def started(event, value, **kwargs):
            if event in COMPILE_EVENTS:
                try:
                    self._compile_started()
                except Exception:  # noqa: BLE001, S110 - never break a compilation
                    pass

        def finished(event, seconds, **kwargs):
            if event in COMPILE_EVENTS:
                try:
                    self._compile_finished(event, seconds)
                except Exception:  # noqa: BLE001, S110 - never break a compilation
                    pass

        monitoring.register_scalar_listener(started)
        monitoring.register_event_duration_secs_listener(finished)
        self._listeners = (monitoring, started, finished)

    def _compile_started(self):
        with self._depth_lock:
            self._depth += 1
            first = self._depth == 1
        if first and self._bar is not None:
            self._bar.update(self._task, rate=COMPILING)

    def _compile_finished(self, event, seconds):
        with self._depth_lock:
            self._depth = max(0, self._depth - 1)
            outer = self._depth == 0
        if outer:  # nested traces are counted once, by the outermost
            self.compile_seconds += seconds
            self._compile_since_line += seconds
            if self._bar is not None:
                self._bar.update(self._task, rate=self._rate)

    def add(self, run_steps: int):
        """``run_steps`` more to do (planned while the sweep runs)."""
        self.total += run_steps
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)

    def describe(self, text: str):
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    @property
    def seconds(self) -> float:
        """Wall time since the display opened."""
        return time.perf_counter() - self._t0

    def advance(self, n: int):
        """``n`` more run-steps done (trained, or restored from a checkpoint)."""
        self._done += n
        training = max(self.seconds - self.compile_seconds, 1e-9)
        self._rate = f"{self._done / training:,.0f}/s"
        if self._bar is not None:
            self._bar.update(self._task, advance=n,
                             rate=COMPILING if self.compiling else self._rate)
        elif self.enabled and time.perf_counter() - self._last_line >= self.line_every:
            left = self.total - self._done
            eta = (f", ETA {_clock(left * training / max(self._done, 1))}" if left > 0
                   else "")
            self.line(f"  {self._done:,}/{self.total:,} run-steps "
                      f"({self._done / max(self.total, 1):.0%}), {self._done / training:,.0f} "
                      f"run-steps/s, {_clock(self.seconds)} elapsed{eta}")

    def line(self, text: str, *, compile_noted: bool = False):
        """Prints ``text`` (with the compilation seconds since the previous line, unless
        ``compile_noted``: the text says them already)."""
        if self._compile_since_line >= 0.1 and not compile_noted:
            text += f"; compiling took {self._compile_since_line:.1f}s"
        self._compile_since_line = 0.0
        self._last_line = time.perf_counter()
        if self._bar is not None:
            self._bar.console.print(text)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def group_done(self, group, results: list[dict], timing: dict):
        """The line of a stored group (a planned group of :mod:`budgetax.training.sweep.plan`)."""
        import jax

        n_div = sum(r["status"] == "diverged" for r in results)
        n_pruned = sum(r["status"] == "pruned" for r in results)
        what = {"branch": f" branched at step {getattr(group, 'branch_step', None)}",
                "halving": f", {n_pruned} pruned"}.get(group.kind, "")
        self.line(f"budget {group.budget_fraction:>5.0%} ({group.budget:>6} steps) "
                  f"{len(results):>4} runs{what}, {timing['run_steps_per_second']:,.0f} "
                  f"run-steps/s on {timing['devices']} device(s)"
                  + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
                  + f", {timing['seconds']:.1f}s"
                  + (f" ({timing['compile_seconds']:.1f}s of it compiling)"
                     if timing.get("compile_seconds", 0.0) >= 0.1 else "")
                  + (f", {n_div} diverged" if n_div else "")
                  + (" (resumed)" if timing["resumed"] else ""), compile_noted=True)

    def close(self):
        if self._listeners is not None:
            monitoring, started, finished = self._listeners
            self._listeners = None
            try:
                monitoring.unregister_scalar_listener(started)
                monitoring.unregister_event_duration_listener(finished)
            except (AssertionError, ValueError, AttributeError):  # cleared by someone else
                pass
        if self._bar is not None:
            self._bar.stop()
