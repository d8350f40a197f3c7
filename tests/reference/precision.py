"""NumPy / ml_dtypes reference for 16-bit rounding and Kahan-compensated updates.

Written independently of ``budgetax``: rounding to nearest is ml_dtypes' (or
NumPy's float16) cast, neighbours come from ``np.nextafter`` in the 16-bit
dtype, and the Kahan step uses NumPy float32 arithmetic in the order of the
specification

    y = u + c,   w' = rn(w + y),   c' = rn(y - (w' - w)).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)


def neighbours(x, dtype):
    """The 16-bit values lo <= x <= hi enclosing float64 ``x`` (lo == hi if representable)."""
    x = np.asarray(x, np.float64)
    r = x.astype(dtype)
    rf = r.astype(np.float64)
    up = np.nextafter(r, np.full_like(r, np.inf)).astype(np.float64)
    down = np.nextafter(r, np.full_like(r, -np.inf)).astype(np.float64)
    lo = np.where(rf <= x, rf, down)
    hi = np.where(rf >= x, rf, up)
    return lo, hi


def ulp(x, dtype):
    """Gap between the 16-bit neighbours around |x| (spacing of the binade of x)."""
    a = np.abs(np.asarray(x, np.float64)).astype(dtype)
    nxt = np.nextafter(a, np.full_like(a, np.inf)).astype(np.float64)
    return nxt - a.astype(np.float64)


def kahan_step(w, u, c, dtype):
    """One Kahan-compensated update in float32 arithmetic; returns (w', c') in ``dtype``."""
    w32 = np.asarray(w).astype(np.float32)
    y = np.asarray(u, np.float32) + np.asarray(c).astype(np.float32)
    new = (w32 + y).astype(dtype)
    applied = new.astype(np.float32) - w32
    comp = (y - applied).astype(dtype)
    return new, comp


def kahan_run(w0, updates, dtype):
    """Runs ``kahan_step`` over a sequence of updates; returns the final (w, c)."""
    w = np.asarray(w0).astype(dtype)
    c = np.zeros_like(w)
    for u in updates:
        w, c = kahan_step(w, u, c, dtype)
    return w, c


def nearest_run(w0, updates, dtype):
    """Plain 16-bit weights: w <- rn(w + u) with the sum in float32."""
    w = np.asarray(w0).astype(dtype)
    for u in updates:
        w = (w.astype(np.float32) + np.asarray(u, np.float32)).astype(dtype)
    return w
