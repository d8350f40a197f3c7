r"""Demon: momentum whose coefficient decays to zero over the budget.

Demon (Chen et al., 2022) decays the momentum coefficient so that the total
contribution of a gradient to all future updates, :math:`\beta/(1-\beta)`,
falls linearly with progress :math:`p = \min(t, T)/T`. Solving
:math:`\beta_t/(1-\beta_t) = (1-p)\,\beta_0/(1-\beta_0)` gives

.. math::

   \beta_t = \beta_0 \, \frac{1 - p}{(1 - \beta_0) + \beta_0 (1 - p)}
           = \beta_0 \cdot \mathrm{rex}(p, \beta=\beta_0),

which is :func:`budgetax.profiles.rex` with curvature ``beta_init`` (the code is
shared). ``t`` is the number of updates already applied (0 on the first) and
:math:`\beta_t = 0` from :math:`t = T` on.

Three factories:

* :func:`demon` -- heavy-ball momentum :math:`m_t = \beta_t m_{t-1} + g_t`
  (``optax.trace`` with a decaying coefficient);
* :func:`demon_sgd` -- ``demon`` followed by the learning rate (SGD + Demon);
* :func:`demon_adam` -- Adam whose first-moment EMA uses :math:`\beta_t`, with
  the *exact* bias correction for a time-varying coefficient (see
  :func:`scale_by_demon_adam`), decoupled weight decay as in AdamW.

Arithmetic is done in float32 (or wider), the moments are stored in their own
dtype (``mu_dtype``, default the parameter dtype), and the returned updates are
float32 (or wider) so that a 16-bit parameter is rounded only once, by
``optax.apply_updates`` or by :func:`budgetax.stochastic_rounding` /
:func:`budgetax.kahan_summation` placed last in the chain.

References:
  Chen, Wolfe, Li, Kyrillidis. Demon: Improved Neural Network Training with
  Momentum Decay. ICASSP 2022. arXiv:1910.04952.
  Kingma, Ba. Adam: A Method for Stochastic Optimization. ICLR 2015. arXiv:1412.6980.
  Loshchilov, Hutter. Decoupled Weight Decay Regularization. ICLR 2019. arXiv:1711.05101.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from budgetax import _validate, schedules

__all__ = [
    "BIAS_CORRECTIONS",
    "DemonAdamState",
    "DemonState",
    "demon",
    "demon_adam",
    "demon_schedule",
    "demon_sgd",
    "scale_by_demon_adam",
]

BIAS_CORRECTIONS = ("exact", "original")


# ----------------------------------------------------------------------------- validation


def _check_beta_init(beta_init) -> float:
    return _validate.real("beta_init", beta_init, low=0.0, high=1.0, high_open=True)


def _check_dtype(name: str, dtype) -> Any:
    if dtype is None:
        return None
    try:
        dt = jnp.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{name} must be a floating dtype or None, got {dtype!r}") from e
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"{name} must be a floating dtype or None, got {dtype!r}")
    return jax.dtypes.canonicalize_dtype(dt)


def _check_learning_rate(learning_rate):
    if callable(learning_rate):
        return learning_rate
    return _validate.hyperparam("learning_rate", learning_rate, low=0.0)


def _compute_dtype(*dtypes) -> Any:
    """float32, or wider if one of ``dtypes`` is wider."""
    return jnp.result_type(jnp.float32, *dtypes)


# ----------------------------------------------------------------------------- schedule


def demon_schedule(total_steps: int, beta_init: float = 0.9) -> optax.Schedule:
    r"""The Demon momentum coefficient as a schedule, ``count -> beta_t``.

    .. math::

       \beta_t = \beta_0\,\mathrm{rex}\big(\min(t, T)/T,\ \beta=\beta_0\big)
               = \beta_0 \frac{1 - p}{(1 - \beta_0) + \beta_0 (1 - p)}

    It starts at ``beta_init``, reaches 0 at ``t = T`` and stays there.
    Computed in float32.

    Args:
      total_steps: the budget ``T`` (positive Python int).
      beta_init: the initial coefficient, ``0 <= beta_init < 1``.

    Returns:
      An ``optax.Schedule`` mapping the int count ``t`` to a float32 ``beta_t``.

    Example:
      >>> sched = demon_schedule(100, 0.9)
      >>> [round(float(sched(t)), 4) for t in (0, 50, 100, 150)]
      [0.9, 0.8182, 0.0, 0.0]

    References:
      Chen, Wolfe, Li, Kyrillidis. Demon. ICASSP 2022. arXiv:1910.04952.
    """
    beta_init = _check_beta_init(beta_init)
    # the REX schedule itself (exact progress, exactly 0 from t = T on)
    return schedules.rex(total_steps, beta_init, beta=beta_init)


# ----------------------------------------------------------------------------- demon momentum


class DemonState(NamedTuple):
    """State of :func:`demon`: the update count and the momentum buffer."""

    count: jax.Array  # int32, number of updates already applied
    mu: optax.Updates


def demon(total_steps: int, beta_init: float = 0.9, *, nesterov: bool = False,
          mu_dtype=None) -> optax.GradientTransformation:
    r"""Heavy-ball momentum with the Demon decaying coefficient.

    With :math:`\beta_t` from :func:`demon_schedule` and ``t`` the number of
    earlier updates,

    .. math::

       m_t = \beta_t\, m_{t-1} + g_t, \qquad m_{-1} = 0,

    and the output is :math:`m_t`, or with ``nesterov=True`` the look-ahead
    :math:`g_t + \beta_{t+1} m_t` (the coefficient that will multiply
    :math:`m_t` at the next step; for a constant coefficient both reduce to
    ``optax.trace``). After the budget, :math:`\beta_t = 0` and the output is
    the gradient itself.

    Args:
      total_steps: the budget ``T`` (positive Python int).
      beta_init: initial momentum coefficient, ``0 <= beta_init < 1``.
      nesterov: use Nesterov's look-ahead.
      mu_dtype: dtype of the stored momentum (e.g. ``jnp.bfloat16``); ``None``
        keeps the dtype of the parameters. Arithmetic is float32 or wider.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`DemonState`. The
      updates are float32 (or wider, if the gradients are).

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = optax.chain(budgetax.demon(1000, 0.9), optax.scale(-0.1))
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)

    References:
      Chen, Wolfe, Li, Kyrillidis. Demon: Improved Neural Network Training with
      Momentum Decay. ICASSP 2022. arXiv:1910.04952.
    """
    schedule = demon_schedule(total_steps, beta_init)
    nesterov = _validate.boolean("nesterov", nesterov)
    mu_dtype = _check_dtype("mu_dtype", mu_dtype)

    def init_fn(params):
        return DemonState(count=jnp.zeros([], jnp.int32),
                          mu=optax.tree.zeros_like(params, dtype=mu_dtype))

    def update_fn(updates, state, params=None):
        del params
        beta = schedule(state.count)

        def momentum(g, m):
            if g is None:
                return None
            dt = _compute_dtype(g.dtype, m.dtype)
            return beta.astype(dt) * m.astype(dt) + g.astype(dt)

        mu = jax.tree.map(momentum, updates, state.mu, is_leaf=lambda x: x is None)
        if nesterov:
            beta_next = schedule(optax.safe_increment(state.count))
            out = jax.tree.map(
                lambda g, m: None if g is None else g.astype(m.dtype) + beta_next.astype(
                    m.dtype) * m,
                updates, mu, is_leaf=lambda x: x is None)
        else:
            out = mu
        new_mu = jax.tree.map(lambda m, old: None if m is None else m.astype(old.dtype),
                              mu, state.mu, is_leaf=lambda x: x is None)
        return out, DemonState(count=optax.safe_increment(state.count), mu=new_mu)

    return optax.GradientTransformation(init_fn, update_fn)


def demon_sgd(learning_rate, total_steps: int, beta_init: float = 0.9, *,
              nesterov: bool = False, weight_decay: float = 0.0,
              mu_dtype=None) -> optax.GradientTransformation:
    r"""SGD with Demon momentum.

    .. math::

       m_t = \beta_t m_{t-1} + (g_t + \lambda \theta_{t-1}), \qquad
       \theta_t = \theta_{t-1} - \eta_t\, m_t

    (with ``nesterov=True`` the step uses :math:`g_t + \lambda\theta_{t-1} +
    \beta_{t+1} m_t`). Weight decay :math:`\lambda` is added to the gradient
    (L2, coupled) as in SGD. This is
    ``optax.chain(optax.add_decayed_weights(wd), demon(...), optax.scale_by_learning_rate(lr))``.

    Args:
      learning_rate: a non-negative float or an ``optax.Schedule``.
      total_steps: the budget ``T`` (positive Python int).
      beta_init: initial momentum coefficient, ``0 <= beta_init < 1``.
      nesterov: use Nesterov's look-ahead.
      weight_decay: L2 coefficient :math:`\lambda \ge 0`.
      mu_dtype: dtype of the stored momentum; ``None`` keeps the parameter dtype.

    Returns:
      An ``optax.GradientTransformation`` (a chain; the Demon state is a :class:`DemonState`).

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = budgetax.demon_sgd(0.1, total_steps=1000, beta_init=0.9)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)

    References:
      Chen, Wolfe, Li, Kyrillidis. Demon: Improved Neural Network Training with
      Momentum Decay. ICASSP 2022. arXiv:1910.04952.
    """
    learning_rate = _check_learning_rate(learning_rate)
    weight_decay = _validate.hyperparam("weight_decay", weight_decay, low=0.0)
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        demon(total_steps, beta_init, nesterov=nesterov, mu_dtype=mu_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- demon adam


class DemonAdamState(NamedTuple):
    """State of :func:`scale_by_demon_adam`."""

    count: jax.Array  # int32, number of updates already applied
    mu: optax.Updates  # first moment, mu_dtype (default: params dtype)
    nu: optax.Updates  # second moment, params dtype
    beta_prod: jax.Array  # float32, prod_{s < count} beta_s (exact bias correction)


def scale_by_demon_adam(total_steps: int, beta_init: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8, *, bias_correction: str = "exact",
                        mu_dtype=None) -> optax.GradientTransformation:
    r"""Adam's direction with the Demon coefficient in the first-moment EMA.

    With :math:`\beta_t` from :func:`demon_schedule` and ``t`` earlier updates:

    .. math::

       m_t &= \beta_t m_{t-1} + (1 - \beta_t)\, g_t, \qquad
       v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \\
       \hat m_t &= m_t / c_t, \qquad \hat v_t = v_t / (1 - \beta_2^{t+1}), \qquad
       u_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    **Bias correction.** For a constant gradient :math:`g` the EMA with a
    time-varying coefficient gives :math:`m_t = (1 - \prod_{s=0}^{t} \beta_s)\, g`,
    so ``bias_correction="exact"`` uses :math:`c_t = 1 - \prod_{s=0}^{t}\beta_s`
    (the product is tracked in the state as ``beta_prod``) and :math:`\hat m_t`
    is unbiased. ``bias_correction="original"`` uses Adam's formula with the
    *current* coefficient, :math:`c_t = 1 - \beta_t^{\,t+1}`, as the authors'
    code does (Keras Adam with the decayed ``beta_1``). Since :math:`\beta_t`
    decreases, :math:`\beta_t^{t+1} < \prod_s \beta_s`, so the original
    correction divides by a larger number and under-corrects early in training;
    at ``t = 0`` both are :math:`1 - \beta_0` and once :math:`\beta_t` is small
    both are close to 1.

    Args:
      total_steps: the budget ``T`` (positive Python int).
      beta_init: initial first-moment coefficient, ``0 <= beta_init < 1``.
      b2: second-moment coefficient, ``0 <= b2 < 1``.
      eps: added to :math:`\sqrt{\hat v_t}`, ``>= 0``.
      bias_correction: ``"exact"`` or ``"original"`` (see above).
      mu_dtype: dtype of the stored first moment; ``None`` keeps the parameter
        dtype. The second moment follows the parameter dtype, as in ``optax.adam``.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`DemonAdamState`;
      float32 (or wider) updates.

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = optax.chain(budgetax.scale_by_demon_adam(1000), optax.scale(-1e-3))
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)

    References:
      Chen, Wolfe, Li, Kyrillidis. Demon: Improved Neural Network Training with
      Momentum Decay. ICASSP 2022. arXiv:1910.04952.
      Kingma, Ba. Adam. ICLR 2015. arXiv:1412.6980.
    """
    schedule = demon_schedule(total_steps, beta_init)
    b2 = _validate.hyperparam("b2", b2, low=0.0, high=1.0, high_open=True)
    eps = _validate.hyperparam("eps", eps, low=0.0)
    exact = _validate.one_of("bias_correction", bias_correction, BIAS_CORRECTIONS) == "exact"
    mu_dtype = _check_dtype("mu_dtype", mu_dtype)

    def init_fn(params):
        return DemonAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params, dtype=mu_dtype),
            nu=optax.tree.zeros_like(params),
            beta_prod=jnp.ones([], jnp.float32),
        )

    def update_fn(updates, state, params=None):
        del params
        beta = schedule(state.count)
        count_inc = optax.safe_increment(state.count)
        beta_prod = state.beta_prod * beta
        if exact:
            correction = 1.0 - beta_prod
        else:
            correction = 1.0 - beta ** count_inc.astype(jnp.float32)
        is_none = lambda x: x is None

        def up(g, old):
            return None if g is None else g.astype(_compute_dtype(g.dtype, old.dtype))

        g_mu = jax.tree.map(up, updates, state.mu, is_leaf=is_none)
        g_nu = jax.tree.map(up, updates, state.nu, is_leaf=is_none)
        mu = jax.tree.map(
            lambda g, m: None if g is None else (
                beta.astype(g.dtype) * m.astype(g.dtype) + (1.0 - beta).astype(g.dtype) * g),
            g_mu, state.mu, is_leaf=is_none)
        nu_old = jax.tree.map(lambda g, v: None if g is None else v.astype(g.dtype),
                              g_nu, state.nu, is_leaf=is_none)
        nu = optax.tree.update_moment_per_elem_norm(g_nu, nu_old, b2, 2)
        nu_hat = optax.tree.bias_correction(nu, b2, count_inc)
        out = jax.tree.map(
            lambda m, v: None if m is None else (
                (m / correction.astype(m.dtype)) / (jnp.sqrt(v).astype(m.dtype) + eps)),
            mu, nu_hat, is_leaf=is_none)
        cast = lambda new, old: None if new is None else new.astype(old.dtype)
        return out, DemonAdamState(
            count=count_inc,
            mu=jax.tree.map(cast, mu, state.mu, is_leaf=is_none),
            nu=jax.tree.map(cast, nu, state.nu, is_leaf=is_none),
            beta_prod=beta_prod,
        )

    return optax.GradientTransformation(init_fn, update_fn)


def demon_adam(learning_rate, total_steps: int, beta_init: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8, weight_decay: float = 0.0, *,
               bias_correction: str = "exact", mu_dtype=None) -> optax.GradientTransformation:
    r"""Adam (AdamW with ``weight_decay > 0``) with Demon's decaying first-moment coefficient.

    .. math::

       \theta_t = \theta_{t-1} - \eta_t \big(u_t + \lambda\, \theta_{t-1}\big)

    with :math:`u_t` from :func:`scale_by_demon_adam` (first-moment EMA with
    :math:`\beta_t`, exact bias correction :math:`1 - \prod_{s \le t}\beta_s`
    by default) and decoupled weight decay :math:`\lambda` as in ``optax.adamw``.
    This is ``optax.chain(scale_by_demon_adam(...), optax.add_decayed_weights(wd),
    optax.scale_by_learning_rate(lr))``.

    For a fully 16-bit optimizer pass ``mu_dtype=jnp.bfloat16`` with bfloat16
    parameters (the second moment follows the parameters) and put
    :func:`budgetax.stochastic_rounding` or :func:`budgetax.kahan_summation`
    last (see :mod:`budgetax.transforms.precision`).

    Args:
      learning_rate: a non-negative float or an ``optax.Schedule``.
      total_steps: the budget ``T`` (positive Python int).
      beta_init: initial first-moment coefficient, ``0 <= beta_init < 1``.
      b2: second-moment coefficient, ``0 <= b2 < 1``.
      eps: added to the root of the second moment, ``>= 0``.
      weight_decay: decoupled weight decay :math:`\lambda \ge 0`.
      bias_correction: ``"exact"`` (:math:`1 - \prod_s \beta_s`) or
        ``"original"`` (:math:`1 - \beta_t^{t+1}`, the authors' code).
      mu_dtype: dtype of the stored first moment; ``None`` keeps the parameter dtype.

    Returns:
      An ``optax.GradientTransformation`` (a chain whose first state is a
      :class:`DemonAdamState`).

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = budgetax.demon_adam(1e-3, total_steps=1000, weight_decay=1e-4)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)

    References:
      Chen, Wolfe, Li, Kyrillidis. Demon: Improved Neural Network Training with
      Momentum Decay. ICASSP 2022. arXiv:1910.04952.
      Loshchilov, Hutter. Decoupled Weight Decay Regularization. ICLR 2019.
      arXiv:1711.05101.
    """
    learning_rate = _check_learning_rate(learning_rate)
    weight_decay = _validate.hyperparam("weight_decay", weight_decay, low=0.0)
    return optax.chain(
        scale_by_demon_adam(total_steps, beta_init, b2, eps, bias_correction=bias_correction,
                            mu_dtype=mu_dtype),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )
