"""The ``budgetax`` command.

``budgetax sweep`` answers "which schedule and learning rate, at my budget?": it
trains budgets x schedules x peak learning rates x seeds with the sweep engine
(:func:`budgetax.training.sweep`: one compiled, vmapped and sharded program per
budget, a SQLite store, orbax checkpoints, resumable), prints the table of test
accuracy at each schedule's best learning rate and writes ``results.md`` and PNG
plots in the output directory. ``budgetax report DIR`` rebuilds them from the store.

``budgetax demo`` trains the default model on MNIST-1D at several fractions of a
full budget with several budget-aware schedules and prints the result table
(test accuracy and loss per budget and schedule).

Example:
  $ budgetax sweep --out sweep-mlp --budgets 0.05,0.1,0.25,0.5,1 --lrs 3e-3,1e-2,3e-2
  $ budgetax report sweep-mlp
  $ budgetax demo --model mlp --budgets 0.1,0.25,0.5,1 --schedules constant,linear,cosine,rex
"""

from __future__ import annotations

import argparse
import sys
import time

import budgetax
from budgetax._io import atomic_write_json

DEFAULT_BUDGETS = "0.1,0.25,0.5,1.0"
DEFAULT_SCHEDULES = "constant,linear,cosine,rex"


def _parse_list(text: str, cast, kind: str) -> list:
    """Comma-separated values of ``cast`` (at least one), or an argparse error naming ``kind``."""
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}")
    return values


def _floats(text: str) -> list[float]:
    values = _parse_list(text, float, "numbers")
    if any(not (0 < v <= 1) for v in values):
        raise argparse.ArgumentTypeError(f"budget fractions must be in (0, 1], got {text!r}")
    return values


def _numbers(text: str) -> list[float]:
    return _parse_list(text, float, "numbers")


def _ints(text: str) -> list[int]:
    return _parse_list(text, int, "ints")


