r"""Fitting a loss law to a few runs, predicting any schedule, with an interval.

**Objective.** The Multi-Power Law's reference objective: the Huber loss (``delta = 1e-3``)
of the log-residuals ``r = log(loss) - log(max(pred, 1e-10))``, summed over every logged
point of every curve.

**Solvers.** ``fit(method="lm")`` (the default) and ``fit(method="paper")`` minimise the
same objective. ``"paper"`` is the Multi-Power Law paper's own algorithm, run in float64
JAX (``budgetax.laws._paper`` documents it step by step): 135 L-BFGS-B fits of the
4-parameter model ``L0 + A S1^-alpha - B (peak - lr)`` from a grid built from the data,
stepped together so that each round evaluates all of them in one batched call, then up to
200 AdamW steps on the 7 parameters from the best of them (``C = 1``, ``beta = gamma =
0.5``), with the paper's learning rates and its patience and gradient-norm stopping rules,
in one jitted loop. It reproduces the paper's fitter: on the paper's released curves its
parameters agree with the paper's code to within 3e-6 (relative); on data where that
fitter's first stage stops in a flat valley, rounding moves its stopping point, so the two
agree less closely (1e-3 on short synthetic curves), with the same fitted curves.
``"lm"`` is described next.

**Levenberg-Marquardt** (``method="lm"``). The parameters are fitted in log space (each
of them is positive), by Levenberg-Marquardt on the Huber objective: at each iteration the
Huber weights ``w = min(1, delta / |r|)`` make ``sum w r dr`` the exact gradient and
``J^T W J`` the Gauss-Newton matrix; the step solves
``(J^T W J + lambda diag(J^T W J)) d = -J^T W r``, is kept when it lowers the objective
(then ``lambda`` shrinks 3x, else it grows 4x), and is limited to a factor ``e^2`` per
parameter. The Multi-Power Law's residuals and their
Jacobian are computed in one pass over the (logged step, lr change) terms, with the
derivatives written out (one ``log1p`` and one ``exp`` per term). Several starts (a fixed
grid built from the data: no randomness, so a fit is deterministic) run together under
``jax.vmap``; for the Multi-Power Law they first run on a coarse form of the curves
(consecutive lr changes merged into at most ``coarse_terms`` blocks per curve, until a
step gains less than ``1e-6`` of the objective), and the best
of them is then refined on the exact terms until a step gains less than ``1e-8`` of the
objective.

**Interval.** :meth:`Fit.interval` is a delta-method interval on the log of the
prediction: ``g^T Cov g + s^2``, with ``g`` the prediction's gradient in the log-parameters,
``Cov`` the Huber fit's sandwich covariance ``H^{-1} (J^T diag(w r)^2 J) H^{-1}``
(``H = J^T W J``) and ``s^2 = sum r^2 / (n_eff - P)`` the residual variance, where the
``n`` fitted points count as ``n_eff = n (1 - rho) / (1 + rho)`` independent ones (``rho``
the lag-1 autocorrelation of the residuals within curves, ``Cov`` scaled by ``n / n_eff``).
It measures the fit's uncertainty on curves like the fitted ones; it cannot
know how far the law itself is from the truth on a new schedule (a systematic error), so
on other schedules it covers less than its level.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from budgetax import _validate
from budgetax.laws import forms
from budgetax.laws.curve import Curve, schedule_values

__all__ = ["LAWS", "Fit", "fit"]

LAWS = ("multi_power", "lr_annealing")
METHODS = ("lm", "paper")  # laws.fit's solvers (see the module docstring)
HUBER_DELTA = 1e-3  # the reference objective's Huber threshold on log-residuals
_PRED_FLOOR = 1e-10  # the reference code clamps predictions here before the log
_CHUNK = 32  # logged points per block of the (points x changes) terms
_MAX_LOG_STEP = 2.0  # a step changes each parameter by at most this factor of e
_EXACT_RTOL = 1e-8  # the refinement stops once a step lowers the objective by less (relative)
_COARSE_RTOL = 1e-6  # ... and the coarse multi-start stage
COARSE_TERMS = 1024  # the Multi-Power Law's default lr changes per curve in the first stage
DECAY = forms.DECAY


# ---------------------------------------------------------------- per-law residual engines


def _pad_points(n):
    return n + (-n) % _CHUNK


def _mpl_curve_data(curve: Curve, coarse_terms: int | None):
    """Arrays of one curve for the Multi-Power Law's fused residual/Jacobian pass."""
    lrs = curve.lrs
    cs = np.cumsum(lrs)
    k = forms.changes(lrs)
    gap = lrs[k] - lrs[k - 1]
    if coarse_terms is not None and k.shape[0] > coarse_terms:
        # merge consecutive changes into blocks, each at its last change (stage 1 only)
        size = -(-k.shape[0] // coarse_terms)
        ends = np.minimum(np.arange(size - 1, k.shape[0] + size - 1, size), k.shape[0] - 1)
        gap = np.add.reduceat(gap, np.arange(0, k.shape[0], size))
        k = k[ends]
    eta = lrs[k] if k.shape[0] else np.zeros(0)
    n = curve.steps.shape[0]
    npad = _pad_points(n)
    s = np.full(npad, -1, np.int64)
    s[:n] = curve.steps
    mask = np.zeros(npad)
    mask[:n] = 1.0
    s1 = np.ones(npad)
    s1[:n] = cs[curve.steps]
    cs_s = np.zeros(npad)
    cs_s[:n] = cs[curve.steps]
    logy = np.zeros(npad)
    logy[:n] = np.log(curve.loss)
    positive = eta > 0
    return dict(s=s, mask=mask, s1=s1, cs_s=cs_s, logy=logy, k=k,
                eta=np.where(positive, eta, 1.0), positive=positive,
                log_eta=np.log(np.where(positive, eta, 1.0)), gap=gap,
                before=cs[k - 1] if k.shape[0] else np.zeros(0))


def _mpl_pred_jac(p, d):
    """Prediction ``[n]`` and its Jacobian ``[n, 7]`` w.r.t. the natural parameters."""
    L0, A, alpha, B, C, beta, gamma = (p[i] for i in range(7))
    s1_pow = d["s1"] ** (-alpha)
    k, gap, before, pos = d["k"], d["gap"], d["before"], d["positive"]
    ep = jnp.where(pos, jnp.exp(-gamma * d["log_eta"]), 0.0)

    def block(args):
        s, cs_s = args
        inside = (k[None, :] <= s[:, None]) & pos[None, :]
        sk = cs_s[:, None] - before[None, :]
        x = jnp.where(inside, C * ep[None, :] * sk, 0.0)
        q = jnp.log1p(x)
        pw = jnp.exp(-beta * q)
        pe = pw / (1 + x)
        g = jnp.where(inside, 1 - pw, 0.0)
        # a drop to eta == 0 after it: G = 1 (x = inf), no derivatives
        g = g + jnp.where((k[None, :] <= s[:, None]) & ~pos[None, :] & (sk > 0), 1.0, 0.0)
        wgap = gap[None, :]
        ld = jnp.sum(wgap * g, -1)
        dc = jnp.sum(jnp.where(inside, wgap * beta * pe * ep[None, :] * sk, 0.0), -1)
        dbeta = jnp.sum(jnp.where(inside, wgap * pw * q, 0.0), -1)
        dgamma = jnp.sum(jnp.where(inside, -wgap * beta * pe * x * d["log_eta"][None, :], 0.0), -1)
        return ld, dc, dbeta, dgamma

    if k.shape[0] == 0:
        zeros = jnp.zeros_like(d["s1"])
        ld = dc = dbeta = dgamma = zeros
    else:
        shape = (-1, _CHUNK)
        outs = jax.lax.map(block, (d["s"].reshape(shape), d["cs_s"].reshape(shape)))
        ld, dc, dbeta, dgamma = (o.reshape(-1) for o in outs)
    pred = L0 + A * s1_pow + B * ld
    jac = jnp.stack([jnp.ones_like(pred), s1_pow, -A * s1_pow * jnp.log(d["s1"]), ld,
                     B * dc, B * dbeta, B * dgamma], axis=-1)
    return pred, jac


def _mpl_starts(curves: Sequence[Curve]):
    y_min, y_max, peak, logs1, logy = _summary(curves)
    gamma0 = beta0 = 0.5
    c0 = peak ** gamma0 / (10 * peak)  # x = C eta^-gamma S_k ~ 1 after ten steps at the peak
    starts = []
    for l0_frac in (0.5, 0.9):
        l0 = l0_frac * y_min
        a0, alpha0 = _power_guess(logs1, logy, l0)
        for b_frac in (0.1, 0.5):
            for c in (c0 / 5, c0):
                starts.append([l0, a0, alpha0, b_frac * max(y_max - y_min, 1e-3 * y_max) / peak,
                               c, beta0, gamma0])
    return np.asarray(starts)


def _la_curve_data(curve: Curve, decay: float):
    cs = np.cumsum(curve.lrs)
    with jax.enable_x64(True):
        s2 = np.asarray(forms.annealing_area(curve.lrs, decay), np.float64)
    return dict(s1=cs[curve.steps], s2=s2[curve.steps], logy=np.log(curve.loss),
                mask=np.ones(curve.steps.shape[0]))


def _la_pred_jac(p, d):
    L0, A, alpha, C = (p[i] for i in range(4))
    s1_pow = d["s1"] ** (-alpha)
    pred = L0 + A * s1_pow - C * d["s2"]
    jac = jnp.stack([jnp.ones_like(pred), s1_pow, -A * s1_pow * jnp.log(d["s1"]), -d["s2"]], -1)
    return pred, jac


def _la_starts(curves: Sequence[Curve], decay: float):
    y_min, y_max, peak, logs1, logy = _summary(curves)
    s2_max = max(float(_la_curve_data(c, decay)["s2"].max()) for c in curves)
    starts = []
    for l0_frac in (0.5, 0.9):
        l0 = l0_frac * y_min
        a0, alpha0 = _power_guess(logs1, logy, l0)
        for c_frac in (0.1, 0.5):
            starts.append([l0, a0, alpha0, c_frac * max(y_max - y_min, 1e-3 * y_max)
                           / max(s2_max, 1e-12)])
    return np.asarray(starts)


def _summary(curves):
    loss = np.concatenate([c.loss for c in curves])
    logs1 = np.concatenate([np.log(np.cumsum(c.lrs)[c.steps]) for c in curves])
    peak = max(float(c.lrs.max()) for c in curves)
    return float(loss.min()), float(loss.max()), peak, logs1, loss


def _power_guess(logs1, loss, l0):
    """``A, alpha`` of ``loss - l0 ~ A S1^-alpha`` by a line through the log-log points."""
    fit_ = stats.linregress(logs1, np.log(np.maximum(loss - l0, 1e-12)))
    alpha = float(np.clip(-fit_.slope, 0.05, 3.0))
    return float(np.exp(np.mean(np.log(np.maximum(loss - l0, 1e-12)) + alpha * logs1))), alpha


@dataclasses.dataclass(frozen=True)
class _LawSpec:
    fields: tuple[str, ...]
    params_cls: type
    pred_jac: object


_SPECS = {
    "multi_power": _LawSpec(forms.MultiPowerParams._fields, forms.MultiPowerParams,
                            _mpl_pred_jac),
    "lr_annealing": _LawSpec(forms.LrAnnealingParams._fields, forms.LrAnnealingParams,
                             _la_pred_jac),
}


# ---------------------------------------------------------------- the solver


def _residuals(theta, data, law):
    """Log-residuals ``[N]``, their Jacobian ``[N, P]`` w.r.t. log-parameters, and a mask."""
    p = jnp.exp(theta)
    rs, js, ms = [], [], []
    for d in data:
        pred, jac = _SPECS[law].pred_jac(p, d)
        ok = pred > _PRED_FLOOR
        r = d["logy"] - jnp.log(jnp.maximum(pred, _PRED_FLOOR))
        j = jnp.where(ok[:, None], -jac * p[None, :] / jnp.maximum(pred, _PRED_FLOOR)[:, None], 0)
        rs.append(r)
        js.append(j)
        ms.append(d["mask"])
    return jnp.concatenate(rs), jnp.concatenate(js), jnp.concatenate(ms)


def _huber(r, mask, delta):
    a = jnp.abs(r)
    return jnp.sum(mask * jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)))


