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


STEPS = 25


def _run_pair(tx, reference, steps=STEPS, counting_jit=None):
    """Runs ``tx`` (under one jit) and the reference port side by side, each on its own
    trajectory (gradients at its own weights); returns both trajectories and the fired tests."""
    params = {k: jnp.asarray(v) for k, v in _params().items()}
    ref_params = {k: ref.to_torch(v) for k, v in params.items()}
    state = tx.init(params)
    grad_fn = jax.jit(jax.grad(_loss))

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = counting_jit(step) if counting_jit else jax.jit(step)
    ours, theirs, seen = [], [], {}
    for _ in range(steps):
        params, state = step(params, state, grad_fn(params))
        ref_w = {k: jnp.asarray(ref.from_torch(v), jnp.float32) for k, v in ref_params.items()}
        grads = {k: ref.to_torch(np.asarray(g, np.float64)) for k, g in grad_fn(ref_w).items()}
        fired = reference.step(ref_params, grads)  # in place, as torch.optim
        ours.append({k: np.asarray(v, np.float64) for k, v in params.items()})
        theirs.append({k: ref.from_torch(v).copy() for k, v in ref_params.items()})
        for k, f in fired.items():
            seen.setdefault(k, set()).add(f)
    if counting_jit:
        assert step.traces == 1
    return ours, theirs, seen


def _assert_close(ours, theirs, rtol, atol):
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol,
                                       err_msg=f"{k} at step {t}")


def _check_branches(seen):
    assert seen["w_chan"] == {"channel"}
    assert seen["w_layer"] == {"layer"}
    assert seen["w_free"] == {None}
    assert seen["conv"] == {None}
    assert seen["b"] == {None}


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamp_matches_reference(nesterov, weight_decay, counting_jit):
    kw = dict(eps=1e-8, weight_decay=weight_decay, delta=0.1, wd_ratio=0.2, nesterov=nesterov)
    ours, theirs, seen = _run_pair(budgetax.adamp(0.01, b1=0.8, b2=0.99, **kw),
                                   ref.AdamP(0.01, betas=(0.8, 0.99), **kw),
                                   counting_jit=counting_jit)
    _assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    _check_branches(seen)


