"""Configurations of the MNIST-1D anchor experiment.

The protocol follows the MNIST-1D reference training code (Greydanus, 2020): Adam,
learning rate 1e-2 held constant, batch 100, no weight decay; the full budget is
6000 steps (150 epochs of the 4000 training examples). ``short`` is 10% of it.
``short_tuned`` / ``short_tuned_sgd`` run 10% of it for each schedule over a log grid of
peak learning rates, so that every schedule is compared at its own best one.
"""

FULL_BUDGET = 6000
BATCH_SIZE = 100
PEAK_LR = 1e-2
OPTIMIZER = "adam"
SEEDS = (0, 1, 2)

# paper numbers (Greydanus 2020, test accuracy)
PAPER = {"mlp": 0.68, "cnn1d": 0.94}

# learning-rate grids of the tuned variants: 3 points per decade
ADAM_LRS = tuple(round(10 ** (-3 + k / 3), 6) for k in range(7))  # 1e-3 .. 1e-1
SGD_LRS = tuple(round(10 ** (-2 + k / 3), 6) for k in range(7))  # 1e-2 .. 1 (momentum 0.9)
TUNED_SCHEDULES = ("constant", "linear", "cosine", "rex")
TUNED_NUM_EVALS = 1  # only the end of the budget is reported

VARIANTS = {
    # the paper's protocol at the full budget: constant learning rate
    "anchor": dict(models=("mlp", "cnn1d"), schedules=("constant",), fraction=1.0),
    # linear decay to zero at the full budget (budget-aware)
    "anchor_linear": dict(models=("mlp", "cnn1d"), schedules=("linear",), fraction=1.0),
    # 10% of the budget: linear decay vs constant (Li et al. 2020)
    "short": dict(models=("mlp", "cnn1d"), schedules=("constant", "linear"), fraction=0.1),
    # the same with SGD + momentum 0.9, the optimizer of Li et al. (2020)
    "short_sgd": dict(models=("mlp", "cnn1d"), schedules=("constant", "linear"), fraction=0.1,
                      optimizer="sgd", peak_lr=0.1),
    # 10% of the budget, each schedule at its own best peak learning rate (Li et al. 2020
    # compare schedules at their tuned learning rates): a log grid of peak lrs x seeds per
    # (model, schedule), one vmapped ``train_many`` call each.
    "short_tuned": dict(models=("mlp", "cnn1d"), schedules=TUNED_SCHEDULES, fraction=0.1,
                        optimizer="adam", peak_lrs=ADAM_LRS),
    # the same with SGD + momentum 0.9
    "short_tuned_sgd": dict(models=("mlp", "cnn1d"), schedules=TUNED_SCHEDULES, fraction=0.1,
                            optimizer="sgd", peak_lrs=SGD_LRS),
}
