"""Configurations of the Demon claim experiment (one dict per variant; ``run.py --config NAME``).

Claim (Chen, Wolfe, Li, Kyrillidis, *Demon: Improved Neural Network Training with Momentum
Decay*, ICASSP 2022, arXiv:1910.04952, Table 1): across 28 model-dataset-optimizer-epochs
settings, Demon has the most top-1 and top-3 finishes among momentum and learning-rate
schedules, 39.29 % and 85.71 %.

``default``: four tasks x {SGD with momentum 0.9, Adam (b1 0.9)} x 3 budgets (10 %, 25 %,
100 % of a full budget) = 24 settings. In each setting, 8 learning-rate schedules (the
sweep's defaults, plain momentum / Adam) and Demon (momentum decay from 0.9 to 0, with a
constant learning rate; also, as a variant, with linear learning-rate decay), each at its
own best peak lr of a half-decade grid, chosen on the final full-training-set loss; 3 seeds.
``smoke``: the same code path in about two minutes.

Each (task, optimizer) entry is run as two ``budgetax.training.sweep`` calls per lr grid
part: one with ``OptimizerSpec(demon=False)`` over the schedules, one with
``OptimizerSpec(demon=True)`` over ``demon_schedules``. ``lrs`` is a list of grid parts: the
first part is the grid chosen up front; later parts widen it where a best lr sat at an edge
of the first (each part is its own sweep directory; the analysis merges the parts).
"""

SCHEDULES = ("linear", "rex", "cosine", "step", "exponential", "constant", "wsd", "one_cycle")
# the learning-rate schedules of the paper's Table 1 that budgetax has (the paper's "LR Decay
# on Plateau" and its four momentum schedules have no budgetax counterpart)
PAPER_SCHEDULES = ("step", "cosine", "linear", "exponential", "one_cycle")

SGDM_LRS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
ADAM_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)

_COMMON = {
    "budgets": (0.1, 0.25, 1.0),
    "seeds": (0, 1, 2),
    "num_evals": 1,            # one evaluation, at the end of each budget
    "diagnostics": True,       # full-training-set loss at the end: selects the lr
    "schedules": SCHEDULES,
    "demon_schedules": ("constant", "linear"),
    "momentum": 0.9,
}

CONFIGS = {
    "default": {
        **_COMMON,
        "tasks": {
            # second grid parts: added after the first run, where a schedule's best lr was
            # the largest of the first part (exponential with SGDM; most schedules with Adam)
            "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "full_budget": 1000,
                            "batch_size": 100,
                            "lrs": {"momentum": [SGDM_LRS, (3.0,)],
                                    "adam": [ADAM_LRS, (0.1,)]}},
            "mnist1d_cnn1d": {"preset": ("mnist1d", "cnn1d"), "full_budget": 250,
                              "batch_size": 100,
                              "lrs": {"momentum": [SGDM_LRS, (3.0,)],
                                      "adam": [ADAM_LRS, (0.1, 0.3)]}},
            "digits_mlp": {"preset": ("digits", "mlp"), "full_budget": 400, "batch_size": 64,
                           "lrs": {"momentum": [SGDM_LRS, (3.0,)],
                                   "adam": [ADAM_LRS, (0.1, 0.3)]}},
            "transformer_ci": {"task": "examples.transformer_lm:make_ci_task",
                               "full_budget": 200, "batch_size": 16,
                               "lrs": {"momentum": [SGDM_LRS], "adam": [ADAM_LRS, (0.1, 0.3)]}},
        },
    },
    "smoke": {
        **_COMMON,
        "budgets": (0.25, 1.0),
        "seeds": (0, 1),
        "schedules": ("linear", "cosine", "step", "constant"),
        "demon_schedules": ("constant",),
        "tasks": {
            "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "full_budget": 80,
                            "batch_size": 100,
                            "lrs": {"momentum": [(0.01, 0.1)], "adam": [(1e-3, 1e-2)]}},
        },
    },
}
