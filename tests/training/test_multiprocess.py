"""Sweeps across processes on JAX's multi-controller runtime (localhost, CPU devices, gloo)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from budgetax import training
from budgetax.launch import xla_flags
from budgetax.training.sweep.store import Store
from tests import tasks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = ["--task", "tests.tasks:make_task", "--full-budget", "24", "--budgets", "0.5,1",
        "--schedules", "cosine,wsd", "--lrs", "0.05", "--seeds", "0,1,2", "--batch-size", "32",
        "--optimizer", "sgd", "--num-evals", "4", "--no-progress", "--no-plots"]
SPEC = training.SweepSpec(full_budget=24, budgets=(0.5, 1.0), schedules=("cosine", "wsd"),
                          peak_lrs=(0.05,), seeds=(0, 1, 2), batch_size=32, num_evals=4,
                          optimizer=training.OptimizerSpec("sgd", momentum=0.9))


def _env(devices: int | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["XLA_FLAGS"] = xla_flags(devices)
    return env


def _cli(out, *extra, devices=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "budgetax.cli", "sweep", "--out", str(out),
                             *ARGS, *extra], env=_env(devices), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _runs(out):
    with Store(os.path.join(out, "results.sqlite")) as store:
        return store.runs(), store.groups(), store.dump()


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    out = tmp_path_factory.mktemp("mp") / "2x2"
    proc = _cli(out, "--processes", "2", "--devices-per-process", "2")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "| budget | steps | cosine | wsd |" in stdout
    return out


@pytest.mark.slow
def test_two_processes_of_two_devices_equal_one_process(two_by_two, tmp_path):
    runs, groups, _ = _runs(two_by_two)
    assert all(g["devices"] == 4 for g in groups)
    one = tmp_path / "1x1"
    training.sweep(tasks.make_task(), SPEC, str(one), progress=False, devices=None)
    four = tmp_path / "1x4"
    proc = _cli(four, devices=4)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    for other in (one, four):
        ref, ref_groups, _ = _runs(other)
        for a, b in zip(runs, ref, strict=True):
            assert a["run_id"] == b["run_id"] and a["status"] == b["status"] == "done"
            for k in a["eval_history"]:
                np.testing.assert_allclose(a["eval_history"][k], b["eval_history"][k],
                                           rtol=2e-5, atol=1e-6, err_msg=f"{other} {k}")
    assert {g["devices"] for g in _runs(four)[1]} == {4}


def _process_one(launcher_pid: int) -> int | None:
    """The pid of the launcher's child with BUDGETAX_PROCESS_ID=1."""
    out = subprocess.run(["pgrep", "-P", str(launcher_pid)], capture_output=True, text=True)
    for pid in out.stdout.split():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if b"BUDGETAX_PROCESS_ID=1\x00" in f.read():
                    return int(pid)
        except OSError:
            continue
    return None


@pytest.mark.slow
def test_a_killed_process_stops_the_others_and_the_sweep_resumes(two_by_two, tmp_path):
    out = tmp_path / "killed"
    launcher = _cli(out, "--processes", "2", "--devices-per-process", "2")
    start = time.perf_counter()
    # kill process 1 once the first group has a complete checkpoint
    while not glob.glob(str(out / "checkpoints" / "*" / "*.sha256.json")):
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.perf_counter() - start < 300
        time.sleep(0.05)
    victim = _process_one(launcher.pid)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed_at = time.perf_counter()
    _, err = launcher.communicate(timeout=120)
    assert time.perf_counter() - killed_at < 60  # no hang: the other process was stopped
    assert launcher.returncode == 2
    assert "process 1 of 2 was killed by signal 9" in err and "re-run the same command" in err
    left = glob.glob(str(out / "checkpoints" / "*" / "*.sha256.json"))  # a verified one
    resumed = _cli(out, "--processes", "2", "--devices-per-process", "2")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    runs, groups, dump = _runs(out)
    assert dump == _runs(two_by_two)[2]  # every stored run, bit for bit
    if left:  # its group continued from the sharded checkpoint instead of starting again
        assert any(g["resumed"] for g in groups) and "discarding" not in err
    assert not os.path.exists(out / "checkpoints")
