r"""AdamP and SGDP: remove the radial part of the update of scale-invariant weights.

A weight ``w`` is *scale-invariant* when the loss does not change with its norm
(a kernel followed by batch or layer normalisation). Its gradient is then
orthogonal to ``w``, yet momentum carries a radial component into the update
that makes ``||w||`` grow and the effective step size shrink. Heo et al. detect
such weights with a cosine test between gradient and weight and, when it fires,
project the update onto the tangent space of the weight sphere.

For a weight of dimension ``>= 2`` with gradient ``g`` and update (direction)
``d``, the test runs on two views, channel-wise first, then layer-wise:

.. math::

   \cos_c &= \frac{|\langle g_c, w_c\rangle|}{\max(\|g_c\|, \epsilon)\max(\|w_c\|, \epsilon)},
   \qquad \text{projected if } \max_c \cos_c < \delta / \sqrt{n_c} \\
   \hat w_c &= w_c / (\|w_c\| + \epsilon), \qquad
   d_c \leftarrow d_c - \hat w_c \langle \hat w_c, d_c \rangle

where ``n_c`` is the number of elements of one view row. If the channel view
does not fire, the same test and projection run on the whole tensor as one row.
A projected weight's decoupled weight decay is multiplied by ``wd_ratio``.
Vectors and scalars (biases, norm scales) are never projected.

**What a channel is in Flax.** PyTorch stores the output channel first
(``Linear``: ``[out, in]``, ``Conv``: ``[out, in, kh, kw]``) and the reference
code views a weight as ``[shape[0], -1]``. Flax stores it last (``Dense``:
``[in, out]``, ``Conv``: ``[kh, kw, in, out]``), and the scale invariance that
a following normalisation layer creates is per output unit. Here a channel is
therefore the **last axis**: a weight is viewed as ``[-1, shape[-1]]`` and each
column is one channel (``n_c = size / shape[-1]``). Transpose PyTorch-layout
weights before using these transforms, or the channel test sees input slices.

References:
  Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. AdamP: Slowing Down the Slowdown for
  Momentum Optimizers on Scale-invariant Weights. ICLR 2021. arXiv:2006.08217.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from budgetax import _validate

__all__ = [
    "AdamPDirectionState",
    "SGDPDirectionState",
    "ScaleInvariantProjectionState",
    "adamp",
    "project_radial",
    "scale_invariant_projection",
    "sgdp",
]


def _learning_rate(value):
    if callable(value):
        return value
    return _validate.hyperparam("learning_rate", value, low=0.0, low_open=True)


def _cosine_abs(a, b, axis, eps):
    dot = jnp.sum(a * b, axis=axis)
    na = jnp.sqrt(jnp.sum(a * a, axis=axis))
    nb = jnp.sqrt(jnp.sum(b * b, axis=axis))
    return jnp.abs(dot) / (jnp.maximum(na, eps) * jnp.maximum(nb, eps))


def _remove_radial(d, w, axis, eps):
    w_hat = w / (jnp.sqrt(jnp.sum(w * w, axis=axis, keepdims=True)) + eps)
    return d - w_hat * jnp.sum(w_hat * d, axis=axis, keepdims=True)


def project_radial(grad, param, update, *, delta=0.1, eps=1e-8):
    """Projects one leaf's ``update`` off ``param`` when the AdamP cosine test fires.

    The channel-wise test (channel = last axis, see the module docstring) comes
    first; if it does not fire, the layer-wise test. Arrays of dimension < 2 are
    returned unchanged.

    Args:
      grad: the gradient of the leaf (used by the cosine test).
      param: the current value of the leaf.
      update: the update direction to project.
      delta: the test threshold is ``delta / sqrt(n)``, ``n`` the view's row size.
      eps: guards the norms.

    Returns:
      ``(projected_update, was_projected)``, the second a boolean scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> g = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # orthogonal to every column
      >>> d, hit = project_radial(g, w, w + g)
      >>> bool(hit), d.tolist()
      (True, [[0.0, 1.0], [1.0, 0.0]])

    References:
      Heo et al. AdamP. ICLR 2021. arXiv:2006.08217.
    """
    if jnp.ndim(param) < 2:
        return update, jnp.asarray(False)
    dtype = jnp.result_type(update.dtype, jnp.float32)
    w = jnp.asarray(param, dtype)
    g = jnp.asarray(grad, dtype)
    d = jnp.asarray(update, dtype)
    channels = w.shape[-1]
    w2, g2, d2 = (x.reshape(-1, channels) for x in (w, g, d))
    channel_hit = jnp.max(_cosine_abs(g2, w2, 0, eps)) < delta / math.sqrt(w2.shape[0])
    layer_hit = _cosine_abs(g.ravel(), w.ravel(), 0, eps) < delta / math.sqrt(w.size)
    d_channel = _remove_radial(d2, w2, 0, eps).reshape(d.shape)
    d_layer = _remove_radial(d.ravel(), w.ravel(), 0, eps).reshape(d.shape)
    out = jnp.where(channel_hit, d_channel, jnp.where(layer_hit, d_layer, d))
    return out.astype(update.dtype), channel_hit | layer_hit


class ScaleInvariantProjectionState(NamedTuple):
    """State of :func:`scale_invariant_projection`: the wrapped direction's state."""

    inner: optax.OptState


