"""Configurations of the budgeted-training and REX claim experiment (``run.py --config NAME``).

Claims (one set of sweeps answers both):

- Budgeted Training (Li, Yumer, Ramanan, *Budgeted Training: Rethinking Deep Neural Network
  Training Under Resource Constraints*, ICLR 2020, arXiv:1905.04753): a budget-aware linear
  decay beats the step (30-60-90) and exponential schedules at small budgets, and the gap
  closes at the full budget; "budgeted convergence": schedules that decay the learning rate
  to 0 end the budget with a smaller full-batch gradient norm.
- REX (Chen, Wolfe, Kyrillidis, *REX: Revisiting Budgeted Training with an Improved
  Schedule*, MLSys 2022, arXiv:2107.04197): REX matches or beats linear at low budgets and
  has the best average rank over settings and budgets (the paper's Figure 1 ranks 6
  schedules: REX, linear, step, exponential, cosine, OneCycle).

``default``: four tasks x {SGD with momentum 0.9, Adam (b1 0.9)} x 5 budgets (5, 10, 25, 50,
100 % of a full budget) = 40 cells; the sweep engine's 8 schedules, each at its own best peak
lr of a half-decade grid (widened by the sweep's ``auto_lrs`` while a best lr sits at an
edge), chosen on the final full-training-set loss; 3 seeds. ``smoke``: the same code path in
about two minutes.
"""

SCHEDULES = ("linear", "rex", "cosine", "step", "exponential", "constant", "wsd", "one_cycle")
# the six schedules of REX's Figure 1 (its "decay on plateau" has no budgetax counterpart)
REX_FIELD = ("rex", "linear", "step", "exponential", "cosine", "one_cycle")
# budgets at which a claim speaks of "small" / "low" budgets
SMALL = (0.05, 0.1, 0.25)

_COMMON = {
    "budgets": (0.05, 0.1, 0.25, 0.5, 1.0),
    "seeds": (0, 1, 2),
    "schedules": SCHEDULES,
    "momentum": 0.9,
    "auto_lrs": 2,            # at most 2 lrs added past the grid's edges per sweep
    "bootstrap_draws": 1000,
}

# half-decade grids around the lrs the Demon experiment's sweeps chose on the same tasks
SGDM_LRS = (0.03, 0.1, 0.3, 1.0)
ADAM_LRS = (0.003, 0.01, 0.03, 0.1)

CONFIGS = {
    "default": {
        **_COMMON,
        "tasks": {
            "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "full_budget": 1000,
                            "batch_size": 100},
            "digits_mlp": {"preset": ("digits", "mlp"), "full_budget": 400, "batch_size": 64},
            "transformer_ci": {"task": "examples.transformer_lm:make_ci_task",
                               "full_budget": 200, "batch_size": 16},
            "mnist1d_cnn1d": {"preset": ("mnist1d", "cnn1d"), "full_budget": 250,
                              "batch_size": 100},
        },
        "lrs": {"momentum": SGDM_LRS, "adam": ADAM_LRS},
    },
    "smoke": {
        **_COMMON,
        "budgets": (0.25, 1.0),
        "seeds": (0, 1),
        "auto_lrs": 1,
        "bootstrap_draws": 50,
        "tasks": {
            "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "full_budget": 80,
                            "batch_size": 100},
        },
        "lrs": {"momentum": (0.1, 0.3), "adam": (0.01, 0.03)},
    },
}
