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

import importlib
from typing import TYPE_CHECKING

from budgetax import _registry

# The public names, imported on first use (PEP 562) so that `budgetax --help` and
# `import budgetax` do not pay for importing JAX until something needs it. This map
# is where they are written; __all__ derives from it (and the schedules' transforms
# from the registry of schedules, budgetax/_registry.py).
_MODULES = ("batch_size", "profiles", "ranking", "schedules")
_NAMES = {
    "budgetax.batch_size": ("legw_warmup_epochs", "legw_warmup_steps", "scale_lr"),
    "budgetax.schedules": ("steps_for_budget",),
    "budgetax.transforms.adamp": ("adamp", "scale_invariant_projection", "sgdp"),
    "budgetax.transforms.autowu": ("autowu", "autowu_adamp", "autowu_lamb"),
    "budgetax.transforms.demon": ("demon", "demon_adam", "demon_sgd", "scale_by_demon_adam"),
    "budgetax.transforms.precision": ("kahan_summation", "persistent_bytes_per_param",
                                      "precision_chain", "stochastic_rounding"),
    "budgetax.transforms.schedule": ("scale_by_profile", *_registry.NAMES),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(f"budgetax.{name}")
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'budgetax' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


# For type checkers and IDEs: the same names, imported eagerly. tests/test_registry.py
# checks that this block imports exactly the names of the map above, less the
# schedules' transforms (budgetax.linear, budgetax.rex, ...), which are generated from
# the registry.
if TYPE_CHECKING:
    from budgetax import batch_size, profiles, ranking, schedules  # noqa: F401
    from budgetax.batch_size import legw_warmup_epochs, legw_warmup_steps, scale_lr  # noqa: F401
    from budgetax.schedules import steps_for_budget  # noqa: F401
    from budgetax.transforms.adamp import adamp, scale_invariant_projection, sgdp  # noqa: F401
    from budgetax.transforms.autowu import autowu, autowu_adamp, autowu_lamb  # noqa: F401
    from budgetax.transforms.demon import (  # noqa: F401
        demon,
        demon_adam,
        demon_sgd,
        scale_by_demon_adam,
    )
    from budgetax.transforms.precision import (  # noqa: F401
        kahan_summation,
        persistent_bytes_per_param,
        precision_chain,
        stochastic_rounding,
    )
    from budgetax.transforms.schedule import scale_by_profile  # noqa: F401

__all__ = ["__version__", *_MODULES, *_WHERE]
