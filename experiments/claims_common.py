"""Pieces the claim experiments share (``experiments/claims_*/run.py``): the task of a
config entry, the lr a method runs at, the 95 % t-interval over seeds, the commit that
trains, and the command line every claim runs under (:func:`run`: options, the carried
meta, ``--analyze-only``, the output files). A ``run.py`` keeps its training plan and its
analysis and hands both to :func:`run` as a :class:`Claim`."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for budgetax and examples.*; a PYTHONPATH budgetax still wins
    sys.path.append(str(ROOT))

import budgetax  # noqa: E402
from budgetax import training  # noqa: E402
from budgetax.training.sweep.selection import rank_lrs  # noqa: E402

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


def run_stamp() -> dict:
    """``{"date", "commit", "machine"}`` of a run of an experiment script: today, the commit
    checked out and this machine's architecture and CPU count."""
    return {"date": datetime.date.today().isoformat(), "commit": head_commit(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}


def command_line(script: str, results: dict) -> str:
    """The ``Command:`` line of a results page: the script and the :func:`run_stamp` of its
    ``results``."""
    return (f"Command: `python {script}` ({results['date']}, commit "
            f"`{results['commit'][:7]}`, {results['machine']}).")


def subplots(*args, **kwargs):
    """``(fig, axes)`` of ``matplotlib.pyplot.subplots`` on the Agg backend (no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


def save_figure(fig, path, dpi: int = 110) -> None:
    """Lays ``fig`` out tightly, writes it to ``path`` and closes it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def utc_now() -> str:
    """The time now in UTC, to the minute (the format of every claim's ``date``)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


# meta entries of the training run that an ``--analyze-only`` pass keeps from the previous
# results: the commit and date of the training, not of the analysis, and hand-written notes
CARRIED = ("commit", "date", "first_pass", "note")


@dataclass(frozen=True)
class Claim:
    """One claim experiment, as :func:`run` runs it.

    ``here``: its folder (``experiments/claims_NAME``: the default ``--out``, the command
    written to the results). ``doc``: its module docstring (the first line describes the
    command). ``configs``: ``{name: config}`` of its ``config.py``. ``train(cfg, work)``:
    trains (resumes) every run into ``work`` and returns the timings rows. ``analyze(cfg,
    work)``: reads ``work`` back into what ``results.json`` stores under ``key``.
    ``markdown(meta, result, cfg)``: the text of ``results.md``. ``plot(result, cfg, path)``:
    writes the figure ``FIGURE[_CONFIG].png``. ``meta(figure_file)``: entries it adds to
    the meta. ``passes``: training may come in several passes of the command (each adds
    its seconds to ``passes``; a group resumed as finished keeps the timings row of the pass
    that trained it; meta ``timings``) instead of one (meta ``sweeps``). ``json_newline``:
    ``results.json`` ends with a newline.
    """

    here: Path
    doc: str
    configs: dict
    train: Callable
    analyze: Callable
    markdown: Callable
    plot: Callable
    figure: str
    key: str = "summary"
    meta: Callable | None = None
    passes: bool = False
    json_newline: bool = False


def _training_meta(claim: Claim, old: dict, rows, seconds: float, analyze_only: bool) -> dict:
    """The training seconds and timings rows of the meta (those of the training run when
    ``analyze_only``)."""
    if not claim.passes:
        if analyze_only:
            rows, seconds = old.get("sweeps", []), old.get("train_seconds") or 0.0
        return {"train_seconds": seconds, "sweeps": rows}
    if analyze_only:
        rows, passes = old.get("timings", []), old.get("passes", [])
    else:
        before = {t["what"]: t for t in old.get("timings", [])}
        rows = [before.get(t["what"], t) if t.get("resumed") else t for t in rows]
        passes = old.get("passes", [old["train_seconds"]] if "train_seconds" in old else []
                         ) + [round(seconds, 1)]
    return {"train_seconds": sum(passes), "passes": passes, "timings": rows}


def _plain(o):
    """JSON for what ``json`` does not know: a numpy number as a float, an array (or any other
    iterable, e.g. a set) as a list."""
    if isinstance(o, np.ndarray) and o.ndim:
        return list(o)
    try:
        return float(o)
    except TypeError:
        return list(o)


def run(claim: Claim, argv=None) -> None:
    """The command line of a claim experiment: trains (unless ``--analyze-only``), analyzes,
    and writes ``results[_CONFIG].json`` (meta, config, result), ``results[_CONFIG].md``
    and the figure into ``--out``.

    The meta records the command, the machine, jax and budgetax, the commit that trains
    (``CLAIMS_NAME_COMMIT`` when it runs from a clean export of a commit, else HEAD as the
    command starts), the date (UTC) and the training timings. ``--analyze-only`` trains
    nothing: it keeps the timings, the commit, the date and the notes of the previous
    results and adds the date of the analysis (``analyzed``)."""
    ap = argparse.ArgumentParser(description=claim.doc.splitlines()[0])
    ap.add_argument("--config", default="default", choices=sorted(claim.configs))
    ap.add_argument("--out", default=str(claim.here),
                    help="where results.json, results.md and the figure go (default: here)")
    ap.add_argument("--work", default=None,
                    help="where the sweeps are stored (default: OUT/sweeps[_CONFIG])")
    ap.add_argument("--analyze-only", action="store_true",
                    help="only read the stored sweeps and write the tables")
    args = ap.parse_args(argv)
    cfg = claim.configs[args.config]
    suffix = "" if args.config == "default" else f"_{args.config}"
    out = Path(args.out)
    work = Path(args.work) if args.work else out / f"sweeps{suffix}"
    results = out / f"results{suffix}.json"
    old = json.loads(results.read_text())["meta"] if results.exists() else {}
    name = claim.here.name
    commit = os.environ.get(f"{name.upper()}_COMMIT", "") or head_commit()
    date = utc_now()
    t0 = time.perf_counter()
    rows = [] if args.analyze_only else claim.train(cfg, work)
    seconds = time.perf_counter() - t0
    result = claim.analyze(cfg, work)
    figure = f"{claim.figure}{suffix}.png"
    meta = {"command": f"python experiments/{name}/run.py"
            + ("" if args.config == "default" else f" --config {args.config}"),
            "machine": platform.platform(), "cpu_count": os.cpu_count(),
            "jax": importlib.import_module("jax").__version__,
            "budgetax": budgetax.__version__, "commit": commit, "date": date,
            **_training_meta(claim, old, rows, seconds, args.analyze_only),
            **(claim.meta(figure) if claim.meta else {})}
    if args.analyze_only and old:
        meta.update({k: old[k] for k in CARRIED if k in old}, analyzed=utc_now())
    text = json.dumps({"meta": meta, "config": json.loads(json.dumps(cfg)), claim.key: result},
                      indent=1, default=_plain)
    results.write_text(text + ("\n" if claim.json_newline else ""))
    md = claim.markdown(meta, result, cfg)
    (out / f"results{suffix}.md").write_text(md)
    claim.plot(result, cfg, out / figure)
    print(md)
