"""Batch-size learning-rate scaling and LEGW warmup length."""

from __future__ import annotations

import math

import pytest

import budgetax
from budgetax import batch_size as bs


@pytest.mark.parametrize("k", [0.25, 1, 2, 8, 64])
def test_scale_lr_rules(k):
    base = 256
    new = int(base * k)
    assert budgetax.scale_lr(0.1, new, base) == pytest.approx(0.1 * k)
    assert budgetax.scale_lr(0.1, new, base, rule="sqrt") == pytest.approx(0.1 * math.sqrt(k))


def test_legw_epochs_grow_linearly_steps_stay_constant():
    # warmup epochs scale with the batch-size multiple ...
    assert bs.legw_warmup_epochs(0.5, 2048, 256) == pytest.approx(4.0)
    assert bs.legw_warmup_epochs(0.0, 2048, 256) == 0.0
    # ... so the warmup in steps is that of the base batch size
    n = 4000 * 256
    base_steps = bs.legw_warmup_steps(0.5, 256, 256, n)
    assert base_steps == 2000
    for b in (512, 1024, 4096):
        assert budgetax.legw_warmup_steps(0.5, b, 256, n) == base_steps


def test_legw_steps_round_up_partial_epochs():
    # 4000 examples, batch 1024 -> 4 steps per epoch; 0.25 * 4 = 1 epoch -> 4 steps
    assert bs.legw_warmup_steps(0.25, 1024, 256, 4000) == 4
    assert bs.legw_warmup_steps(0.3, 1024, 256, 4000) == 5  # 1.2 epochs * 4 = 4.8 -> 5


@pytest.mark.parametrize(
    "call, exc, name",
    [
        (lambda: bs.scale_lr(0.0, 1024, 256), ValueError, "base_lr"),
        (lambda: bs.scale_lr(0.1, 0, 256), ValueError, "batch_size"),
        (lambda: bs.scale_lr(0.1, 1024, 256.0), TypeError, "base_batch_size"),
        (lambda: bs.scale_lr(0.1, 1024, 256, rule="cubic"), ValueError, "rule"),
        (lambda: bs.legw_warmup_epochs(-1.0, 1024, 256), ValueError, "base_warmup_epochs"),
        (lambda: bs.legw_warmup_steps(1.0, 1024, 256, 0), ValueError, "num_examples"),
    ],
)
def test_bad_args(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
