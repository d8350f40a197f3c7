"""Plain NumPy/SciPy float64 port of the Multi-Power Law (MPL) reference code.

Ported from the public code of Luo, Wen, Hu, et al., "A Multi-Power Law for Loss
Curve Prediction Across Learning Rate Schedules" (ICLR 2025, arXiv:2503.12811):
repository thu-yao-01-luo/MultiPowerLaw, commit
8da9f1902602f3391b971a811e3cc51604541769, MIT licence. Upstream is PyTorch; this
port uses only NumPy and SciPy (``scipy.optimize.minimize`` and
``scipy.stats.linregress``, which upstream calls too), with no code shared with
``budgetax``. Function by function:

* ``cosine_lrs``, ``const_lrs``, ``two_stage_lrs``, ``wsd_lrs``, ``wsdld_lrs``:
  ``src/lr_schedules.py``, unchanged.
* ``TRAIN_SET``, ``TEST_SET``, ``FILES``, ``PARAMS`` and the fitting / optimisation
  constants: ``src/config.py``.
* ``load_curves``: ``src/data_loader.py`` (``load_data``): runs whose last logged
  step is 24000 lose the points at step >= 24000, and the per-step lr sequence is
  rebuilt from the file name (linear warmup from 0 over 2160 steps, peak 3e-4).
* ``mpl_predict``: the prediction of ``src/evaluation.py`` (``evaluate_mpl``) and
  ``src/models.py`` (``MPL.forward``); ``mpl_objective`` / ``mpl_objective_grad``:
  ``MPL.forward`` summed over the training curves (``src/utils.py``,
  ``compute_loss``) and its gradient, written by hand.
* ``evaluate``: the metrics of ``evaluate_mpl`` (sklearn's ``r2_score`` and
  ``mean_squared_error`` written in NumPy).
* ``initialize_params``, ``generate_init_params``, ``mpl_adam_fit``:
  ``src/fitting.py``; ``fit_upstream`` chains them as ``main.py`` does.
  ``mpl_adam_fit`` writes ``torch.optim.AdamW`` (single-tensor CPU path, defaults
  betas (0.9, 0.999), eps 1e-8, weight_decay 0.01) in NumPy.
* ``optimize_lr_schedule`` and its objective ``lr_schedule_objective``:
  ``src/optimization.py`` (``torch.optim.Adam`` written in NumPy, gradient by hand).

Indexing, as upstream writes it. With ``lr_sum = cumsum(lrs)`` (0-based, ``lrs[0]``
the first lr of the run, 0 for the linear warmup) and a logged step ``s``:

    S1(s) = lr_sum[s] = sum_{j=0}^{s} lrs[j]
    LD(s) = sum_{m=1}^{s} (lrs[m] - lrs[m-1])
                          * (1 - (1 + C * lrs[m]^-gamma * (lr_sum[s] - lr_sum[m-1]))^-beta)
    pred(s) = L0 + A * S1(s)^-alpha + B * LD(s)

(``lr_sum[s] - lr_sum[:s]`` is the vector ``sum_{j=m}^{s} lrs[j]`` for m = 1..s,
paired with ``lr_gap[1:s+1]`` and ``lrs[1:s+1]``). Since ``lrs[m] - lrs[m-1] =
-(eta_{m-1} - eta_m)``, ``+ B * LD`` is the paper's ``- B * sum_k (eta_{k-1} - eta_k)
G(eta_k^-gamma S_k(t))`` with ``G(x) = 1 - (C x + 1)^-beta`` and ``S_k(t) =
sum_{j=k}^{t} eta_j``, term for term, with ``eta_k = lrs[k]``. Two differences from
the paper's formula: (1) upstream's ``S1`` also counts ``lrs[0]`` (the paper's
``S1(t)`` starts at j = 1); the two agree whenever ``lrs[0] = 0``, which holds for
every rebuilt schedule (``np.linspace(0, peak, 2160)`` starts at 0); (2) upstream runs
the sum over the whole sequence, warmup included, where the lr rises, so each warmup
step adds a negative "drop" (raises the prediction); the paper's form starts the
sum after the warmup with the warmup area folded into ``S1``.

Dtypes: ``MPL.forward`` sees the loss as a float32 tensor (``preprocess_data``), so
``log(loss)`` is a float32 log of the float32-rounded loss, promoted to float64 when
``log(pred)`` (float64) is subtracted; the port takes ``log`` in float64 of the
float32 value and rounds it to float32 (torch's float32 ``log`` is within 1 ulp of
that). ``evaluate_mpl`` and ``initialize_params`` use the float64 loss.
"""

