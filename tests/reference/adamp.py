"""Float64 NumPy port of the reference AdamP and SGDP (Heo et al., ICLR 2021, arXiv:2006.08217).

Ported from github.com/clovaai/AdamP at commit 146287bfd4b22061d84c4f7492bffbd3962ea2b1,
files ``adamp/adamp.py`` and ``adamp/sgdp.py`` (MIT license, NAVER Corp.), line for line:
``torch`` tensors become float64 NumPy arrays, and the in-place operations stay in place
(``exp_avg.mul_(...)``, ``buf.mul_(...)``, ``perturb -= ...``), so that, as upstream, SGDP
without Nesterov projects its stored momentum buffer (``d_p`` *is* the buffer).
``F.cosine_similarity(x, y, dim=1, eps)`` is ported as current PyTorch computes it:
``sum(x * y) / (max(|x|, eps) * max(|y|, eps))``.

The code sees parameters in **PyTorch layout** (output channel first; the channel view is
``x.view(x.size(0), -1)``). :func:`to_torch` / :func:`from_torch` convert a Flax-layout
array (output channel last) by moving the last axis to the front and back.

Two additions that are not upstream and change nothing in the arithmetic:
``step`` returns, per parameter, which projection fired (``"channel"``, ``"layer"`` or
``None``), and ``SGDP(alias_buffer=False)`` copies the direction before projecting it
(the paper's Algorithm 1, budgetax's ``sgdp(project_momentum=False)``).
"""

from __future__ import annotations

import math

import numpy as np


def to_torch(x):
    """Flax layout (channels last) -> PyTorch layout (channels first); vectors unchanged."""
    x = np.asarray(x, np.float64)
    return np.ascontiguousarray(np.moveaxis(x, -1, 0)) if x.ndim > 1 else x.copy()


def from_torch(x):
    """Inverse of :func:`to_torch`."""
    return np.moveaxis(x, 0, -1) if x.ndim > 1 else x


def _channel_view(x):
    return x.reshape(x.shape[0], -1)


def _layer_view(x):
    return x.reshape(1, -1)


def _cosine_similarity(x, y, eps, view_func):
    x = view_func(x)
    y = view_func(y)
    nx = np.maximum(np.linalg.norm(x, axis=1), eps)
    ny = np.maximum(np.linalg.norm(y, axis=1), eps)
    return np.abs((x * y).sum(axis=1) / (nx * ny))


def _projection(p, grad, perturb, delta, wd_ratio, eps):
    """Upstream ``_projection``; ``perturb`` is edited in place. Returns (perturb, wd, fired)."""
    wd = 1
    expand_size = [-1] + [1] * (len(p.shape) - 1)
    for name, view_func in (("channel", _channel_view), ("layer", _layer_view)):
        cosine_sim = _cosine_similarity(grad, p, eps, view_func)
        if cosine_sim.max() < delta / math.sqrt(view_func(p).shape[1]):
            p_n = p / (np.linalg.norm(view_func(p), axis=1).reshape(expand_size) + eps)
            perturb -= p_n * view_func(p_n * perturb).sum(axis=1).reshape(expand_size)
            wd = wd_ratio
            return perturb, wd, name
    return perturb, wd, None


class AdamP:
    """``adamp/adamp.py``: ``step(params, grads)`` on dicts of PyTorch-layout arrays."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, delta=0.1,
                 wd_ratio=0.1, nesterov=False):
        self.group = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta,
                          wd_ratio=wd_ratio, nesterov=nesterov)
        self.state = {}

    def step(self, params, grads):
        group = self.group
        fired = {}
        for k, p in params.items():
            grad = grads[k]
            beta1, beta2 = group["betas"]
            nesterov = group["nesterov"]
            state = self.state.setdefault(k, {})
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(p)
                state["exp_avg_sq"] = np.zeros_like(p)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            state["step"] += 1
            bias_correction1 = 1 - beta1 ** state["step"]
            bias_correction2 = 1 - beta2 ** state["step"]
            exp_avg *= beta1
            exp_avg += (1 - beta1) * grad
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            denom = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + group["eps"]
            step_size = group["lr"] / bias_correction1
            if nesterov:
                perturb = (beta1 * exp_avg + (1 - beta1) * grad) / denom
            else:
                perturb = exp_avg / denom
            wd_ratio, fired[k] = 1, None
            if len(p.shape) > 1:
                perturb, wd_ratio, fired[k] = _projection(p, grad, perturb, group["delta"],
                                                          group["wd_ratio"], group["eps"])
            if group["weight_decay"] > 0:
                p *= 1 - group["lr"] * group["weight_decay"] * wd_ratio
            p -= step_size * perturb
        return fired


class SGDP:
    """``adamp/sgdp.py``: ``step(params, grads)`` on dicts of PyTorch-layout arrays."""

    def __init__(self, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False, eps=1e-8,
                 delta=0.1, wd_ratio=0.1, alias_buffer=True):
        self.group = dict(lr=lr, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov, eps=eps, delta=delta,
                          wd_ratio=wd_ratio)
        self.alias_buffer = alias_buffer
        self.state = {}

    def step(self, params, grads):
        group = self.group
        momentum = group["momentum"]
        dampening = group["dampening"]
        nesterov = group["nesterov"]
        fired = {}
        for k, p in params.items():
            grad = grads[k]
            state = self.state.setdefault(k, {})
            if len(state) == 0:
                state["momentum"] = np.zeros_like(p)
            buf = state["momentum"]
            buf *= momentum
            buf += (1 - dampening) * grad
            if nesterov:
                d_p = grad + momentum * buf
            else:
                d_p = buf if self.alias_buffer else buf.copy()
            wd_ratio, fired[k] = 1, None
            if len(p.shape) > 1:
                d_p, wd_ratio, fired[k] = _projection(p, grad, d_p, group["delta"],
                                                      group["wd_ratio"], group["eps"])
            if group["weight_decay"] > 0:
                p *= 1 - group["lr"] * group["weight_decay"] * wd_ratio / (1 - momentum)
            p -= group["lr"] * d_p
        return fired
