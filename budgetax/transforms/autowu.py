r"""AutoWU: an exponential warmup that stops itself once a GP says the loss passed its minimum.

Kim et al. (2021) remove the peak learning rate from the list of things to tune
for large-batch training. The learning rate rises exponentially from ``min_lr``
while the minibatch losses are recorded; a Gaussian process smooths them, and
once the smoothed loss has confidently passed its minimum, the learning rate at
the posterior-mean minimum becomes the peak and a fixed decay takes it to zero
at the budget.

**The schedule** is the reference code's (kakaobrain/autowu, ``autowu.py``, class
``AutoWU``, whose ``step(loss)`` follows every optimizer step), step for step. With
budget ``T``, ``t`` the update count (the update ``t`` applies ``η_t``), the warmup
limit ``L = int(max_warmup_fraction * T)`` and the cooldown start
``c = max(1, ceil((1 - cooldown_fraction) T))``:

.. math::

   \eta_t = \eta_{\min}\,(\eta_{\max}/\eta_{\min})^{t / L}\qquad(\text{warmup})

The warmup ends at the *switch* ``s``: after the update ``s - 1`` whose test is the
``patience``-th positive one in a row, or at ``s = E = \min(L, c)`` at the latest.
After a positive test the peak is the learning rate at the posterior minimum (below);
at ``E`` it is the current warmup rate ``η_{E-1}`` (the reference's scheduler simply
stops there). The decay is a PyTorch scheduler created at the switch and stepped at
once, so its first value is already one step down, and it reaches 0 at the last update:

.. math::

   \eta_t = \eta_{\text{peak}}\ \tfrac12\big(1 + \cos(\pi\, q)\big),\qquad
   q = \frac{t - s + 1}{T - s}\qquad(t \ge s,\ \texttt{decay="cosine"})

``decay="constant_then_cosine"`` (the reference's ``immediate_cooldown=False``) holds
the peak until ``c`` and then runs the same cosine with ``q = (t - c + 1) / (T - c)``:
the cooldown is the last ``cooldown_fraction`` of the *budget*, not of the steps after
the switch. ``decay="linear"`` (not in the reference) is ``1 - q`` with the cosine's
``q``. ``L = 0`` starts in the decay at ``max_lr`` (cosine: ``q = t / T``), as the
reference does.

**The test** runs after the updates ``k - 1`` with ``k`` a multiple of ``test_every``
(the reference's epoch ends) and ``k < E``. Where the reference fits gpytorch's exact
GP by 100 Adam steps on up to 100 raw losses and votes over 5 predictions on a
500-point grid, budgetax uses a fixed-shape GP that is cheap enough to run inside a
compiled training step (:mod:`budgetax.transforms._gp`). Losses are averaged into
``B = 128`` bins of equal width over the warmup window (non-finite losses are
skipped). On bin means ``y_i`` at mean steps ``s_i`` (normalised like the
reference's: ``x_i = s_i / k``, ``k`` losses so far) with ``n_i`` losses each, the
model is

.. math::

   y_i = f(x_i) + \varepsilon_i,\quad f \sim \mathcal{GP}\big(\mu,\ \sigma^2 k\big),\quad
   k(x, x') = e^{-(x - x')^2 / (2\cdot 0.2^2)},\quad
   \varepsilon_i \sim \mathcal N(0, \sigma^2 r\, d_i),\ d_i \propto 1/n_i

(``y`` is standardised first, ``d`` normalised to mean 1; the lengthscale 0.2 is the
reference's). The noise ratio ``r`` is the maximiser of the marginal likelihood over a
log grid, on a random subsample of 64 bins, with ``σ²`` and ``μ`` at their closed-form
maxima given ``r`` (profile likelihood, generalised least squares for ``μ``). The
posterior of ``f`` at the bins then gives, for the latest bin ``j`` and every earlier
bin ``i``,

.. math::

   P(f_j > f_i) = \Phi\Big(\frac{m_j - m_i}{\sqrt{C_{jj} + C_{ii} - 2C_{ij}}}\Big)

and the test is positive when it exceeds ``confidence`` for some ``i``. The peak
after a positive test is, as in the reference, ``η_min (η_{k-1} / η_min)^{x^*}``
with ``x^*`` the normalised step of the smallest posterior mean.

**Compilation and vmap.** Shapes are static; the warmup bookkeeping runs under a
``lax.cond`` only while warming up and the GP only on test steps. Under ``jax.vmap``
a batched predicate would turn a ``cond`` into a ``select`` that runs both branches
at every step; here the conditionals have a custom batching rule that reduces the
predicate with ``any`` over the batch and runs the batched branch only when some
run needs it (:func:`budgetax._cond.cond_any`). The test schedule depends only on
the count, so runs trained in lock-step test at the same steps and the GP costs the
same as for a single run (per run).

**Passing the loss.** ``update`` needs ``value=loss``. Flax linen's
``TrainState.apply_gradients`` calls ``tx.update(grads, opt_state, params)`` without
it (and raises the error below); call ``tx.update`` in the training step instead::

    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params, value=loss)
    state = state.replace(step=state.step + 1, opt_state=opt_state,
                          params=optax.apply_updates(state.params, updates))

Flax NNX's ``nnx.Optimizer.update(model, grads, value=loss)`` forwards it.

References:
  Kim, Kim, Kim, Lee, Kim. Automated Learning Rate Scheduler for Large-batch
  Training. ICML 2021 AutoML Workshop. arXiv:2107.05855.
  Reference code: github.com/kakaobrain/autowu (``autowu.py``).
  Rasmussen, Williams. Gaussian Processes for Machine Learning. MIT Press 2006.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.scipy.special import ndtr

from budgetax import _validate
from budgetax._cond import cond_any as _cond_any
from budgetax.transforms._gp import (
    gp_fit,
    gp_posterior,
    posterior_mean_and_factor,
    rbf,
)
from budgetax.transforms.adamp import adamp

__all__ = [
    "AutoWUState",
    "DECAYS",
    "autowu",
    "autowu_adamp",
    "autowu_lamb",
    "gp_fit",
    "gp_posterior",
]

DECAYS = ("cosine", "constant_then_cosine", "linear")
WARMUP, DECAY = 0, 1

BUFFER_SIZE = 128  # loss bins over the warmup window
FIT_SUBSAMPLE = 64  # bins used to fit the GP hyperparameters (budgetax.transforms._gp)
MIN_POINTS = 5  # non-empty bins needed before a test can be positive


class AutoWUState(NamedTuple):
    """State of :func:`autowu`.

    Attributes:
      count: int32, updates applied so far.
      lr: float32, the learning rate the next update applies (``min_lr`` at init).
      phase: int32, 0 while warming up, 1 after the switch.
      peak_lr: float32, the chosen peak (0.0 while warming up).
      switch_step: int32, first step of the decay (-1 while warming up).
      streak: int32, consecutive positive tests.
      prob: float32, ``max_i P(f_now > f_i)`` at the latest test.
      loss_sum, loss_count, step_sum: float32 ``[B]`` loss buffer (per-bin sums).
      key: PRNG key for the hyperparameter subsample.
    """

    count: jax.Array
    lr: jax.Array
    phase: jax.Array
    peak_lr: jax.Array
    switch_step: jax.Array
    streak: jax.Array
    prob: jax.Array
    loss_sum: jax.Array
    loss_count: jax.Array
    step_sum: jax.Array
    key: jax.Array


# ---------------------------------------------------------------- the test


def _gp_test(loss_sum, loss_count, step_sum, k, key):
    """The AutoWU test on the loss buffer after ``k`` losses.

    Returns ``(max probability, normalised step x* of the posterior min, enough points)``.
    """
    valid = loss_count > 0
    n_valid = jnp.sum(valid)
    cnt = jnp.maximum(loss_count, 1.0)
    y = jnp.where(valid, loss_sum / cnt, 0.0)
    steps = jnp.where(valid, step_sum / cnt, 0.0)
    x = steps / jnp.maximum(jnp.asarray(k, jnp.float32), 1.0)
    nf = jnp.maximum(n_valid, 1).astype(jnp.float32)
    y_mean = jnp.sum(jnp.where(valid, y, 0.0)) / nf
    y_std = jnp.sqrt(jnp.sum(jnp.where(valid, (y - y_mean) ** 2, 0.0)) / nf)
    y = jnp.where(valid, (y - y_mean) / jnp.maximum(y_std, 1e-12), 0.0)
    inv = jnp.where(valid, 1.0 / cnt, 0.0)
    noise = jnp.where(valid, inv / jnp.maximum(jnp.sum(inv) / nf, 1e-30), 1.0)

    m = min(FIT_SUBSAMPLE, loss_sum.shape[0])
    score = jnp.where(valid, jax.random.uniform(key, valid.shape), -1.0)
    _, idx = lax.top_k(score, m)
    ratio, scale2, _, _ = gp_fit(x[idx], y[idx], noise[idx], valid[idx])
    mean, v = posterior_mean_and_factor(x, y, noise, valid, ratio)

    pos = jnp.arange(valid.shape[0])
    now = jnp.argmax(jnp.where(valid, pos, -1))
    # only the diagonal and the row `now` of C = s2 (K - V^T V) are needed
    var = scale2 * (1.0 - jnp.sum(v * v, axis=0))
    cov_now = scale2 * (rbf(x[now][None], x)[0] - v[:, now] @ v)
    diff_var = jnp.maximum(var[now] + var - 2.0 * cov_now, 1e-12)
    prob = ndtr((mean[now] - mean) / jnp.sqrt(diff_var))
    prob = jnp.max(jnp.where(valid & (pos < now), prob, 0.0))
    best = jnp.argmin(jnp.where(valid, mean, jnp.inf))
    return prob, x[best], n_valid >= MIN_POINTS


# ---------------------------------------------------------------- transform

_SEED_RANGE = (-(2**31), 2**32 - 1)


def _real_hp(name, value, **bounds):
    """A real hyperparameter: Python number, or a JAX/NumPy scalar (checked when concrete).

    A tracer (inside ``jit``/``vmap``/``inject_hyperparams``) passes unchecked.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    if not isinstance(value, jax.Array | np.ndarray | np.generic):
        return _validate.real(name, value, **bounds)
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}: {value!r}")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)
                                     or arr.dtype.name == "bfloat16"):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        _validate.real(name, float(arr), **bounds)
    except ValueError as e:
        raise ValueError(str(e).rsplit(", got ", 1)[0] + f", got {value!r}") from None
    return value