def scale_invariant_projection(
    direction: optax.GradientTransformation,
    *,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    r"""Wraps a direction: projects its output for scale-invariant weights, adds weight decay.

    For every leaf, with gradient ``g``, parameter ``w`` and ``d = direction(g)``:

    .. math::

       u = \mathrm{proj}(d; g, w) + \lambda\, r\, w,\qquad
       r = \text{wd\_ratio if the leaf was projected else } 1

    where ``proj`` is :func:`project_radial` and ``λ = weight_decay``. Follow it
    with ``optax.scale_by_learning_rate(lr)`` to get ``w ← w - lr·u`` (the decay is
    decoupled and multiplied by the learning rate, as in the reference code). The
    cosine test always uses the raw gradient, as published, not the direction.

    Args:
      direction: any transform producing the update direction (Adam moments,
        momentum, ...).
      delta: cosine-test threshold factor, ``> 0``.
      wd_ratio: weight-decay multiplier for projected leaves, in ``[0, 1]``.
      weight_decay: decoupled weight decay ``λ >= 0``.
      eps: guards the norms, ``> 0``.

    Returns:
      An ``optax.GradientTransformation`` with state
      :class:`ScaleInvariantProjectionState`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = optax.chain(scale_invariant_projection(optax.trace(0.9)),
      ...                  optax.scale_by_learning_rate(0.1))
      >>> params = {"w": jnp.ones((3, 2))}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones((3, 2))}, state, params)

    References:
      Heo et al. AdamP: Slowing Down the Slowdown for Momentum Optimizers on
      Scale-invariant Weights. ICLR 2021. arXiv:2006.08217.
    """
    delta = _validate.real("delta", delta, low=0.0, low_open=True)
    wd_ratio = _validate.real("wd_ratio", wd_ratio, low=0.0, high=1.0)
    weight_decay = _validate.real("weight_decay", weight_decay, low=0.0)
    eps = _validate.real("eps", eps, low=0.0, low_open=True)

    def init_fn(params):
        return ScaleInvariantProjectionState(inner=direction.init(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_invariant_projection needs params, got params=None")
        grads = updates
        directions, inner = direction.update(grads, state.inner, params)

        def leaf(g, w, d):
            d_proj, hit = project_radial(g, w, d, delta=delta, eps=eps)
            if weight_decay == 0.0:
                return d_proj
            ratio = jnp.where(hit, wd_ratio, 1.0)
            return (d_proj + weight_decay * ratio * w).astype(d.dtype)

        out = jax.tree.map(leaf, grads, params, directions)
        return out, ScaleInvariantProjectionState(inner=inner)

    return optax.GradientTransformation(init_fn, update_fn)


class AdamPDirectionState(NamedTuple):
    """Adam moments of AdamP: int32 ``count``, first moment ``mu``, second ``nu``."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def _adamp_direction(b1, b2, eps, nesterov) -> optax.GradientTransformation:
    """The AdamP direction ``m_hat / (sqrt(v_hat) + eps)`` (Nesterov as in the reference code)."""

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamPDirectionState(jnp.zeros([], jnp.int32), zeros,
                                   jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, updates)

        def leaf(g, m, v):
            denom = jnp.sqrt(v) / jnp.sqrt(bc2) + eps
            num = b1 * m + (1.0 - b1) * g if nesterov else m
            return (num / denom / bc1).astype(g.dtype)

        out = jax.tree.map(leaf, updates, mu, nu)
        return out, AdamPDirectionState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adamp(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    r"""AdamP: Adam whose update of scale-invariant weights has no radial component.

    With ``m_t = b1 m + (1-b1) g``, ``v_t = b2 v + (1-b2) g^2`` and bias
    corrections ``c_1 = 1 - b1^t``, ``c_2 = 1 - b2^t``:

    .. math::

       d = \frac{m_t}{c_1(\sqrt{v_t / c_2} + \epsilon)}
       \quad(\text{Nesterov: } m_t \to b_1 m_t + (1-b_1) g), \qquad
       w \leftarrow w - \eta\,\big(\mathrm{proj}(d) + \lambda r w\big)

    with the projection and ``r`` of :func:`scale_invariant_projection`.

    Args:
      learning_rate: ``η``, a positive float or an ``optax.Schedule``.
      b1, b2: moment decay rates in ``[0, 1)``.
      eps: added to the denominator and guarding the cosine test, ``> 0``.
      weight_decay: decoupled weight decay ``λ >= 0``.
      delta: cosine-test threshold factor.
      wd_ratio: weight-decay multiplier for projected weights.
      nesterov: use the Nesterov momentum direction.

    Returns:
      An ``optax.GradientTransformation``; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, budgetax
      >>> tx = budgetax.adamp(1e-3, weight_decay=1e-2)
      >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)

    References:
      Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. AdamP: Slowing Down the Slowdown for
      Momentum Optimizers on Scale-invariant Weights. ICLR 2021. arXiv:2006.08217.
    """
    learning_rate = _learning_rate(learning_rate)
    b1 = _validate.real("b1", b1, low=0.0, high=1.0, high_open=True)
    b2 = _validate.real("b2", b2, low=0.0, high=1.0, high_open=True)
    eps = _validate.real("eps", eps, low=0.0, low_open=True)
    nesterov = _validate.boolean("nesterov", nesterov)
    return optax.chain(
        scale_invariant_projection(_adamp_direction(b1, b2, eps, nesterov), delta=delta,
                                   wd_ratio=wd_ratio, weight_decay=weight_decay, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


class SGDPDirectionState(NamedTuple):
    """Momentum buffer of SGDP (int32 ``count`` and the buffer ``momentum``)."""

    count: jax.Array
    momentum: optax.Updates


def _sgdp_direction(momentum, dampening, nesterov) -> optax.GradientTransformation:
    """``buf = μ buf + (1 - dampening) g``; returns ``buf`` or ``g + μ buf`` (Nesterov)."""

    def init_fn(params):
        return SGDPDirectionState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        buf = jax.tree.map(lambda b, g: momentum * b + (1.0 - dampening) * g,
                           state.momentum, updates)
        if nesterov:
            out = jax.tree.map(lambda g, b: (g + momentum * b).astype(g.dtype), updates, buf)
        else:
            out = jax.tree.map(lambda g, b: b.astype(g.dtype), updates, buf)
        return out, SGDPDirectionState(optax.safe_increment(state.count), buf)

    return optax.GradientTransformation(init_fn, update_fn)


def sgdp(
    learning_rate,
    momentum: float = 0.9,
    dampening: float = 0.0,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    r"""SGDP: momentum SGD whose update of scale-invariant weights has no radial component.

    .. math::

       b \leftarrow \mu b + (1 - \text{dampening})\, g, \qquad
       d = b \ (\text{Nesterov: } g + \mu b), \qquad
       w \leftarrow w - \eta\,\Big(\mathrm{proj}(d) + \frac{\lambda r}{1 - \mu} w\Big)

    The ``1/(1 - μ)`` on the weight decay follows the reference implementation
    (it keeps the decay comparable to the momentum-amplified step).

    Args:
      learning_rate: ``η``, a positive float or an ``optax.Schedule``.
      momentum: ``μ`` in ``[0, 1)``.
      dampening: in ``[0, 1]``.
      eps: guards the cosine test, ``> 0``.
      weight_decay: decoupled weight decay ``λ >= 0``.
      delta: cosine-test threshold factor.
      wd_ratio: weight-decay multiplier for projected weights.
      nesterov: Nesterov momentum (requires ``dampening == 0``).

    Returns:
      An ``optax.GradientTransformation``; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, budgetax
      >>> tx = budgetax.sgdp(0.1, momentum=0.9, weight_decay=1e-4)
      >>> state = tx.init({"w": jnp.ones((4, 3))})

    References:
      Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. AdamP: Slowing Down the Slowdown for
      Momentum Optimizers on Scale-invariant Weights. ICLR 2021. arXiv:2006.08217.
    """
    learning_rate = _learning_rate(learning_rate)
    momentum = _validate.real("momentum", momentum, low=0.0, high=1.0, high_open=True)
    dampening = _validate.real("dampening", dampening, low=0.0, high=1.0)
    nesterov = _validate.boolean("nesterov", nesterov)
    if nesterov and dampening != 0.0:
        raise ValueError(f"nesterov=True requires dampening=0, got dampening={dampening!r}")
    weight_decay = _validate.real("weight_decay", weight_decay, low=0.0)
    return optax.chain(
        scale_invariant_projection(_sgdp_direction(momentum, dampening, nesterov), delta=delta,
                                   wd_ratio=wd_ratio, weight_decay=weight_decay / (1.0 - momentum),
                                   eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )
