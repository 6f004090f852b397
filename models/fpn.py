"""Feature Pyramid Network (Lin et al., CVPR 2017) and its RoI-to-level assignment.

A top-down pathway upsamples the coarser map 2x (nearest) and adds a 1x1 lateral projection of
the backbone map of the same stride; a 3x3 conv then smooths each sum. P6 (for the RPN's largest
anchors) is P5 subsampled by 2, as in the paper. Every level has the same width so one RPN head
and one box head serve them all.
"""
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.layers import Conv, zero_beyond
from models.roi_heads import pool_rois
from ops.roi import roi_align_levels


class FPN(nn.Module):
  """{stride: backbone map} -> {stride: P map} for `strides` (+ 2 * the last one if `extra`).

  `extent` [B, 2] (or None): each image's padded size in input pixels (a multiple of the coarsest
  stride); each 3x3 output conv's input and each output are zeroed beyond it, so the maps within
  it are the image's alone at that size and the RPN head's 3x3 conv also reads zeros past it
  (P6 subsamples the zeroed P5: zero from ceil(extent / 64) on, torchvision's P6 size).
  """
  strides: Sequence[int] = (4, 8, 16, 32)
  width: int = 256
  extra: bool = True  # P6 = stride-2 subsampling of the coarsest level.
  dtype: Any = None

  @nn.compact
  def __call__(self, features: dict[int, jax.Array], extent=None) -> dict[int, jax.Array]:
    out, top = {}, None
    for s in sorted(self.strides, reverse=True):
      x = Conv(self.width, (1, 1), dtype=self.dtype, name=f'lateral{s}')(features[s])
      if top is not None:
        top = upsample_2x(top, x.shape[1:3])
        x = x + top
      top = x
      out[s] = zero_beyond(Conv(self.width, (3, 3), dtype=self.dtype, name=f'output{s}')(
          zero_beyond(x, extent, s)), extent, s)
    if self.extra:
      coarsest = max(self.strides)
      out[2 * coarsest] = out[coarsest][:, ::2, ::2]
    return dict(sorted(out.items()))


def upsample_2x(x, hw):
  """Nearest-neighbour 2x upsampling of [B, H, W, C], cropped to `hw` (at most 2H x 2W).

  `jax.image.resize(..., 'nearest')`'s numbers, as a broadcast: its gradient is a 2x2 sum where
  resize's is a scatter-add, slow on CPU and a second P2-sized buffer at ResNet-50-FPN's train
  step's peak memory (BENCHMARKS.md, ninth session).
  """
  return jnp.repeat(jnp.repeat(x, 2, 1), 2, 2)[:, :hw[0], :hw[1]]


def assign_levels(rois, strides: Sequence[int], canonical_size: float = 224.0,
                  canonical_stride: int = 16):
  """The level index (into `strides`) each RoI [..., 4] is pooled from (FPN eq. 1).

  k = floor(k0 + log2(sqrt(w h) / 224)) with k0 the canonical level (stride 16, P4), clipped to
  the given levels: a 224x224 RoI pools from P4, one half that size from P3. The 1e-6 after the
  log is torchvision's LevelMapper (exact on its boundaries).
  """
  area = jnp.maximum((rois[..., 2] - rois[..., 0]) * (rois[..., 3] - rois[..., 1]), 1e-6)
  k0 = jnp.log2(float(canonical_stride))
  k = jnp.floor(k0 + jnp.log2(jnp.sqrt(area) / canonical_size) + 1e-6)
  levels = jnp.log2(jnp.asarray(strides, jnp.float32))
  return jnp.argmin(jnp.abs(levels[:, None] - jnp.clip(k, levels[0], levels[-1]).reshape(-1)),
                    axis=0).reshape(rois.shape[:-1])


def pool_pyramid(pyramid: dict[int, jax.Array], requests, strides: Sequence[int], *,
                 method: str, **pool_kwargs) -> list[jax.Array]:
  """Pools each RoI from its assigned level of `pyramid`: requests [(rois [B, R, 4], output size
  s), ...] -> [[B, R, s, s, C], ...].

  RoIAlign reads each RoI at its own level only, all requests in one `ops.roi.roi_align_levels`
  call (one table gradient in the backward pass). RoI max pooling (static shapes) pools every RoI
  at every level and a one-hot of the assignment picks one. `pool_kwargs`: RoIAlign's `aligned`
  and `sampling_ratio` (`pool_rois`).
  """
  levels = [(rois, assign_levels(rois, strides), size) for rois, size in requests]
  if method == 'align':
    return roi_align_levels([pyramid[s] for s in strides],
                            [(rois, level, (size, size)) for rois, level, size in levels],
                            [1.0 / s for s in strides], **pool_kwargs)
  out = []
  for rois, level, size in levels:
    pooled = jnp.stack([pool_rois(pyramid[s], rois, output_size=size, stride=s, method=method,
                                  **pool_kwargs) for s in strides], axis=-1)
    out.append(jnp.einsum('brhwcl,brl->brhwc', pooled,
                          jax.nn.one_hot(level, len(strides), dtype=pooled.dtype)))
  return out
