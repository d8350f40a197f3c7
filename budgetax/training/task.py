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
import importlib
import inspect
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["Task", "TaskError", "load_task"]


class TaskError(TypeError):
    """A task (or the factory that should make one) is not usable, with the reason."""


def describe(value) -> str:
    """What a value is, in a few words: ``a (32, 10) float32 array``, ``a str 'abc'``."""
    if value is None:
        return "None"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        shape = tuple(shape)
        return f"a {dtype} scalar" if shape == () else f"a {shape} {dtype} array"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"a {type(value).__name__} {text}"


def _library_file(filename: str) -> bool:
    """Whether a traceback frame is in installed packages, the standard library or here."""
    path = os.path.abspath(filename)
    if path == os.path.abspath(__file__) or filename.startswith(("<frozen", "<string>")):
        return True
    if "site-packages" in path or "dist-packages" in path:
        return True
    stdlib = os.path.dirname(os.path.abspath(os.__file__))
    return path.startswith(stdlib + os.sep)


def raised_at(err: BaseException) -> str | None:
    """``file:line, in function`` of the innermost frame of ``err`` in the user's own code.

    Frames of installed packages, of the standard library and of this module (the
    call into the user's code) are skipped; ``None`` when no frame is left (the
    error was raised by the call itself, e.g. a wrong number of arguments). A
    ``SyntaxError`` gives the place of the syntax error.
    """
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno}"
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not _library_file(f.filename)]
    if not frames:
        return None
    f = frames[-1]
    return f"{f.filename}:{f.lineno}, in {f.name}"


def user_error(what: str, err: BaseException, hint: str | None = None) -> str:
    """The one form of an error in the user's code: what failed, the exception, where, a hint.

    ``what`` says what was called (``"the model factory, CNN(rngs=rngs)"``); the
    message is a few lines: ``<what> raised <Type>: <message>``, ``at <file>:<line>``
    and ``hint: ...``.
    """
    message = str(err).strip() or "(no message)"
    if len(message) > 400:
        message = message[:397] + "..."
    lines = [f"{what} raised {type(err).__name__}: {message}"]
    where = raised_at(err)
    if where is not None:
        lines.append(f"  at {where}")
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


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


def is_source(data) -> bool:
    """Whether ``data`` is a random-access source (not an in-memory pytree of arrays)."""
    if data is None or isinstance(data, Mapping | list | tuple | np.ndarray | jax.Array):
        return False
    return hasattr(data, "__len__") and (hasattr(data, "gather") or hasattr(data, "__getitem__"))


def source_len(data) -> int:
    """Number of examples of in-memory data or of a source."""
    if is_source(data):
        return len(data)
    return int(jax.tree.leaves(data)[0].shape[0])


def gather(data, idx) -> Any:
    """The examples ``idx`` (a 1-D integer array) of ``data`` as a batch pytree of NumPy arrays."""
    idx = np.asarray(idx).reshape(-1)
    if not is_source(data):
        return jax.tree.map(lambda a: np.asarray(a)[idx], data)
    if hasattr(data, "gather"):
        return jax.tree.map(np.asarray, data.gather(idx))
    items = [int(i) for i in idx]
    getter = getattr(data, "__getitems__", None)
    recs = getter(items) if getter is not None else [data[i] for i in items]
    return jax.tree.map(lambda *r: np.stack([np.asarray(v) for v in r]), *recs)


def _check_arrays(name: str, data) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise TaskError(f"{name} must be a pytree of arrays with a leading example axis or a "
                        f"random-access source, got {data!r}")
    sizes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TaskError(f"{name}{jax.tree_util.keystr(path)} must be an array, "
                            f"got {type(leaf).__name__}")
        if len(leaf.shape) == 0:
            raise TaskError(f"{name}{jax.tree_util.keystr(path)} has no leading example axis "
                            f"(a scalar)")
        sizes[jax.tree_util.keystr(path) or "[]"] = int(leaf.shape[0])
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{name}'s leading dimensions disagree: {sizes}")
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError(f"{name} has no examples")
    return n


_NARROW = {"int64": np.int32, "uint64": np.uint32, "float64": np.float32,
           "complex128": np.complex64}


def _narrowed(name: str, data) -> list[str]:
    """The 64-bit leaves of ``data`` JAX will compute in 32 bits, as ``name['y'] int64 -> int32``.

    Nothing when ``jax_enable_x64`` is set. In-memory integers that do not fit in 32
    bits (they would wrap around) are refused.
    """
    if jax.config.jax_enable_x64:
        return []
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        dtype = getattr(leaf, "dtype", None)
        to = _NARROW.get(getattr(dtype, "name", ""))
        if to is None:
            continue
        where = f"{name}{jax.tree_util.keystr(path)}"
        if np.issubdtype(to, np.integer) and isinstance(leaf, np.ndarray) and leaf.size:
            info = np.iinfo(to)
            low, high = leaf.min(), leaf.max()
            if low < info.min or high > info.max:
                raise ValueError(f"{where} is {dtype} with values in [{low}, {high}], which do "
                                 f"not fit in {np.dtype(to).name} (JAX computes in 32 bits "
                                 f"unless jax_enable_x64 is set): give values that fit")
        out.append(f"{where} {dtype} -> {np.dtype(to).name}")
    return out


