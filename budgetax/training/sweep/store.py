"""The sweep results store: one SQLite file (stdlib ``sqlite3``), one row per run.

Tables:

- ``meta(key, value)``: the sweep spec (``spec``, JSON), the task's identity
  (``task``: name and config), the metric names (``metrics``: per step and per
  evaluation), the run plan (``plan``, JSON: which runs share a compiled program)
  and the store version.
- ``runs``: one row per run, created ``pending`` when the sweep is planned and
  completed (``done``, ``diverged`` or, with successive halving, ``pruned``) in
  the same transaction as the other runs of its program; a ``law`` sweep marks
  the runs its law predicted and nobody trained ``predicted``. Columns: the run's
  config (``budget_fraction``, ``budget``, ``schedule``, ``peak_lr``, ``seed``,
  ``group_id``), ``status``, ``diverged_step``, ``pruned_step``, JSON
  ``final`` / ``best`` metrics, the per-evaluation history (``eval_steps``,
  ``eval_history``: JSON) and the per-step training
  curves (``curves``: float32 little-endian bytes, ``[len(metrics["train"]), budget]``).
- ``groups``: per compiled program, wall time (``seconds``, of which
  ``compile_seconds`` compiling), throughput excluding compilation and the
  run-steps it trained (``steps``; a branched or pruned sweep trains fewer than
  its runs' budgets), kept apart from ``runs`` because timings differ between two
  otherwise identical sweeps.
- ``sessions``: one row per call that trained into the store (a resumed sweep has
  several): when it started, on which host, its wall time, compilation time and
  the run-steps of the groups it stored, updated when a group starts, is
  checkpointed or is stored, and when the call ends (a killed call loses the time
  since the last of these).

SQLite transactions are atomic and durable, so a process killed at any moment
leaves every run either pending or complete, never half-written.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from typing import Any

import numpy as np

__all__ = ["STORE_NAME", "Store", "StoreError", "decode_curves", "encode_curves"]

STORE_NAME = "results.sqlite"
VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY,
  idx INTEGER NOT NULL,
  group_id TEXT NOT NULL,
  budget_fraction REAL NOT NULL,
  budget INTEGER NOT NULL,
  schedule TEXT NOT NULL,
  peak_lr REAL NOT NULL,
  seed INTEGER NOT NULL,
  status TEXT NOT NULL,
  diverged_step INTEGER,
  final TEXT,
  best TEXT,
  eval_steps TEXT,
  eval_history TEXT,
  curves BLOB,
  pruned_step INTEGER
);
CREATE TABLE IF NOT EXISTS groups (
  group_id TEXT PRIMARY KEY,
  budget INTEGER NOT NULL,
  runs INTEGER NOT NULL,
  padded_runs INTEGER NOT NULL,
  devices INTEGER NOT NULL,
  seconds REAL NOT NULL,
  run_steps_per_second REAL NOT NULL,
  resumed INTEGER NOT NULL,
  steps INTEGER,
  compile_seconds REAL
);
CREATE TABLE IF NOT EXISTS sessions (
  session INTEGER PRIMARY KEY,
  started TEXT NOT NULL,
  host TEXT NOT NULL,
  seconds REAL NOT NULL,
  compile_seconds REAL NOT NULL,
  run_steps INTEGER NOT NULL
);
"""

RUN_COLUMNS = ("run_id", "idx", "group_id", "budget_fraction", "budget", "schedule", "peak_lr",
               "seed", "status", "diverged_step", "pruned_step", "final", "best", "eval_steps",
               "eval_history", "curves")
GROUP_COLUMNS = ("group_id", "budget", "runs", "padded_runs", "devices", "seconds",
                 "run_steps_per_second", "resumed", "steps", "compile_seconds")
SESSION_COLUMNS = ("session", "started", "host", "seconds", "compile_seconds", "run_steps")
# columns added after the first version-2 stores: read as NULL from those, added when written
_ADDED = (("runs", "pruned_step", "INTEGER"), ("groups", "steps", "INTEGER"),
          ("groups", "compile_seconds", "REAL"))


def encode_curves(curves: dict[str, np.ndarray], names: tuple[str, ...]) -> bytes:
    """``{name: [T]}`` -> float32 little-endian bytes of ``[len(names), T]`` (deterministic)."""
    return np.stack([np.asarray(curves[n], np.float32) for n in names]).astype("<f4").tobytes()


def decode_curves(blob: bytes, names: tuple[str, ...], budget: int) -> dict[str, np.ndarray]:
    """The inverse of :func:`encode_curves`."""
    arr = np.frombuffer(blob, "<f4").reshape(len(names), budget)
    return {n: arr[i].copy() for i, n in enumerate(names)}


