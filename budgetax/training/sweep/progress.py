"""The sweep's progress display: a rich bar on a terminal, one line per group otherwise."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """A rich progress bar (run-steps, steps/s, ETA) on a terminal; one line per group otherwise."""

    def __init__(self, total_run_steps: int, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self.total = total_run_steps
        if enabled and sys.stderr.isatty():
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
                             TextColumn("ETA"), TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task("sweep", total=total_run_steps, rate="")
            self._bar.start()
        self._t0 = time.perf_counter()
        self._done = 0

    def describe(self, text: str):
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self, n: int):
        self._done += n
        if self._bar is not None:
            rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f}/s")

    def line(self, text: str):
        if self._bar is not None:
            self._bar.console.print(text)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.stop()
