"""The ``budgetax`` command.

``budgetax sweep`` answers "which schedule and learning rate, at my budget?": it
trains budgets x schedules x peak learning rates x seeds of a task with the sweep
engine (:func:`budgetax.training.sweep`: one compiled, vmapped and sharded program
for every budget, a SQLite store, orbax checkpoints, resumable), prints the table of the
task's metric at each schedule's best learning rate and writes ``results.md`` and
PNG plots in the output directory. The task is a built-in preset
(``--dataset``/``--model``) or the user's own (``--task package.module:factory``,
where ``factory()`` returns a :class:`budgetax.training.Task`).
``budgetax report DIR`` rebuilds the table and plots from the store.

``budgetax demo`` is a small preset of the same sweep: one seed and one learning
rate, four budgets and four schedules.

Example:
  $ budgetax sweep --out sweep-mlp --budgets 0.05,0.1,0.25,0.5,1 --lrs 3e-3,1e-2,3e-2
  $ budgetax sweep --task examples.transformer_lm:make_task --out sweep-lm
  $ budgetax report sweep-mlp
  $ budgetax demo --model mlp
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import re
import signal
import sys
import threading

import budgetax

# the demo is a preset of the sweep: these replace the sweep's defaults
DEMO = {"budgets": (0.1, 0.25, 0.5, 1.0), "schedules": ("constant", "linear", "cosine", "rex"),
        "peak_lrs": (1e-2,), "seeds": (0,)}


# the default full budget, in epochs of the task's training set: 3000 steps of the
# default task (MNIST-1D's 4000 training examples at batch 100), the same length in
# epochs for any other task or batch size
DEFAULT_EPOCHS = 75


def default_full_budget(num_train: int, batch_size) -> int | None:
    """:data:`DEFAULT_EPOCHS` epochs in steps (None when the batch size is invalid)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        return None  # the spec's own check says what is wrong
    return max(1, round(DEFAULT_EPOCHS * num_train / batch_size))


def _parse_list(text: str, cast, kind: str) -> list:
    """Comma-separated values of ``cast`` (at least one), or an argparse error naming ``kind``."""
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}")
    return values


def _fractions(text: str) -> list[float]:
    values = _parse_list(text, float, "numbers")
    if any(not (0 < v <= 1) for v in values):
        raise argparse.ArgumentTypeError(f"budget fractions must be in (0, 1], got {text!r}")
    return values


def _lrs(text: str):
    return "auto" if text.strip() == "auto" else _numbers(text)


def _numbers(text: str) -> list[float]:
    return _parse_list(text, float, "numbers")


def _ints(text: str) -> list[int]:
    return _parse_list(text, int, "ints")


def _names(text: str) -> list[str]:
    return [v.strip() for v in _parse_list(text, str, "names")]


# list options whose value may start with "-" (a negative number): argparse would read
# "--budgets -0.5,1" as an option without its value, so such a pair is joined into
# "--budgets=-0.5,1" and the value reaches the option's own check
_NUMBER_LISTS = ("--budgets", "--lrs", "--seeds", "--prune-at", "--predict")


def _join_negative_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if (a in _NUMBER_LISTS and i + 1 < len(argv)
                and re.match(r"-\.?\d", argv[i + 1])):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _diagnostics(text: str):
    if text in ("full", "none"):
        return text == "full"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected full, none or a number of examples, "
                                         f"got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of examples, got {text!r}")
    return value


def _diagnostics_default(value) -> str:
    """The default of ``--diagnostics`` as the option spells it."""
    if value is True:
        return "full"
    return "none" if value is False else str(value)


