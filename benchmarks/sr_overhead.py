"""Cost of stochastic rounding's random bits: JAX PRNG implementations vs a counter-based hash.

Stochastic rounding of a bfloat16 weight adds 16 uniform random bits to the low half of
``w + u`` in float32 and truncates (see ``budgetax.transforms.precision``). The rounding
itself is three integer operations; the random bits are the cost. This script times one
training step of the MNIST-1D MLP (40-100-100-10, 15,210 parameters, batch 100, bfloat16
parameters, activations and AdamW moments) with the weight update rounded

* ``nearest``      by ``optax.apply_updates`` (the baseline, ratio 1),
* ``threefry``     ``jax.random.bits`` with the default threefry key (budgetax before),
* ``rbg``          ``jax.random.bits`` with an ``rbg`` key (XLA RngBitGenerator),
* ``unsafe_rbg``   ``jax.random.bits`` with an ``unsafe_rbg`` key,
* ``hash``         a counter-based hash of (key, step, element index): the ``lowbias32``
                   integer finaliser (Wellons) of ``index * 0x9E3779B9 + key0``, xor ``key1``,
                   the key split once per step as before (budgetax now),

plus float32 AdamW for reference, and the same for a 1M-parameter flat leaf (update only),
where the bit generation dominates. Every variant runs ``--steps`` steps inside one
``lax.scan`` per call (compiled once, not timed); rounds are interleaved and the ratio to
``nearest`` is taken within each round, the median reported.

Usage: python benchmarks/sr_overhead.py [--steps 200] [--rounds 7]
       (writes benchmarks/results/sr_overhead.{json,md})
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
from jax import lax

import budgetax

VARIANTS = ("nearest", "threefry", "rbg", "unsafe_rbg", "hash", "budgetax")


def _lowbias32(x):
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _bits_hash(key_data, shape):
    idx = lax.iota(jnp.uint32, int(np.prod(shape))).reshape(shape)
    return (_lowbias32(idx * jnp.uint32(0x9E3779B9) + key_data[0]) ^ key_data[1]) >> 16


def _bits_prng(impl):
    def bits(key_data, shape):
        key = jax.random.wrap_key_data(key_data, impl=impl)
        return jax.random.bits(key, shape, jnp.uint16).astype(jnp.uint32)
    return bits


def _sr_tx(variant):
    """A rounding transform last in the chain; the key data lives in the state."""
    if variant == "budgetax":
        return budgetax.stochastic_rounding(0)
    impl = {"threefry": "threefry2x32", "hash": "threefry2x32"}.get(variant, variant)
    bits_fn = _bits_hash if variant == "hash" else _bits_prng(impl)

    def init_fn(params):
        del params
        return jax.random.key_data(jax.random.key(0, impl=impl))

    def update_fn(updates, state, params):
        key = jax.random.wrap_key_data(state, impl=impl)
        key, sub = jax.random.split(key)
        leaves, treedef = jax.tree.flatten(updates)
        subs = jax.random.split(sub, len(leaves))
        out = []
        for i, (u, w) in enumerate(zip(leaves, treedef.flatten_up_to(params), strict=True)):
            w32 = w.astype(jnp.float32)
            x = w32 + u.astype(jnp.float32)
            b = lax.bitcast_convert_type(x, jnp.uint32)
            noise = bits_fn(jax.random.key_data(subs[i]), x.shape)
            r = lax.bitcast_convert_type((b + noise) & jnp.uint32(0xFFFF0000), jnp.float32)
            out.append(jnp.where(jnp.isnan(x), x, r) - w32)
        return jax.tree.unflatten(treedef, out), jax.random.key_data(key)

    return optax.GradientTransformation(init_fn, update_fn)


def _mlp_params(dtype):
    rng = np.random.default_rng(0)
    sizes = [(40, 100), (100, 100), (100, 10)]
    return [{"w": jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]), dtype),
             "b": jnp.zeros(s[1], dtype)} for s in sizes]


def _loss(params, x, y):
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _train_program(variant, steps):
    f32 = variant == "float32"
    dtype = jnp.float32 if f32 else jnp.bfloat16
    params = _mlp_params(dtype)
    base = optax.adamw(1e-3, weight_decay=1e-4, mu_dtype=None if f32 else jnp.bfloat16)
    tx = base if variant in ("float32", "nearest") else optax.chain(base, _sr_tx(variant))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(steps, 100, 40)), dtype)
    y = jnp.asarray(rng.integers(0, 10, size=(steps, 100)), jnp.int32)

    def body(carry, batch):
        p, s = carry
        g = jax.grad(_loss)(p, *batch)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    run = jax.jit(lambda p, s: lax.scan(body, (p, s), (x, y))[0])
    args = (params, tx.init(params))
    jax.block_until_ready(run(*args))  # compile
    return lambda: jax.block_until_ready(run(*args))


def _update_program(variant, steps, n=1 << 20):
    params = {"w": jnp.asarray(np.random.default_rng(2).normal(size=n), jnp.bfloat16)}
    tx = optax.identity() if variant == "nearest" else _sr_tx(variant)
    u = {"w": jnp.full(n, 1e-3, jnp.float32)}

    def body(carry, _):
        p, s = carry
        upd, s = tx.update(u, s, p)
        return (optax.apply_updates(p, upd), s), None

    run = jax.jit(lambda p, s: lax.scan(body, (p, s), None, length=steps)[0])
    args = (params, tx.init(params))
    jax.block_until_ready(run(*args))
    return lambda: jax.block_until_ready(run(*args))


def _time(programs, rounds):
    ratios = {k: [] for k in programs}
    cpu_ratios = {k: [] for k in programs}
    secs = {k: [] for k in programs}
    for _ in range(rounds):
        t, c = {}, {}
        for k, fn in programs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            t[k] = time.perf_counter() - t0
            c[k] = time.process_time() - c0
            secs[k].append(t[k])
        for k in programs:
            ratios[k].append(t[k] / t["nearest"])
            cpu_ratios[k].append(c[k] / c["nearest"])
    return {k: {"ratio_median": float(np.median(ratios[k])),
                "ratio_min": float(np.min(ratios[k])), "ratio_max": float(np.max(ratios[k])),
                "cpu_ratio_median": float(np.median(cpu_ratios[k])),
                "cpu_ratio_min": float(np.min(cpu_ratios[k])),
                "cpu_ratio_max": float(np.max(cpu_ratios[k])),
                "seconds_median": float(np.median(secs[k]))} for k in programs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    train = {v: _train_program(v, args.steps) for v in ("float32",) + VARIANTS}
    update = {v: _update_program(v, max(args.steps // 10, 5)) for v in VARIANTS}
    res = {"train_step_mlp": _time(train, args.rounds),
           "update_only_1M": _time(update, args.rounds)}
    meta = {"command": f"python benchmarks/sr_overhead.py --steps {args.steps} "
                       f"--rounds {args.rounds}",
            "jax": jax.__version__, "backend": jax.default_backend(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpu_count": os.cpu_count(),
            "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sr_overhead.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1))
    lines = ["# Stochastic rounding: cost of the random bits", "",
             f"Produced by `{meta['command']}` on {meta['backend']} ({meta['platform']}), "
             f"jax {meta['jax']}, {meta['date']}. Time ratio to bf16 with nearest rounding, "
             f"measured in the same run (median over {args.rounds} interleaved rounds, "
             "min-max in brackets). `budgetax` is `budgetax.stochastic_rounding` as shipped. "
             f"{meta['cpu_count']} CPU cores, 1-min load average at start / end "
             f"{meta['load_average_start_end']} (a shared machine: other jobs inflate the wall "
             "times; the process CPU time, summed over threads, is the steadier measure).", ""]
    for name, title in (("train_step_mlp", "MNIST-1D MLP training step (AdamW, batch 100)"),
                        ("update_only_1M", "update only, one 1M-parameter bfloat16 leaf")):
        lines += [f"## {title}", "",
                  "| variant | time / nearest | CPU time / nearest | seconds per call |",
                  "| --- | --- | --- | --- |"]
        for k, r in res[name].items():
            lines.append(f"| {k} | {r['ratio_median']:.2f} ({r['ratio_min']:.2f}-"
                         f"{r['ratio_max']:.2f}) | {r['cpu_ratio_median']:.2f} "
                         f"({r['cpu_ratio_min']:.2f}-{r['cpu_ratio_max']:.2f}) | "
                         f"{r['seconds_median']:.3f} |")
        lines.append("")
    (out / "sr_overhead.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
