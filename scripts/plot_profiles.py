"""Plots every budgetax profile (and REX's sampling rate) to docs/profiles.png.

Usage: python scripts/plot_profiles.py [--out docs/profiles.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from budgetax import profiles, schedules  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/profiles.png")
    args = parser.parse_args()

    p = jnp.linspace(0.0, 1.0, 1001)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.get_cmap("tab20").colors
    for i, (name, kw) in enumerate([
        ("constant", {}), ("linear", {}), ("rex", {"beta": 0.5}), ("rex", {"beta": 0.9}),
        ("cosine", {}), ("exponential", {"final": 1e-2}), ("step", {}),
        ("polynomial", {"power": 2.0}), ("wsd", {"decay_fraction": 0.2}),
        ("wsd", {"decay_fraction": 0.2, "decay": "sqrt"}), ("one_cycle", {}),
    ]):
        label = name + ("" if not kw else " (" + ", ".join(f"{k}={v}" for k, v in kw.items()) + ")")
        ax.plot(p, profiles.get(name)(p, **kw), label=label, color=colors[(2 * i) % 20],
                linestyle="-" if i < 10 else "--")
    ax.set_xlabel("progress p = t / T")
    ax.set_ylabel("multiplier of the peak learning rate")
    ax.set_title("budgetax.profiles")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)

    total = 100
    t = jnp.arange(total + 1)
    for k in (1, 10, 25):
        sched = schedules.rex(total, 1.0, warmup_steps=5, sample_every=k)
        ax2.step(t, [float(sched(i)) for i in t], where="post", label=f"rex, sample_every={k}")
    ax2.set_xlabel("step t (T = 100, warmup_steps = 5)")
    ax2.set_title("sampling rate: re-read the profile every k steps")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