def _join(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


_SPECS = {"SweepSpec": "budgetax.training.sweep.spec", "OptimizerSpec": "budgetax.training.optim"}


def _source_file(module: str) -> str:
    """The file of a budgetax module, found without importing it (or its package)."""
    root = os.path.dirname(os.path.abspath(budgetax.__file__))
    return os.path.join(root, *module.split(".")[1:]) + ".py"


def _literal_names(module: str, seen: frozenset = frozenset()) -> dict:
    """Module-level ``NAME = <literal>`` of a budgetax module's source, and the literals it
    imports from other budgetax modules (``from budgetax.x import NAME``)."""
    import ast

    with open(_source_file(module)) as f:
        tree = ast.parse(f.read())
    names: dict = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("budgetax.") \
                and node.module not in seen:
            try:
                found = _literal_names(node.module, seen | {module})
            except (OSError, SyntaxError):
                continue
            names.update({a.asname or a.name: found[a.name] for a in node.names
                          if a.name in found})
        targets = ([node.target] if isinstance(node, ast.AnnAssign)
                   else node.targets if isinstance(node, ast.Assign) else [])
        if len(targets) == 1 and isinstance(targets[0], ast.Name) and node.value is not None:
            try:
                names[targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return names


def spec_defaults(name: str) -> dict | None:
    """The defaults of ``SweepSpec`` or ``OptimizerSpec``, read from their source.

    The dataclasses are where the defaults live; importing them imports JAX (seconds),
    which ``budgetax sweep --help`` should not wait for, so their fields' literal
    defaults (and the module constants they name) are read from the source without
    importing it. Fields with a ``default_factory`` are left out; ``None`` when a
    default is not a literal (then the caller imports the class).
    """
    import ast

    module = _SPECS[name]
    try:
        with open(_source_file(module)) as f:
            tree = ast.parse(f.read())
        consts = _literal_names(module)
    except (OSError, SyntaxError):
        return None
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        return None
    out = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.value is not None):
            continue
        value = node.value
        if isinstance(value, ast.Call):  # dataclasses.field(...)
            kw = {k.arg: k.value for k in value.keywords}
            if "default" not in kw:
                continue
            value = kw["default"]
        if isinstance(value, ast.Name):
            if value.id not in consts:
                return None
            out[node.target.id] = consts[value.id]
            continue
        try:
            out[node.target.id] = ast.literal_eval(value)
        except ValueError:
            return None
    return out


def _defaults(name: str) -> dict:
    """:func:`spec_defaults`, or the class's own defaults when the source cannot be read."""
    found = spec_defaults(name)
    if found is not None:
        return found
    from budgetax import training

    return {f.name: f.default for f in dataclasses.fields(getattr(training, name))
            if f.default is not dataclasses.MISSING}


def _add_sweep_args(p: argparse.ArgumentParser, out: str, overrides: dict) -> None:
    """The options of a sweep; defaults from :class:`SweepSpec` and :class:`OptimizerSpec`."""
    spec = _defaults("SweepSpec")
    spec.update(overrides)
    opt = argparse.Namespace(**_defaults("OptimizerSpec"))
    p.add_argument("--out", default=out, help=f"output directory (default: {out})")
    p.add_argument("--task", default=None, metavar="MODULE:FACTORY",
                   help="your own task: FACTORY() in the importable MODULE (or in a .py "
                        "file: path/to/file.py:FACTORY) returns a budgetax.training.Task "
                        "(instead of --dataset/--model)")
    p.add_argument("--dataset", default=None,
                   help="built-in preset: mnist1d, digits or tfds:NAME (default: mnist1d)")
    p.add_argument("--model", default=None,
                   help="built-in preset: mlp, cnn1d or resnet (default: mlp)")
    p.add_argument("--full-budget", type=int, default=None,
                   help=f"steps of the full budget (default: {DEFAULT_EPOCHS} epochs of the "
                        f"task's training set at --batch-size, rounded; "
                        f"{spec['full_budget']} steps for the default mnist1d at batch "
                        f"{spec['batch_size']})")
    p.add_argument("--budgets", type=_fractions, default=list(spec["budgets"]),
                   help=f"fractions of the full budget (default: {_join(spec['budgets'])})")
    p.add_argument("--schedules", type=_names, default=list(spec["schedules"]),
                   help=f"profile names (default: {_join(spec['schedules'])})")
    p.add_argument("--custom-schedule", action="append", default=[], metavar="NAME=REF",
                   help="also sweep a schedule of your own under NAME: REF is "
                        "'module:attr' or 'file.py:attr', a profile p -> multiplier written "
                        "with jax.numpy or a sequence of per-step multipliers (repeatable; "
                        "see budgetax.training.sweep.CustomSchedule)")
    p.add_argument("--lrs", type=_lrs, default=list(spec["peak_lrs"]),
                   help=f"peak learning rates (default: {_join(spec['peak_lrs'])}); 'auto': "
                        f"the default lrs, extended past the grid's edge while a best lr sits "
                        f"there (--auto-lrs, default 4 with auto)")
    p.add_argument("--auto-lrs", type=int, default=None, metavar="N",
                   help="add at most N lrs past the grid's edges, one geometric step at a "
                        "time, while some (budget, schedule)'s best lr is the grid's smallest "
                        "or largest; only the new runs are trained (default: 0, or 4 with "
                        "--lrs auto)")
    p.add_argument("--seeds", type=_ints, default=list(spec["seeds"]),
                   help=f"seeds (default: {_join(spec['seeds'])})")
    p.add_argument("--optimizer", default=opt.optimizer,
                   help=f"sgd, momentum, adam, adamw, lamb, adamp, sgdp (default: "
                        f"{opt.optimizer}); sgd is SGD with --momentum, so {opt.momentum:g} "
                        f"unless you pass --momentum 0 for plain SGD (momentum is an alias)")
    p.add_argument("--momentum", type=float, default=opt.momentum,
                   help=f"SGD momentum (sgd, momentum, sgdp) or Adam's b1 (adam, adamw, lamb, "
                        f"adamp) (default: {opt.momentum:g}, also for --optimizer sgd)")
    p.add_argument("--weight-decay", type=float, default=opt.weight_decay,
                   help=f"weight decay: L2 added to the gradient for sgd, momentum and adam; "
                        f"decoupled for adamw, lamb, adamp and sgdp (default: "
                        f"{opt.weight_decay:g})")
    p.add_argument("--warmup-fraction", type=float, default=opt.warmup_fraction,
                   help="linear warmup as a fraction of each budget (default: 0)")
    p.add_argument("--demon", action="store_true", help="decay the momentum with Demon")
    p.add_argument("--precision", default=opt.precision,
                   help=f"float32, bf16, bf16_sr or bf16_kahan (default: {opt.precision})")
    p.add_argument("--batch-size", type=int, default=spec["batch_size"],
                   help=f"examples per optimizer step (default: {spec['batch_size']}); the "
                        f"default full budget is counted in epochs at this batch size")
    p.add_argument("--num-evals", type=int, default=spec["num_evals"],
                   help="evaluations (and checkpoint opportunities) per run "
                        f"(default: {spec['num_evals']})")
    p.add_argument("--diagnostics", type=_diagnostics, default=spec["diagnostics"],
                   metavar="full|none|N",
                   help="at every evaluation, also the loss, metrics and gradient norm on "
                        "training data, whose final loss picks each cell's lr: a fixed random "
                        "subset of N training examples, the same for every run (default: "
                        f"{_diagnostics_default(spec['diagnostics'])}), the whole set (full; "
                        "costs about one pass over it per evaluation and run), or none (the "
                        "lr is then picked on the last epoch's minibatch losses)")
    p.add_argument("--select", default=None,
                   help="the metric that picks a cell's best lr: train_loss (default), "
                        "train_minibatch_loss (the default with --diagnostics none: the mean "
                        "minibatch loss of each run's last epoch), or any evaluation metric of "
                        "the task, e.g. test_accuracy (tunes on the test set)")
    p.add_argument("--strategy", default=spec["strategy"],
                   choices=("grid", "branch", "halving", "branch+halving", "law"),
                   help="grid: every run from scratch (default); branch: schedules whose "
                        "learning rate does not depend on the budget before their decay "
                        "(constant, wsd) train that prefix once and branch each budget's "
                        "decay from it (the same results in fewer steps); halving: successive "
                        "halving over each schedule's lrs, pruning the predicted-worse ones "
                        "at --prune-at; branch+halving: both; law: anchor runs, a loss law "
                        "fitted to them predicts every cell, the best predicted cells are "
                        "trained to check it, the rest only if it misses (--law-*)")
    p.add_argument("--prune-rate", type=int, default=spec["prune_rate"],
                   help=f"halving keeps 1/N of each schedule's lrs per rung (default: "
                        f"{spec['prune_rate']})")
    p.add_argument("--prune-at", type=_numbers, default=list(spec["prune_at"]),
                   help=f"halving's rungs, fractions of the budget (default: "
                        f"{_join(spec['prune_at'])})")
    p.add_argument("--prune-estimator", default=spec["prune_estimator"],
                   help=f"the budgetax.ranking score of the training loss so far that halving "
                        f"ranks lrs by: tse_e, tse, lcga or last (default: "
                        f"{spec['prune_estimator']})")
    p.add_argument("--law-anchors", type=_names, default=list(spec["law_anchors"]),
                   metavar="SCHEDULES",
                   help=f"the law strategy's anchor schedules, trained at the longest budget "
                        f"(default: {_join(spec['law_anchors'])})")
    p.add_argument("--law-verify", type=int, default=spec["law_verify"], metavar="N",
                   help=f"the law strategy trains the N best predicted cells of each budget "
                        f"with every seed (default: {spec['law_verify']})")
    p.add_argument("--law-tolerance", type=float, default=spec["law_tolerance"],
                   metavar="X",
                   help=f"the law is trusted when its median relative error on the verified "
                        f"cells is at most X; else every cell is trained (default: "
                        f"{spec['law_tolerance']})")
    p.add_argument("--predict", type=_numbers, default=[], metavar="FRACTIONS",
                   help="also predict each schedule's result at these budgets (fractions of "
                        "the full budget, e.g. 2,4) from a power law fitted to the trained "
                        "budgets, with a 95%% interval")
    p.add_argument("--max-runs-per-program", type=int, default=None,
                   help="split a budget's runs into programs of at most this many runs")
    p.add_argument("--checkpoint-every", type=int, default=1,
                   help="checkpoint in-flight runs every N segments (0: never; default: 1)")
    p.add_argument("--no-resume", action="store_true",
                   help="refuse to continue a sweep already in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the sweep already in --out and start again")
    p.add_argument("--no-plots", action="store_true", help="write results.md without plots")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("--data-dir", default=None, help="TFDS data dir (default: "
                   "$BUDGETAX_DATA_DIR or ~/.cache/budgetax/tensorflow_datasets)")
    p.add_argument("--divergence-factor", type=float, default=spec["divergence_factor"],
                   help="a run whose minibatch loss exceeds this multiple of its first one is "
                        f"diverged (default: {spec['divergence_factor']:g}; 0: only NaN/inf)")
    p.add_argument("--compile-cache", default=None, metavar="DIR",
                   help="JAX's persistent compilation cache: a second run of the same sweep "
                        "skips compilation (default: $BUDGETAX_COMPILE_CACHE, else "
                        "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/budgetax/jax; 'off' to "
                        "disable)")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="run the sweep in N processes on this machine (JAX's multi-controller "
                        "runtime on localhost, CPU devices, gloo collectives)")
    p.add_argument("--devices-per-process", type=int, default=1, metavar="K",
                   help="CPU devices of each process with --processes (default: 1)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first: on a TPU pod slice, under "
                        "SLURM, or with $BUDGETAX_COORDINATOR, $BUDGETAX_NUM_PROCESSES and "
                        "$BUDGETAX_PROCESS_ID set on every host")


