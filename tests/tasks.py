"""Tasks defined outside the package, as a user would write them (used by the tests and CLI)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from budgetax import training


class Regressor(nnx.Module):
    """A small MLP regressor, written the way a user would (no budgetax import)."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.tanh(self.hidden(x)))[:, 0]


def mse(model, batch):
    err = model(batch["x"]) - batch["y"]
    return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}


def within_tenth(model, batch):
    """The held-out metric: the fraction of predictions within 0.1 of the target."""
    err = jnp.abs(model(batch["x"]) - batch["y"])
    return {"within_0.1": jnp.mean((err < 0.1).astype(jnp.float32))}


def regression_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3]).astype(np.float32)
    return {"x": x, "y": y}


class ListSource:
    """A random-access source of records (like a TFDS / grain data source)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data["y"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.data.items()}


def make_task(streamed: bool = False) -> training.Task:
    train, test = regression_data(600, 0), regression_data(200, 1)
    if streamed:
        train, test = ListSource(train), ListSource(test)
    return training.Task(name="toy-regression", model=Regressor, loss=mse, train_data=train,
                         eval_data=test, eval_metrics=within_tenth,
                         config={"n_train": 600, "n_test": 200, "features": 4})


def not_a_task():
    return {"model": Regressor}


def vector_loss():
    return training.Task(name="bad", model=Regressor,
                         loss=lambda model, batch: model(batch["x"]) - batch["y"],
                         train_data=regression_data(32, 0))


def ragged_data():
    data = regression_data(32, 0)
    data["y"] = data["y"][:31]
    return training.Task(name="ragged", model=Regressor, loss=mse, train_data=data)
