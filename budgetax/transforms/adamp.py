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
import numpy as np
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


def _is_zero(value) -> bool:
    """True only for a Python number equal to 0 (an array may be traced: never skipped)."""
    return isinstance(value, int | float) and value == 0.0


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


def _decay(weight_decay, wd_ratio, hit, w, d):
    """``d + weight_decay * (wd_ratio if hit else 1) * w`` in ``d``'s dtype (skipped for a 0)."""
    if _is_zero(weight_decay):
        return d
    ratio = jnp.where(hit, wd_ratio, 1.0)
    return (d + weight_decay * ratio * w).astype(d.dtype)


def _check_projection_args(delta, wd_ratio, weight_decay, eps):
    return (_validate.real_or_array("delta", delta, low=0.0, low_open=True),
            _validate.real_or_array("wd_ratio", wd_ratio, low=0.0, high=1.0),
            _validate.real_or_array("weight_decay", weight_decay, low=0.0),
            _validate.real_or_array("eps", eps, low=0.0, low_open=True))


def _need_params(name, params):
    if params is None:
        raise ValueError(f"{name} needs params (the cosine test uses the weights), got params=None")


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
    The wrapped direction's state is never edited (see :func:`sgdp` for the
    reference code's projected momentum buffer).

    Args:
      direction: any transform producing the update direction (Adam moments,
        momentum, ...).
      delta: cosine-test threshold factor, ``> 0``.
      wd_ratio: weight-decay multiplier for projected leaves, in ``[0, 1]``.
      weight_decay: decoupled weight decay ``λ >= 0``.
      eps: guards the norms, ``> 0``.

    Every numeric argument may be a JAX array (checked when concrete).

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
    delta, wd_ratio, weight_decay, eps = _check_projection_args(delta, wd_ratio, weight_decay,
                                                                eps)

    def init_fn(params):
        return ScaleInvariantProjectionState(inner=direction.init(params))

    def update_fn(updates, state, params=None):
        _need_params("scale_invariant_projection", params)
        grads = updates
        directions, inner = direction.update(grads, state.inner, params)

        def leaf(g, w, d):
            d_proj, hit = project_radial(g, w, d, delta=delta, eps=eps)
            return _decay(weight_decay, wd_ratio, hit, w, d_proj)

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
        mu = jax.tree.map(lambda m, g: (b1 * m + (1.0 - b1) * g).astype(m.dtype), state.mu,
                          updates)
        nu = jax.tree.map(lambda v, g: (b2 * v + (1.0 - b2) * g * g).astype(v.dtype), state.nu,
                          updates)

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

    with the projection and ``r`` of :func:`scale_invariant_projection`. This is
    the reference code (clovaai/AdamP, ``adamp/adamp.py``) step for step; the
    moments are never projected there either.

    Every numeric argument may be a JAX array (checked when it is concrete), so
    ``optax.inject_hyperparams(budgetax.adamp)(learning_rate=1e-3)`` and a
    ``jax.vmap`` over ``b1`` work.

    Args:
      learning_rate: ``η``, a float ``>= 0`` (a JAX scalar too) or an ``optax.Schedule``.
      b1, b2: moment decay rates in ``[0, 1)``.
      eps: added to the denominator and guarding the cosine test, ``> 0``.
      weight_decay: decoupled weight decay ``λ >= 0``.
      delta: cosine-test threshold factor.
      wd_ratio: weight-decay multiplier for projected weights.
      nesterov: use the Nesterov momentum direction (a ``bool``).

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
    learning_rate = _validate.learning_rate(learning_rate)
    b1 = _validate.real_or_array("b1", b1, low=0.0, high=1.0, high_open=True)
    b2 = _validate.real_or_array("b2", b2, low=0.0, high=1.0, high_open=True)
    eps = _validate.real_or_array("eps", eps, low=0.0, low_open=True)
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