@pytest.mark.parametrize("nesterov,dampening", [(False, 0.0), (False, 0.3), (True, 0.0)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgdp_matches_reference(nesterov, dampening, weight_decay, counting_jit):
    kw = dict(momentum=0.9, dampening=dampening, eps=1e-8, weight_decay=weight_decay, delta=0.1,
              wd_ratio=0.1, nesterov=nesterov)
    ours, theirs, seen = _run_pair(budgetax.sgdp(0.02, **kw), ref.SGDP(0.02, **kw),
                                   counting_jit=counting_jit)
    _assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    _check_branches(seen)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgdp_project_momentum_false_is_the_unaliased_port(weight_decay, counting_jit):
    kw = dict(momentum=0.9, eps=1e-8, weight_decay=weight_decay, delta=0.1, wd_ratio=0.1)
    ours, theirs, _ = _run_pair(budgetax.sgdp(0.02, project_momentum=False, **kw),
                                ref.SGDP(0.02, alias_buffer=False, **kw), counting_jit=counting_jit)
    _assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # and the aliasing matters: this variant fails the comparison with the reference port
    _, aliased, _ = _run_pair(budgetax.sgdp(0.02, **kw), ref.SGDP(0.02, **kw), steps=20)
    with pytest.raises(AssertionError):
        _assert_close(ours[:20], aliased, rtol=1e-4, atol=1e-5)
    w0 = _params()["w_chan"]
    moved = aliased[-1]["w_chan"] - w0
    assert np.abs(ours[19]["w_chan"] - w0 - moved).max() > 2e-3 * np.abs(moved).max()
    # with Nesterov the direction is a new array upstream: the option changes nothing
    a, _, _ = _run_pair(budgetax.sgdp(0.02, nesterov=True, **kw), ref.SGDP(0.02, **kw), steps=5)
    b, _, _ = _run_pair(budgetax.sgdp(0.02, nesterov=True, project_momentum=False, **kw),
                        ref.SGDP(0.02, **kw), steps=5)
    _assert_close(a, b, rtol=0, atol=0)


def test_sgdp_stored_buffer_is_projected():
    """The state after one step: the buffer of a scale-invariant weight has no radial part."""
    params = {k: jnp.asarray(v) for k, v in _params().items()}
    grads = jax.grad(_loss)(params)
    tx = budgetax.sgdp(0.1, momentum=0.9)
    state = tx.init(params)
    # a first buffer with a radial part, then one step
    radial = {k: v * 0.5 for k, v in params.items()}
    inner = state[0].inner._replace(momentum=radial)
    state = (state[0]._replace(inner=inner), state[1])
    _, new = jax.jit(tx.update)(grads, state, params)
    buf = new[0].inner.momentum["w_chan"]
    np.testing.assert_allclose(jnp.sum(buf * params["w_chan"], axis=0), 0.0, atol=1e-5)
    tx_off = budgetax.sgdp(0.1, momentum=0.9, project_momentum=False)
    _, off = jax.jit(tx_off.update)(grads, state, params)
    assert float(jnp.max(jnp.abs(jnp.sum(off[0].inner.momentum["w_chan"] * params["w_chan"],
                                         axis=0)))) > 0.1


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
        budgetax.adamp(-1e-3)
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


# ------------------------------------------------------------- drop-in: arrays as hyperparameters


@pytest.mark.parametrize("factory, kwargs", [
    (budgetax.adamp, dict(learning_rate=1e-2, weight_decay=0.1)),
    (budgetax.sgdp, dict(learning_rate=1e-2, weight_decay=0.05)),
])
def test_inject_hyperparams_matches_plain(factory, kwargs, counting_jit):
    """What a user writes: inject_hyperparams, then update under jit; same numbers as plain."""
    injected = optax.inject_hyperparams(factory)(**kwargs)
    plain = factory(**kwargs)
    params = {k: jnp.asarray(v) for k, v in _params().items()}
    grads = jax.grad(_loss)(params)
    step = counting_jit(injected.update)
    s_inj, s_plain = injected.init(params), plain.init(params)
    for _ in range(3):
        u_inj, s_inj = step(grads, s_inj, params)
        u_plain, s_plain = plain.update(grads, s_plain, params)
        for k in params:
            np.testing.assert_allclose(u_inj[k], u_plain[k], rtol=2e-5, atol=1e-8)
    assert step.traces == 1
    # the hyperparameters live in the state and can be changed without recompiling
    s_inj.hyperparams["learning_rate"] = jnp.zeros_like(s_inj.hyperparams["learning_rate"])
    u_zero, _ = step(grads, s_inj, params)
    assert step.traces == 1
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(u_zero))


@pytest.mark.parametrize("factory, name, values", [
    (budgetax.adamp, "b1", (0.5, 0.8, 0.95)),
    (budgetax.adamp, "b2", (0.9, 0.99, 0.999)),
    (budgetax.adamp, "wd_ratio", (0.0, 0.5, 1.0)),
    (budgetax.sgdp, "momentum", (0.0, 0.5, 0.9)),
    (budgetax.sgdp, "delta", (0.01, 0.1, 1.0)),
])
def test_vmap_over_a_hyperparameter(factory, name, values):
    """One compiled program for several values of a hyperparameter equals separate runs."""
    params = {k: jnp.asarray(v) for k, v in _params().items()}

    def run(value):
        tx = factory(0.02, weight_decay=0.1, **{name: value})
        p, state = params, tx.init(params)
        for _ in range(4):
            updates, state = tx.update(jax.grad(_loss)(p), state, p)
            p = optax.apply_updates(p, updates)
        return p

    batched = jax.jit(jax.vmap(run))(jnp.asarray(values, jnp.float32))
    for i, v in enumerate(values):
        single = run(v)
        for k in single:
            np.testing.assert_allclose(batched[k][i], single[k], rtol=2e-5, atol=2e-6)
    assert not np.allclose(batched["w_free"][0], batched["w_free"][-1])


def test_concrete_arrays_are_validated():
    with pytest.raises(ValueError, match=r"b1 .*Array\(1"):
        budgetax.adamp(1e-3, b1=jnp.asarray(1.0))
    with pytest.raises(ValueError, match="momentum"):
        budgetax.sgdp(0.1, momentum=jnp.asarray([0.5, 1.5]))
    with pytest.raises(ValueError, match="learning_rate"):
        budgetax.sgdp(jnp.asarray(-0.1))
    with pytest.raises(TypeError, match="b2"):
        budgetax.adamp(1e-3, b2=jnp.asarray(True))
    with pytest.raises(ValueError, match="dampening"):
        budgetax.sgdp(0.1, nesterov=True, dampening=jnp.asarray(0.5))
    # the injected form validates its (concrete) hyperparameters at init
    tx = optax.inject_hyperparams(budgetax.adamp)(learning_rate=1e-3, b1=1.5)
    with pytest.raises(ValueError, match="b1"):
        tx.init({"w": jnp.ones((2, 2))})


@pytest.mark.parametrize("factory", [budgetax.adamp, budgetax.sgdp])
@pytest.mark.parametrize("flag", ["nesterov", "project_momentum"])
@pytest.mark.parametrize("value", ["False", 0, 1, None, np.bool_(True)])
def test_booleans_are_bools(factory, flag, value):
    if factory is budgetax.adamp and flag == "project_momentum":
        return
    with pytest.raises(TypeError, match=f"{flag} must be a bool, got {value!r}"):
        factory(0.1, **{flag: value})