def _lm(theta0, data, law, delta, max_iter, rtol):
    """Levenberg-Marquardt from ``theta0``; one residual/Jacobian pass per iteration.

    The first iteration evaluates ``theta0`` itself (a zero step from an infinite cost).
    """
    def step_from(r, j, lam):
        w = mask * jnp.minimum(1.0, delta / jnp.maximum(jnp.abs(r), 1e-300))
        h = (j * w[:, None]).T @ j
        g = (j * w[:, None]).T @ r
        diag = jnp.diag(h) + 1e-12 * (jnp.trace(h) / h.shape[0] + 1e-30)
        step = -jnp.linalg.solve(h + lam * jnp.diag(diag), g)
        step = jnp.where(jnp.all(jnp.isfinite(step)), step, 0.0)
        return step * jnp.minimum(1.0, _MAX_LOG_STEP / jnp.maximum(jnp.max(jnp.abs(step)), 1e-300))

    mask = jnp.concatenate([d["mask"] for d in data])

    def body(state):
        new = state["theta"] + state["step"]
        r2, j2, _ = _residuals(new, data, law)
        f2 = _huber(r2, mask, delta)
        f2 = jnp.where(jnp.isfinite(f2), f2, jnp.inf)
        f = state["f"]
        better = f2 < f
        first = state["it"] == 0
        gain = jnp.where(better & ~first, f - f2, jnp.inf)
        lam = jnp.where(first, state["lam"], jnp.where(better, state["lam"] / 3, state["lam"] * 4))
        r, j = jnp.where(better, r2, state["r"]), jnp.where(better, j2, state["j"])
        theta = jnp.where(better, new, state["theta"])
        done = (gain <= rtol * f2) | (lam > 1e12) | (first & ~better)
        return dict(theta=theta, r=r, j=j, f=jnp.minimum(f, f2), lam=lam, it=state["it"] + 1,
                    done=done, step=step_from(r, j, lam))

    n = mask.shape[0]
    p = theta0.shape[0]
    state = dict(theta=theta0, r=jnp.zeros(n, theta0.dtype), j=jnp.zeros((n, p), theta0.dtype),
                 f=jnp.asarray(jnp.inf, theta0.dtype), lam=jnp.asarray(1e-3, theta0.dtype),
                 it=jnp.asarray(0), done=jnp.asarray(False), step=jnp.zeros_like(theta0))
    state = jax.lax.while_loop(lambda s: (s["it"] < max_iter + 1) & ~s["done"], body, state)
    return state["theta"], state["f"], state["it"] - 1, state["r"], state["j"]


