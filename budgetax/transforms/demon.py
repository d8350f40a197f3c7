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
* :func:`demon_sgd` -- SGD + Demon, with the learning rate inside the momentum
  buffer as in Keras (``v = beta_t v - lr_t g``);
* :func:`demon_adam` -- Adam whose first-moment EMA uses :math:`\beta_t`, with
  Keras Adam's bias correction evaluated at the current coefficient (or, as an
  option, the *exact* correction for a time-varying coefficient, see
  :func:`scale_by_demon_adam`), decoupled weight decay as in AdamW.

**Reference code.** The defaults reproduce the public Keras implementation of
Demon SGD and Demon Adam (github.com/autasi/demon_sgd, ``demon_sgd.py`` and
``demon_adam.py``, TensorFlow 2.2), which ``tests/reference/demon_keras.py``
ports to float64 NumPy: Nesterov's look-ahead uses the same :math:`\beta_t`
as the buffer update, Demon SGD keeps the learning rate in the buffer, and
Demon Adam corrects the first moment with :math:`1 - \beta_t^{\,t+1}` and puts
epsilon where Keras Adam does. That code leaves :math:`t > T` undefined (the
coefficient turns negative and then diverges); here :math:`\beta_t = 0` from
:math:`t = T` on.

Every numeric hyperparameter may be a JAX array (checked when concrete), so
``optax.inject_hyperparams`` and ``jax.vmap`` over ``beta_init``, ``b2``, the
learning rate or ``total_steps`` work.

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

from budgetax import _validate, profiles

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

BIAS_CORRECTIONS = ("original", "exact")


# ----------------------------------------------------------------------------- validation


def _check_beta_init(beta_init):
    return _validate.real_or_array("beta_init", beta_init, low=0.0, high=1.0, high_open=True)


def _check_total_steps(total_steps):
    return _validate.positive_int_or_array("total_steps", total_steps)


