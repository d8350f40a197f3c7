"""Flax NNX models for budgeted-training experiments: ``MLP``, ``CNN1D``, ``ResNet``.

Every model takes its input shape and number of classes from a
:class:`budgetax.data.Dataset` through :func:`create`, maps a batch
``x: [batch, *input_shape]`` to float32 logits ``[batch, num_classes]``, and
follows a dtype policy: ``dtype`` is the dtype of activations and matmul inputs,
``param_dtype`` the dtype of the stored parameters. With 16-bit ``dtype`` the
matmuls and convolutions accumulate in float32 (``preferred_element_type``),
which is also what makes bfloat16 fast on CPU, and cast their outputs back to
``dtype``.

Example:
  >>> from flax import nnx
  >>> import jax, jax.numpy as jnp
  >>> from budgetax import models
  >>> m = models.MLP(40, 10, rngs=nnx.Rngs(0))
  >>> m(jnp.zeros((2, 40))).shape
  (2, 10)

References:
  Greydanus. Scaling down Deep Learning (MNIST-1D). 2020. arXiv:2011.14439.
  He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
  arXiv:1512.03385.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from budgetax import _validate

__all__ = ["CNN1D", "MLP", "MODELS", "ResNet", "create"]


def _accumulate_dtype(dtype):
    """float32 accumulation for 16-bit compute dtypes, else the default."""
    if dtype is not None and jnp.dtype(dtype).itemsize < 4:
        return jnp.float32
    return None


def _cast(x, dtype):
    return x if dtype is None else x.astype(dtype)


def _dense(n_in, n_out, *, dtype, param_dtype, rngs):
    return nnx.Linear(n_in, n_out, dtype=dtype, param_dtype=param_dtype,
                      preferred_element_type=_accumulate_dtype(dtype), rngs=rngs)


class MLP(nnx.Module):
    r"""Multilayer perceptron: flatten, ``len(hidden)`` ReLU layers, linear logits.

    :math:`h_0 = \mathrm{flatten}(x)`, :math:`h_{i+1} = \mathrm{relu}(W_i h_i + b_i)`,
    logits :math:`= W_L h_L + b_L`. The default ``hidden=(100, 100)`` is the MLP of
    the MNIST-1D paper.

    Args:
      in_features: number of input features (the product of the input shape).
      num_classes: number of output logits.
      hidden: widths of the hidden layers.
      dtype: activation / compute dtype (``None`` = float32).
      param_dtype: parameter dtype.
      rngs: ``nnx.Rngs`` for the initialisation.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> MLP(40, 10, rngs=nnx.Rngs(0))(jnp.zeros((3, 40))).shape
      (3, 10)

    References:
      Greydanus. Scaling down Deep Learning. 2020. arXiv:2011.14439.
    """

    def __init__(self, in_features: int, num_classes: int, *, hidden: Sequence[int] = (100, 100),
                 dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        in_features = _validate.positive_int("in_features", in_features)
        num_classes = _validate.positive_int("num_classes", num_classes)
        widths = [in_features] + [_validate.positive_int("hidden", h) for h in hidden]
        self.dtype = dtype
        self.layers = nnx.List([
            _dense(a, b, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        ])
        self.head = _dense(widths[-1], num_classes, dtype=dtype, param_dtype=param_dtype,
                           rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _cast(x.reshape(x.shape[0], -1), self.dtype)
        for layer in self.layers:
            h = _cast(jax.nn.relu(layer(h)), self.dtype)
        return self.head(h).astype(jnp.float32)


class CNN1D(nnx.Module):
    r"""1-D convolutional network: ``num_layers`` strided ReLU convolutions, then a linear layer.

    The default (3 layers of 25 channels, kernel 5, stride 2, padding 1) is the
    CNN of the MNIST-1D paper: a length-40 signal shrinks to 19, 9, 4 positions,
    and the flattened ``4 * 25`` features feed the linear classifier.

    Args:
      length: input length (signal positions).
      num_classes: number of output logits.
      in_channels: input channels (1 for MNIST-1D; a rank-1 input is given one channel).
      channels: channels of every convolution.
      kernel_size: convolution width.
      stride: convolution stride.
      padding: symmetric zero padding of every convolution.
      num_layers: number of convolutions.
      dtype: activation / compute dtype (``None`` = float32).
      param_dtype: parameter dtype.
      rngs: ``nnx.Rngs`` for the initialisation.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> CNN1D(40, 10, rngs=nnx.Rngs(0))(jnp.zeros((2, 40))).shape
      (2, 10)

    References:
      Greydanus. Scaling down Deep Learning. 2020. arXiv:2011.14439.
    """

    def __init__(self, length: int, num_classes: int, *, in_channels: int = 1,
                 channels: int = 25, kernel_size: int = 5, stride: int = 2, padding: int = 1,
                 num_layers: int = 3, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        length = _validate.positive_int("length", length)
        num_classes = _validate.positive_int("num_classes", num_classes)
        in_channels = _validate.positive_int("in_channels", in_channels)
        channels = _validate.positive_int("channels", channels)
        kernel_size = _validate.positive_int("kernel_size", kernel_size)
        stride = _validate.positive_int("stride", stride)
        padding = _validate.nonnegative_int("padding", padding)
        num_layers = _validate.positive_int("num_layers", num_layers)
        self.dtype = dtype
        self.in_channels = in_channels
        convs = []
        n, c = length, in_channels
        for _ in range(num_layers):
            n = (n + 2 * padding - kernel_size) // stride + 1
            if n < 1:
                raise ValueError(
                    f"length={length} is too short for {num_layers} convolutions of kernel "
                    f"{kernel_size}, stride {stride}, padding {padding}")
            convs.append(nnx.Conv(c, channels, kernel_size, stride, padding=[(padding, padding)],
                                  dtype=dtype, param_dtype=param_dtype,
                                  preferred_element_type=_accumulate_dtype(dtype), rngs=rngs))
            c = channels
        self.convs = nnx.List(convs)
        self.head = _dense(n * c, num_classes, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 2:
            x = x[..., None]
        h = _cast(x, self.dtype)
        for conv in self.convs:
            h = _cast(jax.nn.relu(conv(h)), self.dtype)
        return self.head(h.reshape(h.shape[0], -1)).astype(jnp.float32)


class _Block(nnx.Module):
    """Basic residual block: conv-BN-ReLU-conv-BN plus a (projected) shortcut, then ReLU."""

    def __init__(self, c_in, c_out, stride, *, dtype, param_dtype, rngs):
        acc = _accumulate_dtype(dtype)
        kw = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, preferred_element_type=acc,
                  rngs=rngs)
        self.dtype = dtype
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), (stride, stride), padding="SAME", **kw)
        self.bn1 = nnx.BatchNorm(c_out, momentum=0.9, dtype=dtype, param_dtype=param_dtype,
                                 rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), padding="SAME", **kw)
        self.bn2 = nnx.BatchNorm(c_out, momentum=0.9, dtype=dtype, param_dtype=param_dtype,
                                 scale_init=nnx.initializers.zeros, rngs=rngs)
        if stride != 1 or c_in != c_out:
            self.proj = nnx.Conv(c_in, c_out, (1, 1), (stride, stride), **kw)
        else:
            self.proj = None

    def __call__(self, x):
        h = _cast(jax.nn.relu(self.bn1(_cast(self.conv1(x), self.dtype))), self.dtype)
        h = _cast(self.bn2(_cast(self.conv2(h), self.dtype)), self.dtype)
        s = x if self.proj is None else _cast(self.proj(x), self.dtype)
        return _cast(jax.nn.relu(h + s), self.dtype)


class ResNet(nnx.Module):
    r"""CIFAR-style ResNet: a 3x3 stem, ``len(stages)`` stages of basic blocks, pooling, linear.

    Stage ``i`` has ``depth`` basic blocks of ``width * 2**i`` channels (the first
    block of every stage after the first has stride 2). ``depth=3, width=16`` is
    ResNet-20 of He et al.; the default ``depth=1, width=16`` (ResNet-8) is sized
    for CPU runs. Batch normalisation keeps running statistics: call
    ``model.train()`` / ``model.eval()`` (the training loop does it).

    Args:
      input_shape: ``(height, width, channels)``.
      num_classes: number of output logits.
      depth: basic blocks per stage.
      width: channels of the first stage.
      stages: number of stages.
      dtype: activation / compute dtype (``None`` = float32).
      param_dtype: parameter dtype.
      rngs: ``nnx.Rngs`` for the initialisation.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> ResNet((8, 8, 1), 10, width=4, rngs=nnx.Rngs(0))(jnp.zeros((2, 8, 8, 1))).shape
      (2, 10)

    References:
      He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
      arXiv:1512.03385.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, depth: int = 1,
                 width: int = 16, stages: int = 3, dtype=None, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
        num_classes = _validate.positive_int("num_classes", num_classes)
        depth = _validate.positive_int("depth", depth)
        width = _validate.positive_int("width", width)
        stages = _validate.positive_int("stages", stages)
        self.dtype = dtype
        self.stem = nnx.Conv(input_shape[-1], width, (3, 3), padding="SAME", use_bias=False,
                             dtype=dtype, param_dtype=param_dtype,
                             preferred_element_type=_accumulate_dtype(dtype), rngs=rngs)
        self.stem_bn = nnx.BatchNorm(width, momentum=0.9, dtype=dtype, param_dtype=param_dtype,
                                     rngs=rngs)
        blocks = []
        c = width
        for s in range(stages):
            c_out = width * 2**s
            for b in range(depth):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(_Block(c, c_out, stride, dtype=dtype, param_dtype=param_dtype,
                                     rngs=rngs))
                c = c_out
        self.blocks = nnx.List(blocks)
        self.head = _dense(c, num_classes, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _cast(x, self.dtype)
        h = _cast(jax.nn.relu(self.stem_bn(_cast(self.stem(h), self.dtype))), self.dtype)
        for block in self.blocks:
            h = block(h)
        h = jnp.mean(h.astype(jnp.float32), axis=(1, 2))
        return self.head(_cast(h, self.dtype)).astype(jnp.float32)


def _make_mlp(input_shape, num_classes, **kw):
    return MLP(math.prod(input_shape), num_classes, **kw)


def _make_cnn1d(input_shape, num_classes, **kw):
    if len(input_shape) == 1:
        length, channels = input_shape[0], 1
    elif len(input_shape) == 2:
        length, channels = input_shape
    else:
        raise ValueError(f"cnn1d needs a 1-D input (length,) or (length, channels), "
                         f"got input_shape={tuple(input_shape)!r}")
    return CNN1D(length, num_classes, in_channels=channels, **kw)


def _make_resnet(input_shape, num_classes, **kw):
    if len(input_shape) == 2:  # a grey image without its channel axis
        input_shape = (*input_shape, 1)
    return ResNet(input_shape, num_classes, **kw)


MODELS = {"cnn1d": _make_cnn1d, "mlp": _make_mlp, "resnet": _make_resnet}

_DTYPES = {"float32": jnp.float32, "bf16": jnp.bfloat16, "bfloat16": jnp.bfloat16,
           "float16": jnp.float16}


def _resolve_dtype(name, value):
    if isinstance(value, str):
        if value not in _DTYPES:
            raise ValueError(f"{name} must be one of {sorted(_DTYPES)} or a dtype, got {value!r}")
        return _DTYPES[value]
    return value


def create(name: str, dataset=None, *, rngs: nnx.Rngs, input_shape=None, num_classes=None,
           dtype=None, param_dtype=jnp.float32, **kwargs) -> nnx.Module:
    """Builds the model called ``name`` with its shapes taken from ``dataset``.

    Args:
      name: one of ``"mlp"``, ``"cnn1d"``, ``"resnet"`` (the error lists them).
      dataset: a :class:`budgetax.data.Dataset` (or anything with ``input_shape``
        and ``num_classes``); or give ``input_shape`` and ``num_classes`` directly.
      rngs: ``nnx.Rngs`` for the initialisation. Under ``jit``/``vmap`` build it
        from a key, ``nnx.Rngs(jax.random.key(seed))``, not from a traced int.
      input_shape: per-example input shape (overrides the dataset's).
      num_classes: number of classes (overrides the dataset's).
      dtype: activation dtype: ``None``/``"float32"`` or ``"bf16"`` (or a dtype).
      param_dtype: parameter dtype (``"float32"``, ``"bf16"`` or a dtype).
      **kwargs: the model's own knobs (``hidden=``, ``channels=``, ``depth=``, ``width=``, ...).

    Returns:
      An ``nnx.Module`` mapping ``[batch, *input_shape]`` to float32 logits.

    Example:
      >>> from flax import nnx
      >>> m = create("cnn1d", input_shape=(40,), num_classes=10, rngs=nnx.Rngs(0))
      >>> type(m).__name__
      'CNN1D'
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    if input_shape is None:
        if dataset is None:
            raise ValueError("give a dataset or input_shape= and num_classes=")
        input_shape = dataset.input_shape
    if num_classes is None:
        if dataset is None:
            raise ValueError("give a dataset or input_shape= and num_classes=")
        num_classes = dataset.num_classes
    dtype = _resolve_dtype("dtype", dtype)
    if dtype is not None and jnp.dtype(dtype) == jnp.float32:
        dtype = None
    param_dtype = _resolve_dtype("param_dtype", param_dtype)
    return MODELS[name](tuple(int(s) for s in input_shape), int(num_classes), dtype=dtype,
                        param_dtype=param_dtype, rngs=rngs, **kwargs)
