"""The Multi-Power Law paper's released loss curves as ``budgetax.laws.Curve``s.

The per-update learning rates are rebuilt from each file's name as the paper's code
does (``src/data_loader.py`` and ``src/lr_schedules.py`` of
github.com/thu-yao-01-luo/MultiPowerLaw, commit 8da9f1902602f3391b971a811e3cc51604541769):
linear warmup from 0 over 2160 updates to 3e-4, then the schedule. Runs of 24000 updates
drop their logged points at step >= 24000, as there. ``data/README.md`` has the source.
"""

from __future__ import annotations

import pathlib

import numpy as np

from budgetax import laws

DATA = pathlib.Path(__file__).parent / "data"
WARMUP, PEAK, END = 2160, 3e-4, 3e-5
FIT_SET = ("cosine_24000", "constant_24000", "wsdcon_9")
TEST_SET = ("constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000",
            "wsdcon_3", "wsdcon_18")
# the paper's fitted parameters (upstream src/config.py), L0, A, alpha, B, C, beta, gamma
UPSTREAM_PARAMS = {
    "25": (3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257),
    "100": (2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644),
}
# the paper's README: PredE and WorstE over the six predicted curves
UPSTREAM_README = {"25": (0.00110, 0.00409), "100": (0.00142, 0.00583)}


def lr_sequence(name: str) -> np.ndarray:
    """The per-update learning rates of the released run ``name`` (e.g. ``"wsdcon_9"``)."""
    kind, _, arg = name.partition("_")
    if kind in ("cosine", "constant"):
        total = int(arg)
    elif kind == "wsdcon":
        total = 16000
    else:
        total = 24000
    t = np.arange(total)
    lrs = np.full(total, PEAK)
    lrs[:WARMUP] = np.linspace(0, PEAK, WARMUP)
    if kind == "cosine":
        s = t[WARMUP:]
        frac = (s - WARMUP) / (total - WARMUP)
        lrs[WARMUP:] = END + 0.5 * (PEAK - END) * (1 + np.cos(np.pi * frac))
    elif kind == "wsdcon":
        lrs[8000:] = int(arg) * 1e-5
    elif kind in ("wsd", "wsdld"):
        s = t[20000:]
        frac = (s - 20000) / (total - 20000)
        lrs[20000:] = (PEAK ** (1 - frac) * END ** frac if kind == "wsd"
                       else PEAK * (1 - frac) + END * frac)
    elif kind != "constant":
        raise ValueError(f"unknown released run {name!r}")
    return lrs


def load(size: str, name: str) -> laws.Curve:
    """The released curve ``name`` of the ``size`` ("25" or "100") model."""
    path = DATA / f"csv_{size}" / f"{name}.csv"
    table = np.genfromtxt(path, delimiter=",", skip_header=1)
    steps, loss = table[:, 0].astype(np.int64), table[:, 2]
    if steps.max() == 24000:
        keep = steps < 24000
        steps, loss = steps[keep], loss[keep]
    return laws.Curve(lrs=lr_sequence(name), steps=steps, loss=loss, name=name)


def metrics(pred: np.ndarray, loss: np.ndarray) -> dict:
    """Per-curve metrics as the paper's ``src/evaluation.py`` computes them."""
    rel = np.abs(pred - loss) / loss
    ss_tot = float(np.sum((loss - loss.mean()) ** 2))
    return {"r2": 1 - float(np.sum((loss - pred) ** 2)) / ss_tot,
            "mae": float(np.mean(np.abs(loss - pred))),
            "rmse": float(np.sqrt(np.mean((loss - pred) ** 2))),
            "prede": float(rel.mean()), "worste": float(rel.max())}
