r"""AutoWU: an exponential warmup that stops itself once a GP says the loss passed its minimum.

Kim et al. (2021) remove the peak learning rate from the list of things to tune
for large-batch training. The learning rate rises exponentially from ``min_lr``
while the minibatch losses are recorded; a Gaussian process smooths them, and
once the smoothed loss has confidently passed its minimum, the learning rate at
the posterior-mean minimum becomes the peak and a fixed decay takes it to zero
at the budget.

With budget ``T``, warmup limit ``W = max_warmup_fraction * T`` and ``t`` the
update count:

.. math::

   \eta_t = \eta_{\min}\,(\eta_{\max}/\eta_{\min})^{t / W}\quad(\text{warmup, } t < \lceil W\rceil)

**The test** (every ``test_every`` steps, and once at the warmup limit). Losses are
averaged into a fixed buffer of ``B = 128`` bins of equal width over the warmup
window (non-finite losses are skipped). On bin means ``y_i`` at mean steps
``s_i`` (normalised: ``x_i = s_i / t``) with ``n_i`` losses each, the model is

.. math::

   y_i = f(x_i) + \varepsilon_i,\quad f \sim \mathcal{GP}\big(\mu,\ \sigma^2 k\big),\quad
   k(x, x') = e^{-(x - x')^2 / (2\cdot 0.2^2)},\quad
   \varepsilon_i \sim \mathcal N(0, \sigma^2 r\, d_i),\ d_i \propto 1/n_i

(``y`` is standardised first, ``d`` normalised to mean 1). The noise ratio
``r`` is the maximiser of the marginal likelihood over a log grid, on a random
subsample of 64 bins, with ``σ²`` and ``μ`` at their closed-form maxima given
``r`` (profile likelihood, generalised least squares for ``μ``). The posterior of
``f`` at the bins then gives, for the latest bin ``j`` and every earlier bin ``i``,

.. math::

   P(f_j > f_i) = \Phi\Big(\frac{m_j - m_i}{\sqrt{C_{jj} + C_{ii} - 2C_{ij}}}\Big)

and the test is positive when it exceeds ``confidence`` for some ``i``. After
``patience`` consecutive positive tests (or at the warmup limit) the warmup
ends; the new peak is the warmup learning rate at the bin of the smallest
posterior mean, and from the next step on

.. math::

   \eta_t = \eta_{\text{peak}}\ \text{profile}(p),\qquad p = (t - t_s) / (T - t_s)

with profile ``cosine``, ``linear``, or ``constant_then_cosine``
(:func:`budgetax.profiles.wsd` with ``decay="cosine"``: constant, then a cosine over
the last ``cooldown_fraction`` of the steps after the switch).

**Compilation and vmap.** Shapes are static; the GP runs under ``lax.cond`` only
on test steps. Under ``jax.vmap`` a batched predicate would turn that ``cond``
into a ``select`` that runs the GP at every step; here the conditional has a
custom batching rule that reduces the predicate with ``any`` over the batch and
runs the batched GP only when some run tests at this step. The test schedule
depends only on the count, so runs trained in lock-step test at the same steps
and the GP costs the same as for a single run (per run).

References:
  Kim, Kim, Kim, Ha, Kim. Automated Learning Rate Scheduler for Large-batch
  Training. ICML 2021 AutoML Workshop. arXiv:2107.05855.
  Rasmussen, Williams. Gaussian Processes for Machine Learning. MIT Press 2006.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.custom_batching import custom_vmap
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import ndtr

from budgetax import _validate, profiles
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
FIT_SUBSAMPLE = 64  # bins used to fit the GP hyperparameters
LENGTHSCALE = 0.2  # RBF lengthscale on the step axis normalised to [0, 1]
NOISE_RATIOS = tuple(10.0 ** (k / 2.0) for k in range(-6, 3))  # r: 1e-3 .. 1e1
MIN_POINTS = 5  # non-empty bins needed before a test can be positive
_JITTER = 1e-5


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


# ----------------------------------------------------------------------------- GP


def _rbf(xa, xb):
    d = xa[:, None] - xb[None, :]
    return jnp.exp(-0.5 * (d / LENGTHSCALE) ** 2)


def _factor(x, noise, valid, ratio):
    """Cholesky of ``R + ratio*diag(noise) + jitter`` on valid points, identity elsewhere."""
    n = x.shape[0]
    both = valid[:, None] & valid[None, :]
    a = jnp.where(both, _rbf(x, x), 0.0)
    diag = jnp.where(valid, 1.0 + ratio * noise + _JITTER, 1.0)
    a = a.at[jnp.arange(n), jnp.arange(n)].set(diag)
    return jnp.linalg.cholesky(a)


def _solve(chol, b):
    z = solve_triangular(chol, b, lower=True)
    return solve_triangular(chol.T, z, lower=False)


def _gls(chol, y, valid):
    """Generalised least-squares constant mean and ``resid^T A^{-1} resid``."""
    ones = valid.astype(y.dtype)
    a_inv_y = _solve(chol, y)
    a_inv_1 = _solve(chol, ones)
    mu = jnp.dot(ones, a_inv_y) / jnp.maximum(jnp.dot(ones, a_inv_1), 1e-30)
    resid = jnp.where(valid, y - mu, 0.0)
    return mu, resid, jnp.dot(resid, _solve(chol, resid))


def gp_fit(x, y, noise, valid):
    r"""Fits the noise ratio, output scale and constant mean by maximum marginal likelihood.

    For each ``r`` in :data:`NOISE_RATIOS`, with ``A = K + r\,\mathrm{diag}(d)``
    (``K`` the unit-scale RBF kernel with lengthscale 0.2) the likelihood is
    maximised in closed form over ``μ`` (GLS) and ``σ²``:

    .. math::

       \hat\sigma^2 = \tfrac1n (y - \hat\mu)^\top A^{-1} (y - \hat\mu),\qquad
       \ell(r) = -\tfrac n2 \log \hat\sigma^2 - \tfrac12 \log|A| - \tfrac n2 (1 + \log 2\pi)

    and the ``r`` with the largest ``ℓ`` wins. Masked (``valid=False``) points are
    ignored exactly.

    Args:
      x: ``[n]`` inputs (normalised steps).
      y: ``[n]`` observations.
      noise: ``[n]`` relative noise variances ``d_i > 0``.
      valid: ``[n]`` bool mask.

    Returns:
      ``(ratio, scale2, mean, log_likelihoods)``: the chosen ``r``, ``σ²``, ``μ``
      and ``ℓ`` over the grid.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0, 1, 20); y = (x - 0.6) ** 2
      >>> r, s2, mu, ll = gp_fit(x, y, jnp.ones(20), jnp.ones(20, bool))
      >>> ll.shape
      (9,)
    """
    x, y, noise = (jnp.asarray(v, jnp.float32) for v in (x, y, noise))
    valid = jnp.asarray(valid, bool)
    y = jnp.where(valid, y, 0.0)
    n = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
    ratios = jnp.asarray(NOISE_RATIOS, jnp.float32)

    def one(ratio):
        chol = _factor(x, noise, valid, ratio)
        mu, _, quad = _gls(chol, y, valid)
        scale2 = jnp.maximum(quad / n, 1e-30)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
        ll = -0.5 * n * jnp.log(scale2) - 0.5 * logdet - 0.5 * n * (1.0 + jnp.log(2 * jnp.pi))
        return ll, scale2, mu

    lls, scales, mus = jax.vmap(one)(ratios)
    lls = jnp.where(jnp.isfinite(lls), lls, -jnp.inf)
    best = jnp.argmax(lls)
    return ratios[best], scales[best], mus[best], lls


def gp_posterior(x, y, noise, valid, ratio, scale2):
    r"""Posterior of the latent ``f`` at the observed inputs, constant mean by GLS.

    .. math::

       m = \hat\mu + K A^{-1}(y - \hat\mu),\qquad
       C = \sigma^2 (K - K A^{-1} K),\qquad A = K + r\,\mathrm{diag}(d)

    Args:
      x, y, noise, valid: as in :func:`gp_fit`.
      ratio: the noise ratio ``r``.
      scale2: the output scale ``σ²``.

    Returns:
      ``(mean, cov)``: ``[n]`` and ``[n, n]`` (entries of masked points are
      meaningless).

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0, 1, 8)
      >>> m, c = gp_posterior(x, x, jnp.ones(8), jnp.ones(8, bool), 0.1, 1.0)
      >>> m.shape, c.shape
      ((8,), (8, 8))
    """
    x, y, noise = (jnp.asarray(v, jnp.float32) for v in (x, y, noise))
    valid = jnp.asarray(valid, bool)
    y = jnp.where(valid, y, 0.0)
    chol = _factor(x, noise, valid, ratio)
    mu, resid, _ = _gls(chol, y, valid)
    k = jnp.where(valid[:, None] & valid[None, :], _rbf(x, x), 0.0)
    mean = mu + k @ _solve(chol, resid)
    v = solve_triangular(chol, k, lower=True)
    cov = scale2 * (_rbf(x, x) - v.T @ v)
    return mean, cov


def _gp_test(loss_sum, loss_count, step_sum, count, key):
    """The AutoWU test on the loss buffer -> (max probability, step of the posterior min, ok)."""
    valid = loss_count > 0
    n_valid = jnp.sum(valid)
    cnt = jnp.maximum(loss_count, 1.0)
    y = jnp.where(valid, loss_sum / cnt, 0.0)
    steps = jnp.where(valid, step_sum / cnt, 0.0)
    x = steps / jnp.maximum(count.astype(jnp.float32), 1.0)
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
    mean, cov = gp_posterior(x, y, noise, valid, ratio, scale2)

    pos = jnp.arange(valid.shape[0])
    now = jnp.argmax(jnp.where(valid, pos, -1))
    var = jnp.diag(cov)
    diff_var = jnp.maximum(var[now] + var - 2.0 * cov[now], 1e-12)
    prob = ndtr((mean[now] - mean) / jnp.sqrt(diff_var))
    prob = jnp.max(jnp.where(valid & (pos < now), prob, 0.0))
    best = jnp.argmin(jnp.where(valid, mean, jnp.inf))
    return prob, steps[best], n_valid >= MIN_POINTS


# ---------------------------------------------------------------- conditional


def _cond_any(pred, true_fn, false_fn, operand):
    """``lax.cond`` that stays a conditional under ``vmap``.

    Batched, it runs ``true_fn`` (for all runs, selected per run) iff any run needs it.
    """

    @custom_vmap
    def cond(pred, operand):
        return lax.cond(pred, true_fn, false_fn, operand)

    @cond.def_vmap
    def cond_batched(axis_size, in_batched, pred, operand):
        pred_batched, op_batched = in_batched
        preds = pred if pred_batched else jnp.broadcast_to(pred, (axis_size,))
        axes = jax.tree.map(lambda b: 0 if b else None, op_batched)
        v_true = jax.vmap(true_fn, in_axes=(axes,))
        v_false = jax.vmap(false_fn, in_axes=(axes,))

        def some(args):
            p, op = args
            t, f = v_true(op), v_false(op)
            return jax.tree.map(
                lambda a, b: jnp.where(p.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), t, f)

        out = _cond_any(jnp.any(preds), some, lambda args: v_false(args[1]), (preds, operand))
        return out, jax.tree.map(lambda _: True, out)

    return cond(pred, operand)


# ---------------------------------------------------------------- transform


def _lr_bound(name, value):
    """A positive float, validated eagerly; JAX scalars pass through (vmapped sweeps)."""
    return _validate.hyperparam(name, value, low=0.0, low_open=True)


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
      total_steps: the budget ``T`` (positive Python int).
      min_lr: the learning rate at step 0, ``> 0``.
      max_lr: the learning rate at the warmup limit, ``> min_lr``. Either bound may
        be a JAX scalar (e.g. traced in a vmapped sweep); it is then not validated.
      max_warmup_fraction: the warmup ends at this fraction of ``T`` at the latest, in (0, 1].
      test_every: test every this many steps (default ``max(1, round(T / 100))``).
      confidence: probability threshold of the test, in (0, 1).
      patience: consecutive positive tests needed to switch (positive int).
      decay: ``"cosine"``, ``"constant_then_cosine"`` or ``"linear"``.
      cooldown_fraction: for ``constant_then_cosine``, the fraction of the post-switch
        steps spent in the cosine, in (0, 1].
      seed: seeds the subsample of the hyperparameter fit.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`AutoWUState`
      (``lr``, ``phase``, ``peak_lr``, ``switch_step`` for logging).

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = optax.chain(optax.scale_by_adam(), budgetax.autowu(1000), optax.scale(-1.0))
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params, value=jnp.float32(1.0))

    References:
      Kim, Kim, Kim, Ha, Kim. Automated Learning Rate Scheduler for Large-batch
      Training. 2021. arXiv:2107.05855.
    """
    total_steps = _validate.positive_int("total_steps", total_steps)
    min_lr = _lr_bound("min_lr", min_lr)
    max_lr = _lr_bound("max_lr", max_lr)
    static = not (_validate.is_array(min_lr) or _validate.is_array(max_lr))
    if static and not min_lr < max_lr:
        raise ValueError(f"min_lr must be < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    max_warmup_fraction = _validate.real("max_warmup_fraction", max_warmup_fraction, low=0.0,
                                         high=1.0, low_open=True)
    if test_every is None:
        test_every = max(1, round(total_steps / 100))
    test_every = _validate.positive_int("test_every", test_every)
    confidence = _validate.real("confidence", confidence, low=0.0, high=1.0, low_open=True,
                                high_open=True)
    patience = _validate.positive_int("patience", patience)
    _validate.one_of("decay", decay, DECAYS)
    cooldown_fraction = _validate.real("cooldown_fraction", cooldown_fraction, low=0.0,
                                       high=1.0, low_open=True)
    seed = _validate.seed("seed", seed)

    warmup_span = max_warmup_fraction * total_steps  # W: lr reaches max_lr at t = W
    warmup_limit = max(1, math.ceil(warmup_span - 1e-9))  # warmup steps are t < limit
    bin_width = math.ceil(warmup_limit / BUFFER_SIZE)
    n_bins = math.ceil(warmup_limit / bin_width)

    def warmup_lr(t):
        frac = jnp.asarray(t, jnp.float32) / jnp.float32(warmup_span)
        lo = jnp.asarray(min_lr, jnp.float32)
        return lo * jnp.exp(jnp.log(jnp.asarray(max_lr, jnp.float32) / lo) * frac)

    def decay_lr(t, peak, start):
        p = (t - start).astype(jnp.float32) / jnp.maximum(total_steps - start, 1).astype(
            jnp.float32)
        if decay == "cosine":
            mult = profiles.cosine(p)
        elif decay == "linear":
            mult = profiles.linear(p)
        else:
            mult = profiles.wsd(p, decay_fraction=cooldown_fraction, decay="cosine")
        return peak * mult

    def init_fn(params):
        del params
        zeros = jnp.zeros([n_bins], jnp.float32)
        return AutoWUState(
            count=jnp.zeros([], jnp.int32),
            lr=jnp.asarray(min_lr, jnp.float32),
            phase=jnp.asarray(WARMUP, jnp.int32),
            peak_lr=jnp.zeros([], jnp.float32),
            switch_step=jnp.asarray(-1, jnp.int32),
            streak=jnp.zeros([], jnp.int32),
            prob=jnp.zeros([], jnp.float32),
            loss_sum=zeros,
            loss_count=zeros,
            step_sum=zeros,
            key=jax.random.key(seed),
        )

    def update_fn(updates, state, params=None, *, value):
        del params
        t = state.count
        warming = state.phase == WARMUP
        in_window = t < warmup_limit
        loss = jnp.asarray(value, jnp.float32).reshape(())
        record = warming & in_window & jnp.isfinite(loss)
        slot = jnp.minimum(t // bin_width, n_bins - 1)
        w = record.astype(jnp.float32)
        loss_sum = state.loss_sum.at[slot].add(w * jnp.where(record, loss, 0.0))
        loss_count = state.loss_count.at[slot].add(w)
        step_sum = state.step_sum.at[slot].add(w * t.astype(jnp.float32))

        at_limit = t + 1 >= warmup_limit
        scheduled = (((t + 1) % test_every) == 0) | at_limit
        key, sub = jax.random.split(state.key)

        tested = warming & in_window & scheduled

        def run_test(op):
            return _gp_test(*op[:-1])

        def skip(op):
            return op[-1], jnp.zeros([], jnp.float32), jnp.asarray(False)

        prob, step_min, enough = _cond_any(
            tested, run_test, skip, (loss_sum, loss_count, step_sum, t, sub, state.prob))
        positive = tested & enough & (prob > confidence)
        streak = jnp.where(tested, jnp.where(positive, state.streak + 1, 0), state.streak)
        switch = warming & ((streak >= patience) | (in_window & at_limit))
        has_data = jnp.sum(loss_count) > 0
        peak = jnp.where(has_data, warmup_lr(step_min), jnp.asarray(min_lr, jnp.float32))

        lr = state.lr  # decided by the previous update (min_lr at init)
        phase = jnp.where(switch, DECAY, state.phase).astype(jnp.int32)
        peak_lr = jnp.where(switch, peak, state.peak_lr)
        switch_step = jnp.where(switch, t + 1, state.switch_step).astype(jnp.int32)
        next_lr = jnp.where(phase == WARMUP, warmup_lr(t + 1),
                            decay_lr(t + 1, peak_lr, switch_step))
        new_state = AutoWUState(
            count=optax.safe_increment(t),
            lr=next_lr.astype(jnp.float32),
            phase=phase,
            peak_lr=peak_lr,
            switch_step=switch_step,
            streak=streak.astype(jnp.int32),
            prob=jnp.where(tested, prob, state.prob),
            loss_sum=loss_sum,
            loss_count=loss_count,
            step_sum=step_sum,
            key=key,
        )
        updates = jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
    **autowu_kwargs,
) -> optax.GradientTransformationExtraArgs:
    """AdamP with the AutoWU learning rate: ``optax.chain(adamp(1.0, ...), autowu(T, ...))``.

    ``adamp(1.0)`` already carries the minus sign, so the result is a complete
    optimizer: ``update(grads, state, params, value=loss)``.

    Args:
      total_steps: the budget ``T``.
      b1, b2, eps, weight_decay, delta, wd_ratio, nesterov: see :func:`budgetax.adamp`.
      **autowu_kwargs: keywords of :func:`autowu`.

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
    return optax.chain(
        adamp(1.0, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, delta=delta,
              wd_ratio=wd_ratio, nesterov=nesterov),
        autowu(total_steps, **autowu_kwargs),
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
    **autowu_kwargs,
) -> optax.GradientTransformationExtraArgs:
    """LAMB (``optax.lamb``) with the AutoWU learning rate.

    ``optax.chain(optax.lamb(1.0, ...), autowu(T, ...))``: ``optax.lamb(1.0)`` ends
    in ``scale_by_learning_rate(1.0)``, the minus sign, so this is a complete optimizer.

    Args:
      total_steps: the budget ``T``.
      b1, b2, eps, eps_root, weight_decay, mask: see ``optax.lamb``.
      **autowu_kwargs: keywords of :func:`autowu`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp, budgetax
      >>> tx = budgetax.autowu_lamb(1000, max_lr=0.1)
      >>> state = tx.init({"w": jnp.ones((4, 3))})

    References:
      Kim et al. Automated Learning Rate Scheduler for Large-batch Training. 2021.
      arXiv:2107.05855. You et al. Large Batch Optimization for Deep Learning:
      Training BERT in 76 minutes (LAMB). ICLR 2020. arXiv:1904.00962.
    """
    return optax.chain(
        optax.lamb(1.0, b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay,
                   mask=mask),
        autowu(total_steps, **autowu_kwargs),
    )