def _scale_by_sgdp(momentum, dampening, nesterov, project_momentum, delta, wd_ratio,
                   weight_decay, eps) -> optax.GradientTransformation:
    """SGDP's direction, projection and weight decay (the learning rate comes after).

    The state keeps the layout of ``scale_invariant_projection(momentum direction)``.
    """

    def init_fn(params):
        return ScaleInvariantProjectionState(inner=SGDPDirectionState(
            jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params)))

    def update_fn(updates, state, params=None):
        _need_params("sgdp", params)
        flat_g, treedef = jax.tree.flatten(updates)
        flat_w = treedef.flatten_up_to(params)
        flat_b = treedef.flatten_up_to(state.inner.momentum)
        out, bufs = [], []
        for g, w, b in zip(flat_g, flat_w, flat_b, strict=True):
            buf = (momentum * b + (1.0 - dampening) * g).astype(b.dtype)
            d = (g + momentum * buf).astype(g.dtype) if nesterov else buf.astype(g.dtype)
            d_proj, hit = project_radial(g, w, d, delta=delta, eps=eps)
            if project_momentum and not nesterov:
                buf = d_proj.astype(b.dtype)  # the reference edits the buffer in place
            out.append(_decay(weight_decay, wd_ratio, hit, w, d_proj))
            bufs.append(buf)
        inner = SGDPDirectionState(optax.safe_increment(state.inner.count),
                                   jax.tree.unflatten(treedef, bufs))
        return jax.tree.unflatten(treedef, out), ScaleInvariantProjectionState(inner=inner)

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
    *,
    project_momentum: bool = True,
) -> optax.GradientTransformation:
    r"""SGDP: momentum SGD whose update of scale-invariant weights has no radial component.

    .. math::

       b \leftarrow \mu b + (1 - \text{dampening})\, g, \qquad
       d = b \ (\text{Nesterov: } g + \mu b), \qquad
       w \leftarrow w - \eta\,\Big(\mathrm{proj}(d) + \frac{\lambda r}{1 - \mu} w\Big)

    and, without Nesterov and with ``project_momentum=True`` (the default), the
    stored buffer becomes the projected one, :math:`b \leftarrow \mathrm{proj}(b)`.
    That is what the reference code (clovaai/AdamP, ``adamp/sgdp.py``) does: its
    direction ``d_p`` *is* the buffer and the projection subtracts in place. The
    radial part then no longer accumulates in the buffer; after 20 steps at
    ``μ = 0.9`` the weights differ by a few percent from projecting the step only.
    ``project_momentum=False`` keeps the buffer unprojected, as the paper's
    Algorithm 1 and the Nesterov path of the same code do; it is offered for
    that consistency, not as a measured improvement. With ``nesterov=True`` the
    option has no effect.

    The ``1/(1 - μ)`` on the weight decay follows the reference implementation
    (it keeps the decay comparable to the momentum-amplified step).

    Every numeric argument may be a JAX array (checked when it is concrete), so
    ``optax.inject_hyperparams(budgetax.sgdp)`` and a ``jax.vmap`` over
    ``momentum`` work.

    Args:
      learning_rate: ``η``, a float ``>= 0`` (a JAX scalar too) or an ``optax.Schedule``.
      momentum: ``μ`` in ``[0, 1)``.
      dampening: in ``[0, 1]``.
      eps: guards the cosine test, ``> 0``.
      weight_decay: decoupled weight decay ``λ >= 0``.
      delta: cosine-test threshold factor.
      wd_ratio: weight-decay multiplier for projected weights.
      nesterov: Nesterov momentum (a ``bool``; requires ``dampening == 0``).
      project_momentum: store the projected buffer (a ``bool``; the reference
        code's behaviour, default) or the unprojected one.

    Returns:
      An ``optax.GradientTransformation``; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = budgetax.sgdp(0.1, momentum=0.9, weight_decay=1e-4)
      >>> params = {"w": jnp.ones((4, 3))}
      >>> updates, state = tx.update({"w": jnp.ones((4, 3))}, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)

    References:
      Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. AdamP: Slowing Down the Slowdown for
      Momentum Optimizers on Scale-invariant Weights. ICLR 2021. arXiv:2006.08217.
      Reference code: github.com/clovaai/AdamP, ``adamp/sgdp.py``.
    """
    learning_rate = _validate.learning_rate(learning_rate)
    momentum = _validate.real_or_array("momentum", momentum, low=0.0, high=1.0, high_open=True)
    dampening = _validate.real_or_array("dampening", dampening, low=0.0, high=1.0)
    nesterov = _validate.boolean("nesterov", nesterov)
    project_momentum = _validate.boolean("project_momentum", project_momentum)
    if nesterov and not isinstance(dampening, jax.core.Tracer) and np.any(
            np.asarray(dampening) != 0.0):
        raise ValueError(f"nesterov=True requires dampening=0, got dampening={dampening!r}")
    delta, wd_ratio, weight_decay, eps = _check_projection_args(delta, wd_ratio, weight_decay,
                                                                eps)
    if not _is_zero(weight_decay):
        weight_decay = weight_decay / (1.0 - momentum)
    return optax.chain(
        _scale_by_sgdp(momentum, dampening, nesterov, project_momentum, delta, wd_ratio,
                       weight_decay, eps),
        optax.scale_by_learning_rate(learning_rate),
    )
