r"""The task interface: what a user brings to budgetax (model, loss, data, evaluation).

A :class:`Task` is plain Python: a Flax NNX model factory, a loss, training data
and, optionally, held-out data and an evaluation function. Everything about the
optimizer (:class:`budgetax.training.OptimizerSpec`) and the budget comes from
budgetax. :func:`budgetax.training.train`, :func:`budgetax.training.train_many`
and :func:`budgetax.training.sweep` all take a task, and so does
``budgetax sweep --task package.module:factory`` or ``--task path/to/file.py:factory``
(``factory()`` returns the task; :func:`load_task`).
The built-in models and datasets are tasks made with the same interface
(:func:`budgetax.training.preset`).

The pieces:

- ``model``: ``rngs -> nnx.Module``, called as ``model(rngs)``, or as
  ``model(rngs=rngs)`` when its signature has a keyword ``rngs`` (Flax's
  ``__init__(self, *, rngs)``). A factory that also accepts ``dtype`` and
  ``param_dtype`` keywords (as Flax layers do) gets the precision of the
  optimizer spec (``bfloat16`` activations and parameters for ``precision="bf16*"``);
  any other factory has its floating-point parameters cast to the spec's
  parameter dtype after initialisation.
- ``loss``: ``(model, batch) -> loss`` or ``-> (loss, metrics)``, the mean over
  the batch (a float scalar) and a dict of scalar batch means (e.g. accuracy).
  It is differentiated with respect to the model's ``nnx.Param`` state and
  called with the model in training mode (``model.train()``: dropout on).
- ``train_data``: either an in-memory pytree of arrays with a leading example
  axis (kept on the device; batches are drawn inside the compiled loop) or a
  random-access source for data that does not fit: an object with ``len()``
  and either ``gather(indices) -> batch pytree`` or ``__getitem__(i) -> record
  pytree`` (``__getitems__`` is used when present), such as a TFDS / grain
  ``data_source``. Batches are sampled from a per-epoch permutation drawn from
  the run's key, identically in both modes. JAX computes in 32 bits unless
  ``jax_enable_x64`` is set: 64-bit arrays (NumPy's default ``int64`` labels,
  ``float64`` inputs) are trained as ``int32``/``float32``, which a warning says
  when the task is made (a source: when its first batch is checked), and integers
  that do not fit in 32 bits are refused.
- ``eval_data`` (optional): held-out data, in either form. Metrics on it are
  reported as ``test_<name>``.
- ``eval_metrics`` (optional): ``(model, batch) -> {name: scalar batch mean}``,
  called in eval mode (``model.eval()``); without it, the loss's metrics are used.
  ``loss`` is always reported. Batch means are combined into dataset means
  weighted by batch size, so metrics must be means over the examples of a batch.
- ``name`` and ``config`` (JSON-friendly) identify the task in a results store:
  resuming a sweep into a directory that holds another task is refused.
- ``report_metric`` / ``higher_is_better``: the metric of the results table
  (default ``test_accuracy`` if the task reports accuracy, else ``test_loss``).

Example:
  >>> import jax.numpy as jnp, numpy as np, optax
  >>> from flax import nnx
  >>> from budgetax import training
  >>> x = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
  >>> y = x @ np.array([1.0, -2.0, 0.5], np.float32)
  >>> def loss(model, batch):
  ...     err = model(batch["x"])[:, 0] - batch["y"]
  ...     return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}
  >>> task = training.Task(name="linreg", model=lambda rngs: nnx.Linear(3, 1, rngs=rngs),
  ...                      loss=loss, train_data={"x": x, "y": y})
  >>> task.metric_names()
  {'train': ('loss', 'mae'), 'eval': ('train_loss', 'train_mae', 'full_grad_norm')}
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from budgetax.training.task_data import (
    _check_arrays,
    _narrowed,
    _say_narrowed,
    gather,
    is_source,
    source_len,
)
from budgetax.training.task_errors import TaskError, describe, raised_at, user_error

__all__ = ["Task", "TaskError", "gather", "is_source", "source_len"]


def _signature(fn) -> inspect.Signature | None:
    """The call signature of a model factory (a class: its ``__init__`` without ``self``)."""
    try:
        if isinstance(fn, functools.partial) and isinstance(fn.func, type):
            inner = _signature(fn.func)
            if inner is None:
                return None

            def stub(*args, **kwargs):
                pass

            stub.__signature__ = inner
            return inspect.signature(functools.partial(stub, *fn.args, **fn.keywords))
        if isinstance(fn, type):
            params = list(inspect.signature(fn.__init__).parameters.values())[1:]
            return inspect.Signature(params)
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _rngs_by_keyword(sig: inspect.Signature | None) -> bool:
    """Whether a factory takes ``rngs=`` (Flax's ``__init__(self, *, rngs)``) or positionally."""
    if sig is None:
        return False
    params = sig.parameters
    kinds = {p.kind for p in params.values()}
    rngs = params.get("rngs")
    if rngs is not None and rngs.kind in (inspect.Parameter.KEYWORD_ONLY,
                                          inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return True
    positional = {inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL}
    if kinds & positional:
        return False
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return True
    raise TaskError(f"model must take the random streams, as model(rngs) or "
                    f"model(*, rngs) (Flax's convention), got a factory with signature {sig}")


def _json(name: str, value) -> Any:
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be JSON-serialisable, got {value!r} ({err})") from None


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """What a user trains: a model factory, a loss, data and (optionally) evaluation.

    Attributes:
      name: identifies the task in results stores and reports.
      model: ``rngs -> nnx.Module`` (optionally accepting ``dtype=``/``param_dtype=``).
      loss: ``(model, batch) -> loss`` or ``(loss, {name: scalar})``: batch means.
      train_data: a pytree of arrays ``[N, ...]`` or a random-access source.
      eval_data: held-out data (same forms), or ``None``.
      eval_metrics: ``(model, batch) -> {name: scalar}`` in eval mode, or ``None``
        (then the loss's own metrics are reported).
      config: JSON-friendly settings that identify the task together with ``name``.
      report_metric: the results table's metric, e.g. ``"test_accuracy"`` (default:
        ``test_accuracy`` if reported, else ``test_loss``, else ``train_loss``).
      higher_is_better: the direction of ``report_metric`` (default: lower for names
        ending in ``loss``, higher otherwise).

    Tasks compare and hash by identity: the compiled programs of a task are cached
    for that task object.
    """

    name: str
    model: Callable[..., nnx.Module]
    loss: Callable[..., Any]
    train_data: Any
    eval_data: Any = None
    eval_metrics: Callable[..., Mapping] | None = None
    config: Mapping = dataclasses.field(default_factory=dict)
    report_metric: str | None = None
    higher_is_better: bool | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        for field in ("model", "loss"):
            if not callable(getattr(self, field)):
                raise TypeError(f"{field} must be callable, got {getattr(self, field)!r}")
        self._model_signature  # noqa: B018 - a factory that cannot take the rngs, refused now
        if self.eval_metrics is not None and not callable(self.eval_metrics):
            raise TypeError(f"eval_metrics must be callable or None, got {self.eval_metrics!r}")
        if not isinstance(self.config, Mapping):
            raise TypeError(f"config must be a dict of JSON-friendly settings that identify "
                            f"the task ({{}} for none), got {describe(self.config)}")
        object.__setattr__(self, "config", _json("config", dict(self.config)))
        if self.report_metric is not None and not isinstance(self.report_metric, str):
            raise TypeError(f"report_metric must be a str or None, got {self.report_metric!r}")
        if self.higher_is_better is not None and not isinstance(self.higher_is_better, bool):
            raise TypeError(f"higher_is_better must be a bool or None, "
                            f"got {self.higher_is_better!r}")
        narrowed = []
        for field in ("train_data", "eval_data"):
            data = getattr(self, field)
            if data is None and field == "eval_data":
                continue
            if isinstance(data, str | bytes | os.PathLike):
                raise TypeError(
                    f"{field} must be a pytree of arrays with a leading example axis or a "
                    f"random-access source, got the path-like {data!r}: load the file first, "
                    f"e.g. {field}=dict(np.load({str(data)!r}))")
            if is_source(data):
                if len(data) < 1:
                    raise ValueError(f"{field} has no examples")
            else:
                _check_arrays(field, data)
                narrowed += _narrowed(field, data)
        _say_narrowed(self.name, narrowed)

    # ------------------------------------------------------------ properties
    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return source_len(self.train_data)

    @property
    def streamed(self) -> bool:
        """Whether the training data is a random-access source (streamed from the host)."""
        return is_source(self.train_data)

    def identity(self) -> dict:
        """``{"name", "config"}``: what identifies the task in a results store."""
        return {"name": self.name, "config": dict(self.config)}

    @functools.cached_property
    def _model_signature(self) -> tuple[bool, bool]:
        """``(rngs by keyword, accepts dtype/param_dtype)``, from the factory's signature."""
        sig = _signature(self.model)
        by_keyword = _rngs_by_keyword(sig)
        accepts = sig is not None and (
            "param_dtype" in sig.parameters
            or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()))
        return by_keyword, accepts

    @property
    def _accepts_dtype(self) -> bool:
        return self._model_signature[1]

    def _call_model(self, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
        """``model(rngs=rngs, **kwargs)`` or ``model(rngs, **kwargs)``, as the factory asks."""
        by_keyword = self._model_signature[0]
        try:
            return self.model(rngs=rngs, **kwargs) if by_keyword else self.model(rngs, **kwargs)
        except TaskError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the user's code, with context
            name = getattr(self.model, "__qualname__", None) or type(self.model).__name__
            extra = "".join(f", {k}={_dtype_name(v)}" for k, v in kwargs.items())
            call = f"{name}(rngs=rngs{extra})" if by_keyword else f"{name}(rngs{extra})"
            hint = None
            if raised_at(err) is None and isinstance(err, TypeError):
                hint = ("the model factory is called with the random streams only, as "
                        "model(rngs) or model(*, rngs); bind its other arguments with "
                        "functools.partial or a lambda")
            raise TaskError(user_error(f"task {self.name!r}: the model factory, {call},",
                                       err, hint)) from err

    def build_model(self, rngs: nnx.Rngs, precision: str = "float32") -> nnx.Module:
        """The model for ``precision`` (``"float32"`` or a ``"bf16*"`` mode).

        The factory is called as ``model(rngs=rngs)`` when its signature names a
        keyword ``rngs`` (Flax's ``__init__(self, *, rngs)``), else as ``model(rngs)``.
        A ``bf16*`` model is initialised in float32 from the same ``rngs`` and rounded
        to bfloat16, so a seed gives every precision mode the same initial weights (to
        bfloat16's rounding) and precision modes can be compared paired by seed. A
        model that accepts ``dtype``/``param_dtype`` is built with bfloat16
        activations and its state takes the dtypes of a bfloat16 build; otherwise its
        floating parameters are cast to bfloat16.
        """
        if precision == "float32":
            model = self._call_model(rngs)
        elif self._accepts_dtype:
            bf16 = jnp.bfloat16
            target = nnx.state(nnx.eval_shape(
                lambda: self._call_model(nnx.Rngs(0), dtype=bf16, param_dtype=bf16)))
            model = self._call_model(rngs, dtype=bf16, param_dtype=jnp.float32)
            graphdef, state = nnx.split(model)
            state = jax.tree.map(lambda a, t: a.astype(t.dtype), state, target)
            model = nnx.merge(graphdef, state)
        else:
            model = self._call_model(rngs)
            if not isinstance(model, nnx.Module):
                raise TaskError(f"task {self.name!r}: the model factory must return an "
                                f"nnx.Module, got {describe(model)}")
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            params = jax.tree.map(
                lambda a: a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating)
                else a, params)
            model = nnx.merge(graphdef, params, rest)
        if not isinstance(model, nnx.Module):
            raise TaskError(f"task {self.name!r}: the model factory must return an "
                            f"nnx.Module, got {describe(model)}")
        return model

    def sample_batch(self, size: int = 2) -> Any:
        """A small batch of training examples (for shape checks)."""
        n = min(size, self.num_train)
        return gather(self.train_data, np.arange(n))

    def _check_source(self, field: str) -> None:
        """A source gives one example per index, up to its ``len()``: checked on 3 indices."""
        data = getattr(self, field)
        n = len(data)
        for idx in sorted({0, min(1, n - 1), n - 1}), [n - 1]:
            try:
                batch = gather(data, np.asarray(idx))
            except Exception as err:  # noqa: BLE001 - the user's source, with context
                raise TaskError(user_error(
                    f"{field}: len() is {n}, but gathering examples {idx}", err,
                    f"len({field}) must be the number of examples it can give")) from err
            sizes = {jax.tree_util.keystr(p) or "[]": (a.shape[0] if np.ndim(a) else None)
                     for p, a in jax.tree_util.tree_flatten_with_path(batch)[0]}
            if not sizes or set(sizes.values()) != {len(idx)}:
                raise TaskError(f"{field}: gathering the {len(idx)} examples {idx} gave "
                                f"{batch_text(batch)}: a source must give one example per "
                                f"index (a leading axis of {len(idx)})")

    def _check_eval_structure(self, batch, eval_batch) -> None:
        """eval_data has what the loss reads of train_data: its keys, with examples alike."""
        train = {jax.tree_util.keystr(p): a
                 for p, a in jax.tree_util.tree_flatten_with_path(batch)[0]}
        evals = {jax.tree_util.keystr(p): a
                 for p, a in jax.tree_util.tree_flatten_with_path(eval_batch)[0]}
        missing = [k for k in train if k not in evals]
        if missing:
            raise TaskError(f"task {self.name!r}: eval_data lacks {', '.join(missing)} of "
                            f"train_data: train_data's batches are {batch_text(batch)}, "
                            f"eval_data's {batch_text(eval_batch)}")

    @functools.cached_property
    def _metric_names(self) -> dict:
        for field in ("train_data", "eval_data"):
            if is_source(getattr(self, field)):
                self._check_source(field)
        batch = self.sample_batch()
        if self.streamed:  # what a source gives is seen on its batches only
            _say_narrowed(self.name, _narrowed("train_data batches", batch))
        batch_sd = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), batch)
        seen = f"the batch: {batch_text(batch)}"

        def call(what, seen, fn, *args):
            try:
                return fn(*args)
            except TaskError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure of the user's code
                text, hint = str(err), None
                if isinstance(batch, list | tuple) and "indices" in text:
                    field = "eval_data" if "eval_data" in what else "train_data"
                    hint = (f"{field} is a list, so a batch is one too (batch[0], batch[1]); "
                            f"to read batch['x'], give a dict: {{'x': x, 'y': y}}")
                elif "dtype" in text or "integer" in text:
                    hint = ("check the dtypes of the batch against what the loss expects "
                            "(integer class labels: labels.astype(np.int32))")
                raise TaskError(user_error(f"task {self.name!r}: {what} ({seen})",
                                           err, hint)) from err

        def train_out(b):
            model = self.build_model(nnx.Rngs(0))
            return split_loss(self.name, call("loss(model, batch) on a batch of train_data",
                                              seen, self.loss, model, b))

        _, metrics = jax.eval_shape(train_out, batch_sd)
        if self.eval_data is not None:  # the loss is evaluated on eval_data too
            eval_batch = gather(self.eval_data, np.arange(min(2, source_len(self.eval_data))))
            self._check_eval_structure(batch, eval_batch)
            eval_seen = (f"the eval batch: {batch_text(eval_batch)}; train_data's: "
                         f"{batch_text(batch)}")
            jax.eval_shape(lambda b: split_loss(self.name, call(
                "loss(model, batch) on a batch of eval_data", eval_seen, self.loss,
                self.build_model(nnx.Rngs(0)), b)),
                jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), eval_batch))
        train = ("loss", *metrics)
        if self.eval_metrics is None:
            evals = train
        else:
            out = jax.eval_shape(lambda b: call("eval_metrics(model, batch) on a batch of "
                                                "train_data", seen, self.eval_metrics,
                                                self.build_model(nnx.Rngs(0)), b), batch_sd)
            _check_metrics(self.name, "eval_metrics", out)
            evals = ("loss", *(k for k in out if k != "loss"))
        return {"train": train, "eval_base": evals}

    def metric_names(self, diagnostics: bool = True) -> dict:
        """``{"train": per-step names, "eval": per-evaluation names}`` for this task.

        Per step: ``loss``, the loss's metrics, then (added by the training loop)
        ``grad_norm``, ``update_norm``, ``lr``; this returns the task's part. Per
        evaluation: ``test_<name>`` on ``eval_data``, and with ``diagnostics``
        ``train_<name>`` on the whole training set plus ``full_grad_norm``.
        """
        names = self._metric_names
        ev = []
        if self.eval_data is not None:
            ev += [f"test_{k}" for k in names["eval_base"]]
        if diagnostics:
            ev += [f"train_{k}" for k in names["eval_base"]] + ["full_grad_norm"]
        return {"train": names["train"], "eval": tuple(ev)}

    def table_metric(self, diagnostics: bool = True) -> tuple[str, bool]:
        """``(metric, higher_is_better)`` of the results table."""
        names = self.metric_names(diagnostics)["eval"]
        metric = self.report_metric
        if metric is None:
            metric = next((m for m in ("test_accuracy", "test_loss", "train_loss")
                           if m in names), None)
            if metric is None:
                raise ValueError(f"task {self.name!r} reports no evaluation metric: give it "
                                 f"eval_data or train with diagnostics=True")
        elif metric not in names:
            raise ValueError(f"report_metric must be one of {list(names)}, got {metric!r}")
        higher = self.higher_is_better
        if higher is None:
            higher = not metric.endswith("loss")
        return metric, higher


