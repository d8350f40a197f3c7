"""Where Kahan summation with a bfloat16 compensation buffer stops recovering small updates.

For weights ``w`` (bfloat16) and a constant update ``u = r |w|`` (float32), apply
``budgetax.kahan_summation`` for as many steps as make the exact drift ``D`` equal 7 bfloat16
ulps of ``w``, and report the fraction of ``D`` that the weights actually moved
(1 = all recovered, 0 = stalled), for ``r = 2**-8 ... 2**-20``. Nearest rounding (no
compensation) moves 0 for every ``r`` below half an ulp (``2**-9`` relative, about).

The compensation ``c`` is itself bfloat16: it grows by ``u`` per step only while ``u`` is
at least half an ulp of ``c``; ``c`` must reach half an ulp of ``w`` (about ``2**-9 |w|``) to
move the weight, so the buffer stalls once ``u`` falls below about ``2**-8`` of that, i.e.
``2**-17 .. 2**-16`` of ``|w|`` depending on where ``w`` sits in its binade.

Usage: python benchmarks/bf16/kahan_limit.py   (writes benchmarks/bf16/kahan_limit.{json,md})
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import budgetax


def recovered(w0: np.ndarray, r: float, ulps: int = 7) -> np.ndarray:
    """Fraction of the exact drift the Kahan-compensated bf16 weights moved, per weight."""
    w = jnp.asarray(w0, jnp.bfloat16)
    wf = np.asarray(w.astype(jnp.float32), np.float64)
    ulp = 2.0 ** (np.floor(np.log2(np.abs(wf))) - 7)  # bfloat16 spacing in w's binade
    u = (r * np.abs(wf)).astype(np.float32)
    steps = int(np.ceil(ulps * ulp.max() / u.min()))
    tx = budgetax.kahan_summation()

    def body(carry, _):
        params, state = carry
        upd, state = tx.update({"w": jnp.asarray(u)}, state, params)
        return (optax.apply_updates(params, upd), state), None

    (params, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))(
        ({"w": w}, tx.init({"w": w})))
    moved = np.asarray(params["w"].astype(jnp.float32), np.float64) - wf
    return moved / (steps * u.astype(np.float64))


def main() -> None:
    out = Path(__file__).parent
    w0 = np.array([1.0, 1.5, 1.9921875, 0.3, -2.75])  # low, middle and top of a binade
    rows = []
    for k in range(8, 21):
        frac = recovered(w0, 2.0 ** -k)
        rows.append({"log2_r": -k, "recovered": [round(float(f), 4) for f in frac]})
        print(-k, np.round(frac, 3))
    meta = {"jax": jax.__version__, "platform": platform.platform(), "weights": w0.tolist(),
            "drift_ulps": 7}
    (out / "kahan_limit.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Kahan summation with a bfloat16 buffer: smallest update it recovers", "",
             "Produced by `python benchmarks/bf16/kahan_limit.py` "
             f"(jax {jax.__version__}). A constant update `u = r |w|` applied for as many steps",
             "as make a 7-ulp drift; the table gives the fraction of that drift the bfloat16",
             "weights moved (1 = recovered, 0 = stalled).", "",
             "| r | " + " | ".join(f"w = {w:g}" for w in w0) + " |",
             "| --- |" + " --- |" * len(w0)]
    for row in rows:
        lines.append(f"| 2^{row['log2_r']} | " + " | ".join(f"{f:.3f}" for f in row["recovered"])
                     + " |")
    (out / "kahan_limit.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
