"""The training core's two forms of a piece: one scan, or one program per step (CPU, conv)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from budgetax import training
from budgetax.training import core, evaluation
from tests.conftest import core_traces


class _TinyCNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 3, kernel_size=(3, 3), rngs=rngs)
        self.out = nnx.Linear(2 * 2 * 3, 3, rngs=rngs)

    def __call__(self, x):
        h = nnx.avg_pool(nnx.relu(self.conv(x)), window_shape=(2, 2), strides=(2, 2))
        return self.out(h.reshape(h.shape[0], -1))


def _loss(model, batch):
    logits = model(batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def _data(shape):
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(40, *shape)).astype(np.float32),
            "y": rng.integers(0, 3, 40).astype(np.int32)}


@pytest.fixture(scope="module")
def cnn_task():
    return training.Task(name="tiny-cnn", model=lambda rngs: _TinyCNN(rngs), loss=_loss,
                         train_data=_data((4, 4, 1)), eval_data=_data((4, 4, 1)))


@pytest.fixture(scope="module")
def mlp_task():
    return training.Task(name="tiny-mlp", model=lambda rngs: nnx.Linear(4, 3, rngs=rngs),
                         loss=_loss, train_data=_data((4,)))


SPEC = training.OptimizerSpec("adam", "linear", peak_lr=1e-2)
CPU = core.make_mesh(jax.devices("cpu")[:1])


def _prog(task, budget, **kw):
    return core.make_program(task, budget, SPEC, batch_size=8, num_evals=2,
                             diagnostics=False, **kw)


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_conv_models_step_on_cpu_and_every_program_of_a_task_chooses_alike(cnn_task, mlp_task):
    # the choice depends on the model (and backend), not on the budget or the schedules
    cnn = [_prog(cnn_task, b, schedules=s) for b in (6, 11)
           for s in (None, ("linear", "cosine"))]
    assert [core.dispatches_steps(p, CPU) for p in cnn] == [True] * 4
    mlp = [_prog(mlp_task, b, schedules=s) for b in (6, 11) for s in (None, ("linear",))]
    assert [core.dispatches_steps(p, CPU) for p in mlp] == [False] * 4


def test_convolution_found_inside_nested_jaxprs():
    def f(w, x):
        conv = lambda c, _: (jax.lax.conv(c, w, (1, 1), "SAME"), None)
        return jax.lax.scan(conv, x, None, length=2)[0].sum()

    w, x = jnp.ones((1, 1, 3, 3)), jnp.ones((1, 1, 4, 4))
    assert core._has_convolution(jax.make_jaxpr(jax.grad(f))(w, x).jaxpr)
    assert not core._has_convolution(jax.make_jaxpr(lambda a: jnp.sin(a) @ a)(w[0, 0]).jaxpr)


def _run(prog, stops=None, *, scan=False, monkeypatch=None):
    if scan:
        monkeypatch.setattr(core, "dispatches_steps", lambda p, m: False)
    try:
        runs = core.Runs(prog, CPU, [0, 1], [1e-2, 3e-2], [0, 0], stops=stops)
        parts = list(runs.segments())
    finally:
        if scan:
            monkeypatch.undo()
    train = {k: np.concatenate([p[2][k] for p in parts], axis=1) for k in runs.names["train"]}
    return parts[-1][1], train, [p[3] for p in parts]


def test_stepped_runs_are_bit_identical_wherever_they_stop(cnn_task):
    prog = _prog(cnn_task, 11)
    assert core.dispatches_steps(prog, CPU)
    with core_traces() as traced:
        carry, train, evals = _run(prog)
        assert traced["n"] == 1  # one step program
        carry2, train2, _ = _run(prog)
        assert traced["n"] == 1  # and it is reused
    assert _leaves_equal(carry, carry2)
    for stops in ([1, 2, 7, 11], [5, 11], [3, 4, 5, 6, 10, 11]):
        other, other_train, _ = _run(prog, stops)
        assert _leaves_equal(carry, other), stops
        assert _leaves_equal(train, other_train), stops
    assert train["loss"].shape == (2, 11) and np.isfinite(train["loss"]).all()
    assert len(evals) == 2 and np.isfinite(evals[-1]["test_loss"]).all()


def test_resumed_stepped_run_is_bit_identical(cnn_task):
    prog = _prog(cnn_task, 9)
    carry, train, _ = _run(prog)
    first = core.Runs(prog, CPU, [0, 1], [1e-2, 3e-2], [0, 0], stops=[4])
    *_, (_, mid, head, _) = first.segments()
    rest = core.Runs(prog, CPU, [0, 1], [1e-2, 3e-2], [0, 0], stops=[9], start=4)
    *_, (_, end, tail, _) = rest.segments(core.take_runs(mid, [0, 1], CPU, 2))
    assert _leaves_equal(carry, end)
    assert _leaves_equal(train, {k: np.concatenate([head[k], tail[k]], 1) for k in head})


def test_stepped_and_scanned_programs_train_the_same_runs(cnn_task, monkeypatch):
    # different compiled bodies (last bits may differ), the same training
    prog = _prog(cnn_task, 7)
    carry, train, evals = _run(prog)
    scarry, strain, sevals = _run(prog, scan=True, monkeypatch=monkeypatch)
    assert core.dispatches_steps(prog, CPU)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(scarry), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-4, atol=1e-5)
    for k in train:
        np.testing.assert_allclose(train[k], strain[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(evals[-1]["test_loss"], sevals[-1]["test_loss"], rtol=1e-4)


def test_stepped_evaluation_matches_the_compiled_one(cnn_task):
    # the same procedure (batches of 16, a last one of 8), one call per run and batch
    prog = core.make_program(cnn_task, 3, SPEC, batch_size=8, num_evals=1, diagnostics=True,
                             eval_batch_size=16)
    carry, _, evals = _run(prog)
    _, eval_dev, diag_dev = core.device_data(cnn_task, CPU, prog.diagnostics)
    compiled = core.to_host(evaluation.evaluate_program(prog, CPU)(carry.states, eval_dev,
                                                                   diag_dev))
    assert set(evals[-1]) == set(compiled) >= {"test_loss", "train_loss", "full_grad_norm"}
    for k, v in evals[-1].items():
        np.testing.assert_allclose(v, compiled[k][:2], rtol=1e-5, err_msg=k)
