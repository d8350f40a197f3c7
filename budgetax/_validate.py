"""Eager argument validation shared by every factory.

Every public factory validates its arguments when it is called (not when the
returned function is traced) and raises ``TypeError``/``ValueError`` naming the
argument and the value it got. Each check has one name, here:

- :func:`real`: a Python (or NumPy) real number, returned as ``float``;
- :func:`real_or_array`: the same, or a JAX/NumPy array, returned unchanged; a
  *concrete* array is checked elementwise, a traced one passes (as in optax);
- :func:`real_unless_array`: a Python number is checked, every JAX array passes
  unchecked (``hyperparam`` is its former name);
- :func:`static_int`: a Python int (or concrete integer array) that fixes a
  program's structure, so never a traced value; :data:`INT32_MAX` bounds every count.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


INT32_MAX = 2**31 - 1


def positive_int(name: str, value: Any) -> int:
    """Returns ``value`` as an int, or raises naming ``name`` unless it is an int in [1, 2**31).

    Counts (steps, sizes) are int32 inside compiled programs: a larger one would overflow.
    """
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if value > INT32_MAX:
        raise ValueError(f"{name} must be below 2**31 (an int32 count), got {value!r}")
    return int(value)


def positive_int_at_most(name: str, value: Any, limit: int, what: str) -> int:
    """``positive_int`` that is also ``<= limit``; ``what`` names the limit in the message."""
    value = positive_int(name, value)
    if value > limit:
        raise ValueError(f"{name} must be <= {what} ({limit}), got {value!r}")
    return value


def nonnegative_int(name: str, value: Any) -> int:
    """Returns ``value`` as an int, or raises naming ``name`` unless it is an int >= 0."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a non-negative int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if value > INT32_MAX:
        raise ValueError(f"{name} must be below 2**31 (an int32 count), got {value!r}")
    return int(value)


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns ``value`` as a float, checked against an interval.

    ``low``/``high`` bound the interval; ``low_open``/``high_open`` make the bound
    exclusive. Non-finite values are rejected.
    """
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value!r}")
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{hb}, got {value!r}")
    return v


def is_array(value: Any) -> bool:
    """True for JAX arrays and tracers: hyperparameters a vmapped sweep may pass traced."""
    return isinstance(value, jax.Array | jax.core.Tracer)


def real_unless_array(name: str, value: Any, **bounds) -> Any:
    """``real(name, value, **bounds)`` for Python numbers; JAX arrays pass through unchecked.

    Unlike :func:`real_or_array`, a concrete JAX array is not checked either.
    """
    return value if is_array(value) else real(name, value, **bounds)


hyperparam = real_unless_array  # its former name, still called by budgetax.ranking


_STATIC_HINT = ("it fixes the schedule's structure, so it must be static: pass a Python int "
                "(under jax.jit use static_argnames; with optax.inject_hyperparams list it in "
                "static_args)")


def static_int(name: str, value: Any, *, low: int = 1) -> int:
    """A Python int (or concrete integer array) in ``[low, 2**31 - 1]``; raises naming ``name``.

    A traced value is refused (``TypeError``) with the advice to make it static.
    """
    kind = "a positive int" if low == 1 else "a non-negative int"
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be {kind}, got the traced value {value!r}; {_STATIC_HINT}")
    if isinstance(value, jax.Array | np.ndarray):
        arr = np.asarray(value)
        if arr.shape != () or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be {kind}, got {value!r}")
        value = int(arr)
    elif not _is_int(value):
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if value > INT32_MAX:
        raise ValueError(f"{name} must be at most 2**31 - 1 (counts are int32), got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """Returns ``value`` if it is a bool, else raises ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def one_of(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


SEED_LIMIT = 2**32


def seed(name: str, value: Any) -> int:
    """Validates a PRNG seed: an int in ``[0, 2**32)`` (not bool).

    ``jax.random.key`` keeps 32 bits of a seed (without x64), so seeds that differ
    by a multiple of ``2**32`` would give the same key: outside this range two
    seeds could silently be the same run.
    """
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**32) (larger seeds repeat smaller ones), "
                         f"got {value!r}")
    return int(value)


def _concrete(value: Any):
    """``value`` as a NumPy array if it is a concrete array, else ``None`` (a tracer)."""
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def real_or_array(name: str, value: Any, **bounds) -> Any:
    """A real hyperparameter that may also be a JAX (or NumPy) array.

    Python numbers go through :func:`real` (and come back as ``float``). An array
    is returned unchanged (so ``optax.inject_hyperparams`` and ``jax.vmap`` can
    pass one); when it is concrete, its dtype must be real (not bool) and every
    element is checked as :func:`real` checks a number. A tracer passes unchecked.
    """
    if not isinstance(value, jax.Array | np.ndarray | np.generic) or _is_real(value):
        return real(name, value, **bounds)
    arr = _concrete(value)
    if arr is None:
        return value
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)
                                     or arr.dtype.name == "bfloat16"):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    for v in arr.astype(np.float64).ravel():
        _check_element(name, float(v), value, **bounds)
    return value


def learning_rate(value: Any) -> Any:
    """The ``learning_rate`` of an optimizer: an ``optax.Schedule`` or a real ``>= 0``.

    One rule for every budgetax optimizer (AdamP, SGDP, the Demon optimizers): 0 is
    accepted, as optax accepts it (a frozen phase, the end of a schedule that
    anneals to 0, a sweep's control), and a negative rate, which would ascend the
    loss, is refused. Numbers and concrete arrays are checked (see
    :func:`real_or_array`); a schedule (any callable) or a traced array passes.
    """
    if callable(value):
        return value
    return real_or_array("learning_rate", value, low=0.0)


def _check_element(name: str, v: float, shown: Any, **bounds) -> None:
    try:
        real(name, v, **bounds)
    except ValueError as e:
        raise ValueError(str(e).rsplit(", got ", 1)[0] + f", got {shown!r}") from None


def positive_int_or_array(name: str, value: Any) -> Any:
    """:func:`positive_int`, or an integer array: concrete, every element >= 1; traced, as is."""
    if not isinstance(value, jax.Array | np.ndarray) or isinstance(value, bool):
        return positive_int(name, value)
    if not np.issubdtype(value.dtype, np.integer):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    arr = _concrete(value)
    if arr is not None and np.any(arr < 1):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
