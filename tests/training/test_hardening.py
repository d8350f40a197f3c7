"""Hostile input and damaged directories: clear errors, never a wrong result."""

from __future__ import annotations

import dataclasses
import errno
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from budgetax import _io, cli, training
from budgetax.training.sweep import checkpoints, execute, run
from budgetax.training.sweep.store import Store, StoreError
from tests import tasks
from tests.conftest import interrupt

OPT = training.OptimizerSpec("sgd", momentum=0.9)
SPEC = training.SweepSpec(full_budget=16, budgets=(1.0,), schedules=("cosine", "wsd"),
                          peak_lrs=(0.05,), seeds=(0, 1), batch_size=32, num_evals=4,
                          optimizer=OPT)


@pytest.fixture(scope="module")
def task():
    return tasks.make_task()


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory):
    """The uninterrupted sweep's stored runs."""
    d = tmp_path_factory.mktemp("reference")
    training.sweep(task, SPEC, str(d), progress=False)
    with Store(d / "results.sqlite") as store:
        return store.dump()


def _interrupt_after_first_checkpoint(task, out, monkeypatch):
    interrupt(monkeypatch, checkpoints.Checkpoints, "save",
              lambda: training.sweep(task, SPEC, str(out), progress=False), after=True)


def test_a_corrupted_checkpoint_is_discarded_and_its_group_retrained(task, reference, tmp_path,
                                                                     monkeypatch):
    _interrupt_after_first_checkpoint(task, tmp_path, monkeypatch)
    files = [f for f in glob.glob(str(tmp_path / "checkpoints" / "*" / "1" / "**"),
                                  recursive=True) if os.path.isfile(f)]
    largest = max(files, key=os.path.getsize)
    data = bytearray(open(largest, "rb").read())
    for i in range(64):
        data[(len(data) // 2 + i) % len(data)] ^= 0xA5
    open(largest, "wb").write(bytes(data))
    with pytest.warns(checkpoints.CheckpointWarning, match="differ from their checksums"):
        result = training.sweep(task, SPEC, str(tmp_path), progress=False)
    assert not any(g["resumed"] for g in result.groups)  # trained again, not resumed
    with Store(tmp_path / "results.sqlite") as store:
        assert store.dump() == reference


def test_an_intact_checkpoint_is_resumed_to_the_same_results(task, reference, tmp_path,
                                                             monkeypatch):
    _interrupt_after_first_checkpoint(task, tmp_path, monkeypatch)
    result = training.sweep(task, SPEC, str(tmp_path), progress=False)
    assert all(g["resumed"] for g in result.groups)
    with Store(tmp_path / "results.sqlite") as store:
        assert store.dump() == reference


def test_a_checkpoint_without_its_checksums_is_not_used(task, reference, tmp_path, monkeypatch):
    _interrupt_after_first_checkpoint(task, tmp_path, monkeypatch)
    for f in glob.glob(str(tmp_path / "checkpoints" / "*" / "*.sha256.json")):
        os.remove(f)  # as if killed between orbax's save and the checksum file
    with pytest.warns(checkpoints.CheckpointWarning, match="no checksum file"):
        training.sweep(task, SPEC, str(tmp_path), progress=False)
    with Store(tmp_path / "results.sqlite") as store:
        assert store.dump() == reference


def test_a_checkpoint_that_does_not_fit_the_plan_is_discarded(task, reference, tmp_path,
                                                               monkeypatch):
    """Saved with other arrays (another device count, another version's layout): the
    group is trained again, never restored into the wrong shapes."""
    tree = execute.History.tree
    monkeypatch.setattr(execute.History, "tree", lambda self, to_runs: {
        **tree(self, to_runs), "other": to_runs(np.zeros(len(self.train["loss"]), np.int32))})
    _interrupt_after_first_checkpoint(task, tmp_path, monkeypatch)
    monkeypatch.setattr(execute.History, "tree", tree)
    with pytest.warns(checkpoints.CheckpointWarning, match="does not fit the sweep's plan"):
        result = training.sweep(task, SPEC, str(tmp_path), progress=False)
    assert not any(g["resumed"] for g in result.groups)
    with Store(tmp_path / "results.sqlite") as store:
        assert store.dump() == reference


def test_seeds_outside_the_key_range_are_refused():
    with pytest.raises(ValueError, match=r"seeds must be in \[0, 2\*\*32\).*4294967296"):
        training.SweepSpec(seeds=(0, 2**32))
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\).*-1"):
        training.train(tasks.make_task(), budget=2, batch_size=4, seed=-1)


def test_cli_seed_overflow_is_one_clear_line(tmp_path, capsys):
    rc = cli.main(["sweep", "--seeds", "18446744073709551616", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "seeds must be in [0, 2**32)" in err and err.count("\n") == 1


@pytest.mark.parametrize("kw, match", [
    (dict(peak_lrs=(0.01, 0.0100000001)), r"peak_lrs \[0.01, 0.0100000001\] all print as 0.01"),
    (dict(full_budget=10, budgets=(0.5, 0.51)), r"budgets \[0.5, 0.51\] are all 5 steps"),
])
def test_grid_values_that_name_the_same_run_are_refused_at_planning(kw, match):
    with pytest.raises(ValueError, match=match):
        training.SweepSpec(**kw)


@pytest.mark.parametrize("make", [
    lambda: training.OptimizerSpec(demon="False"),
    lambda: training.OptimizerSpec(nesterov="False"),
    lambda: training.SweepSpec(diagnostics="no"),
    lambda: training.sweep(tasks.make_task(), SPEC, "/tmp/unused", resume="no"),
    lambda: training.train(tasks.make_task(), budget=2, batch_size=4, diagnostics="no"),
])
def test_booleans_are_bool_only(make):
    with pytest.raises(TypeError, match="must be a bool(| or a positive int .examples.), "
                                        "got '"):
        make()


def test_a_blown_up_run_is_diverged_and_the_rule_can_be_turned_off(task):
    adam = training.OptimizerSpec("adam", "constant", peak_lr=10.0)
    kw = dict(budget=20, batch_size=32, num_evals=1, diagnostics=False)
    h = training.train(task, optimizer=adam, **kw)
    first = h.train["loss"][0]
    assert h.diverged and h.train["loss"][h.diverged_step] > 100 * first
    assert np.isfinite(h.train["loss"][:h.diverged_step + 1]).all()  # finite, but blown up
    off = training.train(task, optimizer=adam, divergence_factor=None, **kw)
    assert not off.diverged and np.nanmax(off.train["loss"]) > 100 * first
    with pytest.raises(ValueError, match="divergence_factor must be in"):
        training.train(task, optimizer=adam, divergence_factor=0.5, **kw)


LOCK_HOLDER = textwrap.dedent("""
    import sys
    from budgetax.training.sweep import lock
    with lock.exclusive(sys.argv[1], True):
        print("locked", flush=True)
        sys.stdin.read()
""")


def test_a_second_sweep_on_a_busy_directory_exits_2_naming_the_holder(task, reference,
                                                                      tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(run.SweepBusyError, match=f"in use by another sweep \\(pid "
                                                     f"{holder.pid} on "):
            training.sweep(task, SPEC, str(tmp_path), progress=False)
        rc = cli.main(["sweep", "--task", "tests.tasks:make_task", "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc == 2 and "in use by another sweep" in err and err.count("\n") == 1
        assert not os.path.exists(tmp_path / "results.sqlite")  # nothing touched
    finally:
        holder.kill()  # SIGKILL: the lock it held is released by the operating system
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    training.sweep(task, SPEC, str(tmp_path), progress=False)  # the stale lock is no obstacle
    with Store(tmp_path / "results.sqlite") as store:
        assert store.dump() == reference


def _cli_error(capsys, *argv) -> str:
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1, err
    return err


def test_damaged_stores_and_directories_end_in_one_error_line(task, tmp_path, capsys):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "results.sqlite").write_bytes(os.urandom(4096))
    for cmd in (["report", str(garbage)], ["sweep", "--task", "tests.tasks:make_task",
                                           "--out", str(garbage)]):
        err = _cli_error(capsys, *cmd)
        assert f"{garbage / 'results.sqlite'} is not a readable budgetax results store" in err
    with pytest.raises(StoreError):
        Store(garbage / "results.sqlite")
    # a store cut in half
    good = tmp_path / "good"
    training.sweep(task, SPEC, str(good), progress=False)
    cut = tmp_path / "cut"
    cut.mkdir()
    blob = (good / "results.sqlite").read_bytes()
    (cut / "results.sqlite").write_bytes(blob[:len(blob) // 2])
    assert "is not a readable budgetax results store" in _cli_error(capsys, "report", str(cut))
    # an empty store (killed before its plan was written)
    empty = tmp_path / "empty"
    empty.mkdir()
    Store(empty / "results.sqlite").close()
    assert "holds no sweep yet" in _cli_error(capsys, "report", str(empty))
    # an output path that is a file
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file" in _cli_error(capsys, "sweep", "--task", "tests.tasks:make_task",
                                     "--out", str(afile))
    assert "no sweep in" in _cli_error(capsys, "report", str(tmp_path / "missing"))


def test_a_full_disk_is_one_line_and_a_report_can_go_elsewhere(task, tmp_path, capsys,
                                                               monkeypatch):
    out = tmp_path / "sweep"
    training.sweep(task, SPEC, str(out), progress=False)

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("budgetax.report.atomic_write_text", full)
    err = _cli_error(capsys, "report", str(out), "--no-plots")
    assert "No space left on device" in err and "results.md" in err and "free some space" in err
    monkeypatch.setattr("budgetax.report.atomic_write_text", _io.atomic_write_text)
    elsewhere = tmp_path / "elsewhere"
    assert cli.main(["report", str(out), "--no-plots", "--out", str(elsewhere)]) == 0
    text = capsys.readouterr().out
    assert (elsewhere / "results.md").exists() and str(elsewhere / "results.md") in text
    assert not (out / "results.md").exists()


def test_ctrl_c_says_how_to_resume(tmp_path):
    code = textwrap.dedent("""
        import signal, sys
        # as on a terminal: a background job (e.g. CI started with `&`) inherits SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from budgetax import cli
        sys.argv = ["budgetax", "sweep", "--task", "tests.tasks:make_task", "--out",
                    sys.argv[1], "--full-budget", "10000000", "--budgets", "1", "--lrs", "0.01",
                    "--seeds", "0", "--schedules", "linear", "--batch-size", "32",
                    "--no-progress"]
        cli.entry()  # what the budgetax console script runs
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))
    start = time.perf_counter()
    while not os.path.exists(tmp_path / "s" / "results.sqlite"):
        assert time.perf_counter() - start < 120 and proc.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)
    for _ in range(5):  # 10 million steps: it cannot finish; interrupt until it stops
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        proc.kill()
        pytest.fail("Ctrl-C did not stop the sweep")
    assert proc.returncode == 130, err
    assert err.strip().endswith("interrupted; re-run the same command to resume")
    assert "Traceback" not in err


# ---------------------------------------------------------------- what a sweep writes when
def _bytes(out) -> bytes:
    return (out / "results.sqlite").read_bytes()


def test_a_refused_command_leaves_the_store_byte_identical(task, tmp_path, monkeypatch):
    """More lrs with another task (the extension used to be written before the task was
    checked), fewer runs per program than the stored plan holds, or a halving plan that
    cannot prune: refused, and the store is as it was."""
    out = tmp_path / "sweep"
    _interrupt_after_first_checkpoint(task, out, monkeypatch)  # one group in flight
    before = _bytes(out)
    other = dataclasses.replace(task, config={**task.config, "n_train": 601})
    more = training.SweepSpec(**{**_fields(SPEC), "peak_lrs": (0.05, 0.1)})
    with pytest.raises(training.SweepSpecMismatchError, match="different task"):
        training.sweep(other, more, str(out), progress=False)
    assert _bytes(out) == before
    with pytest.raises(ValueError, match=r"max_runs_per_program=1 is less than the 4 runs"):
        training.sweep(task, more, str(out), progress=False, max_runs_per_program=1)
    assert _bytes(out) == before
    halving = training.SweepSpec(**{**_fields(SPEC), "strategy": "halving",
                                    "peak_lrs": (0.05, 0.1)})
    with pytest.raises(training.SweepSpecMismatchError, match="strategy"):
        training.sweep(task, halving, str(out), progress=False)
    assert _bytes(out) == before
    # the original command still resumes, to the uninterrupted results
    training.sweep(task, SPEC, str(out), progress=False, max_runs_per_program=4)


def _fields(spec) -> dict:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def test_halving_prunes_when_programs_are_small_or_refuses(task, tmp_path):
    """Halving prunes among a schedule's lrs: its runs are planned whole into programs, and a
    limit below one schedule's runs is refused before anything is written."""
    spec = training.SweepSpec(**{**_fields(SPEC), "strategy": "halving", "seeds": (0,),
                                 "peak_lrs": (0.01, 0.05, 0.2), "prune_at": (0.5,)})
    with pytest.raises(ValueError, match=r"max_runs_per_program=1 is too small for successive "
                                         r"halving.*3 runs.*>= 3"):
        training.sweep(task, spec, str(tmp_path / "one"), progress=False,
                       max_runs_per_program=1)
    assert not (tmp_path / "one" / "results.sqlite").exists()
    res = training.sweep(task, spec, str(tmp_path / "three"), progress=False,
                         max_runs_per_program=3)
    assert len(res.groups) == 2  # one program per schedule
    for s in spec.schedules:
        status = [r["status"] for r in res.runs if r["schedule"] == s]
        assert status.count("pruned") == 2, status


def test_a_planted_checkpoint_of_another_sweep_is_discarded(task, reference, tmp_path,
                                                            monkeypatch):
    """A valid checkpoint, checksums and all, made by a sweep with other lrs and placed in
    this sweep's group folder: discarded with a warning, the store equal to the
    uninterrupted one."""
    import shutil

    other = tmp_path / "other"
    spec = training.SweepSpec(**{**_fields(SPEC), "peak_lrs": (0.001,)})
    interrupt(monkeypatch, checkpoints.Checkpoints, "save",
              lambda: training.sweep(task, spec, str(other), progress=False), after=True)
    out = tmp_path / "sweep"
    shutil.copytree(other / "checkpoints", out / "checkpoints")
    with pytest.warns(checkpoints.CheckpointWarning, match="belongs to another sweep or group "
                                                          r"\(its runs differs"):
        result = training.sweep(task, SPEC, str(out), progress=False)
    assert not any(g["resumed"] for g in result.groups)
    with Store(out / "results.sqlite") as store:
        assert store.dump() == reference


def test_a_checkpoint_of_the_same_runs_with_other_settings_is_discarded(task, reference,
                                                                        tmp_path, monkeypatch):
    import shutil

    other = tmp_path / "other"
    spec = training.SweepSpec(**{**_fields(SPEC), "optimizer": training.OptimizerSpec(
        "sgd", momentum=0.5)})
    interrupt(monkeypatch, checkpoints.Checkpoints, "save",
              lambda: training.sweep(task, spec, str(other), progress=False), after=True)
    out = tmp_path / "sweep"
    shutil.copytree(other / "checkpoints", out / "checkpoints")
    with pytest.warns(checkpoints.CheckpointWarning, match=r"its sweep differs"):
        training.sweep(task, SPEC, str(out), progress=False)
    with Store(out / "results.sqlite") as store:
        assert store.dump() == reference


@pytest.mark.parametrize("devices, error, match", [
    ([], ValueError, r"devices must hold at least one jax device, got \[\]"),
    ([5], TypeError, r"devices must be jax devices .*got 5"),
    ("cpu", TypeError, r"devices must be a sequence of jax devices .*got 'cpu'"),
], ids=["empty", "int", "str"])
def test_bad_devices_are_refused(task, tmp_path, devices, error, match):
    with pytest.raises(error, match=match):
        training.sweep(task, SPEC, str(tmp_path), devices=devices, progress=False)
    assert not (tmp_path / "results.sqlite").exists()
    with pytest.raises(error, match=match):  # the same rule for train_many, before training
        training.train_many(task, budget=10, seeds=(0,), peak_lrs=(0.1,), batch_size=60,
                            devices=devices)


def test_unusable_output_directories_are_one_line(tmp_path, capsys):
    lock = tmp_path / "lockdir"
    (lock / run.LOCK_NAME).mkdir(parents=True)
    assert "has a directory where its lock file" in _cli_error(
        capsys, "sweep", "--task", "tests.tasks:make_task", "--out", str(lock))
    err = _cli_error(capsys, "sweep", "--task", "tests.tasks:make_task", "--out", "/proc/nope")
    assert "/proc/nope" in err


def _full_disk_error(capsys, out, extra=()) -> str:
    return _cli_error(capsys, "sweep", "--task", "tests.tasks:make_task", "--out", str(out),
                      "--full-budget", "16", "--budgets", "1", "--schedules", "cosine",
                      "--lrs", "0.05", "--seeds", "0", "--batch-size", "32", "--num-evals",
                      "4", "--no-plots", *extra)


def test_a_full_disk_at_a_checkpoint_is_one_line_naming_the_path_and_space(tmp_path, capsys,
                                                                            monkeypatch):
    """The free space is checked before orbax writes: one line naming the checkpoint's path
    and the space it needs; the store stays consistent (the run is pending, resumable)."""
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 0))
    err = _full_disk_error(capsys, tmp_path / "s")
    assert "No space left on device for a checkpoint (it needs about" in err
    assert str(tmp_path / "s" / "checkpoints") in err and "free some space" in err
    with Store(tmp_path / "s" / "results.sqlite") as store:
        assert {r["status"] for r in store.runs()} == {"pending"}


def test_what_orbax_raises_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    """The space check passed, then the disk filled: orbax's RESOURCE_EXHAUSTED is one line."""
    import orbax.checkpoint as ocp

    def full(self, *a, **k):
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "carry.00000/0.0" in OCDBT '
                         'database: No space left on device [os_error_code=\'28\']')

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    err = _full_disk_error(capsys, tmp_path / "s")
    assert "No space left on device while writing a checkpoint" in err and "free some" in err


def test_a_real_full_disk_is_one_line_when_a_small_filesystem_can_be_mounted(tmp_path):
    """On a 400 kB tmpfs (where this machine lets the suite mount one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here (the fault is injected above)")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "budgetax.cli", "sweep", "--task", "tests.tasks:make_task",
             "--out", str(mnt / "s"), "--full-budget", "16", "--budgets", "1",
             "--schedules", "cosine", "--lrs", "0.05", "--seeds", "0", "--batch-size", "32",
             "--num-evals", "4", "--no-plots", "--no-progress"],
            capture_output=True, text=True, cwd=os.getcwd(), timeout=300)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "No space left on device" in proc.stderr


def test_a_store_deleted_under_a_running_sweep_is_one_line(task, tmp_path, capsys,
                                                           monkeypatch):
    from budgetax.training.sweep import store as store_

    original = store_.Store.complete_group

    def delete_first(self, *a, **k):
        os.remove(self.path)
        return original(self, *a, **k)

    monkeypatch.setattr(store_.Store, "complete_group", delete_first)
    err = _cli_error(capsys, "sweep", "--task", "tests.tasks:make_task", "--out",
                     str(tmp_path / "s"), "--full-budget", "16", "--budgets", "1",
                     "--schedules", "cosine", "--lrs", "0.05", "--seeds", "0",
                     "--batch-size", "32", "--no-plots")
    assert "results.sqlite was deleted or moved while the sweep ran" in err
    assert "run the same command again" in err
