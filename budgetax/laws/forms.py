r"""Loss laws over learning-rate sequences: the Multi-Power Law and the LR-annealing law.

Each law is a pure function ``(params, lrs, steps) -> predicted loss``, vectorised over
``steps`` (no Python loop over steps), jit- and vmap-able, in the dtype of ``lrs`` (float64
when ``jax.enable_x64`` is on).

Conventions (those of the Multi-Power Law's reference code): ``lrs[t]`` is the learning
rate of update ``t`` (an optax schedule evaluated on ``0..T-1``); a logged loss at step
``s`` is modelled from ``lrs[0..s]``, so ``S1(s) = lrs[0] + ... + lrs[s]``.

Multi-Power Law (Luo et al. 2025), exactly as its reference code computes it
(``src/evaluation.py``), warmup included:

.. math::

   L(s) = L_0 + A\,S_1(s)^{-\alpha} + B\,LD(s),\qquad
   LD(s) = \sum_{k=1}^{s} (\eta_k - \eta_{k-1})
           \Bigl(1 - \bigl(1 + C\,\eta_k^{-\gamma} S_k(s)\bigr)^{-\beta}\Bigr),
   \qquad S_k(s) = \sum_{j=k}^{s} \eta_j .

A decrease of the learning rate (``eta_k < eta_{k-1}``) lowers the loss; the warmup's
increases raise it slightly, as in the reference code. Cost: one term per (logged step,
update whose learning rate changed) pair, ``O(n_steps * K)`` with ``K <= T`` the number of
updates where the learning rate changes (``T`` for cosine, the warmup plus the drops for
piecewise-constant schedules); logged steps are processed in chunks, so memory is
``O(chunk * K)``.

LR-annealing law (Tissue et al. 2024), with the same step convention:

.. math::

   L(s) = L_0 + A\,S_1(s)^{-\alpha} - C\,S_2(s),\qquad
   S_2(s) = \sum_{i=1}^{s} m_i,\quad
   m_i = \lambda\,m_{i-1} + \max(\eta_{i-1} - \eta_i, 0),\ m_0 = 0,

with the decay factor ``lambda`` a fixed hyperparameter (the paper's 0.999). Only decreases
of the learning rate are annealing: a warmup's increases add nothing to ``S_2`` (counted
as negative drops they let a fit trade a huge ``C`` against a huge ``A``, and predictions
diverge). Cost ``O(T)``.

References:
  Luo, Wen, Hu, et al. A Multi-Power Law for Loss Curve Prediction Across Learning Rate
  Schedules. ICLR 2025. arXiv:2503.12811. Code: github.com/thu-yao-01-luo/MultiPowerLaw.
  Tissue, Wang, Zhang, et al. Scaling Law with Learning Rate Annealing. 2024. arXiv:2408.11029.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LrAnnealingParams", "MultiPowerParams", "lr_annealing", "multi_power"]

DECAY = 0.999  # the LR-annealing law's default lambda (the paper's)
# logged steps per chunk of the (steps x changes) matrix: bounds memory at CHUNK * K terms
_CHUNK = 64


class MultiPowerParams(NamedTuple):
    """The seven parameters of the Multi-Power Law, in the reference code's order."""

    L0: jax.Array
    A: jax.Array
    alpha: jax.Array
    B: jax.Array
    C: jax.Array
    beta: jax.Array
    gamma: jax.Array


class LrAnnealingParams(NamedTuple):
    """The four fitted parameters of the LR-annealing law (``lambda`` is fixed)."""

    L0: jax.Array
    A: jax.Array
    alpha: jax.Array
    C: jax.Array


