"""Plain-Python float64 reference for the profiles and budgeted schedules.

Written from the formulas in DESIGN.md, scalar by scalar, with no JAX and no
code shared with ``budgetax``.
"""

from __future__ import annotations

import math


def linear(p):
    return 1.0 - p


def rex(p, beta=0.5):
    return (1.0 - p) / ((1.0 - beta) + beta * (1.0 - p))


def cosine(p):
    return 0.5 * (1.0 + math.cos(math.pi * p))


def exponential(p, final=1e-2):
    return final**p


def step(p, milestones=(0.3, 0.6, 0.9), factor=0.1):
    return factor ** sum(1 for m in milestones if m <= p)


def polynomial(p, power=2.0):
    return (1.0 - p) ** power


def constant(p):
    return 1.0


def wsd(p, decay_fraction=0.2, decay="linear"):
    start = 1.0 - decay_fraction
    if p <= start:
        return 1.0
    q = min(1.0, (p - start) / decay_fraction)
    if decay == "linear":
        return 1.0 - q
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * q))
    return 1.0 - math.sqrt(q)


def one_cycle(p, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    lo = 1.0 / div_factor
    hi = 1.0
    end = lo / final_div_factor
    if p < pct_start:
        frac = p / pct_start
        return lo + (hi - lo) * (1.0 - math.cos(math.pi * frac)) / 2.0
    frac = (p - pct_start) / (1.0 - pct_start)
    return end + (hi - end) * (1.0 + math.cos(math.pi * frac)) / 2.0


PROFILES = {
    "linear": linear,
    "rex": rex,
    "cosine": cosine,
    "exponential": exponential,
    "step": step,
    "polynomial": polynomial,
    "constant": constant,
    "wsd": wsd,
    "one_cycle": one_cycle,
}


def budgeted(profile, total_steps, peak, t, *, end=0.0, warmup=0, sample_every=1, **knobs):
    """Learning rate at update ``t`` (0-based), following DESIGN.md.

    Re-sampled every ``sample_every`` steps inside the budget; from ``t = T`` on,
    the value at the end of the budget.
    """
    t = total_steps if t >= total_steps else sample_every * (t // sample_every)
    if t < warmup:
        return peak * t / warmup
    p = min(max((t - warmup) / (total_steps - warmup), 0.0), 1.0)
    return end + (peak - end) * profile(p, **knobs)
