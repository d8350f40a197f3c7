"""Configurations of the AutoWU claim experiment (one dict per variant; ``run.py --config NAME``).

Claim (Kim, Kim, Kim, Hwang, Kim, Kim, *Automated Learning Rate Scheduler for Large-batch
Training*, arXiv:2107.05855; reference code kakaobrain/autowu): an automated exponential
warmup, stopped by a Gaussian-process test on the minibatch losses and followed by a cosine
decay, matches a tuned learning-rate schedule at large batch without a peak-lr search.

``default``: three settings at a large batch (a quarter to a third of the training set), each
at a short budget of 200 steps (where ``experiments/autowu`` found AutoWU failing on the
MNIST-1D CNN) and a long one (3000 steps for the MLPs, 1000 for the CNN, whose steps cost
about 10x more). Per setting and optimizer (AdamP; LAMB for the MLPs): AutoWU with the library
defaults of :func:`budgetax.autowu` (``min_lr=1e-5, max_lr=1.0, max_warmup_fraction=0.5,
test_every=round(T/100), patience=3, decay="cosine"``; no peak lr given) against a
half-decade grid of peak lrs with a linear warmup over 10 % of the budget and cosine decay
to 0, best lr chosen on the final full-training-set loss; 3 seeds. No weight decay.
``smoke``: the same code path in about a minute.

``lrs`` is a list of grid parts (each its own sweep directory, merged by the analysis), so
that a grid can be widened where its best lr sits at an edge.
"""

_COMMON = {
    "seeds": (0, 1, 2),
    "num_evals": 1,              # one evaluation, at the end of each budget
    "diagnostics": True,         # full-training-set loss at the end: selects the grid's lr
    "grid_schedule": "cosine",   # decays to end_lr = 0 at the budget
    "grid_warmup_fraction": 0.1,
    "weight_decay": 0.0,
    # budgetax.autowu keywords: the library defaults, written out (OptimizerSpec would
    # otherwise take max_lr from its own peak_lr, whose default is 1e-2)
    "autowu": {"min_lr": 1e-5, "max_lr": 1.0, "max_warmup_fraction": 0.5,
               "confidence": 0.95, "patience": 3, "decay": "cosine"},
}

ADAMP_LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
LAMB_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)

CONFIGS = {
    "default": {
        **_COMMON,
        "tasks": {
            "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "full_budget": 3000,
                            "budgets": (1 / 15, 1.0), "batch_size": 1000,
                            "lrs": {"adamp": [ADAMP_LRS], "lamb": [LAMB_LRS]}},
            # AdamP's second part: added after the first pass, where its best lr was the
            # largest of the first part at both budgets
            "digits_mlp": {"preset": ("digits", "mlp"), "full_budget": 3000,
                           "budgets": (1 / 15, 1.0), "batch_size": 500,
                           "lrs": {"adamp": [ADAMP_LRS, (0.3, 1.0)], "lamb": [LAMB_LRS]}},
            # 16 channels as in experiments/autowu (its 200-step failure); AdamP only and
            # 5 lrs: a CNN step at batch 1000 costs ~10x an MLP step on these CPUs
            "mnist1d_cnn1d": {"preset": ("mnist1d", "cnn1d"), "model_kwargs": {"channels": 16},
                              "full_budget": 1000, "budgets": (0.2, 1.0), "batch_size": 1000,
                              "lrs": {"adamp": [(3e-3, 1e-2, 3e-2, 0.1, 0.3)]}},
        },
    },
    "smoke": {
        **_COMMON,
        "seeds": (0, 1),
        "tasks": {
            "mnist1d_mlp": {"preset": ("mnist1d", "mlp"), "full_budget": 300,
                            "budgets": (0.5, 1.0), "batch_size": 1000,
                            "lrs": {"adamp": [(1e-3, 1e-2)], "lamb": [(1e-2,), (0.1,)]}},
        },
    },
}
