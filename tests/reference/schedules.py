"""Plain-Python float64 references for the profiles and budgeted schedules.

The first part is written from the formulas in DESIGN.md, scalar by scalar,
with no JAX and no code shared with ``budgetax``. The second part ports public
reference implementations, line for line in float64 (plain Python ``math``):

* ``hf_wsd_lambda``: ``_get_wsd_scheduler_lambda`` of HF transformers
  (repository huggingface/transformers, commit
  005edacb6b5dabbf0843e92c6623de9e07ca6241, src/transformers/optimization.py),
  the multiplier behind ``get_wsd_schedule``.
* ``torch_multistep_lr`` and ``torch_one_cycle_lr``: ``MultiStepLR._get_closed_form_lr``
  and ``OneCycleLR.get_lr`` (two phases, cosine annealing) of PyTorch
  (repository pytorch/pytorch, commit 91a8950d1b07074bdd6a13051956e8c470d17f83,
  torch/optim/lr_scheduler.py). ``last_epoch`` / ``step_num`` there is the number
  of ``scheduler.step()`` calls so far, i.e. the update count ``t``.
"""

from __future__ import annotations

import bisect
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
    the value at the end of the budget. The warmup rises linearly from 0 to the
    value of the profile at ``p = 0``.
    """
    t = total_steps if t >= total_steps else sample_every * (t // sample_every)
    if t < warmup:
        # the warmup leads into the profile's own start (peak for profiles starting at 1)
        return (end + (peak - end) * profile(0.0, **knobs)) * t / warmup
    p = min(max((t - warmup) / (total_steps - warmup), 0.0), 1.0)
    return end + (peak - end) * profile(p, **knobs)


# --------------------------------------------------------------------------- ports
def hf_wsd_lambda(current_step, *, num_warmup_steps, num_stable_steps, num_decay_steps,
                  warmup_type="linear", decay_type="cosine", min_lr_ratio=0.0, num_cycles=0.5):
    """HF transformers ``_get_wsd_scheduler_lambda`` (commit 005edacb): the lr multiplier."""
    if current_step < num_warmup_steps:
        progress = float(current_step) / float(max(1, num_warmup_steps))
        if warmup_type == "linear":
            factor = progress
        elif warmup_type == "cosine":
            factor = 0.5 * (1.0 - math.cos(math.pi * progress))
        elif warmup_type == "1-sqrt":
            factor = 1.0 - math.sqrt(1.0 - progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)

    if current_step < num_warmup_steps + num_stable_steps:
        return 1.0

    if current_step < num_warmup_steps + num_stable_steps + num_decay_steps:
        progress = float(current_step - num_warmup_steps - num_stable_steps) / float(
            max(1, num_decay_steps))
        if decay_type == "linear":
            factor = 1.0 - progress
        elif decay_type == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
        elif decay_type == "1-sqrt":
            factor = 1.0 - math.sqrt(progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)
    return min_lr_ratio


def torch_multistep_lr(last_epoch, *, base_lr, milestones, gamma=0.1):
    """PyTorch ``MultiStepLR._get_closed_form_lr`` (commit 91a8950d): integer milestones."""
    milestones = sorted(milestones)
    return base_lr * gamma ** bisect.bisect_right(milestones, last_epoch)


def _torch_annealing_cos(start, end, pct):
    cos_out = math.cos(math.pi * pct) + 1
    return end + (start - end) / 2.0 * cos_out


def torch_one_cycle_lr(step_num, *, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                       final_div_factor=1e4):
    """PyTorch ``OneCycleLR.get_lr`` (commit 91a8950d), two phases, ``anneal_strategy='cos'``."""
    if step_num > total_steps:
        raise ValueError(f"Tried to step {step_num} times. The specified number of total steps "
                         f"is {total_steps}")
    lrs = {"initial_lr": max_lr / div_factor, "max_lr": max_lr}
    lrs["min_lr"] = lrs["initial_lr"] / final_div_factor
    phases = [
        {"end_step": float(pct_start * total_steps) - 1, "start_lr": "initial_lr",
         "end_lr": "max_lr"},
        {"end_step": total_steps - 1, "start_lr": "max_lr", "end_lr": "min_lr"},
    ]
    start_step = 0
    for i, phase in enumerate(phases):
        end_step = phase["end_step"]
        if step_num <= end_step or i == len(phases) - 1:
            pct = (step_num - start_step) / (end_step - start_step)
            return _torch_annealing_cos(lrs[phase["start_lr"]], lrs[phase["end_lr"]], pct)
        start_step = phase["end_step"]
    raise AssertionError("unreachable")
