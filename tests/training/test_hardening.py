"""Hostile input and damaged directories: clear errors, never a wrong result."""

from __future__ import annotations

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
    from budgetax.training.sweep import run
    with run._exclusive(sys.argv[1], True):
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
