"""AdamP / SGDP against the NumPy float64 reference, step by step, under jax.jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import budgetax
from budgetax.transforms.adamp import project_radial
from tests.reference import adamp as ref


def _loss(params):
    """A loss whose weights span the three branches of the projection.

    ``w_chan``: every output column is normalised (scale invariant per channel,
    like a Dense kernel followed by BatchNorm) -> the channel test fires.
    ``w_layer``: normalised as a whole (invariant to one global scale only) ->
    the channel test fails, the layer test fires.
    ``w_free``, ``conv``, ``b``: ordinary weights -> no projection.
    """
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    wc = params["w_chan"] / jnp.linalg.norm(params["w_chan"], axis=0, keepdims=True)
    wl = params["w_layer"] / jnp.linalg.norm(params["w_layer"])
    h = jnp.tanh(x @ wc) @ wl + 0.3 * jnp.sin(x @ params["w_free"] + params["b"])
    conv = jnp.sum(jnp.cos(params["conv"]) * params["conv"] ** 2)
    return jnp.sum(h**2) + jnp.sum(jnp.cos(h)) + conv


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w_chan": rng.normal(size=(4, 5)).astype(np.float32),
        "w_layer": rng.normal(size=(5, 5)).astype(np.float32),
        "w_free": rng.normal(size=(4, 5)).astype(np.float32),
        "conv": rng.normal(size=(3, 2, 2, 3)).astype(np.float32),
        "b": rng.normal(size=(5,)).astype(np.float32),
    }


def _compare(tx, reference, steps=8, rtol=2e-5, atol=2e-6):
    params = {k: jnp.asarray(v) for k, v in _params().items()}
    ref_params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    state = tx.init(params)
    grad_fn = jax.jit(jax.grad(_loss))

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    seen = {}
    for _ in range(steps):
        grads = grad_fn(params)
        params, state = step(params, state, grads)
        ref_params, fired = reference.step(ref_params, {k: np.asarray(g, np.float64)
                                                        for k, g in grads.items()})
        for k in params:
            np.testing.assert_allclose(np.asarray(params[k]), ref_params[k], rtol=rtol,
                                       atol=atol, err_msg=k)
            seen.setdefault(k, set()).add(fired[k])
        # follow the same trajectory: both continue from the reference values
        params = {k: jnp.asarray(v, jnp.float32) for k, v in ref_params.items()}
    return seen


def _check_branches(seen):
    assert seen["w_chan"] == {"channel"}
    assert seen["w_layer"] == {"layer"}
    assert seen["w_free"] == {None}
    assert seen["conv"] == {None}
    assert seen["b"] == {None}


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamp_matches_reference(nesterov, weight_decay):
    kw = dict(b1=0.8, b2=0.99, eps=1e-8, weight_decay=weight_decay, delta=0.1, wd_ratio=0.2,
              nesterov=nesterov)
    seen = _compare(budgetax.adamp(0.01, **kw), ref.AdamP(0.01, **kw))
    _check_branches(seen)


@pytest.mark.parametrize("nesterov,dampening", [(False, 0.0), (False, 0.3), (True, 0.0)])
def test_sgdp_matches_reference(nesterov, dampening):
    kw = dict(momentum=0.9, dampening=dampening, eps=1e-8, weight_decay=0.05, delta=0.1,
              wd_ratio=0.1, nesterov=nesterov)
    seen = _compare(budgetax.sgdp(0.02, **kw), ref.SGDP(0.02, **kw))
    _check_branches(seen)


def test_adamp_with_schedule_and_vmap():
    """A schedule as learning rate and a vmap over runs with different seeds."""
    tx = budgetax.adamp(optax.linear_schedule(0.01, 0.0, 10), weight_decay=0.1)
    batch = jax.tree.map(lambda *xs: jnp.stack(xs), *[_params(s) for s in range(3)])

    def run(params):
        state = tx.init(params)
        for _ in range(3):
            updates, state = tx.update(jax.grad(_loss)(params), state, params)
            params = optax.apply_updates(params, updates)
        return params

    out = jax.jit(jax.vmap(run))(batch)
    for s in range(3):
        single = jax.jit(run)(jax.tree.map(jnp.asarray, _params(s)))
        for k in single:
            np.testing.assert_allclose(out[k][s], single[k], rtol=1e-5, atol=1e-6)


def test_flax_layout_channel_is_last_axis():
    """Dense kernel [in, out] + BatchNorm: invariant per output column (the last axis)."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self):
            self.dense = nnx.Linear(6, 4, rngs=nnx.Rngs(0))
            self.norm = nnx.BatchNorm(4, use_running_average=False, rngs=nnx.Rngs(1))

        def __call__(self, x):
            return self.norm(self.dense(x))

    model = Net()
    x = jax.random.normal(jax.random.key(2), (32, 6))
    target = jax.random.normal(jax.random.key(3), (32, 4))
    grads = nnx.grad(lambda m: jnp.mean((m(x) - target) ** 2))(model)
    g = jnp.asarray(grads["dense"]["kernel"][...])
    kernel = jnp.asarray(model.dense.kernel[...])
    assert kernel.shape == (6, 4)  # Flax: [in, out]
    # the test premise: each output column is orthogonal to its gradient
    np.testing.assert_allclose(jnp.sum(g * kernel, axis=0), 0.0, atol=1e-5)
    d = jax.random.normal(jax.random.key(4), kernel.shape)
    out, hit = project_radial(g, kernel, d)
    assert bool(hit)
    # channel-wise projection: no radial part left in any output column
    np.testing.assert_allclose(jnp.sum(out * kernel, axis=0), 0.0, atol=1e-5)
    # read with the PyTorch convention (first axis) the channel test would not fire,
    # only the layer-wise one, which leaves radial parts in the columns
    out_t, _ = project_radial(g.T, kernel.T, d.T)
    assert float(jnp.max(jnp.abs(jnp.sum(out_t.T * kernel, axis=0)))) > 1e-2


def test_params_required_and_bad_args():
    tx = budgetax.adamp(1e-3)
    params = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="learning_rate"):
        budgetax.adamp(0.0)
    with pytest.raises(ValueError, match="b1"):
        budgetax.adamp(1e-3, b1=1.0)
    with pytest.raises(ValueError, match="wd_ratio"):
        budgetax.adamp(1e-3, wd_ratio=1.5)
    with pytest.raises(ValueError, match="delta"):
        budgetax.sgdp(0.1, delta=0.0)
    with pytest.raises(ValueError, match="momentum"):
        budgetax.sgdp(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="dampening"):
        budgetax.sgdp(0.1, nesterov=True, dampening=0.5)
    with pytest.raises(TypeError, match="nesterov"):
        budgetax.adamp(1e-3, nesterov=1)