from __future__ import annotations

import os
import time
from itertools import product

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber
from scipy.stats import linregress

# ------------------------------------------------------------------ config.py

TRAIN_SET = [
    "cosine_24000.csv",
    "constant_24000.csv",
    "wsdcon_9.csv",
]

TEST_SET = [
    "constant_72000.csv",
    "cosine_72000.csv",
    "wsd_20000_24000.csv",
    "wsdld_20000_24000.csv",
    "wsdcon_3.csv",
    "wsdcon_18.csv",
]

FILES = TRAIN_SET + TEST_SET

# [L0, A, alpha, B, C, beta, gamma]
PARAMS = {
    "25": [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257],
    "100": [2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644],
    "400": [2.37474466, 0.65421216, 0.42878731, 523.42464371, 2.02462735, 0.59350493, 0.63472457],
}

PARAM_NAMES = ("L0", "A", "alpha", "B", "C", "beta", "gamma")

HUBER_DELTA = 0.001

OPT_TOTAL_STEPS = 24000
OPT_PEAK_LR = 3e-4
OPT_MIN_LR = 1e-10
OPT_LR = 5e-9
OPT_MAX_STEPS = 10000
OPT_WARMUP = 2160

FIT_LR1 = 5e-2
FIT_LR2 = 5e-3
FIT_MAX_STEPS = 200
FIT_GRAD_NORM_THR = 1e-5
FIT_LOSS_THR = 0.0
FIT_PATIENCE = 20

# ------------------------------------------------------------ lr_schedules.py


def cosine_lrs(warmup, total, peak_lr, end_lr, const_warmup):
    step = np.arange(total)[warmup:]
    warmup_lrs = np.linspace(0, peak_lr, warmup) if not const_warmup else np.full(warmup, peak_lr)
    lrs = end_lr + 0.5 * (peak_lr - end_lr) * (
        1 + np.cos(np.pi * (step - warmup) / (total - warmup)))
    return np.concatenate((warmup_lrs, lrs))


def const_lrs(warmup, total, lr, const_warmup):
    warmup_lrs = np.linspace(0, lr, warmup) if not const_warmup else np.full(warmup, lr)
    return np.concatenate((warmup_lrs, np.full(total - warmup, lr)))


def two_stage_lrs(warmup, total, lr_a, lr_b, stage_a, const_warmup):
    warmup_lrs = np.linspace(0, lr_a, warmup) if not const_warmup else np.full(warmup, lr_a)
    stage_a_lrs = np.full(stage_a - warmup, lr_a)
    stage_b_lrs = np.full(total - stage_a, lr_b)
    return np.concatenate((warmup_lrs, stage_a_lrs, stage_b_lrs))


def wsd_lrs(warmup, total, decay, peak_lr, end_lr, const_warmup):
    step = np.arange(total)[decay:]
    warmup_lrs = np.linspace(0, peak_lr, warmup) if not const_warmup else np.full(warmup, peak_lr)
    decay_lrs = (peak_lr ** ((total - step) / (total - decay))
                 * end_lr ** ((step - decay) / (total - decay)))
    return np.concatenate((warmup_lrs, np.full(decay - warmup, peak_lr), decay_lrs))


def wsdld_lrs(warmup, total, decay, peak_lr, end_lr, const_warmup):
    step = np.arange(total)[decay:]
    warmup_lrs = np.linspace(0, peak_lr, warmup) if not const_warmup else np.full(warmup, peak_lr)
    decay_lrs = (peak_lr * (1 - (step - decay) / (total - decay))
                 + end_lr * (step - decay) / (total - decay))
    return np.concatenate((warmup_lrs, np.full(decay - warmup, peak_lr), decay_lrs))


# ------------------------------------------------------------- data_loader.py


