r"""16-bit-only training: stochastic rounding and Kahan summation of the weight update.

With bfloat16 weights, ``w + u`` rounded to the nearest bfloat16 cancels every
update smaller than half a unit in the last place (ulp) of ``w``: bfloat16 has
8 significant bits, so an update below about ``2**-9 * |w|`` is lost entirely,
and late in training, when the learning rate is small, most updates are.
Zamirai et al. (2020) show that two cheap changes to the *weight update alone*
recover float32 accuracy:

* **stochastic rounding** (:func:`stochastic_rounding`): round ``x = w + u`` to
  one of its two neighbouring bfloat16 values ``lo <= x <= hi``, to ``hi`` with
  probability ``(x - lo) / (hi - lo)``, so that ``E[SR(x)] = x``;
* **Kahan summation** (:func:`kahan_summation`): keep what rounding dropped in a
  16-bit compensation buffer ``c`` and add it back next step:

  .. math::

     y = u + c, \qquad w' = \mathrm{rn}(w + y), \qquad c' = \mathrm{rn}\big(y - (w' - w)\big).

Both go **last** in an optax chain and need ``params``. For bfloat16 and
float16 leaves they return float32 updates ``u' = w' - w`` chosen so that plain
``optax.apply_updates(params, u')`` -- which computes ``(w + u').astype(w.dtype)``
-- yields exactly ``w'`` (so ``flax.nnx.Optimizer.update`` works unchanged):
``w' - w`` is exact in float32 whenever one of them is 0 or their magnitudes
are within a factor of about ``2**15`` (bfloat16) or ``2**12`` (float16), i.e. for
every update that does not wipe a weight out in one step.
float32 and float64 leaves pass through untouched and hold no state.

Inside ``jax.jit`` XLA may keep intermediate results at a higher precision than
their dtype says (``xla_allow_excess_precision``), which would silently make the
Kahan compensation ``(w' - w) - y`` zero. Here every rounding to 16 bits is done
in float32 with ``lax.reduce_precision`` (plus an explicit rounding on the
subnormal grid of float16, which ``reduce_precision`` flushes to zero), and
stochastic rounding works on the bits, so no conversion pair can be elided.

**A fully 16-bit optimizer.** ``optax.adam``/``optax.adamw`` keep the second
moment ``nu`` in the parameter dtype (``optax.tree.zeros_like(params)``) and the
first moment ``mu`` in ``mu_dtype`` (default: the parameter dtype too), so with
bfloat16 parameters and ``mu_dtype=jnp.bfloat16`` all of Adam's state is 16-bit.
Put the rounding transform last, with :func:`precision_chain`:

>>> import jax, jax.numpy as jnp, optax, budgetax
>>> params = {"w": jnp.full((64, 64), 0.5, jnp.bfloat16), "b": jnp.zeros(64, jnp.bfloat16)}
>>> tx = budgetax.precision_chain(
...     optax.adamw(1e-3, weight_decay=1e-4, mu_dtype=jnp.bfloat16), rounding="stochastic")
>>> state = tx.init(params)
>>> grads = jax.tree.map(jnp.ones_like, params)
>>> updates, state = jax.jit(tx.update)(grads, state, params)
>>> params = optax.apply_updates(params, updates)
>>> params["w"].dtype, state[0][0].nu["w"].dtype
(dtype(bfloat16), dtype(bfloat16))
>>> round(budgetax.persistent_bytes_per_param(params, state), 2)  # 2 (w) + 2 (mu) + 2 (nu)
6.0

The same holds for :func:`budgetax.demon_adam` with ``mu_dtype=jnp.bfloat16``.
Persistent memory per parameter: float32 Adam 12 bytes; bfloat16 Adam with
nearest or stochastic rounding 6 bytes; with Kahan summation 8 bytes (the
compensation buffer is bfloat16). The float32 updates exist only transiently
inside the step.

References:
  Zamirai, Zhang, Aberger, De Sa. Revisiting BFloat16 Training. 2020.
  arXiv:2010.06192.
  Kahan. Further Remarks on Reducing Truncation Errors. Communications of the
  ACM, 1965.
  Gupta, Agrawal, Gopalakrishnan, Narayanan. Deep Learning with Limited
  Numerical Precision. ICML 2015. arXiv:1502.02551.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from budgetax import _validate

__all__ = [
    "ROUNDINGS",
    "KahanSummationState",
    "StochasticRoundingState",
    "kahan_summation",
    "persistent_bytes_per_param",
    "precision_chain",
    "stochastic_rounding",
]

ROUNDINGS = ("nearest", "stochastic", "kahan")

# exponent bits, mantissa bits of the 16-bit formats handled here.
_FORMATS = {
    jnp.dtype(jnp.bfloat16): (8, 7),
    jnp.dtype(jnp.float16): (5, 10),
}


def _low_precision(dtype) -> bool:
    return jnp.dtype(dtype) in _FORMATS


def _dtype_of(x) -> Any:
    return jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype


def _round_nearest(x: jax.Array, dtype) -> jax.Array:
    """Rounds float32 ``x`` to the nearest ``dtype`` value (ties to even), kept in float32.

    Uses ``lax.reduce_precision``, which XLA never elides, so the result is
    exactly representable in ``dtype`` even under excess precision. Its flush of
    subnormals is undone for float16 by rounding on the subnormal grid.
    """
    dtype = jnp.dtype(dtype)
    ebits, mbits = _FORMATS[dtype]
    r = lax.reduce_precision(x, exponent_bits=ebits, mantissa_bits=mbits)
    fi = jnp.finfo(dtype)
    if int(fi.minexp) > -126:  # float16: subnormals exist below float32's normal range
        tiny = float(fi.tiny)
        quantum = float(fi.smallest_subnormal)
        sub = jnp.round(x / quantum) * quantum  # exact: a power-of-two scaling
        r = jnp.where(jnp.abs(x) < tiny, sub, r)
    return r


def _as_float32(x) -> jax.Array:
    return jnp.asarray(x).astype(jnp.float32)


# ----------------------------------------------------------------------------- stochastic rounding


class StochasticRoundingState(NamedTuple):
    """State of :func:`stochastic_rounding`: a raw ``uint32[2]`` PRNG key."""

    key: jax.Array


def _key_words(key: jax.Array) -> jax.Array:
    """The two uint32 words of a raw ``uint32[2]`` key or of a typed threefry key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return jnp.asarray(key, jnp.uint32).reshape(-1)[:2]


