"""Search space of the ranking experiment: MLPs and 1-D CNNs on MNIST-1D.

Every configuration is (model, model_kwargs, schedule, peak lr), trained with Adam,
batch 100, one seed, for the full budget of ``BUDGET`` steps (60 epochs of the 4000
training examples). The peak-lr grid deliberately includes too-low and too-high values
so that final test accuracies spread. ``NUM_EVALS = 20`` puts a test evaluation at
every 5% of the budget, so the 5%, 10% and 25% marks of the rankers are evaluations.
"""

DATASET = "mnist1d"
BUDGET = 2400            # full budget: 60 epochs of 40 steps
BATCH_SIZE = 100
STEPS_PER_EPOCH = 40     # 4000 training examples / batch 100
NUM_EVALS = 20           # test evaluation every 5% of the budget
OPTIMIZER = "adam"
SEED = 0
FRACTIONS = (0.05, 0.10, 0.25)

SCHEDULES = ("constant", "linear", "cosine")

# (name, model, model_kwargs, peak lrs): one vmapped train_many call per (arch, schedule)
ARCHS = (
    ("mlp-32", "mlp", {"hidden": (32,)}, (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),
    ("mlp-100x2", "mlp", {"hidden": (100, 100)}, (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),
    ("mlp-256x2", "mlp", {"hidden": (256, 256)}, (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),
    ("mlp-64x3", "mlp", {"hidden": (64, 64, 64)}, (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),
    ("cnn-8x3", "cnn1d", {"channels": 8, "num_layers": 3}, (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
    ("cnn-16x2", "cnn1d", {"channels": 16, "num_layers": 2}, (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
    ("cnn-25x3", "cnn1d", {"channels": 25, "num_layers": 3}, (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
)
