"""The ``budgetax`` command.

``budgetax demo`` trains the default model on MNIST-1D at several fractions of a
full budget with several budget-aware schedules and prints the result table
(test accuracy and loss per budget and schedule).

Example:
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


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    if not values or any(not (0 < v <= 1) for v in values):
        raise argparse.ArgumentTypeError(f"budget fractions must be in (0, 1], got {text!r}")
    return values


def _names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        try:
            return run_demo(args)
        except (ValueError, TypeError, FileNotFoundError, NotImplementedError) as err:
            print(f"budgetax demo: error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
