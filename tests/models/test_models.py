"""Tests of budgetax.models: shapes from the dataset, parameter counts, dtypes, factory errors."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from budgetax import models


def _n_params(m):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(m, nnx.Param)))


MNIST1D = types.SimpleNamespace(input_shape=(40,), num_classes=10)
DIGITS = types.SimpleNamespace(input_shape=(8, 8, 1), num_classes=10)


def test_mlp_is_the_paper_mlp():
    m = models.create("mlp", MNIST1D, rngs=nnx.Rngs(0))
    # 40 -> 100 -> 100 -> 10, biases included
    assert _n_params(m) == (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
    assert m(jnp.ones((5, 40))).shape == (5, 10)


def test_cnn1d_is_the_paper_cnn():
    m = models.create("cnn1d", MNIST1D, rngs=nnx.Rngs(0))
    # three convs of 25 channels, kernel 5 (length 40 -> 19 -> 9 -> 4), then 100 -> 10
    expected = (5 * 1 * 25 + 25) + 2 * (5 * 25 * 25 + 25) + (4 * 25 * 10 + 10)
    assert _n_params(m) == expected
    y = m(jnp.ones((3, 40)))
    assert y.shape == (3, 10) and y.dtype == jnp.float32


def test_resnet_shapes():
    # abstract model and forward pass: shapes only, nothing is computed or compiled
    m = nnx.eval_shape(lambda: models.create("resnet", DIGITS, rngs=nnx.Rngs(0), width=4,
                                             depth=2, stages=2))
    m.eval()
    graphdef, state = nnx.split(m)
    x = jax.ShapeDtypeStruct((4, 8, 8, 1), jnp.float32)
    assert jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x).shape == (4, 10)
    # stem 3x3x1x4 + BN; stage 1: 2 blocks 4->4; stage 2: 4->8 (stride 2, projection) + 8->8
    bn = lambda c: 2 * c
    block = lambda ci, co, proj: 9 * ci * co + bn(co) + 9 * co * co + bn(co) + (
        ci * co if proj else 0)
    expected = (9 * 1 * 4 + bn(4) + block(4, 4, False) + block(4, 4, False)
                + block(4, 8, True) + block(8, 8, False) + (8 * 10 + 10))
    assert _n_params(m) == expected
    # the MLP flattens images: shapes come from the dataset
    assert models.create("mlp", DIGITS, rngs=nnx.Rngs(0))(jnp.ones((4, 8, 8, 1))).shape == (4, 10)


def test_bf16_policy():
    m = models.create("mlp", MNIST1D, rngs=nnx.Rngs(0), dtype="bf16", param_dtype="bf16")
    dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(m, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.bfloat16)}
    ref_model = models.create("mlp", MNIST1D, rngs=nnx.Rngs(1))
    nnx.update(m, jax.tree.map(lambda a: a.astype(jnp.bfloat16),
                               nnx.state(ref_model, nnx.Param)))
    x = jax.random.normal(jax.random.key(0), (2, 40))
    y = m(x)
    assert y.dtype == jnp.float32
    # same weights rounded to bf16: close to the float32 model, but not equal
    ref = np.asarray(ref_model(x))
    np.testing.assert_allclose(np.asarray(y), ref, atol=0.05 * np.abs(ref).max())
    assert not np.array_equal(np.asarray(y), ref)


def test_create_under_jit_from_a_key():
    @jax.jit
    def init(key):
        return nnx.state(models.create("cnn1d", MNIST1D, rngs=nnx.Rngs(key)), nnx.Param)

    a, b, c = init(jax.random.key(0)), init(jax.random.key(0)), init(jax.random.key(1))
    la, lb, lc = (jax.tree.leaves(s) for s in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(la, lc, strict=True))


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match=r"\['cnn1d', 'mlp', 'resnet'\].*'vit'"):
        models.create("vit", MNIST1D, rngs=nnx.Rngs(0))


def test_bad_shapes():
    with pytest.raises(ValueError, match="cnn1d"):
        models.create("cnn1d", DIGITS, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_shape"):
        models.create("resnet", MNIST1D, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="too short"):
        models.CNN1D(4, 10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="give a dataset"):
        models.create("mlp", rngs=nnx.Rngs(0))
