"""The built-in models and datasets as :class:`~budgetax.training.Task` presets.

``preset("mnist1d", "mlp")`` is a task made with the public interface like any
user's: a model factory (``budgetax.models``, taking the optimizer spec's
``dtype``/``param_dtype``), a softmax cross-entropy loss that reports accuracy,
the training set and the test set as held-out data. Small datasets are kept in
memory (on the device during training); larger ones are streamed from their
TFDS data source.

Example:
  >>> from budgetax import training
  >>> task = training.preset("mnist1d", "mlp")        # doctest: +SKIP
  >>> task.name, task.config["model"]                  # doctest: +SKIP
  ('mnist1d/mlp', 'mlp')
"""

from __future__ import annotations

import difflib
import inspect
import weakref
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
import optax

from budgetax import _validate
from budgetax import models as _models
from budgetax.data import Dataset
from budgetax.data import load as _load
from budgetax.training.task import Task

__all__ = ["DATA_MODES", "classification_loss", "preset"]

DATA_MODES = ("auto", "device", "stream")


def classification_loss(model, batch):
    """Mean softmax cross-entropy (float32) of ``model(batch["x"])`` and the batch accuracy."""
    logits = model(batch["x"])
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["y"]))
    accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32))
    return loss, {"accuracy": accuracy}


class _Split:
    """A random-access source over one split of a :class:`budgetax.data.Dataset`."""

    def __init__(self, dataset: Dataset, split: str):
        self.dataset, self.split = dataset, split

    def __len__(self) -> int:
        return self.dataset.num_train if self.split == "train" else self.dataset.num_test

    def gather(self, idx):
        x, y = self.dataset.gather(self.split, np.asarray(idx))
        return {"x": x, "y": y}


_MODEL_CLASSES = {"mlp": _models.MLP, "cnn1d": _models.CNN1D, "resnet": _models.ResNet}


def _knobs(model: str) -> list[str]:
    """The keyword knobs of a built-in model (what ``model_kwargs`` may set)."""
    params = inspect.signature(_MODEL_CLASSES[model].__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY
            and p.name not in ("dtype", "param_dtype", "rngs", "in_channels")]


def _model_kwargs(model_kwargs, model: str) -> dict:
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs must be a dict of the model's knobs, got "
                        f"{model_kwargs!r}")
    knobs = _knobs(model)
    for k in model_kwargs:
        if k not in knobs:
            close = difflib.get_close_matches(str(k), knobs, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"model_kwargs={dict(model_kwargs)!r}: {model!r} has no knob "
                             f"{k!r} ({hint}its knobs are {knobs})")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(model_kwargs.items())}


def preset(dataset: str | Dataset = "mnist1d", model: str = "mlp", *,
           model_kwargs: dict | None = None, data: str = "auto",
           data_dir: str | None = None) -> Task:
    """A built-in classification task: a dataset and a model of :mod:`budgetax.models`.

    Args:
      dataset: a :class:`budgetax.data.Dataset` or a name for :func:`budgetax.data.load`
        (``"mnist1d"``, ``"digits"``, ``"tfds:NAME"``).
      model: ``"mlp"``, ``"cnn1d"`` or ``"resnet"``.
      model_kwargs: the model's knobs (e.g. ``{"hidden": (100, 100)}``).
      data: ``"device"`` (in memory), ``"stream"`` (a random-access source) or
        ``"auto"`` (in memory when the dataset is small enough).
      data_dir: the TFDS data dir for a dataset given by name.

    Returns:
      A :class:`Task` named ``"<dataset>/<model>"`` reporting ``loss`` and
      ``accuracy``; its config records the dataset, the model and its knobs. The
      same arguments give the same task object (its compiled programs are reused).
    """
    if not isinstance(model, str) or model not in _models.MODELS:
        raise ValueError(f"model must be one of {sorted(_models.MODELS)}, got {model!r}")
    _validate.one_of("data", data, DATA_MODES)
    kw = _model_kwargs(model_kwargs, model)
    if isinstance(dataset, str):
        key = (dataset, data_dir, model, repr(kw), data)
        if key not in _BY_NAME:
            _BY_NAME[key] = preset(_load(dataset, data_dir=data_dir), model, model_kwargs=kw,
                                   data=data)
        return _BY_NAME[key]
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a budgetax.data.Dataset or a name, got {dataset!r}")
    by_dataset = _BY_DATASET.setdefault(dataset, {})
    key = (model, repr(kw), data)
    if key not in by_dataset:
        by_dataset[key] = _make(dataset, model, kw, data)
    return by_dataset[key]


# The same preset is the same Task object, so its compiled programs are reused.
_BY_NAME: dict = {}
_BY_DATASET: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _make(dataset: Dataset, model: str, kw: dict, data: str) -> Task:
    shape, classes = tuple(dataset.input_shape), int(dataset.num_classes)
    build_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}

    def build(rngs, dtype=None, param_dtype=jnp.float32):
        return _models.create(model, input_shape=shape, num_classes=classes, rngs=rngs,
                              dtype=dtype, param_dtype=param_dtype, **build_kw)

    mode = data if data != "auto" else ("device" if dataset.fits_on_device() else "stream")
    if mode == "device":
        train = {"x": dataset.x_train, "y": dataset.y_train}
        test = {"x": dataset.x_test, "y": dataset.y_test}
    else:
        train, test = _Split(dataset, "train"), _Split(dataset, "test")
    return Task(name=f"{dataset.name}/{model}", model=build, loss=classification_loss,
                train_data=train, eval_data=test,
                config={"dataset": dataset.name, "model": model, "model_kwargs": kw})