def load_curves(folder):
    """``load_data``: {file_name: {"step": int, "loss": float64, "lrs": float64}}."""
    data = {}
    for file_name in FILES:
        file_data = np.genfromtxt(os.path.join(folder, file_name), delimiter=",", skip_header=1)
        data[file_name] = {
            "step": file_data[:, 0].astype(int),
            "loss": file_data[:, 2].astype(float),
        }
        if data[file_name]["step"].max() == 24000:
            mask = data[file_name]["step"] < 24000
            data[file_name]["step"] = data[file_name]["step"][mask]
            data[file_name]["loss"] = data[file_name]["loss"][mask]

        if "cosine" in file_name:
            total = int(file_name.split("_")[1].split(".")[0])
            data[file_name]["lrs"] = cosine_lrs(2160, total, 3e-4, 3e-5, False)
        elif "constant" in file_name:
            total = int(file_name.split("_")[1].split(".")[0])
            data[file_name]["lrs"] = const_lrs(2160, total, 3e-4, False)
        elif "wsdcon" in file_name:
            total = 16000
            lr_b = int(file_name.split("_")[1].split(".")[0]) * 1e-5
            data[file_name]["lrs"] = two_stage_lrs(2160, total, 3e-4, lr_b, 8000, False)
        elif "wsdld" in file_name:
            data[file_name]["lrs"] = wsdld_lrs(2160, 24000, 20000, 3e-4, 3e-5, False)
        elif "wsd" in file_name:
            data[file_name]["lrs"] = wsd_lrs(2160, 24000, 20000, 3e-4, 3e-5, False)
        else:
            raise ValueError(f"Invalid learning rate type for file: {file_name}")
    return data


# ------------------------------------------------------- the law and its loss


def _law(params, lrs, step, grad):
    """pred at the logged steps (and d pred / d params, shape (n, 7), if grad)."""
    L0, A, alpha, B, C, beta, gamma = (float(p) for p in params)
    lrs = np.asarray(lrs, dtype=np.float64)
    step = np.asarray(step, dtype=np.int64)
    lr_sum = np.cumsum(lrs)
    lr_gap = np.zeros(len(lrs))
    lr_gap[1:] = np.diff(lrs)
    S1 = lr_sum[step]
    lr_pow = lrs[1:] ** (-gamma)          # lrs[1:s+1] ** (-gamma), elementwise
    c_pow = C * lr_pow                    # upstream's left-to-right C * lrs**-gamma * (...)
    gap = lr_gap[1:]
    log_lr = np.log(lrs[1:]) if grad else None
    LD = np.zeros(len(step))
    dLD = np.zeros((len(step), 3)) if grad else None   # d LD / d (C, beta, gamma)
    for i, s in enumerate(step):
        if s > 0:
            D = lr_sum[s] - lr_sum[:s]
            u = 1 + c_pow[:s] * D
            u_pow = u ** (-beta)
            LD[i] = np.sum(gap[:s] * (1 - u_pow))
            if grad:
                w = gap[:s] * beta * (u_pow / u) * lr_pow[:s] * D   # d/dC of each term
                dLD[i, 0] = np.sum(w)
                dLD[i, 1] = np.sum(gap[:s] * u_pow * np.log(u))
                dLD[i, 2] = -C * np.sum(w * log_lr[:s])
    S1_pow = S1 ** (-alpha)
    pred = L0 + A * S1_pow + B * LD
    if not grad:
        return pred
    J = np.empty((len(step), 7))
    J[:, 0] = 1.0
    J[:, 1] = S1_pow
    J[:, 2] = -A * S1_pow * np.log(S1)
    J[:, 3] = LD
    J[:, 4:] = B * dLD
    return pred, J


def mpl_predict(params, lrs, step):
    """The MPL prediction at the logged ``step`` indices of the per-step ``lrs``.

    Written as ``evaluate_mpl`` computes ``pred``: one sum per logged step ``s`` over
    m = 1..s (see the module docstring for the indexing and signs).
    """
    return _law(params, lrs, step, grad=False)


