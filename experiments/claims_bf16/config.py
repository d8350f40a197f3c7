"""Configurations of the bfloat16-only training claim experiment (``run.py --config NAME``).

Claim (Zamirai, Zhang, Aberger, De Sa, *Revisiting BFloat16 Training*, arXiv:2010.06192): in
16-bit-only (bfloat16) training, rounding the weight update to the nearest bfloat16 value
falls behind float32 training, and stochastic rounding or Kahan summation of the weight
update closes the gap (0.1 % lower to 0.2 % higher than float32 in the paper).

``default``: four tasks (the settings of the Demon claim experiment, at longer budgets) x four
precision modes (``OptimizerSpec(precision=...)``: float32, bf16 with nearest rounding, bf16
with stochastic rounding, bf16 with Kahan summation). Adam (b1 0.9, b2 0.999, no weight
decay), linear decay of the learning rate to 0, no warmup; each mode at its own best peak lr
of a half-decade grid of 4 (widened by the sweep engine, ``auto_lrs``, where the best lr sits
at an edge), chosen on the final full-training-set loss; seeds 0, 1, 2.
``sgdm``: the same with SGD with momentum 0.9 (lr grid 0.03-1).
``smoke``: the same code path in about two minutes.

One ``budgetax.training.sweep`` per (task, mode), stored in ``sweeps/<task>/<mode>``.
"""

MODES = ("float32", "bf16", "bf16_sr", "bf16_kahan")

_COMMON = {
    "modes": MODES,
    "optimizer": "adam",
    "momentum": 0.9,          # Adam b1
    "schedule": "linear",     # linear decay from the peak lr to 0, no warmup
    "seeds": (0, 1, 2),
    "num_evals": 1,           # one evaluation, at the end of the budget
    "diagnostics": True,      # full-training-set loss at the end: selects the lr
    "auto_lrs": 2,            # at most 2 half-decade lrs added past an edge of the grid
    # the paper's tolerance, in points of test accuracy; for bits per byte (no points), the
    # same fraction of the float32 value: 0.2 % of it
    "tolerance_points": 0.2,
    "tolerance_relative": 0.002,
}

_TASKS = {
        # budgets 3x (MNIST-1D MLP), 2.4x (CNN), 2.5x (digits), 2x (Transformer) the Demon
        # experiment's full budgets; grids: 4 half-decade lrs around the float32 optimum of
        # Adam + linear decay there
        "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "budget": 3000, "batch_size": 100,
                        "lrs": (1e-3, 3e-3, 1e-2, 3e-2)},
        "mnist1d_cnn1d": {"preset": ("mnist1d", "cnn1d"), "budget": 600,
                          "batch_size": 100, "lrs": (3e-3, 1e-2, 3e-2, 0.1)},
        "digits_mlp": {"preset": ("digits", "mlp"), "budget": 1000, "batch_size": 64,
                       "lrs": (3e-3, 1e-2, 3e-2, 0.1)},
        "transformer_ci": {"task": "examples.transformer_lm:make_ci_task", "budget": 400,
                           "batch_size": 16, "lrs": (1e-3, 3e-3, 1e-2, 3e-2)},
}

CONFIGS = {
    "default": {**_COMMON, "tasks": _TASKS},
    # the same four settings with SGD with momentum 0.9 (its momentum buffer, like Adam's
    # moments, follows the parameter dtype): the paper's optimizer for its image models
    "sgdm": {
        **_COMMON,
        "optimizer": "momentum",
        "tasks": {name: {**t, "lrs": (0.03, 0.1, 0.3, 1.0)} for name, t in _TASKS.items()},
    },
    "smoke": {
        **_COMMON,
        "seeds": (0, 1),
        "auto_lrs": 1,
        "tasks": {
            "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "budget": 100, "batch_size": 100,
                            "lrs": (3e-3, 1e-2)},
        },
    },
}