def _say_narrowed(task: str, narrowed: list[str]) -> None:
    if narrowed:
        warnings.warn(f"task {task!r}: {', '.join(narrowed)} (JAX computes in 32 bits unless "
                      f"jax_enable_x64 is set); give 32-bit arrays to silence this",
                      UserWarning, stacklevel=4)


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


_TASK_FORM = "'package.module:factory' or 'path/to/file.py:factory'"


def _import_file(path: str, filename: str):
    """The module of a ``.py`` file (its folder importable, as for ``python file.py``)."""
    import importlib.util

    filename = os.path.abspath(os.path.expanduser(filename))
    if not os.path.isfile(filename):
        raise TaskError(f"--task {path!r}: no file {filename}")
    folder = os.path.dirname(filename)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = "_budgetax_task_" + os.path.splitext(os.path.basename(filename))[0]
    spec = importlib.util.spec_from_file_location(name, filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_task(path: str) -> Task:
    """Imports ``package.module:factory`` (or ``path/to/file.py:factory``), returns ``factory()``.

    The working directory is importable, as with ``python -m``; a ``.py`` file's
    folder is importable too, as with ``python file.py``. Whatever fails (the
    import, the attribute, the call, the task it returns) is one :class:`TaskError`
    of a few lines: what failed, the exception's type and message, the file and line
    where it was raised, and a hint.

    Raises:
      TaskError: the path does not resolve, the factory fails or does not return a Task.
    """
    if not isinstance(path, str) or path.count(":") < 1:
        raise TaskError(f"--task must be {_TASK_FORM}, got {path!r}")
    module_name, attr = path.rsplit(":", 1)
    if not module_name or not attr:
        raise TaskError(f"--task {path!r} names no {'module' if not module_name else 'factory'}: "
                        f"give {_TASK_FORM}")
    if not attr.isidentifier():
        raise TaskError(f"--task {path!r}: {attr!r} is not a Python name: give {_TASK_FORM}")
    is_file = module_name.endswith(".py") or "/" in module_name or os.sep in module_name
    if not is_file and not all(p.isidentifier() for p in module_name.split(".")):
        raise TaskError(f"--task {path!r}: {module_name!r} is not a module name: give "
                        f"{_TASK_FORM}")
    if os.getcwd() not in sys.path:  # as `python -m` does: modules in the working directory
        sys.path.insert(0, os.getcwd())
    what = f"--task {path!r}:"
    try:
        if is_file:
            module = _import_file(path, module_name)
        else:
            module = importlib.import_module(module_name)
    except TaskError:
        raise
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name
                                     or module_name.startswith(err.name + ".")):
            raise TaskError(f"{what} no module named {err.name!r}\n  hint: run from the "
                            f"folder that holds it, add that folder to PYTHONPATH, or give "
                            f"the path of its .py file") from None
        raise TaskError(user_error(f"{what} importing {module_name}", err,
                                   "a module it imports is missing: install it")) from None
    except Exception as err:  # noqa: BLE001 - any failure of the user's module, with context
        raise TaskError(user_error(f"{what} importing {module_name}", err,
                                   "the module fails when imported: run it with python to "
                                   "see the whole traceback")) from None
    factory = getattr(module, attr, None)
    if factory is None:
        found = sorted(k for k, v in vars(module).items()
                       if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise TaskError(f"{what} module {module_name} has no attribute {attr!r}\n  hint: "
                        f"its functions and classes are {found}")
    if not callable(factory):
        raise TaskError(f"{what} {attr} is {describe(factory)}, not a function that returns a "
                        f"budgetax.training.Task")
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        needed = [p.name for p in sig.parameters.values()
                  if p.default is inspect.Parameter.empty
                  and p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                     inspect.Parameter.VAR_KEYWORD)]
        if needed:
            raise TaskError(f"{what} {attr}{sig} needs arguments ({', '.join(needed)}), but "
                            f"--task calls it with none\n  hint: give them defaults, or add a "
                            f"factory without arguments that calls it")
    try:
        task = factory()
    except Exception as err:  # noqa: BLE001 - any failure of the user's factory, with context
        raise TaskError(user_error(f"{what} {attr}()", err,
                                   "the factory fails when called with no arguments: call it "
                                   "in python to see the whole traceback")) from None
    if not isinstance(task, Task):
        raise TaskError(f"{what} {attr}() must return a budgetax.training.Task, "
                        f"got {describe(task)}")
    task.metric_names()  # the loss and metrics, checked on a batch now
    return task
