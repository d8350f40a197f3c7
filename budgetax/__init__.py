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

from budgetax import batch_size, profiles, ranking, schedules
from budgetax.batch_size import legw_warmup_epochs, legw_warmup_steps, scale_lr
from budgetax.schedules import steps_for_budget
from budgetax.transforms.adamp import adamp, scale_invariant_projection, sgdp
from budgetax.transforms.autowu import autowu, autowu_adamp, autowu_lamb
from budgetax.transforms.demon import demon, demon_adam, demon_sgd, scale_by_demon_adam
from budgetax.transforms.precision import (
    kahan_summation,
    persistent_bytes_per_param,
    precision_chain,
    stochastic_rounding,
)
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

__all__ = [
    "__version__",
    # modules
    "batch_size",
    "profiles",
    "ranking",
    "schedules",
    # schedules as transforms
    "constant",
    "cosine",
    "exponential",
    "linear",
    "one_cycle",
    "polynomial",
    "rex",
    "scale_by_profile",
    "step",
    "steps_for_budget",
    "wsd",
    # momentum decay
    "demon",
    "demon_adam",
    "demon_sgd",
    "scale_by_demon_adam",
    # 16-bit training
    "kahan_summation",
    "persistent_bytes_per_param",
    "precision_chain",
    "stochastic_rounding",
    # AdamP / SGDP, AutoWU, batch-size scaling
    "adamp",
    "autowu",
    "autowu_adamp",
    "autowu_lamb",
    "legw_warmup_epochs",
    "legw_warmup_steps",
    "scale_invariant_projection",
    "scale_lr",
    "sgdp",
]
