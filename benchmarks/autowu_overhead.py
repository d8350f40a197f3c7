"""Step-time overhead of AutoWU over the same optimizer with a fixed schedule.

Compares, in one process and interleaved repeat by repeat, whole training runs of
``T`` steps (forward, backward, optimizer update, in one ``lax.scan`` inside one
``jax.jit``, starting from a fresh optimizer state each repeat):

  fixed:   budgetax.adamp(schedules.cosine(T, 1e-2, warmup_steps=T // 10))
  autowu:  budgetax.autowu_adamp(T)                 (value = the minibatch loss)
  naive:   autowu_adamp(T) with the GP behind a plain ``lax.cond`` (vmap only: the
           batched predicate turns it into a ``select`` that runs the GP every step)

single run and ``jax.vmap``-ped over 16 runs (different initialisations), on the
MNIST-1D MLP (40-100-100-10) and the MNIST-1D CNN (3 conv x 25 channels; single run
and smallest budget only: vmapped convolutions are very slow on CPU), batch 1000. AutoWU tests every
``round(T/100)`` steps during the first half of the budget at most, so a run makes
at most ~50 GP tests whatever ``T``; the cost of one test (single and batched over 16)
is timed separately, which gives the overhead at other budgets:
``overhead(T) ~ 50 * test_ms / (T * step_ms)``.

Usage: python benchmarks/autowu_overhead.py [--budgets 200 1000] [--repeats 5]
       [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import init_mlp, mlp_loss  # noqa: E402  (benchmarks/ is on sys.path)
from jax import lax

import budgetax
from budgetax import schedules
from budgetax.transforms import autowu as aw

RUNS = 16


def init_cnn(key, channels=25, layers=3, width=5):
    keys = jax.random.split(key, layers + 1)
    params, c, n = [], 1, 40
    for k in keys[:-1]:
        params.append({"w": jax.random.normal(k, (width, c, channels)) / np.sqrt(width * c),
                       "b": jnp.zeros(channels)})
        c, n = channels, (n + 2 - width) // 2 + 1
    params.append({"w": jax.random.normal(keys[-1], (n * c, 10)) / np.sqrt(n * c),
                   "b": jnp.zeros(10)})
    return params


def cnn_loss(params, x, y):
    h = x[..., None]
    for layer in params[:-1]:
        h = lax.conv_general_dilated(h, layer["w"], (2,), [(1, 1)],
                                     dimension_numbers=("NWC", "WIO", "NWC"))
        h = jax.nn.relu(h + layer["b"])
    logits = h.reshape(h.shape[0], -1) @ params[-1]["w"] + params[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


MODELS = {"mnist1d_mlp": (init_mlp, mlp_loss), "mnist1d_cnn": (init_cnn, cnn_loss)}


def make_run(tx, loss_fn, init_fn, steps, runs):
    def one(key, x, y):
        params = init_fn(key)
        state = tx.init(params)

        def body(carry, _):
            params, state = carry
            loss, g = jax.value_and_grad(loss_fn)(params, x, y)
            u, state = tx.update(g, state, params, value=loss)
            return (optax.apply_updates(params, u), state), loss

        (_, state), losses = lax.scan(body, (params, state), None, length=steps)
        return losses[-1], state

    if runs == 1:
        return jax.jit(lambda keys, x, y: one(keys[0], x, y))
    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def naive_cond(pred, true_fn, false_fn, operand):
    return lax.cond(pred, true_fn, false_fn, operand)


def bench(model, runs, budget, repeats, with_naive):
    init_fn, loss_fn = MODELS[model]
    x = jax.random.normal(jax.random.key(1), (1000, 40))
    y = jax.random.randint(jax.random.key(2), (1000,), 0, 10)
    keys = jax.random.split(jax.random.key(0), runs)
    fixed = optax.with_extra_args_support(
        budgetax.adamp(schedules.cosine(budget, 1e-2, warmup_steps=budget // 10)))
    variants = {"fixed": fixed, "autowu": budgetax.autowu_adamp(budget)}
    if with_naive:
        variants["naive"] = budgetax.autowu_adamp(budget)
    runners, switch = {}, {}
    for name, tx in variants.items():
        runners[name] = make_run(tx, loss_fn, init_fn, budget, runs)
        original = aw._cond_any
        if name == "naive":
            aw._cond_any = naive_cond  # read at trace time only
        try:
            loss, state = runners[name](keys, x, y)  # compile + warm up
            jax.block_until_ready(loss)
        finally:
            aw._cond_any = original
        if name != "fixed":
            switch[name] = np.atleast_1d(np.asarray(state[-1].switch_step)).tolist()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name in variants:
            t0 = time.perf_counter()
            jax.block_until_ready(runners[name](keys, x, y)[0])
            times[name].append(time.perf_counter() - t0)
    t = {k: np.asarray(v) for k, v in times.items()}
    out = {"model": model, "runs": runs, "budget": budget, "repeats": repeats,
           "ms_per_step": {k: float(np.median(v) / budget * 1e3) for k, v in t.items()},
           "switch_steps": switch}
    for name in variants:
        if name != "fixed":
            r = t[name] / t["fixed"]
            out[f"ratio_{name}"] = {"median": float(np.median(r)), "min": float(r.min()),
                                    "max": float(r.max())}
    return out


def bench_test_cost(budget, repeats=20):
    """Milliseconds of one GP test (the full buffer), single and batched over 16."""
    n = math_bins(budget)
    rng = np.random.default_rng(0)
    loss_sum = jnp.asarray(np.cumsum(rng.random(n)), jnp.float32)
    count = jnp.ones(n, jnp.float32)
    step_sum = jnp.arange(n, dtype=jnp.float32)
    t = jnp.int32(n)
    key = jax.random.key(0)
    single = jax.jit(aw._gp_test)
    batched = jax.jit(jax.vmap(aw._gp_test, in_axes=(0, 0, 0, None, None)))
    args1 = (loss_sum, count, step_sum, t, key)
    argsb = tuple(jnp.broadcast_to(a, (RUNS, n)) for a in args1[:3]) + (t, key)
    res = {}
    for name, fn, args in (("single", single, args1), (f"vmap{RUNS}", batched, argsb)):
        jax.block_until_ready(fn(*args))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            ts.append(time.perf_counter() - t0)
        res[name] = float(np.median(ts) * 1e3)
    return {"bins": n, "ms_per_test": res}


def math_bins(budget):
    limit = max(1, int(np.ceil(0.5 * budget - 1e-9)))
    width = int(np.ceil(limit / aw.BUFFER_SIZE))
    return int(np.ceil(limit / width))


def to_markdown(result):
    lines = [
        "# AutoWU step-time overhead",
        "",
        f"Device: {result['device']}; jax {result['jax']}, optax {result['optax']}; "
        f"{result['date']}; {result['cpu_count']} CPU cores, 1-min load average at start / end "
        f"{result['load_average_start_end']} (a shared machine: other jobs inflate the times).",
        "",
        "Command: `" + result["command"] + "`",
        "",
        "Whole runs of T steps (fresh optimizer state each repeat), interleaved repeats; ratio = "
        "run time / run time of `adamp` with a fixed warmup+cosine schedule (median, min-max). "
        "`naive` = the GP behind a plain `lax.cond`, which vmap turns into a `select`.",
        "",
        "| model | runs | T | fixed ms/step | AutoWU ms/step | AutoWU ratio | naive ms/step "
        "| naive ratio | AutoWU switch steps |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for r in result["results"]:
        ms = r["ms_per_step"]
        a = r["ratio_autowu"]
        nv = r.get("ratio_naive")
        lines.append(
            f"| {r['model']} | {r['runs']} | {r['budget']} | {ms['fixed']:.3f} | "
            f"{ms['autowu']:.3f} | {a['median']:.2f} ({a['min']:.2f}-{a['max']:.2f}) | "
            + (f"{ms['naive']:.3f} | {nv['median']:.2f} ({nv['min']:.2f}-{nv['max']:.2f})"
               if nv else "- | -")
            + f" | {r['switch_steps'].get('autowu')} |")
    c = result["gp_test"]
    lines += ["", f"One GP test ({c['bins']} bins): "
              + ", ".join(f"{k} {v:.2f} ms" for k, v in c["ms_per_test"].items())
              + ". A run makes at most ~50 tests (every 1% of the budget during at most its "
              "first half), so the overhead shrinks as 1/T at larger budgets."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    load_start = os.getloadavg()
    first, *more = sorted(args.budgets)
    results = [
        bench("mnist1d_mlp", 1, first, args.repeats, with_naive=False),
        bench("mnist1d_mlp", RUNS, first, args.repeats, with_naive=True),
        bench("mnist1d_cnn", 1, first, max(2, args.repeats // 2), with_naive=False),
    ]
    for budget in more:  # the GP cost per run is ~constant: the overhead falls as 1/T
        results += [bench("mnist1d_mlp", 1, budget, args.repeats, with_naive=False),
                    bench("mnist1d_mlp", RUNS, budget, max(2, args.repeats // 2),
                          with_naive=False)]
    result = {
        "benchmark": "autowu_overhead",
        "command": "python benchmarks/autowu_overhead.py --budgets "
                   + " ".join(str(b) for b in args.budgets) + f" --repeats {args.repeats}",
        "device": f"{dev.platform}: {dev.device_kind} ({cpu}, {jax.device_count()} device(s))",
        "jax": jax.__version__,
        "optax": optax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
        "gp_test": bench_test_cost(first),
        "cpu_count": os.cpu_count(),
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "autowu_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "autowu_overhead.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
