"""The sliding-window baseline of CS231n lecture 11: classify each pixel from a patch around it.

"Problem: very inefficient! Not reusing shared features between overlapping patches" -- at eval
time every pixel's patch goes through the CNN on its own, H * W forward passes per image, which is
the cost the fully convolutional models avoid (Farabet et al. 2013; Pinheiro & Collobert 2014).
"""
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.layers import ConvBNReLU


class PatchCNN(nn.Module):
  """[N, p, p, 3] patches -> [N, num_classes] logits of their centre pixels."""
  num_classes: int
  widths: Sequence[int] = (16, 32, 64)
  hidden: int = 128
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, patches: jax.Array, *, train: bool) -> jax.Array:
    x = patches
    for i, width in enumerate(self.widths):
      x = ConvBNReLU(width, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                     name=f'conv{i}')(x, train=train)
      x = nn.max_pool(x, (2, 2), (2, 2))
    # Flatten, not average: where a feature sits relative to the centre pixel matters.
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc')(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='logits')(x).astype(jnp.float32)


class PatchClassifier(nn.Module):
  """Train: {'logits': [B, P, C], 'pixels': [B, P, 2] int32 (y, x)} for P = `train_pixels`
  positions drawn with the 'sample' rng. Eval: dense logits [B, H, W, C], one patch per pixel.

  The patch of pixel (y, x) is rows y - p // 2 .. y + p - 1 - p // 2 of the image padded by
  `pad_mode` ('reflect' or 'zeros'), likewise for columns.
  """
  num_classes: int
  patch_size: int = 16
  train_pixels: int = 64
  pad_mode: str = 'reflect'
  widths: Sequence[int] = (16, 32, 64)
  hidden: int = 128
  dtype: Any = None
  bn_axis_name: str | None = None

  def _pad(self, images: jax.Array) -> jax.Array:
    p = self.patch_size
    pads = ((0, 0), (p // 2, p - 1 - p // 2), (p // 2, p - 1 - p // 2), (0, 0))
    if self.pad_mode == 'reflect':
      return jnp.pad(images, pads, mode='reflect')
    if self.pad_mode == 'zeros':
      return jnp.pad(images, pads)
    raise ValueError(f"unknown pad_mode {self.pad_mode!r}; valid: 'reflect', 'zeros'")

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array] | jax.Array:
    b, h, w, c = images.shape
    p = self.patch_size
    padded = self._pad(images)
    cnn = PatchCNN(self.num_classes, self.widths, self.hidden, self.dtype, self.bn_axis_name,
                   name='cnn')
    if train:
      key = self.make_rng('sample')
      pixels = jax.random.randint(key, (b, self.train_pixels, 2), 0, jnp.array([h, w]),
                                  dtype=jnp.int32)
      crop = lambda img, yx: jax.lax.dynamic_slice(img, (yx[0], yx[1], 0), (p, p, c))
      patches = jax.vmap(jax.vmap(crop, (None, 0)))(padded, pixels)  # [B, P, p, p, c]
      logits = cnn(patches.reshape(-1, p, p, c), train=True)
      return {'logits': logits.reshape(b, self.train_pixels, -1), 'pixels': pixels}

    cols = jnp.arange(w)[:, None] + jnp.arange(p)[None, :]  # [W, p]: columns of each patch.

    def row_logits(mdl, carry, y):
      rows = jax.lax.dynamic_slice_in_dim(padded, y, p, axis=1)  # [B, p, W + p - 1, c]
      patches = rows[:, :, cols].transpose(0, 2, 1, 3, 4)  # [B, W, p, p, c]
      return carry, mdl(patches.reshape(-1, p, p, c), train=False).reshape(b, w, -1)

    # One row of patches (B * W of them) per step bounds memory; nn.scan is flax's lax.map.
    scan = nn.scan(row_logits, variable_broadcast=('params', 'batch_stats'),
                   split_rngs={'params': False})
    _, logits = scan(cnn, None, jnp.arange(h))  # [H, B, W, C]
    return logits.transpose(1, 0, 2, 3)