def _is_traced(value):
    return isinstance(value, jax.core.Tracer)


def _as_f32(value):
    return jnp.asarray(value, jnp.float32)


def _check_value(value):
    """The minibatch loss as a float32 scalar, or a clear error."""
    if value is None:
        raise TypeError(
            "autowu's update needs the minibatch loss: call tx.update(grads, state, params, "
            "value=loss) (flax.training.train_state.TrainState.apply_gradients does not pass "
            "it: call state.tx.update(..., value=loss) in the training step; "
            "nnx.Optimizer.update(model, grads, value=loss) forwards it), got value=None")
    try:
        shape = jnp.shape(value)
        dtype = jnp.result_type(value)
    except TypeError:
        raise TypeError(f"value must be the minibatch loss, a real scalar, got {value!r}") from None
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)) or (
            dtype == jnp.bool_):
        raise TypeError(f"value must be the minibatch loss, a real scalar, got dtype {dtype}: "
                        f"{value!r}")
    if math.prod(shape) != 1:
        raise ValueError(f"value must be the minibatch loss, a scalar (one element per run; "
                         f"reduce it, e.g. loss.mean()), got shape {shape}")
    return jnp.asarray(value, jnp.float32).reshape(())


def autowu(
    total_steps: int,
    *,
    min_lr: float = 1e-5,
    max_lr: float = 1.0,
    max_warmup_fraction: float = 0.5,
    test_every: int | None = None,
    confidence: float = 0.95,
    patience: int = 3,
    decay: str = "cosine",
    cooldown_fraction: float = 0.2,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    r"""Automated exponential warmup + decay: multiplies the updates by the AutoWU learning rate.

    See the module docstring for the maths. ``update(updates, state, params=None,
    *, value)`` takes the minibatch loss ``value`` (a scalar; non-finite values are
    ignored) and returns ``lr_t * updates`` with a **positive** ``lr_t``: follow a
    descent direction with ``optax.scale(-1.0)``, or use :func:`autowu_adamp` /
    :func:`autowu_lamb`.

    Args:
      total_steps: the budget ``T``, a positive int (not traced), at most ``2**31 - 1``.
      min_lr: the learning rate at step 0, ``> 0``.
      max_lr: the learning rate the warmup would reach at ``L``, ``> min_lr``.
      max_warmup_fraction: ``L = int(max_warmup_fraction * T)``, in (0, 1].
      test_every: test every this many steps (default ``max(1, round(T / 100))``; the
        reference tests once per epoch); a positive int (not traced).
      confidence: probability threshold of the test, in (0, 1).
      patience: consecutive positive tests needed to switch (the reference's 3).
      decay: ``"cosine"`` (the reference's ``immediate_cooldown=True``),
        ``"constant_then_cosine"`` (``immediate_cooldown=False``) or ``"linear"``.
      cooldown_fraction: the cosine of ``constant_then_cosine`` covers the last this
        fraction of the budget, in (0, 1]; in every mode the warmup ends by
        ``(1 - cooldown_fraction) T`` at the latest, as in the reference.
      seed: seeds the subsample of the hyperparameter fit (an int).

    ``min_lr``, ``max_lr``, ``confidence``, ``max_warmup_fraction`` and
    ``cooldown_fraction`` may be JAX scalars (checked when concrete, passed when traced),
    so ``optax.inject_hyperparams(autowu, static_args=("total_steps", "test_every",
    "patience", "decay", "seed"))`` and a ``jax.vmap`` over them work. A traced
    fraction is turned into ``L`` and ``c`` in float32, and the loss buffer is then
    sized for the whole budget.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`AutoWUState`
      (``lr``, ``phase``, ``peak_lr``, ``switch_step`` for logging).

    Raises:
      TypeError: from ``update`` when ``value`` is missing (e.g. Flax linen's
        ``TrainState.apply_gradients``; see the module docstring) or not a real number.
      ValueError: from ``update`` when ``value`` has more than one element.

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = optax.chain(optax.scale_by_adam(), budgetax.autowu(1000), optax.scale(-1.0))
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params, value=jnp.float32(1.0))
      >>> float(state[1].lr) > 1e-5  # the warmup's next learning rate
      True

    References:
      Kim, Kim, Kim, Lee, Kim. Automated Learning Rate Scheduler for Large-batch
      Training. 2021. arXiv:2107.05855. Code: github.com/kakaobrain/autowu.
    """
    total_steps = _validate.static_int("total_steps", total_steps)
    min_lr = _real_hp("min_lr", min_lr, low=0.0, low_open=True)
    max_lr = _real_hp("max_lr", max_lr, low=0.0, low_open=True)
    if not (_is_traced(min_lr) or _is_traced(max_lr)) and not float(min_lr) < float(max_lr):
        raise ValueError(f"min_lr must be < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    max_warmup_fraction = _real_hp("max_warmup_fraction", max_warmup_fraction, low=0.0,
                                   high=1.0, low_open=True)
    if test_every is None:
        test_every = max(1, round(total_steps / 100))
    test_every = _validate.static_int("test_every", test_every)
    confidence = _real_hp("confidence", confidence, low=0.0, high=1.0, low_open=True,
                          high_open=True)
    patience = _validate.static_int("patience", patience)
    _validate.one_of("decay", decay, DECAYS)
    cooldown_fraction = _real_hp("cooldown_fraction", cooldown_fraction, low=0.0, high=1.0,
                                 low_open=True)
    seed = _validate.seed("seed", seed)
    if not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise ValueError(f"seed must be in [{_SEED_RANGE[0]}, {_SEED_RANGE[1]}], got {seed!r}")

    T = total_steps
    if _is_traced(max_warmup_fraction):  # L = int(f T) as a traced int32
        limit = jnp.floor(_as_f32(max_warmup_fraction) * T).astype(jnp.int32)
    else:
        limit = int(float(max_warmup_fraction) * T)
    if _is_traced(cooldown_fraction):  # first k with k >= (1 - f) T, at least 1
        cool = jnp.maximum(jnp.ceil((1.0 - _as_f32(cooldown_fraction)) * T), 1).astype(jnp.int32)
    else:
        cool = max(1, math.ceil((1.0 - float(cooldown_fraction)) * T))
    if isinstance(limit, int) and isinstance(cool, int):
        end = min(limit, cool)  # E: the warmup's last update is E - 1
        n_rec = max(end - 1, 1)  # losses recorded at updates 0 .. E - 2
        bin_width = math.ceil(n_rec / BUFFER_SIZE)
        n_bins = math.ceil(n_rec / bin_width)
    else:
        end = jnp.minimum(limit, cool)
        n_rec = jnp.maximum(end - 1, 1)
        bin_width = (n_rec + BUFFER_SIZE - 1) // BUFFER_SIZE
        n_bins = min(BUFFER_SIZE, max(T - 1, 1))

    # Hyperparameters that may be traced travel as operands of the conditionals (a
    # custom-batched conditional may not close over batched values); the others stay
    # Python constants.
    hps = dict(min_lr=min_lr, max_lr=max_lr, confidence=confidence, limit=limit, cool=cool,
               end=end, bin_width=bin_width)
    dyn_names = tuple(n for n, v in hps.items() if _validate.is_array(v))
    static_hps = {n: v for n, v in hps.items() if n not in dyn_names}

    def warmup_lr(k, h):
        frac = _as_f32(k) / jnp.maximum(h["limit"], 1).astype(jnp.float32)
        lo = _as_f32(h["min_lr"])
        return lo * jnp.exp(jnp.log(_as_f32(h["max_lr"]) / lo) * frac)

    def cosine(q):  # (1 + cos(pi q)) / 2 as cos^2: accurate in float32 near q = 1
        return jnp.cos(0.5 * jnp.pi * jnp.clip(q, 0.0, 1.0)) ** 2

    def decay_lr(k, peak, start, h):
        """The rate of update ``k`` after a switch at ``start`` (stepped once at the switch)."""
        kf = _as_f32(k)
        if decay == "constant_then_cosine":
            c = _as_f32(h["cool"])
            q = (kf - c + 1.0) / jnp.maximum(T - c, 1.0)
            return peak * jnp.where(kf < c, 1.0, cosine(q))
        s = _as_f32(start)
        q = (kf - s + (s > 0).astype(jnp.float32)) / jnp.maximum(T - s, 1.0)
        if decay == "cosine":
            return peak * cosine(q)
        return peak * (1.0 - jnp.clip(q, 0.0, 1.0))

    def init_fn(params):
        del params
        zeros = jnp.zeros([n_bins], jnp.float32)
        no_warmup = jnp.asarray(limit) == 0  # the reference starts in the decay at max_lr
        lr0 = jnp.where(no_warmup, _as_f32(max_lr), _as_f32(min_lr))
        return AutoWUState(
            count=jnp.zeros([], jnp.int32),
            lr=jnp.where(no_warmup, decay_lr(0, lr0, 0, hps), lr0).astype(jnp.float32),
            phase=jnp.where(no_warmup, DECAY, WARMUP).astype(jnp.int32),
            peak_lr=jnp.where(no_warmup, lr0, 0.0).astype(jnp.float32),
            switch_step=jnp.where(no_warmup, 0, -1).astype(jnp.int32),
            streak=jnp.zeros([], jnp.int32),
            prob=jnp.zeros([], jnp.float32),
            loss_sum=zeros,
            loss_count=zeros,
            step_sum=zeros,
            key=jax.random.key(seed),
        )

    def warm_step(args):
        """One warmup update: record the loss, maybe test, maybe switch."""
        state, loss, dyn = args
        h = {**static_hps, **dict(zip(dyn_names, dyn))}
        end, bin_width = h["end"], h["bin_width"]
        t = state.count
        k = t + 1  # the reference's last_step after this update
        record = (k < end) & jnp.isfinite(loss)
        slot = jnp.minimum(t // bin_width, n_bins - 1)
        w = record.astype(jnp.float32)
        loss_sum = state.loss_sum.at[slot].add(w * jnp.where(record, loss, 0.0))
        loss_count = state.loss_count.at[slot].add(w)
        step_sum = state.step_sum.at[slot].add(w * t.astype(jnp.float32))

        tested = ((k % test_every) == 0) & (k < end)

        def run_test(op):
            loss_sum, loss_count, step_sum, k, key, _ = op
            return _gp_test(loss_sum, loss_count, step_sum, k, jax.random.fold_in(key, k))

        def skip(op):
            return op[-1], jnp.zeros([], jnp.float32), jnp.asarray(False)

        prob, x_min, enough = _cond_any(
            tested, run_test, skip, (loss_sum, loss_count, step_sum, k, state.key, state.prob),
            map_true=True)
        positive = tested & enough & (prob > h["confidence"])
        streak = jnp.where(tested, jnp.where(positive, state.streak + 1, 0), state.streak)
        by_test = tested & (streak >= patience)
        switch = by_test | (k >= end)
        lo = _as_f32(h["min_lr"])
        lr = state.lr
        peak = jnp.where(by_test, lo * jnp.exp(x_min * jnp.log(lr / lo)), lr)
        next_lr = jnp.where(switch, decay_lr(k, peak, k, h), warmup_lr(k, h))
        return state._replace(
            count=optax.safe_increment(t),
            lr=next_lr.astype(jnp.float32),
            phase=jnp.where(switch, DECAY, WARMUP).astype(jnp.int32),
            peak_lr=jnp.where(switch, peak, state.peak_lr).astype(jnp.float32),
            switch_step=jnp.where(switch, k, state.switch_step).astype(jnp.int32),
            streak=streak.astype(jnp.int32),
            prob=jnp.where(tested, prob, state.prob).astype(jnp.float32),
            loss_sum=loss_sum,
            loss_count=loss_count,
            step_sum=step_sum,
        )

    def decay_step(args):
        state, _, dyn = args
        h = {**static_hps, **dict(zip(dyn_names, dyn))}
        k = state.count + 1
        return state._replace(
            count=optax.safe_increment(state.count),
            lr=decay_lr(k, state.peak_lr, state.switch_step, h).astype(jnp.float32))

    def update_fn(updates, state, params=None, *, value=None):
        del params
        loss = _check_value(value)
        lr = state.lr  # decided by the previous update (min_lr at init)
        dyn = tuple(hps[n] for n in dyn_names)
        new_state = _cond_any(state.phase == WARMUP, warm_step, decay_step, (state, loss, dyn))
        updates = jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _lamb_args(b1, b2, eps, eps_root, weight_decay):
    return dict(
        b1=_real_hp("b1", b1, low=0.0, high=1.0, high_open=True),
        b2=_real_hp("b2", b2, low=0.0, high=1.0, high_open=True),
        eps=_real_hp("eps", eps, low=0.0, low_open=True),
        eps_root=_real_hp("eps_root", eps_root, low=0.0),
        weight_decay=_real_hp("weight_decay", weight_decay, low=0.0),
    )


def autowu_adamp(
    total_steps: int,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    min_lr: float = 1e-5,
    max_lr: float = 1.0,
    max_warmup_fraction: float = 0.5,
    test_every: int | None = None,
    confidence: float = 0.95,
    patience: int = 3,
    decay: str = "cosine",
    cooldown_fraction: float = 0.2,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """AdamP with the AutoWU learning rate: ``optax.chain(adamp(1.0, ...), autowu(T, ...))``.

    ``adamp(1.0)`` already carries the minus sign, so the result is a complete
    optimizer: ``update(grads, state, params, value=loss)``. This is the reference
    code's setting (kakaobrain/autowu ``train.py``: timm's AdamP with ``delta=0.1,
    wd_ratio=0.1``, stepped by ``AutoWU``).

    Args:
      total_steps: the budget ``T``.
      b1, b2, eps, weight_decay, delta, wd_ratio, nesterov: see :func:`budgetax.adamp`
        (validated there).
      min_lr, max_lr, max_warmup_fraction, test_every, confidence, patience, decay,
        cooldown_fraction, seed: see :func:`autowu`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp, budgetax
      >>> tx = budgetax.autowu_adamp(1000, weight_decay=1e-4)
      >>> state = tx.init({"w": jnp.ones((4, 3))})

    References:
      Kim et al. Automated Learning Rate Scheduler for Large-batch Training. 2021.
      arXiv:2107.05855. Heo et al. AdamP. ICLR 2021. arXiv:2006.08217.
    """
    schedule = autowu(total_steps, min_lr=min_lr, max_lr=max_lr,
                      max_warmup_fraction=max_warmup_fraction, test_every=test_every,
                      confidence=confidence, patience=patience, decay=decay,
                      cooldown_fraction=cooldown_fraction, seed=seed)
    return optax.chain(
        adamp(1.0, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, delta=delta,
              wd_ratio=wd_ratio, nesterov=nesterov),
        schedule,
    )


def autowu_lamb(
    total_steps: int,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mask=None,
    min_lr: float = 1e-5,
    max_lr: float = 1.0,
    max_warmup_fraction: float = 0.5,
    test_every: int | None = None,
    confidence: float = 0.95,
    patience: int = 3,
    decay: str = "cosine",
    cooldown_fraction: float = 0.2,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """LAMB (``optax.lamb``) with the AutoWU learning rate.

    ``optax.chain(optax.lamb(1.0, ...), autowu(T, ...))``: ``optax.lamb(1.0)`` ends
    in ``scale_by_learning_rate(1.0)``, the minus sign, so this is a complete optimizer.
    The LAMB arguments are checked here (``optax.lamb`` does not): every numeric
    argument may be a JAX scalar, checked when concrete and passed when traced, so
    ``optax.inject_hyperparams(autowu_lamb, static_args=("total_steps", "test_every",
    "patience", "decay", "seed"))`` and ``jax.vmap`` over them work.

    Args:
      total_steps: the budget ``T``.
      b1, b2: moment decay rates in ``[0, 1)``.
      eps: added to the denominator, ``> 0``.
      eps_root: added inside the square root, ``>= 0``.
      weight_decay: ``>= 0``.
      mask: ``None``, a pytree of bools like the params (``True``: decayed) or a
        callable returning one, as ``optax.lamb``'s.
      min_lr, max_lr, max_warmup_fraction, test_every, confidence, patience, decay,
        cooldown_fraction, seed: see :func:`autowu`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Raises:
      ValueError: an argument outside its range (naming it and its value).
      TypeError: an argument of the wrong type.

    Example:
      >>> import jax.numpy as jnp, budgetax
      >>> tx = budgetax.autowu_lamb(1000, max_lr=0.1)
      >>> state = tx.init({"w": jnp.ones((4, 3))})
      >>> budgetax.autowu_lamb(1000, b1=1.0)
      Traceback (most recent call last):
      ...
      ValueError: b1 must be in [0.0, 1.0), got 1.0

    References:
      Kim et al. Automated Learning Rate Scheduler for Large-batch Training. 2021.
      arXiv:2107.05855. You et al. Large Batch Optimization for Deep Learning:
      Training BERT in 76 minutes (LAMB). ICLR 2020. arXiv:1904.00962.
    """
    lamb_args = _lamb_args(b1, b2, eps, eps_root, weight_decay)
    if mask is not None and not callable(mask) and (
            isinstance(mask, str | bytes)
            or not all(isinstance(m, bool | np.bool_) or getattr(m, "dtype", None) == np.bool_
                       for m in jax.tree.leaves(mask))):
        raise TypeError(f"mask must be None, a pytree of bools like the params, or a callable "
                        f"params -> such a pytree (see optax.lamb), got {mask!r}")
    schedule = autowu(total_steps, min_lr=min_lr, max_lr=max_lr,
                      max_warmup_fraction=max_warmup_fraction, test_every=test_every,
                      confidence=confidence, patience=patience, decay=decay,
                      cooldown_fraction=cooldown_fraction, seed=seed)
    return optax.chain(optax.lamb(1.0, mask=mask, **lamb_args), schedule)
