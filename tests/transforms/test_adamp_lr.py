"""One learning-rate rule for budgetax's optimizers: ``>= 0`` (0 accepted as optax does)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import budgetax

OPTIMIZERS = {
    "adamp": lambda lr: budgetax.adamp(lr),
    "sgdp": lambda lr: budgetax.sgdp(lr, momentum=0.9),
    "demon_sgd": lambda lr: budgetax.demon_sgd(lr, 10),
    "demon_adam": lambda lr: budgetax.demon_adam(lr, 10),
}


def _update(tx):
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.3, -0.1])}
    grads = {"w": jnp.array([[0.2, 0.1], [-0.4, 0.3]]), "b": jnp.array([1.0, -1.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("zero", [0.0, 0, jnp.asarray(0.0)])
def test_a_zero_learning_rate_is_accepted_and_freezes_the_parameters(name, zero):
    updates = _update(OPTIMIZERS[name](zero))
    for u in updates.values():
        np.testing.assert_array_equal(np.abs(np.asarray(u)), 0.0)
    # and a positive one moves them (the zero above is not a no-op by accident)
    moved = _update(OPTIMIZERS[name](0.1))
    assert any(float(jnp.max(jnp.abs(u))) > 0 for u in moved.values())


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("bad", [-1e-3, jnp.asarray(-0.5), jnp.asarray([0.1, -0.1])])
def test_a_negative_learning_rate_is_refused_naming_it_and_its_value(name, bad):
    with pytest.raises(ValueError, match=r"learning_rate must be in \[0\.0, inf\], got .*-"):
        OPTIMIZERS[name](bad)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_schedule_is_accepted_as_the_learning_rate(name):
    updates = _update(OPTIMIZERS[name](optax.constant_schedule(0.0)))
    for u in updates.values():
        np.testing.assert_array_equal(np.abs(np.asarray(u)), 0.0)
