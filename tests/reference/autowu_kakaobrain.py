"""Float64 NumPy port of the AutoWU scheduler loop of the authors' code.

Upstream: github.com/kakaobrain/autowu, ``autowu.py`` (class ``AutoWU``: ``step``,
``maybe_switch``, ``past_minimum_prob``, ``start_warmup_phase_once``,
``start_decay_phase_once``, ``start_cooldown_phase_once``, ``get_last_lr``), commit
582a8a83a218bb4af22c8de91d4e4df57e9fbe08. The PyTorch schedulers it builds are ported
in their chainable form (``scheduler.step()`` without an epoch) from
github.com/pytorch/pytorch, ``torch/optim/lr_scheduler.py`` (``LRScheduler.__init__``'s
initial step, ``ExponentialLR``, ``CosineAnnealingLR``), commit
008f727ece1520e12c25089a7969d5b8fca75f8e.

What is ported line for line: the phases (warmup, decay, final), the order of the
checks in ``step`` (cooldown time first, then the warmup limit, then the epoch-end
test), when each scheduler is created and stepped, the patience deque, and the peak
``min_lr * (current_lr / min_lr) ** x_argmin`` (averaged over the predictions).

What is not: the gpytorch regression (``Regressor`` + ``regress``: an exact GP fit by
100 Adam steps, then 5 predictions on a 500-point grid). ``AutoWU`` takes it as
``regress(losses) -> (pred_xs, pred_means, pred_covars)``, the reference's return
value, with ``losses`` the list of every loss of the warmup so far (the reference's
``full_data``). ``test`` may replace ``regress`` + ``past_minimum_prob`` + the vote
altogether: ``test(losses) -> (past_minimum_maj, x_argmins)``, e.g. to drive this loop
with budgetax's own GP test. Options the reference has and budgetax does not expose
(``warmup_unit='epoch'``, ``warmup_type='linear'``, ``decay_phase_stat='loss'``,
``decay_phase_factor != 1``, ``cooldown_type='half_cosine'``, ``warmup_only``) are
not ported.

Usage::

    sched = AutoWU(steps_per_epoch, total_epochs, test=my_test)
    for t in range(total_steps):
        lr_t = sched.lr          # the optimizer step t uses this
        sched.step(loss_t)       # after optimizer.step(), as in train.py
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from scipy import stats


class _Group:
    """The optimizer's single param group: the one value every scheduler reads and writes."""

    def __init__(self, lr):
        self.lr = float(lr)


class _ExponentialLR:
    """``torch.optim.lr_scheduler.ExponentialLR``, chainable form."""

    def __init__(self, group, gamma):
        self.group, self.gamma = group, float(gamma)
        self.last_epoch = -1
        self.step(initial=True)  # LRScheduler.__init__ -> _initial_step

    def step(self, initial=False):
        self.last_epoch += 1
        if not initial:
            self.group.lr = self.group.lr * self.gamma


class _CosineAnnealingLR:
    """``torch.optim.lr_scheduler.CosineAnnealingLR`` (eta_min=0), chainable form."""

    def __init__(self, group, t_max, eta_min=0.0):
        self.group, self.t_max, self.eta_min = group, int(t_max), float(eta_min)
        self.base_lr = group.lr  # initial_lr: 'initial_lr' was deleted before
        self.last_epoch = -1
        self.step(initial=True)

    def step(self, initial=False):
        self.last_epoch += 1
        if initial:
            return
        e, tm, lr = self.last_epoch, self.t_max, self.group.lr
        if (e - 1 - tm) % (2 * tm) == 0:
            self.group.lr = lr + (self.base_lr - self.eta_min) * (1 - math.cos(math.pi / tm)) / 2
        else:
            self.group.lr = ((1 + math.cos(math.pi * e / tm))
                             / (1 + math.cos(math.pi * (e - 1) / tm))
                             * (lr - self.eta_min) + self.eta_min)


def past_minimum_prob(loc, covar_mat):
    """``AutoWU.past_minimum_prob``: ``max_{i<k} P(X_i < X_k)``, ``X ~ N(loc, covar_mat)``."""
    loc = np.asarray(loc, np.float64)
    covar_mat = np.asarray(covar_mat, np.float64)
    k = loc.shape[-1]
    proj = np.concatenate([np.eye(k - 1), -np.ones((k - 1, 1))], axis=1)
    loc_diffs = proj @ loc
    covar_diffs = proj @ covar_mat @ proj.T
    std_diffs = np.sqrt(np.diagonal(covar_diffs + 1e-4))  # 1e-4 as upstream
    return float(stats.norm(loc_diffs, std_diffs).cdf(np.zeros_like(loc_diffs)).max())


