"""Small layers shared by the backbones and decoders."""
import functools
from typing import Any

import jax
from flax import linen as nn

from models.upsample import ConvTranspose


def batch_norm(train: bool, axis_name: str | None, dtype: Any = None):
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5).

  `axis_name` is None or the pmap axis name, so pmapped batch statistics equal one device's.
  """
  return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, axis_name=axis_name, dtype=dtype)


class ConvBNReLU(nn.Module):
  """3x3 (or `kernel_size`) SAME conv -> BatchNorm -> ReLU.

  `transpose=True` uses a stride-1 `ConvTranspose` (DeconvNet's "deconvolution" layers); the
  parameter shapes are the same as the conv's.
  """
  features: int
  kernel_size: int = 3
  transpose: bool = False
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    k = self.kernel_size
    if self.transpose:
      x = ConvTranspose(self.features, k, 1, k // 2, dtype=self.dtype, name='conv')(x)
    else:
      x = nn.Conv(self.features, (k, k), padding='SAME', dtype=self.dtype, name='conv')(x)
    x = batch_norm(train, self.bn_axis_name, self.dtype)(name='bn')(x)
    return nn.relu(x)


class RegressionHead(nn.Module):
  """Flatten -> Dense(hidden) -> ReLU -> dropout -> Dense(outputs).

  Flattening, not global pooling: the spatial layout of the features is what says *where*
  (the fully connected layers of OverFeat's box regressor and of DeepPose).
  """
  outputs: int
  hidden: int = 256
  dropout_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='hidden')(x.reshape(len(x), -1)))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.outputs, dtype=self.dtype, name='out')(x).astype(jax.numpy.float32)