def build_parser(options: bool = True) -> argparse.ArgumentParser:
    """The ``budgetax`` parser; without ``options`` the subcommands carry no options yet.

    ``budgetax --help`` lists the commands from that light parser. The sweep's options
    read their defaults from the spec dataclasses' source (:func:`spec_defaults`),
    so ``budgetax sweep --help`` does not import JAX either.
    """
    parser = argparse.ArgumentParser(
        prog="budgetax",
        description="Budget-aware training for JAX/Optax: which schedule wins at my budget?",
    )
    parser.add_argument("--version", action="version", version=f"budgetax {budgetax.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sw = sub.add_parser(
        "sweep", help="budgets x schedules x lrs x seeds in shared compiled programs; "
                      "table + plots",
        description="Trains every (budget, schedule, peak lr, seed) run of a task with the sweep "
                    "engine (one compiled vmapped program for every budget, runs sharded over all "
                    "devices), stores one row per run in OUT/results.sqlite, prints the table of "
                    "the task's metric at each schedule's best lr and writes OUT/results.md and "
                    "plots. Re-running into an existing OUT resumes it.")
    if options:
        _add_sweep_args(sw, "budgetax-sweep", {})
    demo = sub.add_parser(
        "demo", help="a small sweep: 4 budgets x 4 schedules, one lr and one seed",
        description="The sweep with one seed and one peak lr, at four budgets and four "
                    "schedules (learning rate annealed to its end at each budget); prints "
                    "the table. Every sweep option applies.")
    if options:
        _add_sweep_args(demo, "budgetax-demo", DEMO)

    rep = sub.add_parser("report", help="rebuild the table, results.md and plots of a sweep",
                         description="Reads DIR/results.sqlite and rewrites DIR/results.md and "
                                     "its plots; prints the table.")
    rep.add_argument("dir", help="a sweep output directory")
    rep.add_argument("--select", default=None,
                     help="train_loss (default), train_minibatch_loss (the default for a "
                          "sweep run without diagnostics), or any evaluation metric of the "
                          "task, e.g. test_accuracy (tunes on the test set)")
    rep.add_argument("--no-plots", action="store_true")
    rep.add_argument("--predict", type=_numbers, default=[], metavar="FRACTIONS",
                     help="also predict each schedule's result at these budgets (fractions "
                          "of the full budget), with a 95%% interval")
    rep.add_argument("--law", action="store_true",
                     help="also check the Multi-Power Law on this sweep: fitted on its "
                          "constant, cosine and step runs at the longest budget (first seed), "
                          "its predicted final training loss of every other cell against the "
                          "measured one")
    rep.add_argument("--out", default=None,
                     help="write results.md, summary.json and the plots here instead of DIR "
                          "(for a sweep on read-only media)")
    return parser