class AutoWU:
    """The reference ``AutoWU`` scheduler (``warmup_unit='step'``, ``warmup_type='exp'``).

    ``immediate_cooldown=True`` is budgetax's ``decay="cosine"``, ``False`` its
    ``"constant_then_cosine"``. ``lr`` is the optimizer's current learning rate.
    """

    def __init__(self, steps_per_epoch, total_epochs, *, min_lr=1e-5, max_lr=1.0,
                 max_warmup_fraction=0.5, immediate_cooldown=True, cooldown_fraction=0.2,
                 patience=3, n_tests=5, confidence=0.95, regress=None, test=None):
        if cooldown_fraction > 1.0:
            raise ValueError(f"Invalid cooldown_fraction value: {cooldown_fraction}")
        self.group = _Group(0.0)
        self.steps_per_epoch = steps_per_epoch
        self.total_epochs = total_epochs
        self.total_steps = steps_per_epoch * total_epochs
        self.min_lr, self.max_lr = float(min_lr), float(max_lr)
        self.immediate_cooldown = immediate_cooldown
        self.phase = None
        self.scheduler = None
        self.warmup = dict(max_fraction=max_warmup_fraction, patience=patience,
                           n_tests=n_tests, confidence=confidence)
        self.cooldown_fraction = cooldown_fraction
        self._regress, self._test = regress, test
        self._losses_last_epoch = None
        self._prev_test_results = None
        self._stats_last_epoch = None
        self.full_data = []  # the regressor's data: every warmup loss so far
        self.last_step = 0
        self.switch_step = None  # bookkeeping only: last_step when the warmup ended
        self.peak_lr = None
        self.start_warmup_phase_once()

    @property
    def lr(self):
        return self.group.lr

    def step(self, loss):
        self.last_step += 1
        time_to_cooldown = self.last_step >= (1 - self.cooldown_fraction) * self.total_steps
        if time_to_cooldown:
            self.start_cooldown_phase_once()

        must_step, switched, epoch_end = False, False, False
        if self.phase == "warmup":
            max_warmup_exceeded = self.last_step >= int(self.warmup["max_fraction"]
                                                        * self.total_steps)
            if max_warmup_exceeded:
                self.start_decay_phase_once()
            else:
                self._losses_last_epoch.append(float(loss))
                epoch_end = len(self._losses_last_epoch) >= self.steps_per_epoch
                if epoch_end:
                    self.full_data.extend(self._losses_last_epoch)
                    switched = self.maybe_switch()
                    self._losses_last_epoch.clear()
        elif self.phase == "decay":  # decay_phase_stat=None: nothing is recorded
            epoch_end = len(self._stats_last_epoch) >= self.steps_per_epoch

        if self.phase == "warmup":
            must_step = not switched
        elif self.phase == "decay":
            must_step = epoch_end
        else:
            must_step = True
        if must_step:
            self.scheduler.step()

    def maybe_switch(self):
        patience = self.warmup["patience"]
        if self._test is not None:
            past_minimum_maj, x_argmins = self._test(list(self.full_data))
        else:
            n_tests, confidence = self.warmup["n_tests"], self.warmup["confidence"]
            pred_xs, pred_means, pred_covars = self._regress(list(self.full_data))
            probs = np.array([past_minimum_prob(pred_means[j], pred_covars[j])
                              for j in range(n_tests)])
            past_minimum_maj = (probs > confidence).sum() > n_tests / 2
            x_argmins = np.asarray(pred_xs)[np.argmin(np.asarray(pred_means), axis=1)]
        self._prev_test_results.append(bool(past_minimum_maj))
        must_switch = sum(self._prev_test_results) >= patience

        current_lr = self.get_last_lr()
        lrs_at_argmin = self.min_lr * ((current_lr / self.min_lr)
                                       ** np.asarray(x_argmins, np.float64))
        lr_after_switch = float(np.mean(lrs_at_argmin))
        if must_switch:
            self.group.lr = lr_after_switch
            self.start_decay_phase_once()
        return must_switch

    def start_warmup_phase_once(self):
        max_warmup_steps = int(self.total_steps * self.warmup["max_fraction"])
        if max_warmup_steps <= 0:
            self.group.lr = self.max_lr
            self.start_decay_phase_once()
        if self.phase not in ("warmup", "decay", "final"):
            self.group.lr = self.min_lr
            gamma = (self.max_lr / self.min_lr) ** (1 / max_warmup_steps)
            self.scheduler = _ExponentialLR(self.group, gamma)
            self._prev_test_results = deque(maxlen=self.warmup["patience"])
            self._losses_last_epoch = []
            self.phase = "warmup"

    def start_decay_phase_once(self):
        self._mark_switch()
        if self.immediate_cooldown:
            self.start_cooldown_phase_once()
        elif self.phase not in ("decay", "final"):
            self.scheduler = _ExponentialLR(self.group, 1.0)  # decay_phase_factor=1.0
            self._stats_last_epoch = []
            self.phase = "decay"

    def start_cooldown_phase_once(self):
        self._mark_switch()
        if self.phase not in ("final",):
            self.phase = "final"
            t_max = self.total_steps - self.last_step
            if t_max == 0:
                self.scheduler = _ExponentialLR(self.group, 1.0)
            else:
                self.scheduler = _CosineAnnealingLR(self.group, t_max)

    def _mark_switch(self):
        if self.switch_step is None and self.phase in (None, "warmup"):
            self.switch_step, self.peak_lr = self.last_step, self.group.lr

    def get_last_lr(self):
        return self.group.lr


def run(losses, steps_per_epoch, **kwargs):
    """Feeds ``losses`` (one per update) to the reference; returns (lrs, scheduler).

    ``lrs[t]`` is the learning rate the update ``t`` used.
    """
    losses = np.asarray(losses, np.float64)
    total_epochs, rest = divmod(len(losses), steps_per_epoch)
    if rest:
        raise ValueError(f"len(losses)={len(losses)} is not a multiple of "
                         f"steps_per_epoch={steps_per_epoch}")
    sched = AutoWU(steps_per_epoch, total_epochs, **kwargs)
    lrs = np.empty(len(losses))
    for t, loss in enumerate(losses):
        lrs[t] = sched.lr
        sched.step(loss)
    return lrs, sched
