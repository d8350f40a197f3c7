r"""The Multi-Power Law paper's fitting algorithm, vectorised: ``laws.fit(method="paper")``.

The algorithm of the paper's code (``src/fitting.py`` and ``main.py`` of
github.com/thu-yao-01-luo/MultiPowerLaw), in two stages, in float64:

**Stage 1** (``initialize_params``). A line through ``log(loss - min_loss + 0.01)`` against
``log S1`` gives ``A`` and ``alpha``; the 5 x 3 x 3 x 3 = 135 starts are ``L0`` in
``min_loss +- 0.2`` (5 values), ``A`` in ``e^intercept +- 0.1``, ``alpha`` in ``-slope +- 0.1``
(3 each) and ``B`` in ``100, 550, 1000`` times ``3e-4 / peak`` (``peak`` the largest learning
rate of the curves: the paper's 100..1000 on its data, whose peak is 3e-4). From each, the
4-parameter model ``L0 + A S1^-alpha - B (peak - lr[s])`` is fitted to every logged point
(the Huber objective below, on the float64 loss; NaN where the model is not positive) by
SciPy's L-BFGS-B with the paper's options (bounds ``>= 0``, ``ftol`` 1e-9, ``gtol`` 1e-6,
forward-difference gradients with step 1e-8, SciPy's other defaults), and the fit with the
lowest objective is kept (the first of equals). The 135 runs are stepped together through
SciPy's reverse-communication routine, each round evaluating every run's objective and
difference gradient in one jitted call, so each run takes the path ``minimize`` would take
on the same values (where that routine is missing, each run goes through ``minimize``).
BLAS is limited to one thread meanwhile where ``threadpoolctl`` is installed.

**Stage 2** (``mpl_adam_fit``). From ``(L0, A, alpha, B, C = 1, beta = 0.5, gamma = 0.5)``,
PyTorch's AdamW (betas 0.9 / 0.999, eps 1e-8, weight decay 0.01) on the natural parameters,
learning rate 5e-2 for ``L0, A, B, C`` and 5e-3 for ``alpha, beta, gamma``, at most 200
steps, on the objective ``sum Huber_delta(log loss - log max(pred, 1e-10))`` over every logged
point (``delta = 1e-3``; the log of the float32-rounded loss, rounded to float32, as the
paper's float32 loss tensor gives it). Each step evaluates the objective and its gradient at
the current parameters, takes the AdamW step, then stops if ``step > 20`` and the pre-step
objective has not improved on its best for 20 steps, or if the gradient's norm is below
1e-5; otherwise, if the pre-step objective is the lowest so far, the parameters after the
step become the result. The whole loop is one jitted ``lax.while_loop``; the objective and
its exact gradient come from one vectorised pass over the (logged step, lr change) terms.
The learning rates are absolute steps sized for the paper's data (losses near 3, learning
rates near 3e-4), kept as they are on any data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize, stats

from budgetax.laws import fitting
from budgetax.laws.curve import Curve

PAPER_PEAK = 3e-4  # the peak learning rate of the paper's runs (its stage 1 hard-codes it)
B_STARTS = (100.0, 550.0, 1000.0)  # np.linspace(100, 1000, 3), for peak = PAPER_PEAK
LR1, LR2 = 5e-2, 5e-3  # AdamW learning rates: L0, A, B, C / alpha, beta, gamma
MAX_STEPS = 200
GRAD_NORM_THR = 1e-5
LOSS_THR = 0.0
PATIENCE = 20
WEIGHT_DECAY = 0.01
BETAS = (0.9, 0.999)
EPS = 1e-8
# stage 1's L-BFGS-B: the paper's options (maxiter, ftol, gtol, eps) and SciPy's defaults
_LBFGSB = dict(maxiter=100000, maxfun=15000, factr=1e-9 / np.finfo(float).eps, pgtol=1e-6,
               maxcor=10, maxls=20)
_FD_STEP = 1e-8


# ---------------------------------------------------------------- stage 1


def _huber_sum(r, delta):
    a = jnp.abs(r)
    return jnp.sum(jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)), -1)


@jax.jit
def _stage1_value_fd(xs, log_s1, below_peak, logy, delta):
    """The paper's ``loss_fn0`` (Huber of ``log loss - log pred``, NaN where pred <= 0) at
    each row of ``xs`` ``[S, 4]``, and its forward-difference gradient as SciPy's L-BFGS-B
    computes it without one: ``(f(x + h e_i) - f(x)) / ((x_i + h) - x_i)``, ``h = 1e-8``."""
    h = _FD_STEP
    L0, A, alpha, B = (xs[:, i:i + 1] for i in range(4))
    p0 = jnp.exp(-alpha * log_s1)                # S1^-alpha
    pa = jnp.exp(-(alpha + h) * log_s1)
    base = L0 + A * p0 - B * below_peak
    preds = jnp.stack([base, (L0 + h) + A * p0 - B * below_peak,
                       L0 + (A + h) * p0 - B * below_peak, L0 + A * pa - B * below_peak,
                       L0 + A * p0 - (B + h) * below_peak])
    f = _huber_sum(logy - jnp.log(preds), delta)  # [5, S]
    return f[0], ((f[1:] - f[0]) / ((xs + h) - xs).T).T


def stage1_data(curves: Sequence[Curve]):
    """The starts ``[135, 4]`` and the points of stage 1 (all curves' points together)."""
    peak = max(float(c.lrs.max()) for c in curves)
    min_loss = min(float(c.loss.min()) for c in curves)
    s1 = np.concatenate([np.cumsum(c.lrs)[c.steps] for c in curves])
    loss = np.concatenate([c.loss for c in curves])
    lr = np.concatenate([c.lrs[c.steps] for c in curves])
    fit_ = stats.linregress(np.log(s1), np.log(loss - min_loss + 0.01))
    slope, intercept = float(fit_.slope), float(fit_.intercept)
    grids = (np.linspace(min_loss - 0.2, min_loss + 0.2, 5),
             np.linspace(np.exp(intercept) - 0.1, np.exp(intercept) + 0.1, 3),
             np.linspace(-slope - 0.1, -slope + 0.1, 3),
             np.asarray(B_STARTS) * (PAPER_PEAK / peak))
    starts = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 4)
    return starts, (np.log(s1), peak - lr, np.log(loss))


