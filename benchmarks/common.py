"""Shared pieces of the benchmark scripts: a plain-JAX MLP, so that only the optimizer varies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def init_mlp(key, sizes=(40, 100, 100, 10)):
    """He-style initialised MLP parameters: a list of ``{"w", "b"}`` layers."""
    params = []
    for k, (i, o) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        params.append({"w": jax.random.normal(k, (i, o)) / np.sqrt(i), "b": jnp.zeros(o)})
    return params


def mlp_loss(params, x, y):
    """Mean softmax cross-entropy of the ReLU MLP ``params`` on ``(x, y)``."""
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    logits = h @ params[-1]["w"] + params[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
