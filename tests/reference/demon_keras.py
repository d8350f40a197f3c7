"""Float64 NumPy port of the public Keras Demon optimizers (Chen et al., arXiv:1910.04952).

Ported from github.com/autasi/demon_sgd (TensorFlow 2.2 Keras ``optimizer_v2``):
``demon_sgd.py`` at commit 6306b7facab7c13cd0aa8a4575a1ee7b079abf1f and ``demon_adam.py``
at commit 7c8b43ec9fa1ac272e199f8c8d9a715c81ad6af6. Both subclass Keras optimizers and
only change the momentum coefficient, so the update rules below are those of the
TensorFlow kernels they call, written out:

* ``DemonSGD`` -> ``training_ops.resource_apply_keras_momentum`` (``ApplyKerasMomentum``):
  ``accum = accum * momentum - lr * grad``; ``var += accum`` or, with Nesterov,
  ``var += accum * momentum - lr * grad``; ``momentum`` is the *decayed* coefficient
  computed from ``iterations`` before the step (0 on the first).
* ``DemonAdam`` -> Keras ``Adam._resource_apply_dense`` -> ``resource_apply_adam``
  (``ApplyAdam``): ``alpha = lr * sqrt(1 - beta_2_power) / (1 - beta_1_power)``,
  ``m += (grad - m) * (1 - beta_1_t)``, ``v += (grad**2 - v) * (1 - beta_2)``,
  ``var -= alpha * m / (sqrt(v) + epsilon)`` with ``beta_1_t`` the decayed coefficient
  and ``beta_1_power = beta_1_t ** (iterations + 1)`` (``_prepare_local``).

``_momentum_decay`` is upstream's: ``decay_rate = 1 - iterations / T``,
``beta = beta_init * decay_rate / ((1 - beta_init) + beta_init * decay_rate)``; upstream
does not clip ``iterations`` at ``T`` (the coefficient turns negative after ``T``), so
compare within the budget. ``lr`` may be a function of ``iterations`` (a Keras
``LearningRateSchedule`` is called with the iteration count before the step).
"""

from __future__ import annotations

import math

import numpy as np


def momentum_decay(beta_init, iterations, total_steps):
    decay_rate = 1.0 - iterations / total_steps
    beta_decay = beta_init * decay_rate
    return beta_decay / ((1.0 - beta_init) + beta_decay)


def _lr(lr, iterations):
    return lr(iterations) if callable(lr) else lr


class DemonSGD:
    def __init__(self, T, learning_rate=0.01, momentum=0.0, nesterov=False):
        self.T, self.learning_rate, self.momentum, self.nesterov = (
            T, learning_rate, momentum, nesterov)
        self.iterations = 0
        self.slots = {}

    def apply_gradients(self, grads_and_vars):
        """``var`` arrays are updated in place, as Keras variables are."""
        lr = _lr(self.learning_rate, self.iterations)
        for k, (grad, var) in enumerate(grads_and_vars):
            grad = np.asarray(grad, np.float64)
            if self.momentum:
                accum = self.slots.setdefault(k, np.zeros_like(var))
                coeff = momentum_decay(self.momentum, self.iterations, self.T)
                accum[...] = accum * coeff - grad * lr
                if self.nesterov:
                    var += accum * coeff - grad * lr
                else:
                    var += accum
            else:
                var -= lr * grad
        self.iterations += 1


class DemonAdam:
    def __init__(self, T, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.T, self.learning_rate = T, learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.iterations = 0
        self.slots = {}

    def apply_gradients(self, grads_and_vars):
        local_step = self.iterations + 1
        beta_1_t = momentum_decay(self.beta_1, self.iterations, self.T)
        beta_2_t = self.beta_2
        beta_1_power = beta_1_t ** local_step
        beta_2_power = beta_2_t ** local_step
        lr_t = _lr(self.learning_rate, self.iterations)
        alpha = lr_t * math.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        for k, (grad, var) in enumerate(grads_and_vars):
            grad = np.asarray(grad, np.float64)
            m, v = self.slots.setdefault(k, (np.zeros_like(var), np.zeros_like(var)))
            m += (grad - m) * (1 - beta_1_t)
            v += (grad * grad - v) * (1 - beta_2_t)
            var -= m * alpha / (np.sqrt(v) + self.epsilon)
        self.iterations += 1