def _dtype_name(value) -> str:
    try:
        return jnp.dtype(value).name
    except TypeError:
        return repr(value)


def batch_text(batch) -> str:
    """The shapes and dtypes of a batch: ``{'x': (2, 64) float32, 'y': (2,) int32}``."""
    parts = [f"{jax.tree_util.keystr(path) or 'batch'}: "
             f"{tuple(getattr(a, 'shape', ()))} {getattr(a, 'dtype', type(a).__name__)}"
             for path, a in jax.tree_util.tree_flatten_with_path(batch)[0]]
    return "{" + ", ".join(parts) + "}"


def _check_metrics(task: str, what: str, metrics) -> None:
    if not isinstance(metrics, Mapping):
        raise TaskError(f"task {task!r}: {what} must return a dict {{name: scalar batch mean}}, "
                        f"got {describe(metrics)}")
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise TaskError(f"task {task!r}: {what} metric names must be str, got {k!r}")
        if getattr(v, "shape", None) != ():
            raise TaskError(f"task {task!r}: {what} metric {k!r} must be a scalar batch mean, "
                            f"got {describe(v)}")


def split_loss(task: str, out) -> tuple[Any, dict]:
    """``(loss, metrics)`` from a loss function's output, checked (scalar float loss)."""
    if isinstance(out, tuple):
        if len(out) != 2:
            raise TaskError(f"task {task!r}: loss must return a scalar or (scalar, "
                            f"{{name: scalar}}), got a tuple of {len(out)}")
        loss, metrics = out
        if not isinstance(metrics, Mapping):
            raise TaskError(
                f"task {task!r}: loss returned (loss, {describe(metrics)}): the second element "
                f"must be a dict {{name: scalar batch mean}}, e.g. {{'accuracy': acc}}; "
                f"return the loss alone, or compute metrics such as accuracy from the logits "
                f"inside the loss")
    else:
        loss, metrics = out, {}
    shape = getattr(loss, "shape", None)
    if shape != ():
        raise TaskError(f"task {task!r}: loss must return a scalar (the batch mean), "
                        f"got {describe(loss)}")
    if not jnp.issubdtype(loss.dtype, jnp.floating):
        raise TaskError(f"task {task!r}: loss must be a float, got dtype {loss.dtype}")
    _check_metrics(task, "loss", metrics)
    if "loss" in metrics:
        raise TaskError(f"task {task!r}: the loss's metrics must not be called 'loss'")
    return loss, dict(metrics)