def _names(text: str) -> list[str]:
    return [v.strip() for v in _parse_list(text, str, "names")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budgetax",
        description="Budget-aware training for JAX/Optax: which schedule wins at my budget?",
    )
    parser.add_argument("--version", action="version", version=f"budgetax {budgetax.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="train on MNIST-1D at several budgets and schedules, print a table",
        description="Trains the default model at fractions of a full budget with several "
                    "schedules (learning rate annealed to 0 at each budget) and prints test "
                    "accuracy and loss.")
    demo.add_argument("--dataset", default="mnist1d",
                      help="mnist1d, digits or tfds:NAME (default: mnist1d)")
    demo.add_argument("--model", default="mlp", help="mlp, cnn1d or resnet (default: mlp)")
    demo.add_argument("--budgets", type=_floats, default=_floats(DEFAULT_BUDGETS),
                      help=f"fractions of the full budget (default: {DEFAULT_BUDGETS})")
    demo.add_argument("--schedules", type=_names, default=_names(DEFAULT_SCHEDULES),
                      help=f"schedule (profile) names (default: {DEFAULT_SCHEDULES})")
    demo.add_argument("--full-budget", type=int, default=3000,
                      help="steps of the full budget (default: 3000 = 75 MNIST-1D epochs)")
    demo.add_argument("--batch-size", type=int, default=100)
    demo.add_argument("--optimizer", default="adam", help="sgd, adam, adamw, ... (default: adam)")
    demo.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (default: 1e-2)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--data-dir", default=None, help="TFDS data dir (default: "
                      "$BUDGETAX_DATA_DIR or ~/.cache/budgetax/tensorflow_datasets)")
    demo.add_argument("--out", default=None, help="also write the results to this JSON file")

    from budgetax.training.engine import DEFAULT_SCHEDULES as SWEEP_DEFAULT_SCHEDULES

    sw = sub.add_parser(
        "sweep", help="budgets x schedules x lrs x seeds in shared compiled programs; "
                      "table + plots",
        description="Trains every (budget, schedule, peak lr, seed) run with the sweep engine "
                    "(one compiled vmapped program per budget, runs sharded over all devices), "
                    "stores one row per run in OUT/results.sqlite, prints the table of test "
                    "accuracy at each schedule's best lr and writes OUT/results.md and plots. "
                    "Re-running into an existing OUT resumes it.")
    sw.add_argument("--out", default="budgetax-sweep",
                    help="output directory (default: budgetax-sweep)")
    sw.add_argument("--dataset", default="mnist1d",
                    help="mnist1d, digits or tfds:NAME (default: mnist1d)")
    sw.add_argument("--model", default="mlp", help="mlp, cnn1d or resnet (default: mlp)")
    sw.add_argument("--full-budget", type=int, default=3000,
                    help="steps of the full budget (default: 3000 = 75 MNIST-1D epochs)")
    sw.add_argument("--budgets", type=_numbers, default=[0.05, 0.1, 0.25, 0.5, 1.0],
                    help="fractions of the full budget (default: 0.05,0.1,0.25,0.5,1)")
    sw.add_argument("--schedules", type=_names, default=list(SWEEP_DEFAULT_SCHEDULES),
                    help="profile names (default: " + ",".join(SWEEP_DEFAULT_SCHEDULES) + ")")
    sw.add_argument("--lrs", type=_numbers, default=[3e-3, 1e-2, 3e-2],
                    help="peak learning rates (default: 3e-3,1e-2,3e-2)")
    sw.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="seeds (default: 0,1,2)")
    sw.add_argument("--optimizer", default="adam",
                    help="sgd, momentum, adam, adamw, lamb, adamp, sgdp (default: adam)")
    sw.add_argument("--momentum", type=float, default=0.9, help="momentum / b1 (default: 0.9)")
    sw.add_argument("--weight-decay", type=float, default=0.0)
    sw.add_argument("--warmup-fraction", type=float, default=0.0,
                    help="linear warmup as a fraction of each budget (default: 0)")
    sw.add_argument("--demon", action="store_true", help="decay the momentum with Demon")
    sw.add_argument("--precision", default="float32",
                    help="float32, bf16, bf16_sr or bf16_kahan (default: float32)")
    sw.add_argument("--batch-size", type=int, default=100)
    sw.add_argument("--num-evals", type=int, default=4,
                    help="evaluations (and checkpoint opportunities) per run (default: 4)")
    sw.add_argument("--select", default="train_loss",
                    help="how a cell's best lr is chosen: train_loss (default), test_accuracy, "
                         "test_loss")
    sw.add_argument("--max-runs-per-program", type=int, default=None,
                    help="split a budget's runs into programs of at most this many runs")
    sw.add_argument("--checkpoint-every", type=int, default=1,
                    help="checkpoint in-flight runs every N segments (0: never; default: 1)")
    sw.add_argument("--no-resume", action="store_true",
                    help="refuse to continue a sweep already in --out")
    sw.add_argument("--overwrite", action="store_true",
                    help="delete the sweep already in --out and start again")
    sw.add_argument("--no-plots", action="store_true", help="write results.md without plots")
    sw.add_argument("--no-progress", action="store_true", help="no progress display")
    sw.add_argument("--data-dir", default=None, help="TFDS data dir")

    rep = sub.add_parser("report", help="rebuild the table, results.md and plots of a sweep",
                         description="Reads DIR/results.sqlite and rewrites DIR/results.md and "
                                     "its plots; prints the table.")
    rep.add_argument("dir", help="a sweep output directory")
    rep.add_argument("--select", default="train_loss",
                     help="train_loss (default), test_accuracy or test_loss")
    rep.add_argument("--no-plots", action="store_true")
    return parser


