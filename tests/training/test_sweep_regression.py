"""The regression net of the sweep engine: every strategy stores what it stored before.

The grid, branched, halving and branched+halving sweeps, a sweep extended by an lr
and ``auto_lrs`` (:mod:`tests.training.sweep_regression`) are trained and their
``runs``, ``meta`` and ``groups`` tables compared with the recorded ones: to the bit
in the environment they were recorded in (the same jax, jaxlib, XLA flags and CPU
instruction sets), elsewhere every value but the last bits (XLA may compile
another machine's programs differently).
"""

from __future__ import annotations

import json
import math

import pytest

from tests.training import sweep_regression

with open(sweep_regression.FIXTURE, encoding="utf-8") as _f:
    RECORDED = json.load(_f)


@pytest.fixture(scope="module")
def recorded_now(tmp_path_factory):
    return sweep_regression.record(str(tmp_path_factory.mktemp("net")))


def _close(a, b) -> bool:
    """Equal up to float32 rounding (JSON text and ``float.hex`` strings parsed)."""
    if isinstance(a, str) and isinstance(b, str):
        if a.startswith("sha256:") or a == b:
            return True  # the curves' digest: compared exactly only where the bits are
        try:
            return _close(float.fromhex(a), float.fromhex(b))
        except ValueError:
            pass
        try:
            return _close(json.loads(a), json.loads(b))
        except ValueError:
            return False
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return (a == b or (math.isnan(a) and math.isnan(b))
                or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("name", sorted(RECORDED["sweeps"]))
def test_a_sweep_stores_what_it_stored_before(recorded_now, name):
    want, got = RECORDED["sweeps"][name], recorded_now[name]
    assert got.keys() == want.keys()
    assert got["run_columns"] == want["run_columns"]
    assert [r[0] for r in got["runs"]] == [r[0] for r in want["runs"]]  # the run ids, in order
    assert got["groups"] == want["groups"]
    assert got["compiled_budgets"] == want["compiled_budgets"]
    assert got["meta"] == want["meta"]  # spec, task, metric names, plan: no results
    if sweep_regression.environment() == RECORDED["environment"]:
        for new, old in zip(got["runs"], want["runs"], strict=True):
            assert new == old, f"run {old[0]} differs from its recording"
    else:
        for new, old in zip(got["runs"], want["runs"], strict=True):
            assert _close(new, old), f"run {old[0]} differs from its recording"


def test_the_net_covers_every_strategy_status_and_extension():
    sweeps = RECORDED["sweeps"]
    status = sweeps["grid"]["run_columns"].index("status")
    seen = {r[status] for s in sweeps.values() for r in s["runs"]}
    assert seen == {"done", "diverged", "pruned"}
    strategies = {json.loads(s["meta"]["spec"])["strategy"] for s in sweeps.values()}
    assert strategies == set(sweep_regression.STRATEGIES)
    groups = [g["group_id"] for g in sweeps["extended"]["groups"]]
    assert any("/x1/" in g for g in groups) and any("trunk" in g["group_id"]
                                                      for g in sweeps["branch"]["groups"])
    spec = json.loads(sweeps["auto_lrs"]["meta"]["spec"])
    assert len(spec["peak_lrs"]) > 2  # auto_lrs added lrs
