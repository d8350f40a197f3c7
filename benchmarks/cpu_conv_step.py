"""Step rate of a small CNN (and an MLP) on CPU: the training core vs a plain scan vs a Python loop.

The model is the CNN of Flax's MNIST tutorial (two 3x3 ``nnx.Conv`` of 32 and 64
features, each followed by ReLU and a 2x2 ``avg_pool``, then ``Linear(256)`` and
``Linear(10)``) sized for the 8x8 digits of scikit-learn's ``load_digits``
(synthetic 8x8 data when scikit-learn is missing); the MLP is 64-100-100-10. For
each model, in one process, interleaved and repeated, it times:

- ``core``: ``training.train`` (the training core, one run, Adam, evaluation and
  diagnostics off), with the core's automatic choice of program;
- ``core_scan``: the same with the core forced to its scan program (what the core
  did for every model before it dispatched conv steps one by one on CPU);
- ``scan``: a plain ``jax.lax.scan`` of an nnx train step (Adam) inside one jit;
- ``python``: a Python loop calling the same step under ``jax.jit``.

Rates are steps/s (after a warm-up call that compiles); the ratios are taken per
repeat against the Python loop of the same repeat. The CPU may be shared: the
spread over repeats is recorded, and the load average.

Usage: python benchmarks/cpu_conv_step.py [--steps 200] [--mlp-steps 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
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


def plain(model_cls, x, y, batch, steps):
    """``(scan, python)``: callables that train ``steps`` steps and block."""
    graphdef, params = nnx.split(model_cls(rngs=nnx.Rngs(0)), nnx.Param)
    tx = optax.adam(1e-3)
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    key = jax.random.key(0)

    def step(carry, i):
        params, opt = carry
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, xd.shape[0])
        b = {"x": xd[idx], "y": yd[idx]}
        (loss, _), g = jax.value_and_grad(
            lambda p: loss_fn(nnx.merge(graphdef, p), b), has_aux=True)(params)
        updates, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, updates), opt), loss

    init = (params, tx.init(params))
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


def bench(name, model_cls, x, y, batch, steps, repeats, diagnostics=False):
    task = training.Task(name=f"digits-{name}", model=lambda rngs: model_cls(rngs=rngs),
                         loss=loss_fn, train_data={"x": x, "y": y})
    scan, python = plain(model_cls, x, y, batch, steps)
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
affected; an MLP is not affected (the scan is 2-2.5x faster than the Python loop).

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
different stops and a resumed run). Other models and other backends keep the scan.
`core_scan` is the core forced to its scan: what it ran before for every model.

Several runs (measured once, not by this script: `training.train_many` of 4 seeds,
100 steps, 3 repeats): the stepped program 115-129 run-steps/s, the core forced to
its scan 14-15, the 4 runs trained one after another by `training.train` 161-243.
The runs of a program stay one vmapped program; vmapping a convolution over runs
with their own weights makes it a grouped convolution (`feature_group_count`), which
XLA:CPU runs more slowly than the same convolutions one run at a time (the gradient
of 1000 examples for 4 runs: vmapped 1.1-1.6 s, 4 calls of one run 0.24-0.29 s,
`lax.map` over the runs 6.8-6.9 s).
"""


def markdown(result) -> str:
    lines = [f"# CPU conv step rate ({result['date']})", "",
             f"jax {result['jax']}, {result['device']}, {result['cpu_count']} CPUs, "
             f"load average at start {result['load_average_at_start']}, data: {result['data']}.",
             f"`{result['command']}`", "",
             "| model | steps | core steps/s | core (scan) | plain scan | python loop "
             "| core/python | core_scan/python | scan/python |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        s, q = r["steps_per_s"], r["ratios"]
        fmt = lambda d: f"{d['median']} ({d['min']}-{d['max']})"
        lines.append(f"| {r['model']} | {r['steps']} | {fmt(s['core'])} | {fmt(s['core_scan'])} "
                     f"| {fmt(s['scan'])} | {fmt(s['python'])} | {fmt(q['core/python'])} "
                     f"| {fmt(q['core_scan/python'])} | {fmt(q['scan/python'])} |")
    for r in result["rows"]:
        q = r["ratios"]
        if "core_eval/python" in q:
            fmt = lambda d: f"{d['median']} ({d['min']}-{d['max']})"
            lines += ["", f"With 4 evaluations and the diagnostics on the whole training set "
                      f"({r['model']}, {r['steps']} steps, the evaluations' time in the rate): "
                      f"core {fmt(r['steps_per_s']['core_eval'])} steps/s, core forced to its "
                      f"compiled scan and evaluation {fmt(r['steps_per_s']['core_eval_scan'])}; "
                      f"/python: {fmt(q['core_eval/python'])} vs "
                      f"{fmt(q['core_eval_scan/python'])}."]
    lines += ["", "Medians over the repeats (min-max); ratios per repeat against the Python "
              "loop of the same repeat. For the MLP `core` and `core_scan` run the same "
              "program (the scan): their difference is the noise of this machine.", "",
              "## Findings", "", FINDINGS]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--mlp-steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    x, y, source = digits()
    dev = jax.devices()[0]
    result = {
        "device": f"{dev.platform}: {dev.device_kind}", "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "jax": jax.__version__, "data": source,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "findings": FINDINGS,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/cpu_conv_step.py " + " ".join(
            argv if argv is not None else __import__("sys").argv[1:]),
        "rows": [bench("cnn", CNN, x, y, args.batch_size, args.steps, args.repeats, True),
                 bench("mlp", MLP, x, y, args.batch_size, args.mlp_steps, args.repeats)],
    }
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cpu_conv_step.json", json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    atomic_write_text(out / "cpu_conv_step.md", md)
    print(md)


if __name__ == "__main__":
    main()
