"""Optax gradient transformations of budgetax (re-exported at the top level)."""
