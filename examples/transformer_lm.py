"""A byte-level decoder-only Transformer language model, swept with budgetax.

Written as a user would write their own task: a Flax NNX model, a next-byte
cross-entropy loss and a held-out metric, on text every machine has offline: a
fixed, hashed subset of the Python standard library's own source files.
Nothing here imports a private budgetax name.

    budgetax sweep --task examples.transformer_lm:make_task \\
        --out examples/results/transformer_lm --full-budget 200 --budgets 0.5,1 \\
        --schedules constant,linear,cosine,wsd --lrs 3e-3,1e-2,3e-2 --seeds 0,1 \\
        --batch-size 16 --diagnostics 256

The corpus depends on the Python version's standard library: its SHA-256 is in the
task's config, so a results directory made from another corpus is not resumed.
"""

from __future__ import annotations

import hashlib
import math
import os
import sysconfig

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from budgetax import training

SIZES = {
    # name: (corpus bytes, context, width, layers, heads)
    "default": (200_000, 48, 48, 2, 4),
    "ci": (24_000, 32, 32, 1, 2),
}


def stdlib_corpus(num_bytes: int, *, bucket: int = 7) -> bytes:
    """``num_bytes`` of Python source: the stdlib files whose path hash falls in one bucket.

    Files are taken in sorted order of their path relative to the stdlib, keeping
    those with ``sha256(path) mod 16 == bucket``, until ``num_bytes`` are collected.
    """
    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in ("site-packages", "test", "tests", "__pycache__"))
        for name in sorted(filenames):
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                if int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 16 == bucket:
                    paths.append(rel)
    out = bytearray()
    for rel in sorted(paths):
        with open(os.path.join(root, rel), "rb") as f:
            out += f.read()
        if len(out) >= num_bytes:
            break
    if len(out) < num_bytes:
        raise RuntimeError(f"the standard library at {root} has only {len(out)} bytes in the "
                           f"bucket, fewer than {num_bytes}")
    return bytes(out[:num_bytes])


def windows(corpus: bytes, context: int) -> np.ndarray:
    """Non-overlapping windows of ``context + 1`` bytes: ``[N, context + 1]`` int32 tokens."""
    arr = np.frombuffer(corpus, np.uint8).astype(np.int32)
    n = len(arr) // (context + 1)
    return arr[:n * (context + 1)].reshape(n, context + 1)


class Block(nnx.Module):
    """Pre-norm Transformer block: causal self-attention, then a 4x GELU MLP."""

    def __init__(self, width, heads, *, rngs, dtype=None, param_dtype=jnp.float32):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = nnx.LayerNorm(width, **kw)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=width, decode=False,
                                           **kw)
        self.norm2 = nnx.LayerNorm(width, **kw)
        self.up = nnx.Linear(width, 4 * width, **kw)
        self.down = nnx.Linear(4 * width, width, **kw)

    def __call__(self, h, mask):
        h = h + self.attn(self.norm1(h), mask=mask)
        return h + self.down(jax.nn.gelu(self.up(self.norm2(h))))


class ByteLM(nnx.Module):
    """A decoder-only Transformer over bytes: embeddings, blocks, a tied-free output head."""

    def __init__(self, context, width, layers, heads, *, rngs, dtype=None,
                 param_dtype=jnp.float32):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embed = nnx.Embed(256, width, **kw)
        self.pos = nnx.Embed(context, width, **kw)
        self.blocks = nnx.List([Block(width, heads, **kw) for _ in range(layers)])
        self.norm = nnx.LayerNorm(width, **kw)
        self.head = nnx.Linear(width, 256, **kw)

    def __call__(self, tokens):
        t = tokens.shape[-1]
        h = self.embed(tokens) + self.pos(jnp.arange(t))
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.norm(h)).astype(jnp.float32)


def next_byte_loss(model, batch):
    """Mean next-byte cross-entropy (nats) and next-byte accuracy."""
    tokens = batch["tokens"]
    logits = model(tokens[:, :-1])
    targets = tokens[:, 1:]
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
    accuracy = jnp.mean((jnp.argmax(logits, -1) == targets).astype(jnp.float32))
    return loss, {"accuracy": accuracy}


def held_out_metrics(model, batch):
    """Bits per byte (the loss in base 2) and next-byte accuracy."""
    loss, metrics = next_byte_loss(model, batch)
    return {"bits_per_byte": loss / math.log(2.0), **metrics}


def make_task(size: str = "default") -> training.Task:
    """The byte-level LM task (``size``: ``"default"`` or the small ``"ci"``)."""
    num_bytes, context, width, layers, heads = SIZES[size]
    corpus = stdlib_corpus(num_bytes)
    data = windows(corpus, context)
    split = int(0.9 * len(data))

    def model(rngs, dtype=None, param_dtype=jnp.float32):
        return ByteLM(context, width, layers, heads, rngs=rngs, dtype=dtype,
                      param_dtype=param_dtype)

    return training.Task(
        name=f"stdlib-bytes/transformer-{size}", model=model, loss=next_byte_loss,
        train_data={"tokens": data[:split]}, eval_data={"tokens": data[split:]},
        eval_metrics=held_out_metrics,
        config={"corpus_sha256": hashlib.sha256(corpus).hexdigest(), "bytes": num_bytes,
                "context": context, "width": width, "layers": layers, "heads": heads},
        report_metric="test_bits_per_byte", higher_is_better=False)


def make_ci_task() -> training.Task:
    """The CI-sized task (for ``--task examples.transformer_lm:make_ci_task``)."""
    return make_task("ci")