@functools.partial(jax.jit, static_argnames=("law", "max_iter"))
def _solve(theta0s, data, law, delta, max_iter, rtol):
    return jax.vmap(lambda t: _lm(t, data, law, delta, max_iter, rtol))(theta0s)


@jax.jit
def _predict_mpl(params, lrs, steps, changes):
    return forms.multi_power(params, lrs, steps, changes=changes)


@jax.jit
def _predict_la(params, lrs, steps, decay):
    return forms.lr_annealing(params, lrs, steps, decay=decay)


@functools.partial(jax.jit, static_argnames=("law",))
def _at(theta, data, law):
    return _residuals(theta, data, law)


# ---------------------------------------------------------------- the public API


@dataclasses.dataclass(frozen=True)
class CurveQuality:
    """How well a fit reproduces one curve: R^2, mean and worst relative error."""

    name: str
    r2: float
    mean_rel_error: float
    worst_rel_error: float


@dataclasses.dataclass(frozen=True)
class Fit:
    """A fitted loss law: its parameters, quality on the fitted curves, predictions.

    Attributes:
      law: the law's name (``"multi_power"`` or ``"lr_annealing"``).
      params: the fitted parameters (a :class:`~budgetax.laws.MultiPowerParams` or
        :class:`~budgetax.laws.LrAnnealingParams` of floats).
      objective: the Huber objective at ``params``.
      quality: a :class:`CurveQuality` per fitted curve.
      decay: the LR-annealing law's ``lambda`` (``None`` for the Multi-Power Law).
      iterations: Levenberg-Marquardt iterations of the refinement (``method="lm"``), or
        AdamW steps (``method="paper"``).
    """

    law: str
    params: tuple
    objective: float
    quality: tuple[CurveQuality, ...]
    decay: float | None
    iterations: int
    _cov: np.ndarray = dataclasses.field(repr=False, compare=False)
    _scale: float = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_params(cls, law: str, params, *, decay: float | None = None) -> Fit:
        """A :class:`Fit` holding known parameters (e.g. a paper's), to predict and optimise.

        It has no quality and no interval (:meth:`interval` raises).

        Example:
          >>> from budgetax import laws
          >>> f = laws.Fit.from_params("multi_power", (2.0, 0.5, 0.5, 300.0, 2.0, 0.6, 0.6))
          >>> f.params.B
          300.0
        """
        if law not in _SPECS:
            raise ValueError(f"law must be one of {list(LAWS)}, got {law!r}")
        decay = _law_decay(law, decay)
        spec = _SPECS[law]
        values = tuple(params.values()) if isinstance(params, dict) else tuple(params)
        if isinstance(params, dict) and set(params) != set(spec.fields):
            raise ValueError(f"params must have the keys {list(spec.fields)}, got {list(params)}")
        if len(values) != len(spec.fields):
            raise ValueError(f"params must have {len(spec.fields)} values {list(spec.fields)}, "
                             f"got {len(values)}")
        if isinstance(params, dict):
            values = tuple(params[f] for f in spec.fields)
        values = tuple(float(v) for v in values)
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"params must be finite and > 0, got {values}")
        return cls(law, spec.params_cls(*values), float("nan"), (), decay, 0,
                   np.full((len(values), len(values)), np.nan), float("nan"))

    def _lrs(self, lrs, steps):
        steps = np.asarray(steps)
        if callable(lrs) or (isinstance(lrs, (int, float, np.floating))
                             and not isinstance(lrs, bool)):
            if steps.size == 0:
                raise ValueError("steps must not be empty")
            lrs = schedule_values(lrs, int(np.max(steps)) + 1)
        lrs = np.asarray(lrs, np.float64)
        if lrs.ndim != 1:
            raise ValueError(f"lrs must be a 1-D array of per-update learning rates, "
                             f"got shape {lrs.shape}")
        if steps.dtype.kind not in "iu":
            raise TypeError(f"steps must be integer step indices, got dtype {steps.dtype}")
        if steps.size and (steps.min() < 0 or steps.max() >= lrs.shape[0]):
            raise ValueError(f"steps must index lrs (0 <= step < len(lrs) = {lrs.shape[0]}), "
                             f"got steps from {steps.min()} to {steps.max()}")
        if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
            bad = int(np.flatnonzero(~np.isfinite(lrs) | (lrs < 0))[0])
            raise ValueError(f"lrs must be finite and >= 0, got lrs[{bad}] = {lrs[bad]!r}")
        if steps.size and np.cumsum(lrs)[steps.min()] <= 0:
            raise ValueError(f"the learning rates up to step {int(steps.min())} sum to 0: the "
                             "laws predict the loss only after some training (S1 > 0)")
        return lrs, steps

    def predict(self, lrs, steps) -> np.ndarray:
        """The predicted loss at ``steps`` of the learning-rate sequence ``lrs``.

        Args:
          lrs: ``[T]`` per-update learning rates, or an optax schedule (evaluated on
            ``0..max(steps)``), or a number (a constant rate).
          steps: integer indices into ``lrs`` (any shape).

        Returns:
          A float64 NumPy array shaped like ``steps``.
        """
        lrs, steps = self._lrs(lrs, steps)
        params = np.asarray(self.params, np.float64)
        with jax.enable_x64(True):
            if self.law == "multi_power":
                changes = np.flatnonzero(np.diff(lrs) != 0) + 1
                out = _predict_mpl(params, lrs, steps, changes)
            else:
                out = _predict_la(params, lrs, steps, self.decay)
            return np.asarray(out, np.float64)

    def interval(self, lrs, steps, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """A ``level`` interval ``(low, high)`` around :meth:`predict` (see the module doc)."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        if not np.all(np.isfinite(self._cov)):
            raise ValueError("this Fit has no interval: it holds given parameters "
                             "(Fit.from_params), or laws.fit(method='paper') ended at a "
                             "parameter <= 0; fit curves with laws.fit for one")
        lrs, steps = self._lrs(lrs, steps)
        flat = np.unique(steps.reshape(-1))
        curve = Curve(lrs=np.where(lrs > 0, lrs, 0.0), steps=flat, loss=np.ones(flat.shape))
        with jax.enable_x64(True):
            data = (_curve_data(self.law, curve, None, self.decay),)
            theta = jnp.log(jnp.asarray(np.asarray(self.params, np.float64)))
            _, j, _ = _at(theta, data, self.law)
            j = np.asarray(j)[: flat.shape[0]]
        var = np.einsum("np,pq,nq->n", j, self._cov, j) + self._scale ** 2
        z = stats.norm.ppf(0.5 + level / 2)
        pred = self.predict(lrs, flat)
        lo, hi = pred * np.exp(-z * np.sqrt(var)), pred * np.exp(z * np.sqrt(var))
        idx = np.searchsorted(flat, steps)
        return lo[idx], hi[idx]


def _curve_data(law, curve, coarse_terms, decay):
    if law == "multi_power":
        return _mpl_curve_data(curve, coarse_terms)
    return _la_curve_data(curve, decay)


def _law_decay(law, decay):
    """The LR-annealing law's ``decay`` (default 0.999); refused for the Multi-Power Law."""
    if law != "lr_annealing":
        if decay is not None:
            raise ValueError(f"decay applies to law='lr_annealing' only, got decay={decay!r} "
                             f"with law={law!r}")
        return None
    decay = DECAY if decay is None else decay
    forms.check_decay(decay)
    return float(decay)


def fit(curves: Sequence[Curve], law: str = "multi_power", *, delta: float = HUBER_DELTA,
        decay: float | None = None, max_iter: int = 200, coarse_terms: int | None = None,
        starts=None, method: str = "lm") -> Fit:
    r"""Fits a loss law to ``curves`` (several runs of one model and data).

    Args:
      curves: one or more :class:`Curve`; the Multi-Power Law needs curves with
        different decays (the paper's three: a cosine, a constant and a two-stage drop) to
        tell its decay parameters apart.
      law: ``"multi_power"`` (7 parameters) or ``"lr_annealing"`` (4, with ``decay`` fixed).
      delta: the Huber threshold on log-residuals (the reference's ``1e-3``).
      decay: the LR-annealing law's ``lambda`` (default 0.999; refused for the Multi-Power
        Law).
      max_iter: Levenberg-Marquardt iterations per stage at most (``method="lm"``); AdamW
        steps at most (``method="paper"``, whose paper's value is the default 200).
      coarse_terms: lr changes per curve in the first (multi-start) stage of the
        Multi-Power Law's fit (default 1024); ``0`` fits every start on the exact terms.
        Refused for the LR-annealing law and for ``method="paper"``.
      starts: optional ``[S, P]`` starting parameters (natural scale, all positive) in
        place of the data-built grid (refused for ``method="paper"``).
      method: ``"lm"``, Levenberg-Marquardt in log-parameters from a grid of 8 starts, or
        ``"paper"``, the Multi-Power Law paper's own algorithm (135 fits of a 4-parameter
        model, then AdamW on the 7 parameters), vectorised (the Multi-Power Law only).
        Both minimise the same objective; see the module docstring. The paper's AdamW
        may end at a parameter ``<= 0`` (e.g. ``L0`` on losses heading to 0): that Fit
        predicts, but has no interval.

    Returns:
      A :class:`Fit`.

    Raises:
      ValueError, TypeError: naming the argument: an unknown law or method, no curves, a
        curve that is not a :class:`Curve`, or a non-positive ``delta``.

    Example:
      >>> import numpy as np
      >>> from budgetax import laws
      >>> true = laws.MultiPowerParams(2.0, 0.5, 0.5, 300.0, 2.0, 0.6, 0.6)
      >>> def run(lrs):
      ...     steps = np.arange(49, len(lrs), 50)
      ...     return laws.Curve(lrs, steps, laws.multi_power(true, lrs, steps))
      >>> const = np.full(1000, 1e-3)
      >>> drop = np.where(np.arange(1000) < 500, 1e-3, 3e-4)
      >>> cosine = 1e-4 + 4.5e-4 * (1 + np.cos(np.pi * np.arange(1000) / 1000))
      >>> f = laws.fit([run(const), run(drop), run(cosine)])
      >>> bool(f.quality[0].worst_rel_error < 1e-4)
      True
    """
    if law not in _SPECS:
        raise ValueError(f"law must be one of {list(LAWS)}, got {law!r}")
    method = _validate.one_of("method", method, METHODS)
    if method == "paper":
        if law != "multi_power":
            raise ValueError(f"method='paper' applies to law='multi_power' only, got "
                             f"law={law!r}")
        for name, value in (("coarse_terms", coarse_terms), ("starts", starts)):
            if value is not None:
                raise ValueError(f"{name} applies to method='lm' only, got {name}="
                                 f"{value!r:.80} with method='paper'")
    if isinstance(curves, Curve):
        curves = [curves]
    curves = list(curves)
    if not curves:
        raise ValueError("curves must hold at least one Curve, got none")
    for i, c in enumerate(curves):
        if not isinstance(c, Curve):
            raise TypeError(f"curves[{i}] must be a budgetax.laws.Curve, got {type(c).__name__}")
    if not (isinstance(delta, (int, float)) and delta > 0 and math.isfinite(delta)):
        raise ValueError(f"delta must be a positive number, got {delta!r}")
    decay = _law_decay(law, decay)
    max_iter = _validate.positive_int("max_iter", max_iter)
    if coarse_terms is not None and law != "multi_power":
        raise ValueError(f"coarse_terms applies to law='multi_power' only, got "
                         f"coarse_terms={coarse_terms!r} with law={law!r}")
    coarse_terms = _validate.nonnegative_int(
        "coarse_terms", COARSE_TERMS if coarse_terms is None else coarse_terms)
    spec = _SPECS[law]
    nparams = len(spec.fields)
    points = sum(c.steps.shape[0] for c in curves)
    if points <= nparams:
        raise ValueError(f"curves must hold more logged points than the law has parameters "
                         f"({nparams} for {law!r}), got {points} points in {len(curves)} curves")
    if starts is None:
        starts = _mpl_starts(curves) if law == "multi_power" else _la_starts(curves, decay)
    else:
        starts = np.asarray(starts, np.float64)
        if starts.ndim == 1:
            starts = starts[None]
        if starts.ndim != 2 or starts.shape[1] != nparams:
            raise ValueError(f"starts must have shape [S, {nparams}], got {starts.shape}")
        if not np.all(np.isfinite(starts)) or np.any(starts <= 0):
            raise ValueError(f"starts must be finite and > 0 (the parameters are positive), "
                             f"got {starts.tolist()!r:.200}")
    if method == "paper":
        return _fit_paper(curves, delta, max_iter)
    with jax.enable_x64(True):
        exact = tuple(jax.tree.map(jnp.asarray, _curve_data(law, c, None, decay)) for c in curves)
        theta0 = jnp.log(jnp.asarray(starts))
        coarse_needed = law == "multi_power" and coarse_terms and any(
            int(np.count_nonzero(np.diff(c.lrs))) > coarse_terms for c in curves)
        if coarse_needed:
            coarse = tuple(jax.tree.map(jnp.asarray, _curve_data(law, c, coarse_terms, decay))
                           for c in curves)
            thetas, fs, *_ = _solve(theta0, coarse, law, delta, max_iter, _COARSE_RTOL)
            fs = np.where(np.isfinite(np.asarray(fs)), np.asarray(fs), np.inf)
            theta0 = thetas[int(np.argmin(fs))][None]
        thetas, fs, its, rs, js = _solve(theta0, exact, law, delta, max_iter, _EXACT_RTOL)
        fs = np.where(np.isfinite(np.asarray(fs)), np.asarray(fs), np.inf)
        best = int(np.argmin(fs))
        if not np.isfinite(fs[best]):
            raise ValueError("fit found no finite objective from any start: the curves may be "
                             "far from the law's shape (check their losses and learning rates)")
        r, j = np.asarray(rs[best]), np.asarray(js[best])
        m = np.concatenate([np.asarray(d["mask"]) for d in exact]).astype(bool)
        params = spec.params_cls(*(float(v) for v in np.exp(np.asarray(thetas[best]))))
    cov, scale = _covariance(r, j, m, delta, curves)
    quality = tuple(_quality(c, res) for c, res in zip(curves, _split(r[m], curves)))
    return Fit(law=law, params=params, objective=float(fs[best]), quality=quality,
               decay=decay, iterations=int(its[best]),
               _cov=cov, _scale=scale)


@jax.jit
def _natural_residuals(p, data):
    """The Multi-Power Law's log-residuals at natural parameters ``p`` (any sign)."""
    rs = []
    for d in data:
        pred, _ = _mpl_pred_jac(p, d)
        rs.append(d["logy"] - jnp.log(jnp.maximum(pred, _PRED_FLOOR)))
    return jnp.concatenate(rs)


def _fit_paper(curves, delta, max_steps):
    """``fit(method="paper")``: the paper's two stages (``budgetax.laws._paper``).

    The paper's AdamW does not keep the parameters positive; where it ends at a parameter
    ``<= 0`` the Fit predicts with it but has no interval."""
    from budgetax.laws import _paper

    with jax.enable_x64(True):
        p, _, steps = _paper.fit_paper(curves, delta, max_steps)
        if not np.all(np.isfinite(p)):
            raise ValueError(f"fit(method='paper') ended at parameters that are not finite "
                             f"({p.tolist()}): the curves may be far from the law's shape")
        exact = tuple(jax.tree.map(jnp.asarray, _curve_data("multi_power", c, None, None))
                      for c in curves)
        r = np.asarray(_natural_residuals(jnp.asarray(p), exact))
        m = np.concatenate([np.asarray(d["mask"]) for d in exact]).astype(bool)
        objective = float(_huber(jnp.asarray(r), jnp.asarray(m, r.dtype), delta))
        if np.all(p > 0):
            _, j, _ = _at(jnp.log(jnp.asarray(p)), exact, "multi_power")
            cov, scale = _covariance(r, np.asarray(j), m, delta, curves)
        else:
            cov, scale = np.full((p.shape[0], p.shape[0]), np.nan), float("nan")
    quality = tuple(_quality(c, res) for c, res in zip(curves, _split(r[m], curves)))
    params = forms.MultiPowerParams(*(float(v) for v in p))
    return Fit(law="multi_power", params=params, objective=objective, quality=quality,
               decay=None, iterations=steps, _cov=cov, _scale=scale)


def _split(values, curves):
    out, start = [], 0
    for c in curves:
        out.append(values[start:start + c.steps.shape[0]])
        start += c.steps.shape[0]
    return out


def _covariance(r, j, m, delta, curves):
    """The parameters' covariance (a robust sandwich) and the residual scale (see the module
    docstring); both count the points as ``n_eff`` independent ones."""
    r, j = r[m], j[m]
    w = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
    n, p = j.shape
    # lag-1 autocorrelation of the residuals within curves
    num = den = 0.0
    for seg in _split(r, curves):
        seg = seg - seg.mean()
        num += float(np.sum(seg[1:] * seg[:-1]))
        den += float(np.sum(seg * seg))
    rho = float(np.clip(num / den, 0.0, 0.99)) if den > 0 else 0.0
    n_eff = max(n * (1 - rho) / (1 + rho), p + 1.0)
    scale2 = float(np.sum(r * r) / max(n_eff - p, 1.0))
    bread = np.linalg.pinv((j * w[:, None]).T @ j)
    meat = (j * (w * r)[:, None] ** 2).T @ j
    cov = bread @ meat @ bread * (n / n_eff)
    return cov, math.sqrt(scale2)


def _quality(curve, residuals):
    pred = curve.loss * np.exp(-residuals)  # r = log(loss) - log(pred)
    rel = np.abs(pred - curve.loss) / curve.loss
    ss_tot = float(np.sum((curve.loss - curve.loss.mean()) ** 2))
    r2 = 1 - float(np.sum((curve.loss - pred) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    return CurveQuality(curve.name, r2, float(rel.mean()), float(rel.max()))
