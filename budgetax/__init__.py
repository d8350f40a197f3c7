"""budgetax: training neural networks under a fixed budget of optimizer steps.

Budget-aware learning-rate schedules (profiles of progress ``t/T`` plus a sampling
rate) usable as ``optax.Schedule``s and as optax transforms, momentum decay,
16-bit-only training transforms, automated warmup, and the training and sweep
machinery that measures which schedule wins at a given budget.

Example:
  >>> import optax, budgetax
  >>> tx = optax.chain(budgetax.rex(total_steps=1000), optax.sgd(0.1))
"""

__version__ = "0.1.0"

from budgetax import profiles, schedules
from budgetax.schedules import steps_for_budget
from budgetax.transforms.schedule import (
    constant,
    cosine,
    exponential,
    linear,
    one_cycle,
    polynomial,
    rex,
    scale_by_profile,
    step,
    wsd,
)

# --- issue 3: demon + 16-bit precision transforms (names added below) ---
# isort: split
from budgetax.transforms.demon import demon, demon_adam, demon_sgd, scale_by_demon_adam
from budgetax.transforms.precision import (
    kahan_summation,
    persistent_bytes_per_param,
    precision_chain,
    stochastic_rounding,
)

# isort: split
# --- end issue 3 ---

# --- issue 4: autowu, adamp/sgdp, batch-size scaling (names added below) ---
# isort: split
from budgetax import batch_size
from budgetax.batch_size import legw_warmup_epochs, legw_warmup_steps, scale_lr
from budgetax.transforms.adamp import adamp, scale_invariant_projection, sgdp
from budgetax.transforms.autowu import autowu, autowu_adamp, autowu_lamb

# --- end issue 4 ---

# isort: split
from budgetax import ranking

__all__ = [
    "ranking",
    "__version__",
    "profiles",
    "schedules",
    "steps_for_budget",
    "scale_by_profile",
    "constant",
    "cosine",
    "exponential",
    "linear",
    "one_cycle",
    "polynomial",
    "rex",
    "step",
    "wsd",
    # --- issue 3 names ---
    "demon",
    "demon_adam",
    "demon_sgd",
    "scale_by_demon_adam",
    "kahan_summation",
    "persistent_bytes_per_param",
    "precision_chain",
    "stochastic_rounding",
    # --- end issue 3 names ---
    # --- issue 4 names ---
    "batch_size",
    "scale_lr",
    "legw_warmup_epochs",
    "legw_warmup_steps",
    "adamp",
    "sgdp",
    "scale_invariant_projection",
    "autowu",
    "autowu_adamp",
    "autowu_lamb",
    # --- end issue 4 names ---
]
