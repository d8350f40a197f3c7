"""Configurations of the AutoWU experiment (one dict per variant; ``run.py --config NAME``).

``default``: MNIST-1D, the MNIST-1D CNN with 16 channels, batch 1000 (1/4 of the
4000 training examples: 4 steps per epoch), a budget of 200 steps (50 epochs),
AdamP and LAMB, each with AutoWU (defaults of :func:`budgetax.autowu`) against a
grid of 6 peak learning rates with 10 % linear warmup + cosine decay, 3 seeds;
AutoWU with the library defaults, with ``max_lr=0.1`` (a slower sweep), and with
the fastest test (``patience=1, test_every=1``).
``smoke``: the same code path in seconds.
"""

CONFIGS = {
    "default": {
        "dataset": "mnist1d",
        "model": "cnn1d",
        "model_kwargs": {"channels": 16},
        "batch_size": 1000,
        "budget": 200,
        "seeds": [0, 1, 2],
        "num_evals": 2,
        "grid_warmup_fraction": 0.1,
        "grid_schedule": "cosine",
        "optimizers": {
            "adamp": {"grid": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0], "weight_decay": 0.0},
            "lamb": {"grid": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0], "weight_decay": 0.0},
        },
        # budgetax.autowu keywords per AutoWU variant (max_lr always given, so no peak lr
        # is involved); "defaults" are the library defaults, "max_lr=0.1" a slower sweep
        "autowu": {
            "defaults": {"min_lr": 1e-5, "max_lr": 1.0, "max_warmup_fraction": 0.5,
                         "confidence": 0.95, "patience": 3, "decay": "cosine"},
            "max_lr=0.1": {"min_lr": 1e-5, "max_lr": 0.1, "max_warmup_fraction": 0.5,
                           "confidence": 0.95, "patience": 3, "decay": "cosine"},
            "patience=1,test_every=1": {"min_lr": 1e-5, "max_lr": 1.0,
                                        "max_warmup_fraction": 0.5, "confidence": 0.95,
                                        "patience": 1, "test_every": 1, "decay": "cosine"},
        },
    },
    "smoke": {
        "dataset": "mnist1d",
        "model": "cnn1d",
        "model_kwargs": {"channels": 8},
        "batch_size": 1000,
        "budget": 40,
        "seeds": [0],
        "num_evals": 1,
        "grid_warmup_fraction": 0.1,
        "grid_schedule": "cosine",
        "optimizers": {
            "adamp": {"grid": [1e-3, 1e-2], "weight_decay": 0.0},
            "lamb": {"grid": [1e-2, 1e-1], "weight_decay": 0.0},
        },
        "autowu": {"defaults": {"min_lr": 1e-5, "max_lr": 1.0}},
    },
}
