"""The budget frontier's old path: it lives beside the report, in :mod:`budgetax.frontier`."""

from budgetax.frontier import Frontier, fit_frontier

__all__ = ["Frontier", "fit_frontier"]