def _as_params(cls, params, dtype):
    if isinstance(params, cls):
        values = tuple(params)
    elif isinstance(params, dict):
        missing = [f for f in cls._fields if f not in params]
        if missing:
            raise ValueError(f"params is missing {missing}; expected the keys {list(cls._fields)}")
        values = tuple(params[f] for f in cls._fields)
    else:
        values = tuple(params) if not hasattr(params, "shape") else tuple(
            params[..., i] for i in range(params.shape[-1]))
        if len(values) != len(cls._fields):
            raise ValueError(f"params must have {len(cls._fields)} values "
                             f"{list(cls._fields)}, got {len(values)}")
    return cls(*(jnp.asarray(v, dtype) for v in values))


def _as_inputs(lrs, steps):
    lrs = jnp.asarray(lrs)
    if not jnp.issubdtype(lrs.dtype, jnp.floating):
        lrs = lrs.astype(jnp.result_type(float))
    if lrs.ndim != 1:
        raise ValueError(f"lrs must be a 1-D array of per-update learning rates, "
                         f"got shape {lrs.shape}")
    steps = jnp.asarray(steps)
    if not jnp.issubdtype(steps.dtype, jnp.integer):
        raise TypeError(f"steps must be integer step indices, got dtype {steps.dtype}")
    if not isinstance(steps, jax.core.Tracer) and steps.size:
        lo, hi = int(steps.min()), int(steps.max())
        if lo < 0 or hi >= lrs.shape[0]:
            raise ValueError(f"steps must index lrs (0 <= step < len(lrs) = {lrs.shape[0]}), "
                             f"got steps from {lo} to {hi}")
    return lrs, steps.astype(jnp.int32)


def changes(lrs) -> np.ndarray:
    """The updates ``k >= 1`` where a concrete learning-rate sequence changes (``lrs[k] !=
    lrs[k - 1]``): the only terms of the Multi-Power Law's loss drop that are not zero."""
    return np.flatnonzero(np.diff(np.asarray(lrs)) != 0) + 1


def loss_drop(C, beta, gamma, lrs, steps, k=None):
    """``LD(s)`` of the Multi-Power Law at each of ``steps`` (see the module docstring)."""
    lrs, steps = _as_inputs(lrs, steps)
    cs = jnp.cumsum(lrs)
    if k is None and not isinstance(lrs, jax.core.Tracer):
        k = changes(lrs)  # zero-gap terms add exactly nothing
    if k is None:  # traced: every update
        k = jnp.arange(1, lrs.shape[0], dtype=jnp.int32)
    k = jnp.asarray(k, jnp.int32)
    if k.shape[0] == 0:
        return jnp.zeros(steps.shape, lrs.dtype)
    eta = lrs[k]
    gap = eta - lrs[k - 1]
    before = cs[k - 1]  # sum of lrs[0..k-1]
    positive = eta > 0
    eta_pow = jnp.where(positive, jnp.where(positive, eta, 1) ** (-gamma), 0)

    def chunk(s):
        sk = cs[s][:, None] - before[None, :]                 # S_k(s) = lrs[k] + ... + lrs[s]
        inside = k[None, :] <= s[:, None]
        live = inside & positive[None, :]
        x = jnp.where(live, C * eta_pow[None, :] * sk, 0.0)  # finite where it is not used
        g = 1 - (1 + x) ** (-beta)
        # eta_k == 0 (a drop to zero): x = inf, G = 1 once the sum since k is positive
        g = jnp.where(positive[None, :], g, jnp.where(sk > 0, 1.0, 0.0))
        return jnp.sum(jnp.where(inside, gap[None, :] * g, 0.0), axis=-1)

    flat = steps.reshape(-1)
    n = flat.shape[0]
    if n <= _CHUNK:
        out = chunk(flat)
    else:
        pad = (-n) % _CHUNK
        padded = jnp.concatenate([flat, jnp.zeros((pad,), flat.dtype)])
        out = jax.lax.map(chunk, padded.reshape(-1, _CHUNK)).reshape(-1)[:n]
    return out.reshape(steps.shape)