def _format_table(rows, schedules, budgets, steps) -> str:
    header = ["budget", "steps"] + [f"{s} acc / loss" for s in schedules]
    lines = [header]
    for b, t in zip(budgets, steps, strict=True):
        cells = [f"{b:.0%}", str(t)]
        for s in schedules:
            r = rows[(b, s)]
            mark = " (diverged)" if r["diverged"] else ""
            cells.append(f"{100 * r['test_accuracy']:.1f}% / {r['test_loss']:.3f}{mark}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    def fmt(line):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(lines[0]), sep] + [fmt(line) for line in lines[1:]])


def run_demo(args) -> int:
    from budgetax import data, schedules, training

    ds = data.load(args.dataset, data_dir=args.data_dir)
    steps = [schedules.steps_for_budget(full_steps=args.full_budget, fraction=b)
             for b in args.budgets]
    print(f"budgetax demo: {args.model} on {ds.name} ({ds.num_train} train / {ds.num_test} "
          f"test), {args.optimizer} peak lr {args.lr}, batch {args.batch_size}, "
          f"full budget {args.full_budget} steps, seed {args.seed}", flush=True)
    rows, results = {}, []
    t0 = time.perf_counter()
    for b, t in zip(args.budgets, steps, strict=True):
        for s in args.schedules:
            spec = training.OptimizerSpec(optimizer=args.optimizer, schedule=s, peak_lr=args.lr)
            h = training.train(ds, model=args.model, budget=t, batch_size=args.batch_size,
                               optimizer=spec, seed=args.seed, num_evals=1)
            r = dict(h.final, diverged=h.diverged, budget_fraction=b, steps=t, schedule=s,
                     seconds=h.seconds)
            rows[(b, s)] = r
            results.append(r)
            print(f"  budget {b:>5.0%} ({t:>5} steps) {s:<10} test acc "
                  f"{100 * r['test_accuracy']:5.1f}%  loss {r['test_loss']:.3f}  "
                  f"full-grad-norm {r['full_grad_norm']:.3g}  ({h.seconds:.1f}s)", flush=True)
    print()
    print(_format_table(rows, args.schedules, args.budgets, steps))
    print(f"\n{len(results)} runs in {time.perf_counter() - t0:.1f}s")
    if args.out:
        payload = {"command": "budgetax " + " ".join(args.argv),
                   "dataset": ds.name, "model": args.model, "optimizer": args.optimizer,
                   "peak_lr": args.lr, "batch_size": args.batch_size,
                   "full_budget": args.full_budget, "seed": args.seed, "results": results}
        atomic_write_json(args.out, payload)  # a failed write never leaves a partial file
        print(f"wrote {args.out}")
    return 0


def run_sweep(args) -> int:
    from budgetax import training
    from budgetax.training import report

    _validate_select(args.select)
    spec = training.SweepSpec(
        dataset=args.dataset, model=args.model, full_budget=args.full_budget,
        budgets=tuple(args.budgets), schedules=tuple(args.schedules), peak_lrs=tuple(args.lrs),
        seeds=tuple(args.seeds), batch_size=args.batch_size, num_evals=args.num_evals,
        optimizer=training.OptimizerSpec(
            optimizer=args.optimizer, schedule=args.schedules[0], momentum=args.momentum,
            weight_decay=args.weight_decay, warmup_fraction=args.warmup_fraction,
            demon=args.demon, precision=args.precision))
    runs = spec.runs()
    print(f"budgetax sweep: {spec.model} on {spec.dataset}, {spec.optimizer.optimizer}"
          f"{' + Demon' if spec.optimizer.demon else ''} ({spec.optimizer.precision}), "
          f"{len(spec.budgets)} budgets x {len(spec.schedules)} schedules x "
          f"{len(spec.peak_lrs)} lrs x {len(spec.seeds)} seeds = {len(runs)} runs "
          f"-> {args.out}", flush=True)
    result = training.sweep(spec, args.out, resume=not args.no_resume, overwrite=args.overwrite,
                            max_runs_per_program=args.max_runs_per_program,
                            checkpoint_every=args.checkpoint_every,
                            progress=not args.no_progress, data_dir=args.data_dir)
    table = report.write_report(args.out, select=args.select, plots=not args.no_plots,
                                command="budgetax " + " ".join(args.argv))
    print()
    print(table)
    print(f"\n{len(result.runs)} runs in {result.seconds:.1f}s; wrote "
          f"{args.out}/results.md" + ("" if args.no_plots else " and plots"))
    return 0


def _validate_select(select):
    from budgetax.training.report import SELECT

    if select not in SELECT:
        raise ValueError(f"--select must be one of {list(SELECT)}, got {select!r}")


def run_report(args) -> int:
    from budgetax.training import report

    _validate_select(args.select)
    print(report.write_report(args.dir, select=args.select, plots=not args.no_plots))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 0
    commands = {"demo": run_demo, "sweep": run_sweep, "report": run_report}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError,
            NotImplementedError) as err:
        print(f"budgetax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