def compile_cache_dir(option: str | None) -> str | None:
    """The persistent compilation cache directory (``None``: off)."""
    value = option or os.environ.get("BUDGETAX_COMPILE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "budgetax", "jax")
    return None if value == "off" else os.path.expanduser(value)


def use_compile_cache(option: str | None) -> str | None:
    """Points JAX's persistent compilation cache at the sweep's directory; returns it.

    ``--compile-cache`` wins, then ``$BUDGETAX_COMPILE_CACHE``, then a directory the
    user gave JAX itself (``JAX_COMPILATION_CACHE_DIR``), then ``~/.cache/budgetax/jax``.
    ``off`` turns the cache off. JAX opens its cache at its first compilation (the
    parser's checks compile a little), so a changed directory, or ``off``, resets it.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    own = jax.config.jax_compilation_cache_dir
    if option is None and "BUDGETAX_COMPILE_CACHE" not in os.environ and own:
        return own
    cache = compile_cache_dir(option)
    if cache is None:
        jax.config.update("jax_enable_compilation_cache", False)
        compilation_cache.reset_cache()
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    if cache != own:
        jax.config.update("jax_compilation_cache_dir", cache)
        compilation_cache.reset_cache()
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return cache


def _task(args):
    from budgetax import training

    if args.task is not None:
        if args.dataset is not None or args.model is not None:
            raise ValueError("give either --task or --dataset/--model, not both")
        return training.load_task(args.task)
    return training.preset("mnist1d" if args.dataset is None else args.dataset,
                           "mlp" if args.model is None else args.model,
                           data_dir=args.data_dir)


def run_sweep(args) -> int:
    if args.processes is not None:
        from budgetax import launch

        return launch.processes(args)
    import jax  # (with --distributed, main() has initialised the runtime already)

    use_compile_cache(args.compile_cache)

    from budgetax import report, training

    quiet = jax.process_index() != 0  # process 0 speaks for all
    task = _task(args)
    if isinstance(args.batch_size, int) and args.batch_size > task.num_train:
        raise ValueError(f"--batch-size {args.batch_size} is more than the task's "
                         f"{task.num_train} training examples: give at most {task.num_train}")
    full_budget, derived = args.full_budget, args.full_budget is None
    if derived:
        full_budget = default_full_budget(task.num_train, args.batch_size)
        if full_budget is None:
            full_budget = training.SweepSpec.full_budget
    auto_lrs = args.auto_lrs if args.auto_lrs is not None else (4 if args.lrs == "auto" else 0)
    lrs = training.SweepSpec.peak_lrs if args.lrs == "auto" else tuple(args.lrs)
    custom = tuple(training.load_schedule(ref) for ref in args.custom_schedule)
    named = tuple(args.schedules) + tuple(c.name for c in custom
                                         if c.name not in args.schedules)
    spec = training.SweepSpec(
        divergence_factor=args.divergence_factor or None,
        full_budget=full_budget, budgets=tuple(args.budgets),
        schedules=named, custom_schedules=custom, peak_lrs=lrs, seeds=tuple(args.seeds),
        batch_size=args.batch_size, num_evals=args.num_evals, diagnostics=args.diagnostics,
        strategy=args.strategy, prune_rate=args.prune_rate, prune_at=tuple(args.prune_at),
        prune_estimator=args.prune_estimator, law_anchors=tuple(args.law_anchors),
        law_verify=args.law_verify, law_tolerance=args.law_tolerance,
        optimizer=training.OptimizerSpec(
            optimizer=args.optimizer, momentum=args.momentum,
            weight_decay=args.weight_decay, warmup_fraction=args.warmup_fraction,
            demon=args.demon, precision=args.precision))
    predict = report.check_predict(args.predict)
    if predict and len(spec.budgets) < report.MIN_PREDICT_BUDGETS:
        raise ValueError(f"--predict needs at least {report.MIN_PREDICT_BUDGETS} budgets to fit "
                         f"its power law (3 parameters), got --budgets "
                         f"{_join(spec.budgets)}: add budgets, or leave out --predict")
    runs = spec.runs()
    say = (lambda *a, **k: None) if quiet else print
    say(f"budgetax {args.command}: task {task.name}, "
          f"{report.optimizer_text(dataclasses.asdict(spec.optimizer))}, "
          f"batch {spec.batch_size}, {len(spec.budgets)} budgets x "
          f"{len(spec.schedules)} schedules x {len(spec.peak_lrs)} lrs x "
          f"{len(spec.seeds)} seeds = {len(runs)} runs -> {args.out}", flush=True)
    if derived:
        say(f"full budget {spec.full_budget} steps: {DEFAULT_EPOCHS} epochs of "
            f"{task.num_train} training examples at batch {spec.batch_size} (the default; "
            f"--full-budget to choose)", flush=True)
    result = training.sweep(task, spec, args.out, resume=not args.no_resume,
                            overwrite=args.overwrite,
                            max_runs_per_program=args.max_runs_per_program,
                            checkpoint_every=args.checkpoint_every,
                            progress=not args.no_progress, auto_lrs=auto_lrs)
    if quiet:
        return 0
    table = report.write_report(args.out, select=args.select, plots=not args.no_plots,
                                command="budgetax " + " ".join(args.argv),
                                predict=predict)
    print()
    print(table)
    print(f"\n{len(result.runs)} runs in {result.seconds:.1f}s; wrote "
          f"{args.out}/results.md" + ("" if args.no_plots else " and plots"))
    return 0


def run_report(args) -> int:
    from budgetax import report

    table = report.write_report(args.dir, select=args.select, plots=not args.no_plots,
                                dest=args.out, predict=tuple(args.predict), law=args.law)
    print(table)
    dest = args.out or args.dir
    print(f"\nwrote {os.path.join(dest, 'results.md')}, {os.path.join(dest, 'summary.json')}"
          + ("" if args.no_plots else " and the plots"))
    return 0


def main(argv: list[str] | None = None) -> int:
    if "--distributed" in (sys.argv[1:] if argv is None else argv):
        from budgetax import launch  # before anything initialises a JAX backend

        try:
            launch.initialize()
        except (ValueError, RuntimeError) as err:
            print(f"budgetax: error: --distributed: {err}", file=sys.stderr)
            return 2
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(options=command in ("sweep", "demo"))
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command is None:
        parser.print_help()
        return 0
    commands = {"demo": run_sweep, "sweep": run_sweep, "report": run_report}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print(f"\nbudgetax {args.command}: interrupted; re-run the same command to resume",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, NotImplementedError, RuntimeError, OSError) as err:
        print(f"budgetax {args.command}: error: {_message(err, args)}", file=sys.stderr)
        return 2


def _message(err: BaseException, args) -> str:
    """One line (a task's own errors: a few): what went wrong, the path, and what to do."""
    if not isinstance(err, OSError) or err.strerror is None:  # budgetax's own messages
        if type(err).__name__ == "TaskError":  # what failed, where it was raised, a hint
            return "\n".join(line.rstrip() for line in str(err).splitlines() if line.strip())
        return " ".join(str(err).split())
    where = err.filename or getattr(args, "out", None) or ""
    if err.errno == errno.ENOSPC:
        todo = "free some space, or choose another output directory"
    elif isinstance(err, PermissionError) or err.errno == errno.EROFS:
        todo = ("choose a writable output directory"
                + (" (budgetax report DIR --out OTHER reports a read-only sweep)"
                   if args.command == "report" else ""))
    else:
        todo = "check the path"
    return f"{err.strerror or err}: {where}; {todo}"


def entry() -> None:
    """The console script: ``main()``, then exit with its code.

    After Ctrl-C the process leaves at once (``os._exit``): JAX may still be running
    dispatched work, and tearing the interpreter down under it can crash. Nothing is
    lost: the store is transactional and checkpoints are written atomically.
    """
    default_hook = sys.unraisablehook

    def interrupt_again(unraisable):
        """A Ctrl-C that landed in a callback Python cannot raise from (e.g. JAX's gc hook).

        Python would print "Exception ignored ... Traceback" and go on; instead the
        interrupt is delivered again a moment later, in the main program.
        """
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            threading.Timer(0.01, signal.raise_signal, (signal.SIGINT,)).start()
            return
        default_hook(unraisable)

    sys.unraisablehook = interrupt_again
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