class _Lbfgsb:
    """One L-BFGS-B run as ``scipy.optimize.minimize(method="L-BFGS-B")`` drives it (SciPy's
    reverse-communication ``setulb``, bounds ``[0, inf)``), stepped by the caller so that
    many runs share each batched evaluation."""

    def __init__(self, x0, setulb):
        n = x0.shape[0]
        m = _LBFGSB["maxcor"]
        self.setulb = setulb
        self.x = np.clip(np.asarray(x0, np.float64), 0, np.inf)
        self.f, self.g = 0.0, np.zeros(n)
        self.wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
        self.iwa = np.zeros(3 * n, np.int32)
        self.task = np.zeros(2, np.int32)
        self.ln_task = np.zeros(2, np.int32)
        self.lsave = np.zeros(4, np.int32)
        self.isave = np.zeros(44, np.int32)
        self.dsave = np.zeros(29)
        self.nbd = np.ones(n, np.int32)  # a lower bound only
        self.low = np.zeros(n)
        self.up = np.zeros(n)
        self.iterations = 0
        self.nfev = n + 1  # SciPy evaluates f and its difference gradient at x0 first
        self.evaluated = self.x.copy()
        self.done = False

    def advance(self):
        """Runs until the solver asks for ``f, g`` at ``self.x`` (True) or stops (False)."""
        while True:
            self.g = self.g.astype(np.float64)
            self.setulb(_LBFGSB["maxcor"], self.x, self.low, self.up, self.nbd, self.f,
                        self.g, _LBFGSB["factr"], _LBFGSB["pgtol"], self.wa, self.iwa,
                        self.task, self.lsave, self.isave, self.dsave, _LBFGSB["maxls"],
                        self.ln_task)
            if self.task[0] == 3:  # FG: evaluate at x
                return True
            if self.task[0] != 1:  # converged, stopped or failed
                self.done = True
                return False
            self.iterations += 1  # NEW_X
            if self.iterations >= _LBFGSB["maxiter"]:
                self.task[0], self.task[1] = 5, 504
            elif self.nfev > _LBFGSB["maxfun"]:
                self.task[0], self.task[1] = 5, 502

    def give(self, f, g):
        if not np.array_equal(self.x, self.evaluated):  # SciPy's cache: a new x costs n + 1
            self.nfev += self.x.shape[0] + 1
            self.evaluated = self.x.copy()
        self.f, self.g = float(f), np.asarray(g, np.float64)


