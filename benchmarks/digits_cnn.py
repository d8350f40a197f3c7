"""The CNN of Flax's MNIST tutorial on scikit-learn's 8x8 digits, written as a user's task.

What a new user writes to sweep the tutorial's model on a small dataset every machine
has offline (``sklearn.datasets.load_digits``, no download): the tutorial's two 3x3
``nnx.Conv`` of 32 and 64 features, each followed by ReLU and a 2x2 ``avg_pool``, then
``Linear(256)`` and ``Linear(10)``, sized for 8x8 inputs; a softmax cross-entropy loss
with accuracy; a fixed, shuffled 80/20 split (1437 training, 360 test images). Nothing
here imports a private budgetax name.

    budgetax sweep --task benchmarks/digits_cnn.py:make_task --out digits-sweep \\
        --full-budget 200 --budgets 0.5,1 --schedules constant,linear,cosine,wsd \\
        --lrs 1e-3,3e-3 --seeds 0,1 --batch-size 32

``benchmarks/cpu_sweep.py`` times this sweep.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from budgetax import training


class CNN(nnx.Module):
    """Flax's MNIST-tutorial CNN for 8x8 single-channel images."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(2 * 2 * 64, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.conv1(x)))
        x = self.avg_pool(nnx.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        return self.linear2(nnx.relu(self.linear1(x)))


def loss_fn(model, batch):
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}


def make_task() -> training.Task:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[..., None]
    labels = d.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:1437], order[1437:]
    return training.Task(
        name="digits/flax-tutorial-cnn", model=CNN, loss=loss_fn,
        train_data={"image": images[train], "label": labels[train]},
        eval_data={"image": images[test], "label": labels[test]},
        config={"split": "permutation seed 0, 1437/360"})