class StoreError(ValueError):
    """A results store that cannot be used (not a store, damaged, another version)."""


class Store:
    """The SQLite results store of one sweep directory.

    Args:
      path: the ``.sqlite`` file (created with its tables if missing).
      readonly: open an existing store for reading only (a sweep on read-only media).

    Raises:
      StoreError: the file is not a budgetax results store, is damaged, or was
        written by another store version; the message names the file and what to do.
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False):
        self.path = os.fspath(path)
        try:
            if readonly:
                uri = "file:" + os.path.abspath(self.path) + "?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=60.0)
            else:
                self._conn = sqlite3.connect(self.path, timeout=60.0)
                self._conn.execute("PRAGMA synchronous=FULL")
                with self._conn:
                    self._conn.executescript(_SCHEMA)
            self._columns = {t: {row[1] for row in self._conn.execute(
                f"PRAGMA table_info({t})")} for t in ("runs", "groups")}
            if not readonly:
                for table, col, typ in _ADDED:
                    if col not in self._columns[table]:
                        with self._conn:
                            self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {typ}")
                        self._columns[table].add(col)
            (check,) = self._conn.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            version = self.get_meta("version")
            self._inode = os.stat(self.path).st_ino
        except sqlite3.OperationalError as err:
            if "readonly" in str(err) or "unable to open" in str(err):
                raise StoreError(
                    f"cannot {'open' if readonly else 'write'} {self.path} ({err}); choose a "
                    f"writable output directory") from None
            raise StoreError(
                f"{self.path} is not a readable budgetax results store ({err}); move it away "
                f"or use another output directory") from None
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"{self.path} is not a readable budgetax results store ({err}); move it away "
                f"(the sweep in that directory must then be run again) or use another "
                f"output directory") from None
        if version is not None and version != VERSION:
            self._conn.close()
            raise StoreError(f"{self.path} was written by results-store version {version}, this "
                             f"budgetax reads version {VERSION}; use another output directory")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------- meta
    def get_meta(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def initialise(self, meta: dict, runs: list[dict]) -> None:
        """Writes the meta entries (spec, task, metrics, plan) and every run as ``pending``.

        One transaction: a killed process leaves either nothing or the whole plan.
        """
        with self._conn:
            self._conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("version", json.dumps(VERSION))]
                + [(k, json.dumps(v, sort_keys=True)) for k, v in meta.items()])
            self._conn.executemany(
                "INSERT INTO runs(run_id, idx, group_id, budget_fraction, budget, schedule, "
                "peak_lr, seed, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                [(r["run_id"], r["idx"], r["group_id"], r["budget_fraction"], r["budget"],
                  r["schedule"], r["peak_lr"], r["seed"]) for r in runs])

    def extend(self, meta: dict, idx: dict[str, int], runs: list[dict]) -> None:
        """Extends the sweep: new meta entries (spec, plan), new plan indices of the stored
        runs (``{run_id: idx}``) and the new runs, ``pending``, in one transaction."""
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                   [(k, json.dumps(v, sort_keys=True)) for k, v in meta.items()])
            self._conn.executemany("UPDATE runs SET idx = ? WHERE run_id = ?",
                                   [(i, r) for r, i in idx.items()])
            self._conn.executemany(
                "INSERT INTO runs(run_id, idx, group_id, budget_fraction, budget, schedule, "
                "peak_lr, seed, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                [(r["run_id"], r["idx"], r["group_id"], r["budget_fraction"], r["budget"],
                  r["schedule"], r["peak_lr"], r["seed"]) for r in runs])

    # ----------------------------------------------------------------- runs
    def finished_groups(self) -> set[str]:
        """Groups none of whose runs is pending."""
        rows = self._conn.execute(
            "SELECT group_id, SUM(status = 'pending') FROM runs GROUP BY group_id").fetchall()
        return {g for g, pending in rows if pending == 0}

    def complete_group(self, group_id: str, results: list[dict], timing: dict) -> None:
        """Writes the results of every run of a group and its timing, in one transaction.

        Raises:
          StoreError: the store's file was deleted, moved or damaged under the sweep.
          OSError: ``ENOSPC``, the disk is full (nothing of the group is stored).
        """
        try:
            self._complete_group(group_id, results, timing)
        except sqlite3.Error as err:
            if "full" in str(err):
                raise OSError(errno.ENOSPC, "No space left on device for the results store",
                              self.path) from None
            if not os.path.isfile(self.path) or os.stat(self.path).st_ino != self._inode:
                raise StoreError(f"{self.path} was deleted or moved while the sweep ran; the "
                                 f"runs finished since are not stored: run the same command "
                                 f"again (a new store is planned and trained)") from None
            raise StoreError(f"cannot write {self.path} ({err}); check the file, or use "
                             f"another output directory") from None

    def _complete_group(self, group_id: str, results: list[dict], timing: dict) -> None:
        with self._conn:
            for r in results:
                cur = self._conn.execute(
                    "UPDATE runs SET status = ?, diverged_step = ?, pruned_step = ?, "
                    "final = ?, best = ?, eval_steps = ?, eval_history = ?, curves = ? "
                    "WHERE run_id = ? AND group_id = ? AND status = 'pending'",
                    (r["status"], r["diverged_step"], r.get("pruned_step"),
                     json.dumps(r["final"], sort_keys=True),
                     json.dumps(r["best"], sort_keys=True), json.dumps(r["eval_steps"]),
                     json.dumps(r["eval_history"], sort_keys=True), r["curves"],
                     r["run_id"], group_id))
                if cur.rowcount != 1:
                    raise RuntimeError(f"run {r['run_id']!r} of group {group_id!r} is not "
                                       f"pending in {self.path}")
            self._conn.execute(
                "INSERT OR REPLACE INTO groups(group_id, budget, runs, padded_runs, devices, "
                "seconds, run_steps_per_second, resumed, steps, compile_seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (group_id, timing["budget"], timing["runs"], timing["padded_runs"],
                 timing["devices"], timing["seconds"], timing["run_steps_per_second"],
                 int(timing["resumed"]), timing.get("steps"), timing.get("compile_seconds")))

    def replan(self, meta: dict, moves: list[tuple]) -> None:
        """New meta entries (e.g. the plan) and runs moved to other groups, in one transaction.

        ``moves``: ``(run_id, group_id, status, final)`` (``final`` ``None``: cleared),
        e.g. a ``law`` sweep's runs planned for training (``pending``) or predicted.
        """
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                   [(k, json.dumps(v, sort_keys=True)) for k, v in meta.items()])
            self._conn.executemany(
                "UPDATE runs SET group_id = ?, status = ?, final = ? WHERE run_id = ?",
                [(g, status, None if final is None else json.dumps(final, sort_keys=True), r)
                 for r, g, status, final in moves])

    # ------------------------------------------------------------- sessions
    def start_session(self, started: str, host: str) -> int:
        """A new session's row (no time yet); returns its id."""
        with self._conn:
            cur = self._conn.execute(
                "INSERT INTO sessions(started, host, seconds, compile_seconds, run_steps) "
                "VALUES (?, ?, 0, 0, 0)", (started, host))
        return int(cur.lastrowid)

    def update_session(self, session: int, seconds: float, compile_seconds: float,
                       run_steps: int) -> None:
        """The time and run-steps of ``session`` so far."""
        with self._conn:
            self._conn.execute("UPDATE sessions SET seconds = ?, compile_seconds = ?, "
                               "run_steps = ? WHERE session = ?",
                               (seconds, compile_seconds, int(run_steps), session))

    def sessions(self) -> list[dict]:
        """Every session's row (none in a store written before sessions were recorded)."""
        try:
            rows = self._conn.execute(f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions "
                                      f"ORDER BY session").fetchall()
        except sqlite3.OperationalError:  # a read-only store that predates the table
            return []
        return [dict(zip(SESSION_COLUMNS, row, strict=True)) for row in rows]

    def runs(self, *, with_curves: bool = False) -> list[dict]:
        """Every run as a dict (JSON columns decoded), in plan order."""
        cols = RUN_COLUMNS if with_curves else RUN_COLUMNS[:-1]
        rows = self._conn.execute(f"SELECT {self._select('runs', cols)} FROM runs "
                                  f"ORDER BY idx").fetchall()
        out = []
        for row in rows:
            d = dict(zip(cols, row, strict=True))
            for k in ("final", "best", "eval_steps", "eval_history"):
                d[k] = None if d[k] is None else json.loads(d[k])
            out.append(d)
        return out

    def groups(self) -> list[dict]:
        cols = GROUP_COLUMNS
        rows = self._conn.execute(f"SELECT {self._select('groups', cols)} FROM groups"
                                  ).fetchall()
        return [dict(zip(cols, row, strict=True)) for row in rows]

    def _select(self, table: str, cols) -> str:
        """The column list, ``NULL`` for a column a read-only older store lacks."""
        return ", ".join(c if c in self._columns[table] else f"NULL AS {c}" for c in cols)

    def dump(self) -> list[tuple]:
        """Every column of every run, in plan order (for exact comparisons of two stores)."""
        return self._conn.execute(
            f"SELECT {self._select('runs', RUN_COLUMNS)} FROM runs ORDER BY idx").fetchall()
