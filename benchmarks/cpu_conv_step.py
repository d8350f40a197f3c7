"""CPU step rates of five models (core, plain scan, Python loop), compile seconds of a sweep.

On this CPU, for five models: the step rates of the training core, of a plain scan
and of a Python loop of the same step, and the compile seconds of a small sweep.

The models, each a :class:`budgetax.training.Task`:

- ``cnn``: the CNN of Flax's MNIST tutorial (two 3x3 ``nnx.Conv`` of 32 and 64
  features, each followed by ReLU and a 2x2 ``avg_pool``, then ``Linear(256)`` and
  ``Linear(10)``) sized for the 8x8 digits of scikit-learn's ``load_digits``
  (synthetic 8x8 data when scikit-learn is missing), as ``benchmarks/digits_cnn.py``
  writes it;
- ``mlp``: a 64-100-100-10 MLP on the same digits;
- ``mnist1d-cnn`` and ``mnist1d-mlp``: the built-in presets
  ``training.preset("mnist1d", "cnn1d")`` (three strided 1-D convolutions) and
  ``training.preset("mnist1d", "mlp")`` (2x100 ReLU);
- ``transformer``: the byte-level Transformer language model of
  ``examples/transformer_lm.py`` (``make_task()``), with a batch of 16 windows.

For each model, in one process, interleaved and repeated, it times:

- ``core``: ``training.train`` (the training core, one run, Adam, one evaluation and
  diagnostics off, the task without its held-out data so that only training is
  timed), with the core's automatic choice of program;
- ``core_scan``: the same with the core forced to its compiled loop of steps
  (``core.dispatches_steps`` patched to answer no);
- ``scan``: a plain ``jax.lax.scan`` of an nnx train step (Adam) inside one jit;
- ``python``: a Python loop calling the same step under ``jax.jit``.

The plain step trains the task's own model and loss: the model of
``task.build_model`` in training mode, ``task.loss`` (its metrics, if any, dropped),
batches drawn uniformly from ``task.train_data``. For the digits CNN it also times
the core with 4 evaluations and the diagnostics on the whole training set
(``core_eval``, ``core_eval_scan``). Rates are steps/s (after a warm-up call that
compiles); the ratios are taken per repeat against the Python loop of the same
repeat.

Then, per model, a small sweep: ``training.sweep`` of 3 budgets (fractions 0.25, 0.5,
1 of ``--sweep-budget`` steps) x 2 schedules x 1 peak lr x 1 seed, 2 evaluations,
diagnostics on 256 training examples, no checkpoints, into a fresh temporary
directory, in a fresh Python process with JAX's persistent compilation cache off (so
nothing compiled earlier, in memory or on disk, is reused). It records the compile
seconds the sweep itself reports (its ``sessions`` row: tracing, lowering and XLA
compilation), the same per group (one group per budget here), the number of distinct
budgets and the compile seconds per budget, and, counted independently through
``jax.monitoring``, the number of XLA compilations and their seconds.

The CPU may be shared: the spread over repeats is recorded, and the load average.

Usage: python benchmarks/cpu_conv_step.py [--models cnn,mlp,mnist1d-cnn,mnist1d-mlp,transformer]
    [--steps 100] [--mlp-steps 2000] [--mnist1d-cnn-steps 400] [--mnist1d-mlp-steps 2000]
    [--transformer-steps 100] [--batch-size 64] [--transformer-batch-size 16] [--repeats 5]
    [--sweep-budget 64] [--no-sweep]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Flax's MNIST-tutorial CNN for 8x8 inputs, as the user's task file writes it (this
# script's folder is on sys.path when it runs)
from digits_cnn import CNN
from flax import nnx

from budgetax import training
from budgetax._io import atomic_write_text
from budgetax.training import core

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("cnn", "mlp", "mnist1d-cnn", "mnist1d-mlp", "transformer")
SWEEP_BUDGETS = (0.25, 0.5, 1.0)
SWEEP_SCHEDULES = ("linear", "cosine")
SWEEP_DIAGNOSTICS = 256


class MLP(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(64, 100, rngs=rngs)
        self.l2 = nnx.Linear(100, 100, rngs=rngs)
        self.l3 = nnx.Linear(100, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return self.l3(nnx.relu(self.l2(nnx.relu(self.l1(x)))))


def digits():
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        return (d.images / 16.0).astype(np.float32)[..., None], d.target.astype(np.int32), \
            "sklearn load_digits"
    except ImportError:
        rng = np.random.default_rng(0)
        return (rng.random((1797, 8, 8, 1), np.float32), rng.integers(0, 10, 1797).astype(
            np.int32), "synthetic 8x8")


def loss_fn(model, batch):
    logits = model(batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}


def make_task(name: str) -> tuple[training.Task, str]:
    """``(task, what its data is)`` of the model ``name`` (one of :data:`MODELS`)."""
    if name in ("cnn", "mlp"):
        x, y, source = digits()
        cls = CNN if name == "cnn" else MLP
        return training.Task(name=f"digits-{name}", model=lambda rngs: cls(rngs=rngs),
                             loss=loss_fn, train_data={"x": x, "y": y}), source
    if name in ("mnist1d-cnn", "mnist1d-mlp"):
        task = training.preset("mnist1d", "cnn1d" if name == "mnist1d-cnn" else "mlp")
        return task, f"mnist1d ({task.num_train} training examples)"
    if name == "transformer":
        task = training.load_task(f"{ROOT / 'examples' / 'transformer_lm.py'}:make_task")
        return task, (f"stdlib bytes ({task.num_train} windows of "
                      f"{task.config['context'] + 1} tokens)")
    raise ValueError(f"unknown model {name!r}: one of {list(MODELS)}")


def plain(task, batch, steps):
    """``(scan, python)``: callables that train ``steps`` steps of ``task``'s model and loss
    (Adam) and block."""
    model = task.build_model(nnx.Rngs(0))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    data = jax.tree.map(jnp.asarray, task.train_data)
    n = task.num_train
    key = jax.random.key(0)

    def objective(params, rest, b):
        model = nnx.merge(graphdef, params, rest, copy=True)
        out = task.loss(model, b)
        loss = out[0] if isinstance(out, tuple) else out
        return loss, nnx.state(model, nnx.Not(nnx.Param))

    def step(carry, i):
        params, rest, opt = carry
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, n)
        b = jax.tree.map(lambda a: a[idx], data)
        (loss, rest), g = jax.value_and_grad(objective, has_aux=True)(params, rest, b)
        updates, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, updates), rest, opt), loss

    init = (params, rest, tx.init(params))
    scanned = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))
    jstep = jax.jit(step)

    def scan():
        jax.block_until_ready(scanned(init))

    def python():
        c = init
        for i in range(steps):
            c, _ = jstep(c, jnp.int32(i))
        jax.block_until_ready(c)

    return scan, python


def core_runner(task, batch, steps, force_scan, diagnostics=False):
    spec = training.OptimizerSpec("adam", "linear", peak_lr=1e-3)
    evals = dict(num_evals=4, diagnostics=True) if diagnostics else dict(
        num_evals=1, diagnostics=False)

    def run():
        original = core.dispatches_steps
        if force_scan:
            core.dispatches_steps = lambda prog, mesh: False
        try:
            training.train(task, budget=steps, batch_size=batch, optimizer=spec, seed=0,
                           **evals)
        finally:
            core.dispatches_steps = original

    return run


def bench(name, task, batch, steps, repeats, diagnostics=False):
    # the step rates time training alone: no held-out evaluation at the end of core's run
    task = dataclasses.replace(task, eval_data=None)
    scan, python = plain(task, batch, steps)
    cases = {"core": core_runner(task, batch, steps, False),
             "core_scan": core_runner(task, batch, steps, True),
             "scan": scan, "python": python}
    if diagnostics:  # 4 evaluations with the full-training-set diagnostics, in the rate
        cases["core_eval"] = core_runner(task, batch, steps, False, True)
        cases["core_eval_scan"] = core_runner(task, batch, steps, True, True)
    compile_s = {}
    for k, f in cases.items():
        t = time.perf_counter()
        f()
        compile_s[k] = round(time.perf_counter() - t, 2)
    rates = {k: [] for k in cases}
    for _ in range(repeats):
        for k, f in cases.items():
            t = time.perf_counter()
            f()
            rates[k].append(steps / (time.perf_counter() - t))
    ratios = {k: [a / b for a, b in zip(rates[k], rates["python"], strict=True)]
              for k in cases if k != "python"}
    summary = {k: {"median": round(statistics.median(v), 1), "min": round(min(v), 1),
                   "max": round(max(v), 1)} for k, v in rates.items()}
    ratio_summary = {f"{k}/python": {"median": round(statistics.median(v), 3),
                                     "min": round(min(v), 3), "max": round(max(v), 3)}
                     for k, v in ratios.items()}
    prog = training.core.make_program(task, steps, training.OptimizerSpec("adam", "linear"),
                                      batch_size=batch, num_evals=1, diagnostics=False)
    return {"model": name, "steps": steps, "batch_size": batch,
            "core_dispatches_steps": core.dispatches_steps(prog, core.make_mesh(jax.devices())),
            "first_call_s": compile_s, "steps_per_s": summary, "ratios": ratio_summary,
            "steps_per_s_all": {k: [round(r, 1) for r in v] for k, v in rates.items()}}


def sweep_compile(name, batch, full_budget, timeout):
    """The compile seconds of a small sweep of model ``name``, measured in a fresh process
    with JAX's persistent compilation cache off (:func:`sweep_child`)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sweep-child", name,
           "--sweep-budget", str(full_budget), "--sweep-batch-size", str(batch)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the sweep of {name} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sweep_child(name, batch, full_budget) -> dict:
    """Runs the small sweep of ``name`` in this (fresh) process; returns what it reports."""
    from jax import monitoring
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    task, _ = make_task(name)
    spec = training.SweepSpec(
        optimizer=training.OptimizerSpec("adam", "linear"), full_budget=full_budget,
        budgets=SWEEP_BUDGETS, schedules=SWEEP_SCHEDULES, peak_lrs=(1e-3,), seeds=(0,),
        batch_size=batch, num_evals=2, diagnostics=SWEEP_DIAGNOSTICS)
    xla = []
    listening = [False]

    def compiled(event, seconds, **kwargs):
        if listening[0] and event == "/jax/core/compile/backend_compile_duration":
            xla.append((str(kwargs.get("fun_name", "")), seconds))

    monitoring.register_event_duration_secs_listener(compiled)
    with tempfile.TemporaryDirectory(prefix="cpu-conv-step-sweep-") as out_dir:
        listening[0] = True
        t = time.perf_counter()
        result = training.sweep(task, spec, out_dir, progress=False, checkpoint_every=0)
        wall = time.perf_counter() - t
        listening[0] = False
        from budgetax.training.sweep.store import STORE_NAME, Store
        with Store(os.path.join(out_dir, STORE_NAME), readonly=True) as store:
            sessions = store.sessions()
    budgets = sorted({g["budget"] for g in result.groups})
    compile_s = sum(s["compile_seconds"] for s in sessions)
    return {
        "model": name, "batch_size": batch, "full_budget": full_budget,
        "budgets": spec.budget_steps(), "schedules": list(SWEEP_SCHEDULES),
        "runs": len(result.runs), "distinct_budgets": len(spec.budget_steps()),
        "compiled_budgets": getattr(result, "compiled_budgets", None),
        "persistent_cache": {"jax_enable_compilation_cache":
                             bool(jax.config.jax_enable_compilation_cache),
                             "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir},
        "compile_s": round(compile_s, 2),
        "compile_s_per_budget": round(compile_s / len(spec.budget_steps()), 2),
        "group_compile_s": {str(b): round(sum(g["compile_seconds"] or 0.0 for g in result.groups
                                              if g["budget"] == b), 2) for b in budgets},
        "xla_compiles": len(xla), "xla_compile_s": round(sum(s for _, s in xla), 2),
        "xla_compile_s_largest": [round(s, 2) for _, s in sorted(xla, key=lambda c: -c[1])[:6]],
        "xla_compiles_in_order": [[n, round(s, 3)] for n, s in xla],
        "sweep_s": round(wall, 2),
    }


FINDINGS = """\
Cause. XLA:CPU calls its fast convolution (Eigen's) only for a convolution in the
canonical form (input NHWC, kernel HWIO, output NHWC). Its pass that rewrites the
other convolutions into that form (ConvCanonicalization, xla/service/cpu/
conv_canonicalization.cc) visits only the entry computation of a module
(`module->entry_computation()->MakeInstructionPostOrder()`). In a jitted step the
backward convolutions (the kernel's gradient, `dim_labels=f01b_i01o->01bf`, and the
input's, `b01f_01oi->b01f`) sit in the entry computation and are rewritten: the
optimised HLO has all 5 convolutions as `b01f_01io->b01f`. Inside `lax.scan` they sit
in the while loop's body and are left as they are: the optimised HLO of the scan has
2 canonical convolutions (the forward ones, which JAX emits canonical) and 3 that
are not, compiled by the generic loop emitter (`outer_dimension_partitions` in their
backend config), which runs the step 10-17x slower. Forward-only scans are not
affected; an MLP is not affected (its scan is faster than the Python loop: `scan/python`
in the table). The MNIST-1D CNN's 1-D convolutions are affected too, less than the 2-D
ones (its `scan/python` and `core_scan/python`).

Not the cause (same process, same data, 100-step scan vs Python loop): the thunk
runtime (`--xla_cpu_use_thunk_runtime=false` is "no longer supported" in jax 0.10.2:
the flag is ignored, scan 21-23 vs loop 185-212 steps/s), XNNPACK
(`--xla_cpu_use_xnnpack=false`: 16-23 vs 200-239), YNNPACK fusions
(`--xla_cpu_experimental_ynn_fusion_type=`: 11-15 vs 190-212), oneDNN
(`--xla_cpu_use_onednn=true`: 16-17 vs 142-219), the fusion emitters
(`--xla_cpu_use_fusion_emitters=false`: 12-13 vs 213-228), scan `unroll` 2 and 4
(12-17 vs 133-164: the unrolled steps are still in the loop body), vmapping over the
runs (a vmapped scan of one run: 11-15, the same as the plain scan; the training
core's scan is no slower than the plain one, `core_scan` vs `scan`).

Change. On the CPU backend, a program whose loss gradient has a convolution
(`core.dispatches_steps`: the backend and the task's model only, so every program of a
sweep makes the same choice) advances by a one-step program that the host calls
once per step (the entry computation, so its convolutions are canonicalised); its
metrics go into a donated [runs, piece] buffer. Its evaluation (the held-out metrics
and the diagnostics' full gradient, which had the same problem under `lax.map` over
the runs and `lax.scan` over the batches) is one program call per run and batch
(`evaluation.evaluate_stepped`; for a streamed task, `evaluate_streamed(..., stepped=True)`:
a `train` of 40 steps with 2 evaluations and diagnostics on 1400 streamed examples took
0.49-0.57 s, 4.8 s with the `lax.map` over the runs), the same procedure and order of sums.
Every step is that same compiled program, whatever the segments, stops, branches and
resumptions (tests: tests/training/test_core_speed_paths.py, bit-identical runs across
different stops and a resumed run). Other models and other backends advance by a
compiled loop of a piece's steps (`scan` in the table). `core_scan` is the core forced
to that loop for every model.

Several runs (measured once, not by this script: `training.train_many` of 4 seeds,
100 steps, 3 repeats): the stepped program 115-129 run-steps/s, the core forced to
its scan 14-15, the 4 runs trained one after another by `training.train` 161-243.
The runs of a program stay one vmapped program; vmapping a convolution over runs
with their own weights makes it a grouped convolution (`feature_group_count`), which
XLA:CPU runs more slowly than the same convolutions one run at a time (the gradient
of 1000 examples for 4 runs: vmapped 1.1-1.6 s, 4 calls of one run 0.24-0.29 s,
`lax.map` over the runs 6.8-6.9 s).
"""


def _fmt(d) -> str:
    return f"{d['median']} ({d['min']}-{d['max']})"


def markdown(result) -> str:
    lines = [f"# CPU step rates: training core vs plain scan vs Python loop ({result['date']})",
             "",
             f"jax {result['jax']}, {result['device']}, {result['cpu_count']} CPUs, "
             f"load average at start {result['load_average_at_start']}, at end "
             f"{result['load_average_at_end']}; the whole run {result['seconds']} s.",
             f"`{result['command']}`", "",
             "| model | steps | batch | core program | core steps/s | core (scan) | plain scan "
             "| python loop | core/python | core_scan/python | scan/python |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        s, q = r["steps_per_s"], r["ratios"]
        prog = "stepped" if r["core_dispatches_steps"] else "scan"
        lines.append(f"| {r['model']} | {r['steps']} | {r['batch_size']} | {prog} "
                     f"| {_fmt(s['core'])} | {_fmt(s['core_scan'])} | {_fmt(s['scan'])} "
                     f"| {_fmt(s['python'])} | {_fmt(q['core/python'])} "
                     f"| {_fmt(q['core_scan/python'])} | {_fmt(q['scan/python'])} |")
    for r in result["rows"]:
        q = r["ratios"]
        if "core_eval/python" in q:
            lines += ["", f"With 4 evaluations and the diagnostics on the whole training set "
                      f"({r['model']}, {r['steps']} steps, the evaluations' time in the rate): "
                      f"core {_fmt(r['steps_per_s']['core_eval'])} steps/s, core forced to its "
                      f"compiled scan and evaluation {_fmt(r['steps_per_s']['core_eval_scan'])};"
                      f" /python: {_fmt(q['core_eval/python'])} vs "
                      f"{_fmt(q['core_eval_scan/python'])}."]
    lines += ["", "Data: " + "; ".join(f"{r['model']}: {r['data']}" for r in result["rows"])
              + ".", "",
              "Medians over the repeats (min-max); ratios per repeat against the Python "
              "loop of the same repeat. `core program`: what the core chose (`stepped`: one "
              "program call per step; `scan`: the steps in one compiled loop). Where it chose "
              "the scan, `core` and `core_scan` run the same program: their difference is the "
              "noise of this machine."]
    if result.get("sweeps"):
        sw = result["sweeps"]
        lines += ["", "## Compile seconds of a small sweep", "",
                  f"`training.sweep` of {len(SWEEP_BUDGETS)} budgets (fractions "
                  f"{', '.join(map(str, SWEEP_BUDGETS))} of {sw[0]['full_budget']} steps) x "
                  f"{len(SWEEP_SCHEDULES)} schedules ({', '.join(SWEEP_SCHEDULES)}) x 1 lr x 1 "
                  f"seed, 2 evaluations, diagnostics on {SWEEP_DIAGNOSTICS} training examples, "
                  f"no checkpoints, each in a fresh process with JAX's persistent compilation "
                  f"cache off. `compile s`: what the sweep reports (its session: tracing, "
                  f"lowering and XLA compilation), `per group`: the same by budget (steps: "
                  f"seconds); `XLA compiles`: counted through `jax.monitoring` over the sweep "
                  f"call (every compilation, small ones included), with the largest.", "",
                  "| model | batch | runs | distinct budgets | compile s | compile s per budget "
                  "| per group | XLA compiles | XLA compile s (largest) | sweep s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in sw:
            groups = ", ".join(f"{b}: {v}" for b, v in s["group_compile_s"].items())
            largest = ", ".join(map(str, s["xla_compile_s_largest"][:3]))
            lines.append(f"| {s['model']} | {s['batch_size']} | {s['runs']} "
                         f"| {s['distinct_budgets']} | {s['compile_s']} "
                         f"| {s['compile_s_per_budget']} | {groups} | {s['xla_compiles']} "
                         f"| {s['xla_compile_s']} ({largest}) | {s['sweep_s']} |")
    lines += ["", "## Findings", "", FINDINGS]
    return "\n".join(lines)


# per model: (steps option, default steps, batch option)
STEPS = {"cnn": ("steps", 100, "batch_size"), "mlp": ("mlp_steps", 2000, "batch_size"),
         "mnist1d-cnn": ("mnist1d_cnn_steps", 400, "batch_size"),
         "mnist1d-mlp": ("mnist1d_mlp_steps", 2000, "batch_size"),
         "transformer": ("transformer_steps", 100, "transformer_batch_size")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
    for name, (opt, default, _) in STEPS.items():
        p.add_argument("--" + opt.replace("_", "-"), type=int, default=default,
                       help=f"steps of {name} per timed call (default {default})")
    p.add_argument("--batch-size", type=int, default=64,
                   help="batch size of the digits and MNIST-1D models (default 64)")
    p.add_argument("--transformer-batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sweep-budget", type=int, default=64,
                   help="full budget (steps) of the small sweep whose compile seconds are "
                        "measured (default 64)")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweeps")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--sweep-child", help=argparse.SUPPRESS)
    p.add_argument("--sweep-batch-size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sweep_child:  # the fresh process of one sweep: its report on the last line
        print(json.dumps(sweep_child(args.sweep_child, args.sweep_batch_size,
                                     args.sweep_budget)))
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        p.error(f"--models: unknown {unknown}, choose from {', '.join(MODELS)}")
    dev = jax.devices()[0]
    result = {
        "device": f"{dev.platform}: {dev.device_kind}", "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "findings": FINDINGS,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/cpu_conv_step.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "rows": [], "sweeps": [],
    }
    t_all = time.perf_counter()
    for name in models:
        t_model = time.perf_counter()
        opt, _, batch_opt = STEPS[name]
        steps, batch = getattr(args, opt), getattr(args, batch_opt)
        task, data = make_task(name)
        row = bench(name, task, batch, steps, args.repeats, diagnostics=name == "cnn")
        row["data"] = data
        result["rows"].append(row)
        print(f"{name}: steps/s " + ", ".join(f"{k} {v['median']}"
                                              for k, v in row["steps_per_s"].items()),
              flush=True)
        if not args.no_sweep:
            s = sweep_compile(name, batch, args.sweep_budget, timeout=1200)
            result["sweeps"].append(s)
            print(f"{name}: sweep compile {s['compile_s']} s for {s['distinct_budgets']} "
                  f"budgets, {s['xla_compiles']} XLA compiles", flush=True)
        row["seconds"] = round(time.perf_counter() - t_model, 1)  # step rates and sweep
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cpu_conv_step.json", json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    atomic_write_text(out / "cpu_conv_step.md", md)
    print(md)


if __name__ == "__main__":
    main()
