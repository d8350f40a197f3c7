"""NumPy float64 reference of AdamP and SGDP (Heo et al., ICLR 2021, arXiv:2006.08217).

Follows the published algorithm (Algorithms 1-2 and the authors' release) one
parameter at a time, with the Flax convention that a weight's output channel is
its last axis: the channel view of ``w`` is ``w.reshape(-1, w.shape[-1])`` with
one channel per column. Each step returns, per parameter, which test fired:
``"channel"``, ``"layer"`` or ``None``.
"""

from __future__ import annotations

import math

import numpy as np


def _views(w):
    return [("channel", lambda a: a.reshape(-1, w.shape[-1])),
            ("layer", lambda a: a.reshape(-1, 1))]


def _cos(a, b, eps):
    num = np.abs((a * b).sum(axis=0))
    return num / (np.maximum(np.linalg.norm(a, axis=0), eps)
                  * np.maximum(np.linalg.norm(b, axis=0), eps))


def projection(w, g, d, delta, wd_ratio, eps):
    """Returns (projected d, weight-decay ratio, which test fired)."""
    for name, view in _views(w):
        wv, gv = view(w), view(g)
        if _cos(gv, wv, eps).max() < delta / math.sqrt(wv.shape[0]):
            w_hat = wv / (np.linalg.norm(wv, axis=0, keepdims=True) + eps)
            dv = view(d)
            dv = dv - w_hat * (w_hat * dv).sum(axis=0, keepdims=True)
            return dv.reshape(d.shape), wd_ratio, name
    return d, 1.0, None


class AdamP:
    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, delta=0.1,
                 wd_ratio=0.1, nesterov=False):
        self.hp = dict(lr=lr, b1=b1, b2=b2, eps=eps, wd=weight_decay, delta=delta,
                       wd_ratio=wd_ratio, nesterov=nesterov)
        self.t = 0
        self.m = {}
        self.v = {}

    def step(self, params, grads):
        h = self.hp
        self.t += 1
        out, fired = {}, {}
        for k in params:
            w = np.asarray(params[k], np.float64)
            g = np.asarray(grads[k], np.float64)
            m = self.m.get(k, np.zeros_like(w))
            v = self.v.get(k, np.zeros_like(w))
            m = h["b1"] * m + (1 - h["b1"]) * g
            v = h["b2"] * v + (1 - h["b2"]) * g * g
            self.m[k], self.v[k] = m, v
            c1 = 1 - h["b1"] ** self.t
            c2 = 1 - h["b2"] ** self.t
            denom = np.sqrt(v) / math.sqrt(c2) + h["eps"]
            num = h["b1"] * m + (1 - h["b1"]) * g if h["nesterov"] else m
            perturb = num / denom
            ratio, which = 1.0, None
            if w.ndim > 1:
                perturb, ratio, which = projection(w, g, perturb, h["delta"], h["wd_ratio"],
                                                   h["eps"])
            if h["wd"] > 0:
                w = w * (1 - h["lr"] * h["wd"] * ratio)
            out[k] = w - h["lr"] / c1 * perturb
            fired[k] = which
        return out, fired


class SGDP:
    def __init__(self, lr, momentum=0.9, dampening=0.0, eps=1e-8, weight_decay=0.0, delta=0.1,
                 wd_ratio=0.1, nesterov=False):
        self.hp = dict(lr=lr, mom=momentum, damp=dampening, eps=eps, wd=weight_decay,
                       delta=delta, wd_ratio=wd_ratio, nesterov=nesterov)
        self.buf = {}

    def step(self, params, grads):
        h = self.hp
        out, fired = {}, {}
        for k in params:
            w = np.asarray(params[k], np.float64)
            g = np.asarray(grads[k], np.float64)
            b = h["mom"] * self.buf.get(k, np.zeros_like(w)) + (1 - h["damp"]) * g
            self.buf[k] = b
            d = g + h["mom"] * b if h["nesterov"] else b
            ratio, which = 1.0, None
            if w.ndim > 1:
                d, ratio, which = projection(w, g, d, h["delta"], h["wd_ratio"], h["eps"])
            if h["wd"] != 0:
                w = w * (1 - h["lr"] * h["wd"] * ratio / (1 - h["mom"]))
            out[k] = w - h["lr"] * d
            fired[k] = which
        return out, fired
