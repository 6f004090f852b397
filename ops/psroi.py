"""Position-sensitive RoI pooling (R-FCN) and spatial pyramid pooling (SPP-net) on NHWC features.

Same conventions as `ops.roi`: RoIs are [K, 5] rows (batch_index, y1, x1, y2, x2) in image pixels,
`spatial_scale` maps them to the feature map (1 / stride).
"""
from collections.abc import Sequence

import jax.numpy as jnp

from ops import roi
from ops.roi import _pool_bins, _round_half_away


def ps_roi_pool(features, rois, output_size: int, spatial_scale: float = 1.0):
  """torchvision.ops.ps_roi_pool on NHWC features: [B, H, W, C_out*k*k], [K, 5] -> [K, k, k, C_out].

  Position-sensitive RoI pooling (Dai et al., "R-FCN", NeurIPS 2016, sec. 2, eq. 1): bin (i, j)
  of a RoI averages only its own score map, input channel `(c * k + i) * k + j` for output
  channel c. This channel-major order is torchvision's (`c_in = (c_out * ph_n + ph) * pw_n + pw`),
  so its weights and outputs carry over unchanged; R-FCN's Caffe layer uses the same order.

  Geometry is torchvision's kernel, which differs from `roi.roi_pool`: corners are rounded to cells
  (half away from zero), the extent is max(end - start, 1) (no +1), bins are floor/ceil, and the
  forward kernel clips bin edges to [0, H - 1] x [0, W - 1], so the last row and column of the map
  are never pooled. Outputs match torchvision's; empty bins give 0. The gradient is the exact
  gradient of this forward (torchvision's backward clips to H, W instead, so it disagrees with its
  own forward on bins that reach the last row or column). No gradient for the RoI coordinates.
  """
  k = int(output_size)
  batch_size, height, width, channels = features.shape
  if channels % (k * k):
    raise ValueError(f"ps_roi_pool needs channels divisible by output_size**2 = {k * k}; "
                     f"got {channels}.")
  c_out = channels // (k * k)
  rois = rois.astype(jnp.float32)
  batch = rois[:, 0].astype(jnp.int32)
  corners = _round_half_away(rois[:, 1:] * spatial_scale).astype(jnp.int32)
  # roi_pool's bins with end - 1 and size - 1 are exactly ps_roi_pool's extent and clipping.
  h_lo, h_hi = _pool_bins(corners[:, 0], corners[:, 2] - 1, k, height - 1)  # [K, k]
  w_lo, w_hi = _pool_bins(corners[:, 1], corners[:, 3] - 1, k, width - 1)  # [K, k]

  # A summed-area table makes every bin 4 gathers of C_out values: O(B*H*W*C) to build plus
  # O(K*k*k*C_out) to read, forward and backward (reverse cumsums and a small scatter-add). The
  # separable 0/1 averaging-matrix einsum of roi_align costs O(K*B*H*W*C) dense flops instead.
  # Channels are centred first so the float32 table holds deviations rather than a growing offset;
  # a bin mean still carries ~eps * (sum of |deviations| up to the bin) / area of rounding error.
  x = features.astype(jnp.promote_types(features.dtype, jnp.float32))
  x = x.reshape(batch_size, height, width, c_out, k, k).transpose(0, 1, 2, 4, 5, 3)
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)  # [B, 1, 1, k, k, C_out]
  table = jnp.cumsum(jnp.cumsum(x - mean, axis=1), axis=2)
  table = jnp.pad(table, ((0, 0), (1, 0), (1, 0), (0, 0), (0, 0), (0, 0)))
  b = batch[:, None, None]
  i = jnp.arange(k)[None, :, None]
  j = jnp.arange(k)[None, None, :]

  def corner(h, w):  # [K, k] row and column edges -> table values [K, k, k, C_out]
    return table[b, h[:, :, None], w[:, None, :], i, j]

  total = corner(h_hi, w_hi) - corner(h_lo, w_hi) - corner(h_hi, w_lo) + corner(h_lo, w_lo)
  area = ((h_hi - h_lo)[:, :, None] * (w_hi - w_lo)[:, None, :])[..., None]  # [K, k, k, 1]
  avg = total / jnp.maximum(area, 1).astype(total.dtype) + mean[batch, 0, 0]
  return jnp.where(area > 0, avg, 0.0).astype(features.dtype)


def spatial_pyramid_pool(features, rois, levels: Sequence[int] = (1, 2, 4),
                         spatial_scale: float = 1.0):
  """SPP-net's pyramid pooling of RoI windows: [B, H, W, C], [K, 5] -> [K, sum(l*l) * C].

  He et al., "Spatial Pyramid Pooling in Deep Convolutional Networks for Visual Recognition",
  ECCV 2014, sec. 2.3 / 3.1: each window is max-pooled into l x l bins for every pyramid level and
  the bins are concatenated, a fixed-length vector whatever the window or image size. Default
  levels are the paper's fig. 3 pyramid (its detector uses 1, 2, 3, 6). Each level is
  `roi.roi_pool` (a one-level SPP, as Fast R-CNN notes), so bins follow torchvision's roi_pool
  rather than SPP-net's ceil/floor windows. Levels are concatenated in the given order, each
  flattened row-major over (bin_y, bin_x, channel).
  """
  pooled = [roi.roi_pool(features, rois, (lvl, lvl), spatial_scale) for lvl in levels]
  return jnp.concatenate([p.reshape(p.shape[0], -1) for p in pooled], axis=1)
