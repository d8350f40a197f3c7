"""Settings of the budget-frontier experiment (``run.py --setting NAME``).

``mlp``: the default sweep (``budgetax sweep``'s defaults: MNIST-1D MLP, Adam, full
budget 3000 steps, budgets 5/10/25/50/100%, 8 schedules, peak lrs 3e-3/1e-2/3e-2,
3 seeds).
``cnn``: the MNIST-1D CNN, Adam, a full budget of 600 steps (15 epochs), the same
budgets, 4 schedules (linear, cosine, constant, wsd), the same lrs and seeds, the
training-set diagnostics on a fixed 1000-example subset.
``smoke``: the same code path in a minute (a CI-sized MLP).
"""

CONFIGS = {
    "mlp": {"dataset": "mnist1d", "model": "mlp", "spec": {}},
    "cnn": {"dataset": "mnist1d", "model": "cnn1d",
            "spec": {"full_budget": 600, "schedules": ["linear", "cosine", "constant", "wsd"],
                     "diagnostics": 1000}},
    "smoke": {"dataset": "mnist1d", "model": "mlp",
              "spec": {"full_budget": 200, "budgets": [0.1, 0.25, 0.5, 1.0],
                       "schedules": ["linear", "constant", "wsd"], "seeds": [0, 1]}},
}
# the strategies compared with the grid (their spec options)
STRATEGIES = {"branch": {"strategy": "branch"}, "halving": {"strategy": "halving"},
              "branch+halving": {"strategy": "branch+halving"}}
# the estimators replayed on the grid's curves to choose halving's default
ESTIMATORS = ["tse_e", "tse", "lcga", "last"]
