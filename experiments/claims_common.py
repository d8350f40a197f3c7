"""Pieces the claim experiments share (``experiments/claims_*/run.py``): the task of a
config entry, the lr a method runs at, the 95 % t-interval over seeds, and the commit
that trains."""

from __future__ import annotations

import importlib
import math
import subprocess
from pathlib import Path

import numpy as np

from budgetax import training
from budgetax.training.sweep.selection import rank_lrs

ROOT = Path(__file__).resolve().parents[1]
# two-sided 95 % quantiles of Student's t by degrees of freedom (1.96 beyond)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def make_task(tcfg: dict) -> training.Task:
    """A config's task: ``{"preset": (dataset, model)[, "model_kwargs": {...}]}`` or
    ``{"task": "module:factory"}`` (e.g. ``examples.transformer_lm:make_ci_task``)."""
    if "preset" in tcfg:
        return training.preset(*tcfg["preset"], model_kwargs=tcfg.get("model_kwargs"))
    module, factory = tcfg["task"].split(":")
    return getattr(importlib.import_module(module), factory)()


def choose_lr(by_lr: dict, seeds, lrs=None, select: str = "train_loss"):
    """``(lr, [final metrics of each seed])`` at the lr with the lowest mean final ``select``
    over ``seeds``: the rule of ``report.summarize`` (``selection.rank_lrs``), re-applied to
    any seeds (a bootstrap resample). ``by_lr`` is ``{lr: {seed: final metrics}}``; only
    ``lrs`` (default: all) are eligible, and of them only those where every seed finished
    with a finite ``select`` (a diverged run is missing). ``(None, None)`` when none is."""
    ok = {lr: [{"final": runs[s]} for s in seeds] for lr, runs in by_lr.items()
          if (lrs is None or lr in lrs) and all(runs.get(s) is not None for s in seeds)}
    ranked = rank_lrs(ok, select, 1.0)
    if not ranked:
        return None, None
    lr = ranked[0][0]
    return lr, [by_lr[lr][s] for s in seeds]


def ci95(x, single: float = 0.0) -> float:
    """Half-width of the 95 % t-interval of the mean of ``x`` (``single`` for one value)."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return single
    return T975.get(len(x) - 1, 1.96) * float(np.std(x, ddof=1)) / math.sqrt(len(x))


def head_commit(fallback: str = "unknown") -> str:
    """The commit checked out in the repository (``fallback`` without git)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        return fallback
    return out or fallback
