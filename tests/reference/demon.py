"""Plain NumPy float64 reference for Demon momentum, Demon SGD and Demon Adam.

Written from the formulas of the Demon paper (Chen et al., arXiv:1910.04952), one
step at a time, with no JAX and no code shared with ``budgetax``. ``t`` counts
earlier updates (0 on the first), and beta is clipped to 0 from ``t = T`` on.
The reference *code* (Keras) is ported in ``demon_keras.py``; this file covers
what it does not have: the bare momentum transform, the learning rate applied
after the momentum (``lr_in_momentum=False``) and the exact bias correction.
"""

from __future__ import annotations

import numpy as np


def demon_beta(t, total_steps, beta_init):
    """beta_t = beta_init (1 - t/T) / ((1 - beta_init) + beta_init (1 - t/T)), t clipped to T."""
    frac_left = 1.0 - min(t, total_steps) / total_steps
    return beta_init * frac_left / ((1.0 - beta_init) + beta_init * frac_left)


def demon_momentum(grads, total_steps, beta_init, nesterov=False):
    """Outputs of m_t = beta_t m_{t-1} + g_t (or g_t + beta_t m_t with Nesterov)."""
    m = np.zeros_like(np.asarray(grads[0], np.float64))
    outs = []
    for t, g in enumerate(grads):
        g = np.asarray(g, np.float64)
        m = demon_beta(t, total_steps, beta_init) * m + g
        if nesterov:
            outs.append(g + demon_beta(t, total_steps, beta_init) * m)
        else:
            outs.append(m.copy())
    return outs


def demon_sgd(params, grads, lr, total_steps, beta_init, nesterov=False, weight_decay=0.0):
    """SGD + Demon, L2 weight decay, lr applied after the momentum; ``lr`` is a function of t."""
    theta = np.asarray(params, np.float64).copy()
    m = np.zeros_like(theta)
    traj = []
    for t, g in enumerate(grads):
        d = np.asarray(g, np.float64) + weight_decay * theta
        beta = demon_beta(t, total_steps, beta_init)
        m = beta * m + d
        direction = d + beta * m if nesterov else m
        theta = theta - lr(t) * direction
        traj.append(theta.copy())
    return traj


def demon_adam(params, grads, lr, total_steps, beta_init, b2=0.999, eps=1e-8,
               weight_decay=0.0):
    """Parameter trajectory of Adam(W) with Demon's first-moment coefficient and the
    exact bias correction m_hat = m / (1 - beta_0 * beta_1 * ... * beta_t)."""
    theta = np.asarray(params, np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    running_product = 1.0
    traj = []
    for t, g in enumerate(grads):
        g = np.asarray(g, np.float64)
        beta = demon_beta(t, total_steps, beta_init)
        running_product *= beta
        m = beta * m + (1.0 - beta) * g
        v = b2 * v + (1.0 - b2) * g * g
        m_hat = m / (1.0 - running_product)
        v_hat = v / (1.0 - b2 ** (t + 1))
        theta = theta - lr(t) * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * theta)
        traj.append(theta.copy())
    return traj