def _torch_huber(delta, r):
    return np.where(np.abs(r) < delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def _log_loss_f32(loss):
    """torch.log of the float32 loss tensor: float32 result, promoted later."""
    loss32 = np.asarray(loss, dtype=np.float32)
    return np.log(loss32.astype(np.float64)).astype(np.float32).astype(np.float64)


def _curve_objective(params, curve, grad):
    out = _law(params, curve["lrs"], curve["step"], grad)
    pred, J = out if grad else (out, None)
    clamped = np.maximum(pred, 1e-10)                    # pred.clamp(min=1e-10)
    r = _log_loss_f32(curve["loss"]) - np.log(clamped)
    value = float(np.sum(_torch_huber(HUBER_DELTA, r)))
    if not grad:
        return value
    dh = np.where(np.abs(r) < HUBER_DELTA, r, HUBER_DELTA * np.sign(r))
    dpred = dh * (-1.0 / clamped) * (pred >= 1e-10)      # clamp passes grad where pred >= min
    return value, dpred @ J


def mpl_objective(params, curves, train_set):
    """``compute_loss``'s total: ``MPL.forward`` (Huber, delta 1e-3) summed over train_set."""
    return float(sum(_curve_objective(params, curves[f], grad=False) for f in train_set))


def mpl_objective_grad(params, curves, train_set):
    """Gradient of ``mpl_objective`` w.r.t. (L0, A, alpha, B, C, beta, gamma)."""
    return _objective_and_grad(params, curves, train_set)[1]


def _objective_and_grad(params, curves, train_set):
    value, g = 0.0, np.zeros(7)
    for f in train_set:
        v, gf = _curve_objective(params, curves[f], grad=True)
        value += v
        g = g + gf
    return value, g


# ------------------------------------------------------------- evaluation.py

METRICS = ("huber", "mse", "rmse", "mae", "prede", "worste", "r2")


def evaluate(params, curves, names):
    """``evaluate_mpl``'s metrics per curve (float64 loss) and their plain averages.

    Returns {"curves": {name: {metric: value}}, "average": {metric: value}} with the
    metrics huber (scipy.special.huber, delta 1e-3, summed), mse, rmse, mae, prede
    (mean |pred - loss| / loss), worste (max of the same) and r2 (sklearn's
    ``r2_score``: 1 - SS_res / SS_tot).
    """
    per = {}
    for name in names:
        c = curves[name]
        loss = np.asarray(c["loss"], dtype=np.float64)
        pred = mpl_predict(params, c["lrs"], c["step"])
        r = np.log(loss) - np.log(pred)
        mse = float(np.mean((loss - pred) ** 2))
        ss_res = np.sum((loss - pred) ** 2)
        ss_tot = np.sum((loss - np.mean(loss)) ** 2)
        per[name] = {
            "huber": float(huber(HUBER_DELTA, r).sum()),
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "mae": float(np.mean(np.abs(loss - pred))),
            "prede": float(np.mean(np.abs(loss - pred) / loss)),
            "worste": float(np.max(np.abs(loss - pred) / loss)),
            "r2": float(1 - ss_res / ss_tot),
            "pred": pred,
        }
    average = {m: float(np.mean([per[n][m] for n in names])) for m in METRICS}
    return {"curves": per, "average": average}


# ---------------------------------------------------------------- fitting.py


def initialize_params(curves, train_set):
    """``initialize_params``: linregress, then the best of 5x3x3x3 L-BFGS-B fits of
    L0 + A * S1^-alpha - B * (3e-4 - lr[step]) (float64 loss). Returns [L0, A, alpha, B]."""
    min_loss = min(curves[f]["loss"].min() for f in train_set)
    log_y_list, log_x_list = [], []
    for f in train_set:
        log_y_list.append(np.log(curves[f]["loss"] - min_loss + 0.01))
        log_x_list.append(np.log(np.cumsum(curves[f]["lrs"])[curves[f]["step"]]))
    log_y = np.concatenate(log_y_list)
    log_x = np.concatenate(log_x_list)
    slope, intercept, _, _, _ = linregress(log_x, log_y)

    L0_init_set = np.linspace(min_loss - 0.2, min_loss + 0.2, 5)
    A_init_set = np.linspace(np.exp(intercept) - 0.1, np.exp(intercept) + 0.1, 3)
    alpha_init_set = np.linspace(-slope - 0.1, -slope + 0.1, 3)
    B_init_set = np.linspace(100, 1000, 3)

    def loss_fn0(params):
        L0, A, alpha, B = params
        total_loss = 0
        for f in train_set:
            lr = curves[f]["lrs"]
            step = curves[f]["step"]
            pred = L0 + A * np.cumsum(lr)[step] ** (-alpha) - B * (3e-4 - lr[step])
            r = np.log(curves[f]["loss"]) - np.log(pred)
            total_loss += huber(HUBER_DELTA, r).sum()
        return total_loss

    best_loss, best_params = float("inf"), None
    with np.errstate(invalid="ignore", divide="ignore"):
        for init_param in product(L0_init_set, A_init_set, alpha_init_set, B_init_set):
            res = minimize(
                loss_fn0, init_param, method="L-BFGS-B", bounds=[(0, np.inf)] * 4,
                options={"maxiter": 100000, "ftol": 1e-9, "gtol": 1e-6, "eps": 1e-8},
            )
            if res.fun < best_loss:
                best_loss = res.fun
                best_params = res.x
    return best_params


def generate_init_params(init_param):
    """``generate_init_params``: [(L0, A, alpha, B, C=1.0, beta=0.5, gamma=0.5)]."""
    L0, A, alpha, B = init_param
    return list(product([L0], [A], [alpha], [B], [1.0], [0.5], [0.5]))


def mpl_adam_fit(curves, train_set, init_params, lr1=FIT_LR1, lr2=FIT_LR2,
                 max_steps=FIT_MAX_STEPS, grad_norm_thr=FIT_GRAD_NORM_THR,
                 loss_thr=FIT_LOSS_THR, patience=FIT_PATIENCE, weight_decay=0.01,
                 betas=(0.9, 0.999), eps=1e-8, history=None):
    """``mpl_adam_fit``: AdamW from each start, returns (best_params, best_loss).

    Parameter groups: lr1 for L0, A, B, C and lr2 for alpha, beta, gamma. Each
    iteration, in upstream's order: the objective and its gradient at the current
    params p_k (``compute_loss`` returns this pre-step value), the AdamW step to
    p_{k+1}; the patience check, then the grad-norm check (norm of the gradient at
    p_k), then, if the pre-step loss beats the best so far, best_params = p_{k+1}
    (read after ``optimizer.step()``), so ``best_loss`` is the objective one step
    before ``best_params``. ``history``, if a list, receives the pre-step losses.
    Upstream's test_set, fig_folder and eval_interval only feed logging and plots.
    """
    beta1, beta2 = betas
    lrs = np.array([lr1, lr1, lr2, lr1, lr1, lr2, lr2])   # order L0, A, alpha, B, C, beta, gamma
    best_params, best_loss = None, float("inf")
    for init_param in init_params:
        p = np.array(init_param, dtype=np.float64)
        exp_avg = np.zeros(7)
        exp_avg_sq = np.zeros(7)
        n_steps = 0
        min_loss, steps_no_improve = float("inf"), 0
        for step in range(max_steps):
            total_loss, grad = _objective_and_grad(p, curves, train_set)
            # torch.optim.AdamW, _single_tensor_adamw
            n_steps += 1
            p = p * (1 - lrs * weight_decay)
            exp_avg = exp_avg + (1 - beta1) * (grad - exp_avg)            # lerp_, weight < 0.5
            exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad   # mul_, addcmul_
            bias_correction1 = 1 - beta1**n_steps
            bias_correction2 = 1 - beta2**n_steps
            step_size = lrs / bias_correction1
            denom = np.sqrt(exp_avg_sq) / np.sqrt(bias_correction2) + eps
            p = p + (-step_size * exp_avg) / denom                        # addcdiv_
            if history is not None:
                history.append(total_loss)

            if total_loss < min_loss - loss_thr:
                min_loss = total_loss
                steps_no_improve = 0
            else:
                steps_no_improve += 1
            if step > patience and steps_no_improve >= patience:
                break
            if np.linalg.norm(grad) < grad_norm_thr:
                break
            if total_loss < best_loss:
                best_loss = total_loss
                best_params = [float(v) for v in p]
    return best_params, best_loss


def fit_upstream(curves, train_set=TRAIN_SET):
    """``main.py``'s fit: initialize_params -> generate_init_params -> mpl_adam_fit.

    Returns (params, objective, seconds): the fitted [L0, A, alpha, B, C, beta,
    gamma], ``mpl_objective`` at those params (upstream's best_loss is the value one
    AdamW step earlier, see ``mpl_adam_fit``), and the wall-clock seconds.
    """
    t0 = time.perf_counter()
    init_param = initialize_params(curves, train_set)
    init_params = generate_init_params(init_param)
    params, _ = mpl_adam_fit(curves, train_set, init_params)
    seconds = time.perf_counter() - t0
    return params, mpl_objective(params, curves, train_set), seconds


# ----------------------------------------------------------- optimization.py


def lr_schedule_objective(params, delta, peak_lr=OPT_PEAK_LR, min_lr=OPT_MIN_LR,
                          warmup=OPT_WARMUP):
    """The final-loss prediction ``pred`` of ``optimize_lr_schedule`` and its gradient
    w.r.t. delta, as torch's autograd gives it (clamp passes the gradient where the
    input is >= the bound).

    eta = clamp(peak - cumsum(clamp(delta, 0)), min_lr); lr_sum = [0, warmup_bias +
    cumsum(eta)] with warmup_bias = 0.5 * peak * warmup; LD = sum_k delta_k * (1 - (1 +
    C * eta_k^-gamma * (lr_sum[-1] - lr_sum[k]))^-beta); pred = L0 + A * lr_sum[-1]^-alpha
    - B * LD. Because lr_sum[0] is 0 rather than warmup_bias, the k = 0 term's area
    also counts the warmup area; for k >= 1 it is sum_{j >= k} eta_j.
    """
    L0, A, alpha, B, C, beta, gamma = (float(p) for p in params)
    delta = np.asarray(delta, dtype=np.float64)
    warmup_bias = 0.5 * peak_lr * warmup
    e0 = peak_lr - np.cumsum(np.maximum(delta, 0))
    eta = np.maximum(e0, min_lr)
    lr_sum = np.concatenate([[0.0], np.cumsum(eta) + warmup_bias])
    T = lr_sum[-1]
    D = T - lr_sum[:-1]
    eta_pow = eta ** (-gamma)
    u = 1 + C * eta_pow * D
    u_pow = u ** (-beta)
    G = 1 - u_pow
    LD = np.sum(delta * G)
    pred = L0 + A * T ** (-alpha) - B * LD

    w = delta * beta * (u_pow / u) * C                  # d LD / d u_k, times C
    dLD_deta = -w * gamma * eta ** (-gamma - 1) * D + np.cumsum(w * eta_pow)
    g_eta = -A * alpha * T ** (-alpha - 1) - B * dLD_deta
    g_e0 = g_eta * (e0 >= min_lr)
    g_c = -np.cumsum(g_e0[::-1])[::-1]
    g_delta = -B * G + g_c * (delta >= 0)
    return float(pred), g_delta


def optimize_lr_schedule(best_params, total_steps=OPT_TOTAL_STEPS, peak_lr=OPT_PEAK_LR,
                         min_lr=OPT_MIN_LR, lr=OPT_LR, max_steps=OPT_MAX_STEPS,
                         warmup=OPT_WARMUP, betas=(0.9, 0.999), eps=1e-8):
    """``optimize_lr_schedule``: torch.optim.Adam on delta (zeros, length total - warmup).

    Each iteration: pred and its gradient (``lr_schedule_objective``), the Adam step,
    then delta clamped to [0, peak], eta = peak - cumsum(delta), delta zeroed where
    eta <= min_lr. Returns (opt_lr, losses): the last eta (computed before that
    zeroing, as upstream saves it) over steps warmup..total-1 and the pre-step pred
    of every iteration. Upstream returns opt_lr only (and logs, saves and plots).
    """
    beta1, beta2 = betas
    delta = np.zeros(total_steps - warmup)
    exp_avg = np.zeros_like(delta)
    exp_avg_sq = np.zeros_like(delta)
    losses = []
    opt_lr = None
    for opt_step in range(max_steps):
        pred, grad = lr_schedule_objective(best_params, delta, peak_lr, min_lr, warmup)
        n = opt_step + 1
        exp_avg = exp_avg + (1 - beta1) * (grad - exp_avg)
        exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
        step_size = lr / (1 - beta1**n)
        denom = np.sqrt(exp_avg_sq) / np.sqrt(1 - beta2**n) + eps
        delta = delta + (-step_size * exp_avg) / denom

        delta = np.clip(delta, 0, peak_lr)
        eta = peak_lr - np.cumsum(delta)
        delta[eta <= min_lr] = 0
        opt_lr = eta
        losses.append(pred)
    return opt_lr, losses