def _one_blas_thread():
    """Limits BLAS to one thread where ``threadpoolctl`` is installed: L-BFGS-B's tiny BLAS
    calls run hundreds of times slower on a threaded OpenBLAS beside XLA's threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _setulb():
    """SciPy's L-BFGS-B reverse-communication routine (``None`` where it is not there in the
    form this module drives; then each start runs through ``scipy.optimize.minimize``)."""
    try:
        from scipy.optimize import _lbfgsb
    except ImportError:
        return None
    setulb = getattr(_lbfgsb, "setulb", None)
    return setulb if callable(setulb) else None


def stage1(curves: Sequence[Curve], delta: float):
    """``(L0, A, alpha, B)``: the best of the 135 L-BFGS-B fits of the 4-parameter model."""
    starts, arrays = stage1_data(curves)
    log_s1, below_peak, logy = (jnp.asarray(a) for a in arrays)

    def evaluate(xs):
        f, g = _stage1_value_fd(jnp.asarray(xs), log_s1, below_peak, logy, delta)
        return np.asarray(f), np.asarray(g)

    with np.errstate(invalid="ignore", divide="ignore"), _one_blas_thread():
        fs, xs = _lockstep(starts, evaluate)
    fs = np.where(np.isnan(fs), np.inf, fs)
    best = int(np.argmin(fs))  # the first of the lowest, as the paper's strict '<' keeps
    if not np.isfinite(fs[best]):
        raise ValueError("fit(method='paper') found no finite objective in its first stage: "
                         "the curves may be far from the law's shape")
    return xs[best]


def _lockstep(starts, evaluate):
    """``(f [S], x [S, 4])`` of L-BFGS-B from each start; one batched evaluation per round."""
    setulb = _setulb()
    if setulb is not None:
        try:
            runs = [_Lbfgsb(x0, setulb) for x0 in starts]
            waiting = [i for i, r in enumerate(runs) if r.advance()]
            while waiting:
                f, g = evaluate(np.stack([r.x for r in runs]))  # every row: one compiled shape
                for i in waiting:
                    runs[i].give(f[i], g[i])
                waiting = [i for i in waiting if runs[i].advance()]
            return np.array([r.f for r in runs]), np.stack([r.x for r in runs])
        except (TypeError, ValueError):  # another setulb signature: the public route below
            pass
    fs, xs = [], []
    for x0 in starts:
        def fun(x):
            f, g = evaluate(np.asarray(x)[None])
            return float(f[0]), g[0]

        res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                bounds=[(0, np.inf)] * starts.shape[1],
                                options={"maxiter": _LBFGSB["maxiter"],
                                         # minimize counts one evaluation where SciPy's
                                         # difference gradient counts n + 1
                                         "maxfun": _LBFGSB["maxfun"] // (starts.shape[1] + 1),
                                         "ftol": _LBFGSB["factr"] * np.finfo(float).eps,
                                    "gtol": _LBFGSB["pgtol"], "maxcor": _LBFGSB["maxcor"],
                                    "maxls": _LBFGSB["maxls"]})
        fs.append(res.fun)
        xs.append(res.x)
    return np.asarray(fs, np.float64), np.stack(xs)


# ---------------------------------------------------------------- stage 2


def _log_loss_f32(loss):
    """The log of the float32 loss, rounded to float32 (the paper's float32 loss tensor)."""
    loss32 = np.asarray(loss, np.float32).astype(np.float64)
    return np.log(loss32).astype(np.float32).astype(np.float64)


def stage2_data(curves: Sequence[Curve]):
    out = []
    for c in curves:
        d = fitting._mpl_curve_data(c, None)
        n = c.steps.shape[0]
        d["logy"][:n] = _log_loss_f32(c.loss)
        out.append(jax.tree.map(jnp.asarray, d))
    return tuple(out)


def objective_and_grad(p, data, delta):
    """The paper's objective at the natural parameters ``p`` and its gradient."""
    total = jnp.zeros((), p.dtype)
    grad = jnp.zeros_like(p)
    for d in data:
        pred, jac = fitting._mpl_pred_jac(p, d)
        clamped = jnp.maximum(pred, fitting._PRED_FLOOR)
        r = d["logy"] - jnp.log(clamped)
        a = jnp.abs(r)
        quad = a < delta  # torch's huber_loss: quadratic below delta
        total = total + jnp.sum(d["mask"] * jnp.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta)))
        dh = jnp.where(quad, r, delta * jnp.sign(r))
        # the clamp passes the gradient where pred >= its floor, as torch's clamp does
        dpred = d["mask"] * dh * (-1.0 / clamped) * (pred >= fitting._PRED_FLOOR)
        grad = grad + dpred @ jac
    return total, grad


