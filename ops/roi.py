"""RoI pooling and RoIAlign on NHWC features with torchvision.ops semantics.

RoIs are [K, 5] rows (batch_index, y1, x1, y2, x2) in image pixels; `spatial_scale` maps them to
the feature map (1 / stride). Outputs are [K, out_h, out_w, C].
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _exact_div(x, n):
  """x / n rounded exactly as in C (torchvision's bins and sample points depend on it).

  XLA rewrites division by a constant or a broadcast scalar as multiplication by the reciprocal,
  which is not correctly rounded; a divisor that is an opaque full-size array prevents that.
  """
  return x / (lax.optimization_barrier(x) * 0.0 + n)


def _round_half_away(x):
  # C's round() (torchvision) rounds halves away from zero; jnp.round rounds them to even.
  t = jnp.trunc(x)
  return jnp.where(jnp.abs(x - t) == 0.5, t + jnp.sign(x), jnp.round(x))


# ---------------------------------------------------------------------------------------------
# RoIAlign


def _align_samples(start, bin_size, n_out: int, grid: int, size: int):
  """Each bin's `grid` sample points along one axis: (low, high) cells [K, n_out, grid] and the
  weight of `high` (frac), with torchvision's validity test and border clamping."""
  p = jnp.arange(n_out, dtype=jnp.float32)[None, :, None]
  i = jnp.arange(grid, dtype=jnp.float32)[None, None, :]
  bin_size = bin_size[:, None, None]
  # Same operation order as torchvision's C++ so the sample points agree to the last bit.
  pos = start[:, None, None] + p * bin_size + _exact_div((i + 0.5) * bin_size, grid)
  valid = (pos >= -1.0) & (pos <= size)
  pos = jnp.maximum(pos, 0.0)
  low = jnp.floor(pos).astype(jnp.int32)
  at_edge = low >= size - 1
  low = jnp.where(at_edge, size - 1, low)
  high = jnp.where(at_edge, size - 1, low + 1)
  pos = jnp.where(at_edge, low.astype(jnp.float32), pos)
  return low, high, pos - low, valid


def _align_weights(samples, size: int):
  """Bilinear weights [K, n_out, size] averaged over the samples of each output bin.

  Bilinear interpolation is separable and torchvision's validity test (y < -1 or y > H gives 0) is
  a product of a y test and an x test, so RoIAlign = Wy @ features @ Wx^T per RoI.
  """
  low, high, frac, valid = samples
  cells = jnp.arange(size)
  w = ((1.0 - frac)[..., None] * (cells == low[..., None])
       + frac[..., None] * (cells == high[..., None]))
  w = jnp.where(valid[..., None], w, 0.0)
  return jnp.sum(w, axis=2) / low.shape[-1]


def _align_cells(samples):
  """The same weights as (cells [K, n_out, 2 * grid], weights): the two cells each sample reads.

  A cell read by two samples appears twice; its weights add up in the gather's sum.
  """
  low, high, frac, valid = samples
  weights = jnp.where(valid, 1.0, 0.0) / low.shape[-1]
  return (jnp.concatenate([low, high], -1),
          jnp.concatenate([(1.0 - frac) * weights, frac * weights], -1))


def _align_geometry(rois, spatial_scale, aligned):
  offset = 0.5 if aligned else 0.0
  y1 = rois[:, 1] * spatial_scale - offset
  x1 = rois[:, 2] * spatial_scale - offset
  roi_h = rois[:, 3] * spatial_scale - offset - y1
  roi_w = rois[:, 4] * spatial_scale - offset - x1
  if not aligned:  # Legacy behaviour: force malformed RoIs to be 1x1.
    roi_h = jnp.maximum(roi_h, 1.0)
    roi_w = jnp.maximum(roi_w, 1.0)
  return y1, x1, roi_h, roi_w


def roi_align(features, rois, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 2,
              aligned: bool = False, *, method: str = "gather"):
  """torchvision.ops.roi_align on NHWC features: [B, H, W, C], [K, 5] -> [K, oh, ow, C].

  Each output bin averages sampling_ratio x sampling_ratio bilinear samples. torchvision's
  adaptive grid (sampling_ratio <= 0: ceil(roi_size / output_size) samples) has a data-dependent
  size, so it is not supported here. aligned=True shifts the box by -0.5 pixel (Detectron2's
  ROIAlignV2). Differentiable with respect to `features`.

  method: 'gather' (default) sums (2 * sampling_ratio)**2 fused gathers of [K, oh, ow, C];
  'einsum' contracts per-RoI interpolation matrices [K, oh, H] and [K, ow, W] with the features
  (dense matmuls, cost grows with B * H * W). Both share the einsum transpose as the backward
  pass (a scatter-add is slower on CPU). Same numbers; see tools/bench_ops.py for timings.
  """
  if sampling_ratio <= 0:
    raise ValueError(f"roi_align needs sampling_ratio > 0 (got {sampling_ratio}): the adaptive "
                     "grid of torchvision has a data-dependent size, impossible with static "
                     "shapes. Use sampling_ratio=2 (detectron2's default).")
  oh, ow = output_size
  _, height, width, _ = features.shape
  rois = rois.astype(jnp.float32)
  batch = rois[:, 0].astype(jnp.int32)
  y1, x1, roi_h, roi_w = _align_geometry(rois, spatial_scale, aligned)
  ys = _align_samples(y1, _exact_div(roi_h, oh), oh, sampling_ratio, height)
  xs = _align_samples(x1, _exact_div(roi_w, ow), ow, sampling_ratio, width)
  wy, wx = _align_weights(ys, height), _align_weights(xs, width)  # [K, oh, H], [K, ow, W]
  if method == "einsum":
    return _einsum_align(features, batch, wy, wx)
  if method == "gather":
    return _gather_align(features, batch, wy, wx, _align_cells(ys), _align_cells(xs))
  raise ValueError(f"Unknown roi_align method {method!r}; use 'einsum' or 'gather'.")


def _einsum_align(features, batch, wy, wx):
  # Folding the batch index into the row weights turns the per-RoI image lookup into one matmul.
  onehot = jax.nn.one_hot(batch, features.shape[0], dtype=wy.dtype)
  wyb = wy[:, :, None, :] * onehot[:, None, :, None]  # [K, oh, B, H]
  rows = jnp.einsum("kpbh,bhwc->kpwc", wyb, features, precision=lax.Precision.HIGHEST)
  return jnp.einsum("kqw,kpwc->kpqc", wx, rows, precision=lax.Precision.HIGHEST)


@jax.custom_vjp
def _gather_align(features, batch, wy, wx, y_cells, x_cells):
  # Each bin reads 2 * sampling_ratio rows and columns (two per sample): sum those
  # (2 * sampling_ratio)**2 gathers of [K, oh, ow, C], each fused with its multiply-add. (Picking
  # the cells as the top-k of the dense weights instead cost a sort: 10% of DeepPose's step.)
  # The barrier keeps XLA from fusing the cell arithmetic into the gathers, where it would be
  # redone for every channel (Faster R-CNN trained at 133 instead of 151 img/s without it).
  (iy, vy), (ix, vx) = lax.optimization_barrier((y_cells, x_cells))
  b = batch[:, None, None]
  out = 0.0
  for a in range(iy.shape[-1]):
    for c in range(ix.shape[-1]):
      g = features[b, iy[:, :, a, None], ix[:, None, :, c]]
      out = out + (vy[:, :, a, None] * vx[:, None, :, c])[..., None] * g
  return out


def _gather_align_fwd(features, batch, wy, wx, y_cells, x_cells):
  return (_gather_align(features, batch, wy, wx, y_cells, x_cells),
          (features, batch, wy, wx, y_cells, x_cells))


def _gather_align_bwd(res, g):
  # The transpose of a gather is a scatter-add, which is slow on CPU; the transpose of the dense
  # einsum formulation is two matmuls. No gradient for the RoI coordinates, as torchvision.
  features, batch, wy, wx, y_cells, x_cells = res
  _, vjp = jax.vjp(lambda f: _einsum_align(f, batch, wy, wx), features)
  (grad,) = vjp(g)
  return (grad, *_no_grad((batch, wy, wx, y_cells, x_cells)))


def _no_grad(tree):
  """Zero cotangents for a custom VJP's inputs that get none (float0 for the integer ones)."""
  return jax.tree.map(lambda x: (np.zeros(x.shape, jax.dtypes.float0)
                                 if jnp.issubdtype(x.dtype, jnp.integer) else jnp.zeros_like(x)),
                      tree)


_gather_align.defvjp(_gather_align_fwd, _gather_align_bwd)


def roi_align_levels(levels, groups, spatial_scales, sampling_ratio: int = 2,
                     aligned: bool = False):
  """RoIAlign of each RoI on its own pyramid level: levels [B, H_l, W_l, C] (one per scale),
  groups [(rois [B, R, 4] (y1, x1, y2, x2) pixels, level [B, R] indices into `levels`, (oh, ow)),
  ...] -> one [B, R, oh, ow, C] per group.

  The same numbers as `roi_align` of each RoI on levels[level] (the same sample points, the same
  sums in the same order), for the cost of one level: the levels are flattened into one
  [sum_l B * H_l * W_l, C] table and each RoI reads it at its own level's offset. The backward
  pass scatters into that table: O(R * oh * ow * C), where `roi_align`'s dense transpose costs
  O(R * oh * H * W * C) per level (1.2 GB and most of the R50-FPN RoI cost at 800 px). The groups
  of one call (Mask R-CNN's box head RoIs at 7x7 and its mask head RoIs at 14x14 in training)
  scatter into one gradient of the table; pooled apart, each had its own, all alive until the
  FPN's backward pass.
  """
  if sampling_ratio <= 0:
    raise ValueError(f"roi_align_levels needs sampling_ratio > 0 (got {sampling_ratio}); use 2.")
  if len(spatial_scales) != len(levels):
    raise ValueError(f'{len(levels)} levels but {len(spatial_scales)} spatial scales')
  batch_size = len(levels[0])
  sizes = np.array([f.shape[1:3] for f in levels], np.int32)
  offsets = np.cumsum([0] + [batch_size * h * w for h, w in sizes[:-1]]).astype(np.int32)

  def cells(rois, level, output_size):
    # Each RoI's own level's scale, size and offset in the flat table, then the arithmetic of
    # `roi_align` once for all RoIs (elementwise, so the same numbers as with that level's Python
    # scalars; per level and selected, it was 4x the small kernels to compile).
    (oh, ow), num_rois = output_size, level.shape[1]
    rows = jnp.concatenate([jnp.zeros_like(rois[..., :1]), rois], -1).reshape(-1, 5)
    level = level.reshape(-1)
    scale = jnp.asarray(spatial_scales, jnp.float32)[level]
    height, width = (jnp.asarray(sizes[:, axis])[level][:, None, None] for axis in (0, 1))
    y1, x1, roi_h, roi_w = _align_geometry(rows.astype(jnp.float32), scale, aligned)
    iy, vy = _align_cells(_align_samples(y1, _exact_div(roi_h, oh), oh, sampling_ratio, height))
    ix, vx = _align_cells(_align_samples(x1, _exact_div(roi_w, ow), ow, sampling_ratio, width))
    # Row part of the flat index (level offset, image, row); the column adds to it.
    image = jnp.repeat(jnp.arange(batch_size), num_rois)
    iy = jnp.asarray(offsets)[level][:, None, None] + (image[:, None, None] * height + iy) * width
    return (iy, vy), (ix, vx)

  table = jnp.concatenate([f.reshape(-1, f.shape[-1]) for f in levels])
  outs = _flat_align(len(table), table, tuple(cells(*group) for group in groups))
  return [out.reshape(*group[1].shape, *out.shape[1:]) for out, group in zip(outs, groups,
                                                                              strict=True)]


def _flat_taps(y_cells, x_cells):
  """The (2 * sampling_ratio)**2 (flat index [K, oh, ow], weight [K, oh, ow]) reads of each bin,
  in `_gather_align`'s order."""
  (iy, vy), (ix, vx) = y_cells, x_cells
  return [(iy[:, :, a, None] + ix[:, None, :, c], vy[:, :, a, None] * vx[:, None, :, c])
          for a in range(iy.shape[-1]) for c in range(ix.shape[-1])]


# The most bytes of scatter updates `_flat_align`'s backward pass builds at once.
_SCATTER_CHUNK_BYTES = 64 * 2**20


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flat_align(num_rows, table, cells):
  """RoIAlign of `table` [num_rows, C] for each group of (y_cells, x_cells) in `cells`."""
  del num_rows  # The backward pass's table size.
  outs = []
  # As `_gather_align`: the barrier keeps the index arithmetic out of the per-channel gathers.
  for y_cells, x_cells in lax.optimization_barrier(cells):
    out = 0.0
    for index, weight in _flat_taps(y_cells, x_cells):
      out = out + weight[..., None] * table[index]
    outs.append(out)
  return tuple(outs)


def _flat_align_fwd(num_rows, table, cells):
  return _flat_align(num_rows, table, cells), cells


def _flat_align_bwd(num_rows, cells, gs):
  # Scatter-adds of every tap; no gradient for the RoI coordinates, as torchvision. The updates
  # (one [C] row per tap: 16 taps x 49 bins x 256 channels = 0.8 MB per RoI) go in chunks of
  # RoIs under a loop whose carry is the table's gradient: all at once they were the train
  # step's peak (784 MiB of Faster R-CNN's 800x1344 batch-2 heap; BENCHMARKS.md, ninth session).
  # Each step takes a chunk of every group: one loop needs every group's gradient before it
  # starts, so the table the forward gathers read is freed first (Mask R-CNN's 800x1344 batch 2
  # scattered its box RoIs before its mask head's forward pass had run), and no carry is handed
  # from one loop to the next (a copy).
  num_bytes = sum(g.size * y[0].shape[-1] * x[0].shape[-1] * g.dtype.itemsize
                  for g, (y, x) in zip(gs, cells, strict=True))
  num_chunks = max(1, -(-num_bytes // _SCATTER_CHUNK_BYTES))

  def split(x, num_rois):  # [num_rois, ...] -> [num_chunks, chunk, ...]; padded RoIs add zero.
    chunk = -(-num_rois // num_chunks)
    x = jnp.pad(x, [(0, num_chunks * chunk - num_rois)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(num_chunks, chunk, *x.shape[1:])

  chunks = [jax.tree.map(functools.partial(split, num_rois=len(g)), (g, y_cells, x_cells))
            for g, (y_cells, x_cells) in zip(gs, cells, strict=True)]

  def scatter_chunk(i, grad):
    for g_i, y_i, x_i in jax.tree.map(lambda x: x[i], chunks):
      taps = _flat_taps(y_i, x_i)
      index = jnp.stack([t for t, _ in taps], -1)  # [chunk, oh, ow, T]
      updates = jnp.stack([w for _, w in taps], -1)[..., None] * g_i[..., None, :]
      grad = grad.at[index.reshape(-1)].add(updates.reshape(-1, g_i.shape[-1]).astype(g_i.dtype))
    return grad

  grad = jnp.zeros((num_rows, gs[0].shape[-1]), gs[0].dtype)
  return lax.fori_loop(0, num_chunks, scatter_chunk, grad), _no_grad(cells)


_flat_align.defvjp(_flat_align_fwd, _flat_align_bwd)


# ---------------------------------------------------------------------------------------------
# RoI max pooling


def _pool_bins(start, end, n_out: int, size: int):
  """torchvision's integer bins [lo, hi) for one axis, clipped to [0, size]. [K, n_out] each."""
  length = jnp.maximum(end - start + 1, 1).astype(jnp.float32)
  bin_size = _exact_div(length, n_out)
  p = jnp.arange(n_out, dtype=jnp.float32)[None]
  lo = jnp.floor(p * bin_size[:, None]).astype(jnp.int32) + start[:, None]
  hi = jnp.ceil((p + 1.0) * bin_size[:, None]).astype(jnp.int32) + start[:, None]
  return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)


def _max_table(features):
  """Sparse table along W: level l holds the max of features[:, :, w : w + 2**l] and its column.

  Ties keep the left column, so range maxima report the first maximum like torchvision's loop.
  """
  width = features.shape[2]
  idx_dtype = jnp.int16 if width < 2**15 else jnp.int32
  vals = [features]
  idxs = [jnp.broadcast_to(jnp.arange(width, dtype=idx_dtype)[None, None, :, None],
                           features.shape)]
  step = 1
  while 2 * step <= width:
    v, i = vals[-1], idxs[-1]
    pad = ((0, 0), (0, 0), (0, step), (0, 0))
    v_right = jnp.pad(v[:, :, step:], pad, constant_values=-jnp.inf)
    i_right = jnp.pad(i[:, :, step:], pad)
    right = v_right > v
    vals.append(jnp.where(right, v_right, v))
    idxs.append(jnp.where(right, i_right, i))
    step *= 2
  return jnp.stack(vals), jnp.stack(idxs)


def _roi_pool_forward(features, rois, oh, ow, spatial_scale):
  _, height, width, _ = features.shape
  rois = rois.astype(jnp.float32)
  batch = rois[:, 0].astype(jnp.int32)
  c = _round_half_away(rois[:, 1:] * spatial_scale).astype(jnp.int32)
  h_lo, h_hi = _pool_bins(c[:, 0], c[:, 2], oh, height)  # [K, oh]
  w_lo, w_hi = _pool_bins(c[:, 1], c[:, 3], ow, width)  # [K, ow]
  w_len = w_hi - w_lo
  h_len = h_hi - h_lo
  empty = (h_len <= 0)[:, :, None] | (w_len <= 0)[:, None, :]  # [K, oh, ow]

  # A column range [lo, hi) is the union of two table windows of length 2**level.
  table_v, table_i = _max_table(features)
  num_levels = table_v.shape[0]
  level = sum((w_len >= 2**j).astype(jnp.int32) for j in range(1, num_levels))
  w_left = jnp.clip(w_lo, 0, width - 1)
  w_right = jnp.clip(w_hi - 2**level, 0, width - 1)
  lvl, b = level[:, None, :], batch[:, None, None]

  def row_max(h):
    hc = jnp.clip(h, 0, height - 1)[:, :, None]
    v_l, i_l = table_v[lvl, b, hc, w_left[:, None, :]], table_i[lvl, b, hc, w_left[:, None, :]]
    v_r, i_r = table_v[lvl, b, hc, w_right[:, None, :]], table_i[lvl, b, hc, w_right[:, None, :]]
    right = v_r > v_l
    return jnp.where(right, v_r, v_l), jnp.where(right, i_r, i_l).astype(jnp.int32)

  # Walk the rows of each bin (the loop runs as many steps as the tallest bin); a strictly
  # greater row max wins, so the argmax is the first maximum in row-major order.
  def body(s):
    dh, best, arg_h, arg_w = s
    h = h_lo + dh
    v, i = row_max(h)
    better = ((dh < h_len)[:, :, None, None]) & (v > best)
    return (dh + 1, jnp.where(better, v, best),
            jnp.where(better, h[:, :, None, None], arg_h), jnp.where(better, i, arg_w))

  shape = (rois.shape[0], oh, ow, features.shape[-1])
  init = (jnp.int32(0), jnp.full(shape, -jnp.inf, features.dtype),
          jnp.full(shape, height, jnp.int32), jnp.zeros(shape, jnp.int32))
  _, best, arg_h, arg_w = lax.while_loop(lambda s: s[0] < jnp.max(h_len, initial=0), body, init)
  empty = empty[..., None]
  out = jnp.where(empty, 0.0, best).astype(features.dtype)
  # Row index `height` (out of range) marks bins without a maximum: no gradient.
  arg_h = jnp.where(empty, height, arg_h)
  return out, (batch, arg_h, arg_w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _roi_pool(features, rois, oh, ow, spatial_scale):
  return _roi_pool_forward(features, rois, oh, ow, spatial_scale)[0]


def _roi_pool_fwd(features, rois, oh, ow, spatial_scale):
  out, res = _roi_pool_forward(features, rois, oh, ow, spatial_scale)
  return out, (res, features.shape, rois)


def _roi_pool_bwd(oh, ow, spatial_scale, residuals, g):
  # As torchvision: each output's gradient goes to its argmax; RoI coordinates get none.
  del oh, ow, spatial_scale
  (batch, arg_h, arg_w), shape, rois = residuals
  b = jnp.broadcast_to(batch[:, None, None, None], arg_h.shape)
  c = jnp.broadcast_to(jnp.arange(shape[-1]), arg_h.shape)
  grad = jnp.zeros(shape, g.dtype).at[b, arg_h, arg_w, c].add(g, mode="drop")
  return grad, jnp.zeros_like(rois)


_roi_pool.defvjp(_roi_pool_fwd, _roi_pool_bwd)


def roi_pool(features, rois, output_size, spatial_scale: float = 1.0):
  """torchvision.ops.roi_pool on NHWC features: [B, H, W, C], [K, 5] -> [K, oh, ow, C].

  RoI corners are rounded to feature cells (half away from zero), the RoI is split into
  floor/ceil integer bins, each bin takes its max, and empty bins give 0. The gradient flows to
  each bin's first maximum, as torchvision's backward.
  """
  oh, ow = output_size
  return _roi_pool(features, rois, int(oh), int(ow), float(spatial_scale))