def multi_power(params, lrs, steps, *, changes=None):
    r"""The Multi-Power Law's predicted loss at ``steps`` of the lr sequence ``lrs``.

    Args:
      params: :class:`MultiPowerParams` (or a dict, or 7 values in the order
        ``L0, A, alpha, B, C, beta, gamma``).
      lrs: ``[T]`` learning rate of each update (``lrs[t]`` is used by update ``t``).
      steps: integer indices into ``lrs`` (any shape); the loss at step ``s`` is modelled
        from ``lrs[0..s]``.
      changes: optional precomputed indices ``k >= 1`` where ``lrs[k] != lrs[k - 1]``
        (:func:`changes`; computed here when ``lrs`` is concrete, all updates are used when
        it is traced).

    Returns:
      The predicted loss, shaped like ``steps``, in the dtype of ``lrs``.

    Example:
      >>> import numpy as np
      >>> from budgetax import laws
      >>> p = laws.MultiPowerParams(3.0, 0.5, 0.5, 400.0, 2.0, 0.6, 0.6)
      >>> lrs = np.full(1000, 3e-4)
      >>> pred = laws.multi_power(p, lrs, np.array([99, 999]))
      >>> bool(pred[1] < pred[0])
      True
    """
    lrs, steps = _as_inputs(lrs, steps)
    p = _as_params(MultiPowerParams, params, lrs.dtype)
    s1 = jnp.cumsum(lrs)[steps]
    ld = loss_drop(p.C, p.beta, p.gamma, lrs, steps, changes)
    return p.L0 + p.A * s1 ** (-p.alpha) + p.B * ld


def check_decay(decay):
    """Refuses a concrete ``decay`` outside ``[0, 1)`` (a traced one is passed through)."""
    if isinstance(decay, jax.core.Tracer):
        return
    if isinstance(decay, bool) or not isinstance(decay, (int, float, np.floating)) \
            or not 0 <= decay < 1:
        raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")


def annealing_area(lrs, decay=DECAY):
    """``S2`` of the LR-annealing law at every step (``cumsum`` of ``m``, see the module doc)."""
    lrs = jnp.asarray(lrs)
    drop = jnp.concatenate([jnp.zeros((1,), lrs.dtype), jnp.maximum(lrs[:-1] - lrs[1:], 0)])
    decay = jnp.asarray(decay, lrs.dtype)

    def combine(a, b):  # m_i = decay * m_{i-1} + drop_i as an associative scan
        (pa, va), (pb, vb) = a, b
        return pa * pb, va * pb + vb

    _, m = jax.lax.associative_scan(combine, (jnp.full_like(drop, decay), drop))
    return jnp.cumsum(m)


def lr_annealing(params, lrs, steps, *, decay=DECAY):
    r"""The LR-annealing law's predicted loss at ``steps`` of the lr sequence ``lrs``.

    Args:
      params: :class:`LrAnnealingParams` (or a dict, or 4 values ``L0, A, alpha, C``).
      lrs: ``[T]`` learning rate of each update.
      steps: integer indices into ``lrs``; the loss at step ``s`` is modelled from ``lrs[0..s]``.
      decay: the momentum ``lambda`` of the annealing area (the paper's 0.999).

    Returns:
      The predicted loss, shaped like ``steps``.

    Example:
      >>> import numpy as np
      >>> from budgetax import laws
      >>> lrs = np.linspace(1e-3, 1e-4, 1000)
      >>> pred = laws.lr_annealing((3.0, 0.5, 0.5, 100.0), lrs, np.array([10, 999]))
      >>> bool(pred[1] < pred[0])
      True
    """
    lrs, steps = _as_inputs(lrs, steps)
    check_decay(decay)
    p = _as_params(LrAnnealingParams, params, lrs.dtype)
    s1 = jnp.cumsum(lrs)[steps]
    s2 = annealing_area(lrs, decay)[steps]
    return p.L0 + p.A * s1 ** (-p.alpha) - p.C * s2