def _is_zero(value) -> bool:
    """True only for a Python number equal to 0 (an array may be traced: never skipped)."""
    return isinstance(value, int | float) and value == 0.0


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
      total_steps: the budget ``T`` (positive Python int, or an integer JAX array).
      beta_init: the initial coefficient, ``0 <= beta_init < 1`` (float or JAX array).

    Returns:
      An ``optax.Schedule`` mapping the int count ``t`` to a float32 ``beta_t``.

    Example:
      >>> sched = demon_schedule(100, 0.9)
      >>> [round(float(sched(t)), 4) for t in (0, 50, 100, 150)]
      [0.9, 0.8182, 0.0, 0.0]

    References:
      Chen, Wolfe, Li, Kyrillidis. Demon. ICASSP 2022. arXiv:1910.04952.
    """
    total_steps = _check_total_steps(total_steps)
    beta_init = _check_beta_init(beta_init)

    def schedule(count):
        count = jnp.asarray(count, jnp.int32)
        # opaque to XLA: a constant budget would otherwise be folded into the division
        # (a reciprocal), and a budget given as data (traced) would give other last bits
        total = jax.lax.optimization_barrier(jnp.asarray(total_steps, jnp.int32))
        p = jnp.minimum(count, total).astype(jnp.float32) / total.astype(jnp.float32)
        beta = jnp.asarray(beta_init, jnp.float32)
        value = beta * profiles.rex(p, beta=beta)  # the REX profile with curvature beta_init
        # exactly 0 from t = T on (float32 T / T can be an ulp below 1)
        return jnp.where(count >= total, 0.0, value).astype(jnp.float32)

    return schedule


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
    :math:`g_t + \beta_t m_t` with the same coefficient, as the reference
    code (Keras momentum with the decayed coefficient) computes it; for a
    constant coefficient both reduce to ``optax.trace``. After the budget,
    :math:`\beta_t = 0` and the output is the gradient itself.

    Args:
      total_steps: the budget ``T`` (positive Python int, or an integer JAX array).
      beta_init: initial momentum coefficient, ``0 <= beta_init < 1``.
      nesterov: use Nesterov's look-ahead (a ``bool``).
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
            out = jax.tree.map(
                lambda g, m: None if g is None else g.astype(m.dtype) + beta.astype(
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
              mu_dtype=None, lr_in_momentum: bool = True) -> optax.GradientTransformation:
    r"""SGD with Demon momentum, as the reference Keras ``DemonSGD``.

    With :math:`d_t = g_t + \lambda\theta_{t-1}` (L2 weight decay, coupled, as
    in SGD) and the default ``lr_in_momentum=True``, the buffer holds the
    learning rate, as Keras momentum does:

    .. math::

       v_t = \beta_t v_{t-1} - \eta_t d_t, \qquad
       \theta_t = \theta_{t-1} + v_t
       \quad(\text{Nesterov: } \theta_t = \theta_{t-1} + \beta_t v_t - \eta_t d_t).

    ``lr_in_momentum=False`` applies the learning rate after the momentum, as
    ``optax.sgd`` does: :math:`m_t = \beta_t m_{t-1} + d_t`,
    :math:`\theta_t = \theta_{t-1} - \eta_t m_t` (Nesterov:
    :math:`- \eta_t (d_t + \beta_t m_t)`). Both are the same for a constant
    learning rate; with a schedule the reference's buffer remembers the
    learning rates its gradients came with. The option is kept for
    compatibility with ``optax.sgd``-style chains, not as a measured improvement.

    This is ``optax.chain(optax.add_decayed_weights(wd),
    optax.scale_by_learning_rate(lr), demon(...))`` (the last two swapped for
    ``lr_in_momentum=False``); the weight-decay step is left out when
    ``weight_decay`` is the number 0, so ``update`` then needs no ``params``,
    as with ``optax.sgd``.

    Args:
      learning_rate: a float ``>= 0`` (a JAX scalar too) or an ``optax.Schedule``.
      total_steps: the budget ``T`` (positive Python int, or an integer JAX array).
      beta_init: initial momentum coefficient, ``0 <= beta_init < 1``.
      nesterov: use Nesterov's look-ahead (a ``bool``).
      weight_decay: L2 coefficient :math:`\lambda \ge 0`.
      mu_dtype: dtype of the stored momentum; ``None`` keeps the parameter dtype.
      lr_in_momentum: keep the learning rate inside the buffer (a ``bool``; the
        reference's form, default) or apply it after the momentum.

    Every numeric argument may be a JAX array (checked when concrete); with
    ``optax.inject_hyperparams`` ``weight_decay`` becomes an array, so pass
    ``params`` to ``update`` (or list it in ``static_args``).

    Returns:
      An ``optax.GradientTransformation`` (a chain; the Demon state is a :class:`DemonState`).

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = budgetax.demon_sgd(0.1, total_steps=1000, beta_init=0.9)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params))
      >>> params = optax.apply_updates(params, updates)

    References:
      Chen, Wolfe, Li, Kyrillidis. Demon: Improved Neural Network Training with
      Momentum Decay. ICASSP 2022. arXiv:1910.04952.
      Reference code: github.com/autasi/demon_sgd, ``demon_sgd.py`` (Keras).
    """
    learning_rate = _validate.learning_rate(learning_rate)
    weight_decay = _validate.real_or_array("weight_decay", weight_decay, low=0.0)
    lr_in_momentum = _validate.boolean("lr_in_momentum", lr_in_momentum)
    momentum = demon(total_steps, beta_init, nesterov=nesterov, mu_dtype=mu_dtype)
    lr = optax.scale_by_learning_rate(learning_rate)
    parts = [lr, momentum] if lr_in_momentum else [momentum, lr]
    if not _is_zero(weight_decay):
        parts.insert(0, optax.add_decayed_weights(weight_decay))
    return optax.chain(*parts)


# ----------------------------------------------------------------------------- demon adam


class DemonAdamState(NamedTuple):
    """State of :func:`scale_by_demon_adam`."""

    count: jax.Array  # int32, number of updates already applied
    mu: optax.Updates  # first moment, mu_dtype (default: params dtype)
    nu: optax.Updates  # second moment, params dtype
    beta_prod: jax.Array  # float32, prod_{s < count} beta_s (exact bias correction)


def scale_by_demon_adam(total_steps: int, beta_init: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8, *, bias_correction: str = "original",
                        mu_dtype=None) -> optax.GradientTransformation:
    r"""Adam's direction with the Demon coefficient in the first-moment EMA.

    With :math:`\beta_t` from :func:`demon_schedule` and ``t`` earlier updates:

    .. math::

       m_t = \beta_t m_{t-1} + (1 - \beta_t)\, g_t, \qquad
       v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 .

    **bias_correction="original"** (default): the reference code (Keras
    ``DemonAdam``: Keras Adam with the decayed ``beta_1``), including where
    Keras Adam puts epsilon:

    .. math::

       u_t = \frac{\sqrt{1 - \beta_2^{\,t+1}}}{1 - \beta_t^{\,t+1}}\,
             \frac{m_t}{\sqrt{v_t} + \epsilon}
           = \frac{m_t / (1 - \beta_t^{\,t+1})}
                  {\sqrt{\hat v_t} + \epsilon / \sqrt{1 - \beta_2^{\,t+1}}}

    **bias_correction="exact"**: for a constant gradient :math:`g` the EMA with
    a time-varying coefficient gives :math:`m_t = (1 - \prod_{s=0}^{t} \beta_s)\, g`,
    so this option divides by :math:`c_t = 1 - \prod_{s=0}^{t}\beta_s` (the
    product is tracked in the state as ``beta_prod``) and uses optax's epsilon,
    :math:`u_t = (m_t / c_t) / (\sqrt{v_t / (1 - \beta_2^{t+1})} + \epsilon)`.
    Its :math:`\hat m_t` is unbiased; the reference's is not: since
    :math:`\beta_t` decreases, :math:`\beta_t^{t+1} < \prod_s \beta_s`, so the
    reference divides by a larger number and shrinks the early steps. For a
    constant gradient and ``beta_init=0.9`` the exact update is 1.022, 1.042,
    1.062, 1.079 times the reference's on steps 2-5 with ``T = 20``, and
    1.0004-1.0014 with ``T = 1000``; both agree at ``t = 0`` and once
    :math:`\beta_t` is small. We consider "exact" the better estimator (its
    first-moment estimate is unbiased); it is an option because the reference
    code, with which the published results were obtained, does not use it.

    Args:
      total_steps: the budget ``T`` (positive Python int, or an integer JAX array).
      beta_init: initial first-moment coefficient, ``0 <= beta_init < 1``.
      b2: second-moment coefficient, ``0 <= b2 < 1``.
      eps: epsilon, ``>= 0`` (placed as described above).
      bias_correction: ``"original"`` (the reference's, default) or ``"exact"``.
      mu_dtype: dtype of the stored first moment; ``None`` keeps the parameter
        dtype. The second moment follows the parameter dtype, as in ``optax.adam``.

    Every numeric argument may be a JAX array (checked when concrete).

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
      Reference code: github.com/autasi/demon_sgd, ``demon_adam.py`` (Keras).
    """
    schedule = demon_schedule(total_steps, beta_init)
    b2 = _validate.real_or_array("b2", b2, low=0.0, high=1.0, high_open=True)
    eps = _validate.real_or_array("eps", eps, low=0.0)
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
        steps = count_inc.astype(jnp.float32)
        beta_prod = state.beta_prod * beta
        b2_power = jnp.asarray(b2, jnp.float32) ** steps
        if exact:
            m_scale = 1.0 / (1.0 - beta_prod)
            v_scale = 1.0 / (1.0 - b2_power)
            eps_eff = jnp.asarray(eps, jnp.float32)
        else:  # Keras Adam: alpha = sqrt(1 - b2^(t+1)) / (1 - beta_t^(t+1)), eps on sqrt(v)
            m_scale = 1.0 / (1.0 - beta ** steps)
            v_scale = 1.0 / (1.0 - b2_power)
            eps_eff = eps * jnp.sqrt(v_scale)
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
        out = jax.tree.map(
            lambda m, v: None if m is None else (
                (m * m_scale.astype(m.dtype))
                / (jnp.sqrt(v * v_scale.astype(v.dtype)).astype(m.dtype)
                   + eps_eff.astype(m.dtype))),
            mu, nu, is_leaf=is_none)
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
               bias_correction: str = "original", mu_dtype=None) -> optax.GradientTransformation:
    r"""Adam (AdamW with ``weight_decay > 0``) with Demon's decaying first-moment coefficient.

    .. math::

       \theta_t = \theta_{t-1} - \eta_t \big(u_t + \lambda\, \theta_{t-1}\big)

    with :math:`u_t` from :func:`scale_by_demon_adam` (first-moment EMA with
    :math:`\beta_t`; by default the reference's bias correction
    :math:`1 - \beta_t^{t+1}` and Keras's epsilon, ``bias_correction="exact"``
    for the unbiased :math:`1 - \prod_{s \le t}\beta_s`) and decoupled weight
    decay :math:`\lambda` as in ``optax.adamw`` (the reference has none).
    This is ``optax.chain(scale_by_demon_adam(...), optax.add_decayed_weights(wd),
    optax.scale_by_learning_rate(lr))``, without the weight-decay step when
    ``weight_decay`` is the number 0 (``update`` then needs no ``params``).

    For a fully 16-bit optimizer pass ``mu_dtype=jnp.bfloat16`` with bfloat16
    parameters (the second moment follows the parameters) and put
    :func:`budgetax.stochastic_rounding` or :func:`budgetax.kahan_summation`
    last (see :mod:`budgetax.transforms.precision`).

    Args:
      learning_rate: a float ``>= 0`` (a JAX scalar too) or an ``optax.Schedule``.
      total_steps: the budget ``T`` (positive Python int, or an integer JAX array).
      beta_init: initial first-moment coefficient, ``0 <= beta_init < 1``.
      b2: second-moment coefficient, ``0 <= b2 < 1``.
      eps: epsilon of the denominator, ``>= 0``.
      weight_decay: decoupled weight decay :math:`\lambda \ge 0`.
      bias_correction: ``"original"`` (:math:`1 - \beta_t^{t+1}`, the reference
        code, default) or ``"exact"`` (:math:`1 - \prod_s \beta_s`, unbiased);
        see :func:`scale_by_demon_adam`.
      mu_dtype: dtype of the stored first moment; ``None`` keeps the parameter dtype.

    Every numeric argument may be a JAX array (checked when concrete).

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
      Reference code: github.com/autasi/demon_sgd, ``demon_adam.py`` (Keras).
    """
    learning_rate = _validate.learning_rate(learning_rate)
    weight_decay = _validate.real_or_array("weight_decay", weight_decay, low=0.0)
    parts = [scale_by_demon_adam(total_steps, beta_init, b2, eps,
                                 bias_correction=bias_correction, mu_dtype=mu_dtype)]
    if not _is_zero(weight_decay):
        parts.append(optax.add_decayed_weights(weight_decay))
    return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))
