r"""Learning rate and warmup length when the batch size changes.

Scaling the batch size by ``k = batch_size / base_batch_size``:

.. math::

   \eta = \eta_0\, k \quad(\text{linear rule, Goyal et al.}), \qquad
   \eta = \eta_0 \sqrt{k} \quad(\text{square-root rule, Krizhevsky; Hoffer et al.})

LEGW (*linear-epoch gradual warmup*, You et al.) pairs the square-root rule with
a warmup whose length **in epochs** grows linearly with ``k``:
``warmup_epochs = k * base_warmup_epochs``. Since one epoch has ``k`` times fewer
steps at the larger batch, the warmup length **in steps** stays that of the base
batch size.

References:
  Goyal et al. Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. 2017.
  arXiv:1706.02677.
  Hoffer, Hubara, Soudry. Train longer, generalize better. NeurIPS 2017. arXiv:1705.08741.
  You, Hseu, Ying, Demmel, Keutzer, Hsieh. Large-Batch Training for LSTM and
  Beyond. SC 2019. arXiv:1901.08256.
"""

from __future__ import annotations

import math

from budgetax import _validate

__all__ = ["SCALING_RULES", "legw_warmup_epochs", "legw_warmup_steps", "scale_lr"]

SCALING_RULES = ("linear", "sqrt")


def scale_lr(base_lr, batch_size, base_batch_size, rule: str = "linear") -> float:
    """Scales a learning rate tuned at ``base_batch_size`` to ``batch_size``.

    ``rule="linear"``: ``base_lr * k``; ``rule="sqrt"``: ``base_lr * sqrt(k)``, with
    ``k = batch_size / base_batch_size``.

    Args:
      base_lr: the learning rate tuned at the base batch size, ``> 0``.
      batch_size: the new batch size (positive int).
      base_batch_size: the batch size ``base_lr`` was tuned at (positive int).
      rule: ``"linear"`` or ``"sqrt"``.

    Returns:
      The scaled learning rate (a Python float).

    Example:
      >>> scale_lr(0.1, 1024, 256)
      0.4
      >>> scale_lr(0.1, 1024, 256, rule="sqrt")
      0.2

    References:
      Goyal et al. Accurate, Large Minibatch SGD. 2017. arXiv:1706.02677.
      You et al. Large-Batch Training for LSTM and Beyond. 2019. arXiv:1901.08256.
    """
    base_lr = _validate.real("base_lr", base_lr, low=0.0, low_open=True)
    batch_size = _validate.positive_int("batch_size", batch_size)
    base_batch_size = _validate.positive_int("base_batch_size", base_batch_size)
    _validate.one_of("rule", rule, SCALING_RULES)
    k = batch_size / base_batch_size
    return base_lr * (k if rule == "linear" else math.sqrt(k))


def legw_warmup_epochs(base_warmup_epochs, batch_size, base_batch_size) -> float:
    """LEGW warmup length in epochs: ``base_warmup_epochs * batch_size / base_batch_size``.

    Args:
      base_warmup_epochs: the warmup (in epochs) that works at the base batch size, ``>= 0``.
      batch_size: the new batch size (positive int).
      base_batch_size: the base batch size (positive int).

    Returns:
      The warmup length in epochs (a float).

    Example:
      >>> legw_warmup_epochs(0.25, 1024, 256)
      1.0

    References:
      You, Hseu, Ying, Demmel, Keutzer, Hsieh. Large-Batch Training for LSTM and
      Beyond. SC 2019. arXiv:1901.08256.
    """
    base_warmup_epochs = _validate.real("base_warmup_epochs", base_warmup_epochs, low=0.0)
    batch_size = _validate.positive_int("batch_size", batch_size)
    base_batch_size = _validate.positive_int("base_batch_size", base_batch_size)
    return base_warmup_epochs * batch_size / base_batch_size


def legw_warmup_steps(base_warmup_epochs, batch_size, base_batch_size, num_examples) -> int:
    """LEGW warmup length in optimizer steps at ``batch_size``.

    ``ceil(legw_warmup_epochs(...) * steps_per_epoch)`` with
    ``steps_per_epoch = ceil(num_examples / batch_size)``; up to rounding this is the
    warmup in steps of the base batch size.

    Args:
      base_warmup_epochs: the warmup (in epochs) that works at the base batch size, ``>= 0``.
      batch_size: the new batch size (positive int).
      base_batch_size: the base batch size (positive int).
      num_examples: training-set size (positive int).

    Returns:
      The number of warmup steps (a Python int, ``>= 0``), usable as ``warmup_steps``
      of :func:`budgetax.schedules.budgeted`.

    Example:
      >>> legw_warmup_steps(1.0, 1024, 256, num_examples=4096)
      16

    References:
      You, Hseu, Ying, Demmel, Keutzer, Hsieh. Large-Batch Training for LSTM and
      Beyond. SC 2019. arXiv:1901.08256.
    """
    epochs = legw_warmup_epochs(base_warmup_epochs, batch_size, base_batch_size)
    num_examples = _validate.positive_int("num_examples", num_examples)
    steps_per_epoch = math.ceil(num_examples / batch_size)
    return int(math.ceil(epochs * steps_per_epoch - 1e-9))