@jax.jit
def _adamw(p0, data, delta, max_steps):
    """The paper's AdamW loop from ``p0``: ``(best params, best pre-step objective, steps)``."""
    dtype = p0.dtype
    lrs = jnp.asarray([LR1, LR1, LR2, LR1, LR1, LR2, LR2], dtype)  # L0 A alpha B C beta gamma
    beta1, beta2 = BETAS

    def body(s):
        f, g = objective_and_grad(s["p"], data, delta)
        n = s["step"] + 1
        p = s["p"] * (1 - lrs * WEIGHT_DECAY)
        m = s["m"] + (1 - beta1) * (g - s["m"])
        v = s["v"] * beta2 + (1 - beta2) * g * g
        bc1 = 1 - beta1 ** n.astype(dtype)
        bc2 = 1 - beta2 ** n.astype(dtype)
        denom = jnp.sqrt(v) / jnp.sqrt(bc2) + EPS
        p = p + (-(lrs / bc1) * m) / denom
        improved = f < s["min_loss"] - LOSS_THR
        min_loss = jnp.where(improved, f, s["min_loss"])
        no_improve = jnp.where(improved, 0, s["no_improve"] + 1)
        stop = ((s["step"] > PATIENCE) & (no_improve >= PATIENCE)) | (
            jnp.linalg.norm(g) < GRAD_NORM_THR)
        better = ~stop & (f < s["best_loss"])
        return dict(p=p, m=m, v=v, step=n, min_loss=min_loss, no_improve=no_improve,
                    best_loss=jnp.where(better, f, s["best_loss"]),
                    best_p=jnp.where(better, p, s["best_p"]), stop=stop)

    inf = jnp.asarray(jnp.inf, dtype)
    state = dict(p=p0, m=jnp.zeros_like(p0), v=jnp.zeros_like(p0), step=jnp.asarray(0),
                 min_loss=inf, no_improve=jnp.asarray(0), best_loss=inf, best_p=p0,
                 stop=jnp.asarray(False))
    state = jax.lax.while_loop(lambda s: (s["step"] < max_steps) & ~s["stop"], body, state)
    return state["best_p"], state["best_loss"], state["step"]


def fit_paper(curves: Sequence[Curve], delta: float, max_steps: int):
    """Both stages: ``(params [7], best pre-step objective, AdamW steps)`` as NumPy values.

    Runs under ``jax.enable_x64`` (the caller's duty). Where no step improved (the first
    gradient is already below the threshold), the result is stage 2's start.
    """
    L0, A, alpha, B = stage1(curves, delta)
    p0 = jnp.asarray([L0, A, alpha, B, 1.0, 0.5, 0.5], jnp.float64)
    best_p, best_loss, steps = _adamw(p0, stage2_data(curves), delta, max_steps)
    return np.asarray(best_p), float(best_loss), int(steps)