def _lowbias32(x: jax.Array) -> jax.Array:
    """Wellons' ``lowbias32`` integer finaliser: a bijection of uint32 with full avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _random_words(key: jax.Array, shape) -> jax.Array:
    """32 pseudo-random bits per element: a counter-based hash of (key, element index).

    ``lowbias32(index * 0x9E3779B9 + k0) ^ k1`` with ``(k0, k1)`` the key's words (a new
    key every step). About 10 integer operations per element against threefry's 20
    rounds for ``jax.random.bits``.
    """
    k = _key_words(key)
    size = int(np.prod(shape, dtype=np.int64))
    idx = lax.iota(jnp.uint32, size).reshape(shape)
    return _lowbias32(idx * jnp.uint32(0x9E3779B9) + k[0]) ^ k[1]


def _sr_bfloat16(x: jax.Array, key: jax.Array) -> jax.Array:
    """Stochastically rounds float32 ``x`` to bfloat16 values (kept in float32), on the bits.

    A bfloat16 is the upper half of a float32. Adding 16 uniform random bits to
    the lower half and truncating carries into the upper half with probability
    (lower half) / 2**16 = (x - lo) / (hi - lo).
    """
    bits = lax.bitcast_convert_type(x, jnp.uint32)
    noise = _random_words(key, x.shape) >> 16
    rounded = lax.bitcast_convert_type((bits + noise) & jnp.uint32(0xFFFF0000), jnp.float32)
    return jnp.where(jnp.isnan(x), x, rounded)


def _neighbour(r: jax.Array, upward: jax.Array, dtype) -> jax.Array:
    """The ``dtype`` value next to ``r`` (a ``dtype`` value in float32) up or down, in float32."""
    bits = lax.bitcast_convert_type(r.astype(dtype), jnp.uint16).astype(jnp.uint32)
    sign = bits & jnp.uint32(0x8000)
    mag = bits & jnp.uint32(0x7FFF)
    away = jnp.where(sign == 0, upward, ~upward)  # moving away from zero grows the magnitude
    new_mag = jnp.where(away, mag + 1, jnp.where(mag == 0, jnp.uint32(1), mag - 1))
    new_sign = jnp.where(~away & (mag == 0), sign ^ jnp.uint32(0x8000), sign)
    out = lax.bitcast_convert_type((new_sign | new_mag).astype(jnp.uint16), dtype)
    return out.astype(jnp.float32)


def _sr_generic(x: jax.Array, key: jax.Array, dtype) -> jax.Array:
    """Stochastically rounds float32 ``x`` to ``dtype`` values (kept in float32)."""
    r = _round_nearest(x, dtype)
    other = _neighbour(r, x > r, dtype)
    lo = jnp.minimum(r, other)
    hi = jnp.maximum(r, other)
    prob_hi = (x - lo) / (hi - lo)
    draw = (_random_words(key, x.shape) >> 8).astype(jnp.float32) * (2.0**-24)  # [0, 1)
    out = jnp.where(draw < prob_hi, hi, lo)
    return jnp.where((x == r) | ~jnp.isfinite(x), r, out)


def stochastically_round(x, key: jax.Array, dtype) -> jax.Array:
    r"""Rounds ``x`` (cast to float32) stochastically to ``dtype`` (bfloat16 or float16).

    .. math::

       \mathrm{SR}(x) = \begin{cases} hi & \text{with probability } (x - lo)/(hi - lo) \\
                                      lo & \text{otherwise} \end{cases}

    where ``lo <= x <= hi`` are the neighbouring ``dtype`` values, so
    :math:`E[\mathrm{SR}(x)] = x`. Values already representable are returned as they are.

    Args:
      x: a float array.
      key: a PRNG key.
      dtype: ``jnp.bfloat16`` or ``jnp.float16``.

    Returns:
      A ``dtype`` array.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> y = stochastically_round(jnp.full(1000, 1.0 + 2.0**-9), jax.random.PRNGKey(0),
      ...                          jnp.bfloat16)
      >>> sorted(set(y.astype(float).tolist()))
      [1.0, 1.0078125]

    References:
      Gupta et al. Deep Learning with Limited Numerical Precision. ICML 2015.
      arXiv:1502.02551.
    """
    dtype = jnp.dtype(dtype)
    if dtype not in _FORMATS:
        raise TypeError(f"dtype must be bfloat16 or float16, got {dtype}")
    x = _as_float32(x)
    if dtype == jnp.dtype(jnp.bfloat16):
        return _sr_bfloat16(x, key).astype(dtype)
    return _sr_generic(x, key, dtype).astype(dtype)


def _check_seed(seed):
    """A Python int, or an integer JAX scalar (so a vmapped init can give each run its own)."""
    if isinstance(seed, jax.Array | jax.core.Tracer) and not isinstance(seed, bool):
        if seed.shape != () or not jnp.issubdtype(seed.dtype, jnp.integer):
            raise TypeError(f"seed must be an int, got {seed!r}")
        return seed
    return _validate.seed("seed", seed)


def _no_params(params):
    if params is None:
        raise ValueError(
            "params must be passed to update() of stochastic_rounding / kahan_summation, got None")


def stochastic_rounding(seed=0) -> optax.GradientTransformation:
    r"""Makes the final weight update of 16-bit parameters stochastically rounded.

    For every bfloat16/float16 leaf ``w`` with incoming update ``u`` it draws
    :math:`w' = \mathrm{SR}(w + u)` (``w + u`` formed in float32, then rounded
    to one of its two neighbouring 16-bit values, unbiased:
    :math:`E[w'] = w + u`) and returns the float32 update :math:`w' - w`, so
    that ``optax.apply_updates`` lands exactly on :math:`w'`. Other leaves pass
    through unchanged. Put it last in the chain: a transform after it changes the
    rounded update, so the weights are no longer its unbiased rounding, and
    ``optax.chain`` cannot tell. :func:`precision_chain` puts it last:
    ``precision_chain([...transforms], "stochastic")``.

    The PRNG key lives in the state (a raw ``uint32[2]`` threefry key, so the
    state is a plain array that orbax saves) and is split at every update, once
    per 16-bit leaf. The random bits of a leaf are a counter-based hash of its
    key and the element index (``lowbias32``), not ``jax.random.bits``: the
    rounding is the same, unbiased and reproducible for a given seed, at a
    fraction of the cost. ``seed`` may be an integer JAX scalar, so that a vmapped
    ``init`` gives each run its own key::

        keys = jax.vmap(lambda s, p: stochastic_rounding(s).init(p))(jnp.arange(8), params)

    (``update`` does not depend on ``seed``.)

    Args:
      seed: an int seeding the PRNG key.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`StochasticRoundingState`;
      ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> params = {"w": jnp.ones(3, jnp.bfloat16)}
      >>> tx = optax.chain(optax.sgd(1e-3), budgetax.stochastic_rounding(seed=0))
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)

    References:
      Zamirai, Zhang, Aberger, De Sa. Revisiting BFloat16 Training. 2020.
      arXiv:2010.06192.
    """
    seed = _check_seed(seed)

    def init_fn(params):
        del params
        return StochasticRoundingState(key=jax.random.PRNGKey(seed))

    def update_fn(updates, state, params=None):
        _no_params(params)
        is_none = lambda x: x is None
        flat_u, treedef = jax.tree.flatten(updates, is_leaf=is_none)
        flat_p = treedef.flatten_up_to(params)
        low = [i for i, (u, p) in enumerate(zip(flat_u, flat_p, strict=True))
               if u is not None and _low_precision(_dtype_of(p))]
        key, sub = jax.random.split(state.key)
        keys = jax.random.split(sub, max(len(low), 1))
        out = list(flat_u)
        for k, i in enumerate(low):
            w = _as_float32(flat_p[i])
            dtype = _dtype_of(flat_p[i])
            x = w + _as_float32(flat_u[i])
            if jnp.dtype(dtype) == jnp.dtype(jnp.bfloat16):
                new = _sr_bfloat16(x, keys[k])
            else:
                new = _sr_generic(x, keys[k], dtype)
            out[i] = new - w
        return jax.tree.unflatten(treedef, out), StochasticRoundingState(key=key)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- kahan summation


class KahanSummationState(NamedTuple):
    """State of :func:`kahan_summation`.

    ``compensation`` mirrors ``params``: a buffer in the parameter dtype for each
    16-bit leaf, ``optax.MaskedNode()`` (no memory) for the others.
    """

    compensation: optax.Updates


def _is_masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


def kahan_summation() -> optax.GradientTransformation:
    r"""Kahan-compensated weight update for 16-bit parameters.

    For every bfloat16/float16 leaf ``w`` with incoming update ``u`` and
    compensation ``c`` (same dtype as ``w``, initially 0), with ``rn`` rounding
    to the nearest 16-bit value and the arithmetic in float32:

    .. math::

       y = u + c, \qquad w' = \mathrm{rn}(w + y), \qquad c' = \mathrm{rn}\big(y - (w' - w)\big),

    so ``c`` carries the part of the updates that rounding has not yet applied
    (the negative of the textbook Kahan compensation). It returns the float32
    update :math:`w' - w`, so that ``optax.apply_updates`` lands exactly on
    :math:`w'`. An update below half an ulp accumulates in ``c`` until it moves
    the weight -- down to a limit: ``c`` is itself 16-bit, so it only grows
    while the update is at least half an ulp *of c*, and it must reach about
    half an ulp of ``w`` to move it. For bfloat16 the buffer therefore stalls
    for updates below about :math:`2^{-17}|w|` (between :math:`2^{-18}` and
    :math:`2^{-16}` depending on where ``w`` sits in its binade). With a constant
    update applied for as long as makes a 7-ulp drift, at least 87% of the drift is
    recovered for :math:`u \ge 2^{-16}|w|`, 0-100% at :math:`2^{-17}|w|`, and none at all at
    :math:`2^{-18}|w|` and below (nearest rounding recovers none below about
    :math:`2^{-9}|w|`). float16 has 3 more mantissa bits: it recovers updates
    of :math:`2^{-22}|w|` and stalls at :math:`2^{-24}|w|` (at
    :math:`2^{-23}|w|` depending on the binade position, as above).
    float32/float64 leaves pass through and have no buffer. Put it last in the
    chain.

    Args:
      (none)

    Returns:
      An ``optax.GradientTransformation`` with state :class:`KahanSummationState`;
      ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> params = {"w": jnp.ones(3, jnp.bfloat16)}
      >>> tx = optax.chain(optax.sgd(1e-3), budgetax.kahan_summation())
      >>> state = tx.init(params)
      >>> for _ in range(10):
      ...     updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> float(params["w"][0])  # 1 - 0.01 to bfloat16; nearest rounding would stay at 1.0
      0.98828125

    References:
      Zamirai, Zhang, Aberger, De Sa. Revisiting BFloat16 Training. 2020.
      arXiv:2010.06192.
      Kahan. Further Remarks on Reducing Truncation Errors. CACM 1965.
    """

    def init_fn(params):
        return KahanSummationState(compensation=jax.tree.map(
            lambda p: jnp.zeros(jnp.shape(p), _dtype_of(p)) if _low_precision(_dtype_of(p))
            else optax.MaskedNode(),
            params))

    def update_fn(updates, state, params=None):
        _no_params(params)

        flat_u, treedef = jax.tree.flatten(updates, is_leaf=lambda x: x is None)
        flat_p = treedef.flatten_up_to(params)
        flat_c = treedef.flatten_up_to(state.compensation)
        out, comp = list(flat_u), list(flat_c)
        for i, (u, p, c) in enumerate(zip(flat_u, flat_p, flat_c, strict=True)):
            if u is None or _is_masked(c):
                continue
            dtype = _dtype_of(p)
            w = _as_float32(p)
            y = _as_float32(u) + c.astype(jnp.float32)
            new = _round_nearest(w + y, dtype)
            step = new - w
            out[i] = step
            comp[i] = _round_nearest(y - step, dtype).astype(dtype)
        out = jax.tree.unflatten(treedef, out)
        comp = jax.tree.unflatten(treedef, comp)
        return out, KahanSummationState(compensation=comp)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- helpers


def precision_chain(tx, rounding: str = "nearest",
                    seed=0) -> optax.GradientTransformation:
    """Appends the weight-update rounding for 16-bit parameters to ``tx``: last, where it belongs.

    ``"nearest"`` returns ``tx`` itself (``optax.apply_updates`` rounds to
    nearest); ``"stochastic"`` returns ``optax.chain(tx, stochastic_rounding(seed))``;
    ``"kahan"`` returns ``optax.chain(tx, kahan_summation())``. ``tx`` may be a list
    of transforms, chained in order before the rounding, so that
    ``precision_chain([a, b, c], "stochastic")`` replaces ``optax.chain(a, b, c)``
    with the rounding in the one place it works: a rounding followed by another
    transform (``optax.chain(stochastic_rounding(), optax.scale(-lr))``) rounds an
    update that is then changed, and ``optax.chain`` cannot tell.

    Args:
      tx: the optimizer, an ``optax.GradientTransformation``, or a list of them.
      rounding: one of ``"nearest"``, ``"stochastic"``, ``"kahan"``.
      seed: seed of the stochastic rounding (validated in every mode).

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp, optax, budgetax
      >>> tx = budgetax.precision_chain(optax.adam(1e-3, mu_dtype=jnp.bfloat16), "kahan")
      >>> tx = budgetax.precision_chain(
      ...     [optax.scale_by_adam(), budgetax.rex(1000), optax.scale(-1e-3)], "stochastic")

    References:
      Zamirai, Zhang, Aberger, De Sa. Revisiting BFloat16 Training. 2020.
      arXiv:2010.06192.
    """
    is_tx = lambda t: hasattr(t, "init") and hasattr(t, "update")
    if not is_tx(tx):
        if not isinstance(tx, list | tuple) or not tx or not all(is_tx(t) for t in tx):
            raise TypeError(f"tx must be an optax.GradientTransformation or a non-empty list "
                            f"of them, got {tx!r}")
        tx = optax.chain(*tx)
    _validate.one_of("rounding", rounding, ROUNDINGS)
    seed = _check_seed(seed)
    if rounding == "stochastic":
        return optax.chain(tx, stochastic_rounding(seed))
    if rounding == "kahan":
        return optax.chain(tx, kahan_summation())
    return tx


def _nbytes(leaf) -> int:
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    if isinstance(leaf, jax.Array | np.ndarray | np.generic):
        return int(leaf.size) * int(leaf.dtype.itemsize)
    return 0


def _size(leaf) -> int:
    return int(np.size(leaf)) if isinstance(leaf, jax.Array | np.ndarray | np.generic) else 0


def persistent_bytes_per_param(params, opt_state) -> float:
    """Bytes of ``params`` and ``opt_state`` (array leaves) per parameter.

    .. math::

       \\frac{\\sum_{a \\in \\text{params} \\cup \\text{opt\\_state}} \\text{a.size} \\cdot
       \\text{a.itemsize}}{\\sum_{a \\in \\text{params}} \\text{a.size}}

    The memory that lives from step to step (weights, moments, compensation
    buffers, counters, keys), not the transient gradients and updates. float32
    Adam: about 12; bfloat16 Adam (``mu_dtype=jnp.bfloat16``) with nearest or
    stochastic rounding: about 6; with Kahan summation: about 8.

    Args:
      params: a pytree of parameter arrays.
      opt_state: the optimizer state for ``params``.

    Returns:
      A Python float.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.zeros((100, 100))}
      >>> round(persistent_bytes_per_param(params, optax.adam(1e-3).init(params)), 3)
      12.0
    """
    for name, tree in (("params", params), ("opt_state", opt_state)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if not isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float):
                raise TypeError(f"{name} must be a pytree of arrays (an optax state for "
                                f"opt_state), got {type(leaf).__name__} {leaf!r} at "
                                f"{name}{jax.tree_util.keystr(path)}")
    n = sum(_size(x) for x in jax.tree.leaves(params))
    if n == 0:
        raise ValueError(f"params must contain at least one array element, got {params!r}")
    total = sum(_nbytes(x) for x in jax.tree.leaves((params, opt_state)))
    return total / n
