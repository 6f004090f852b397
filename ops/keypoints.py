"""Normalised frames for keypoint regression (DeepPose's box normalisation, Toshev & Szegedy 2014).

A frame is a square window [B, 3] = (centre y, centre x, side) in image pixels. Points in the
frame are `(p - centre) / side`, so the window spans [-0.5, 0.5] on both axes whatever the person's
size. jax or numpy arrays; static shapes throughout.
"""
import jax
import jax.numpy as jnp


def square_frame(boxes, margin: float = 1.2, min_side: float = 4.0):
  """The square around each (y1, x1, y2, x2) box [B, 4], its longer side scaled by `margin`."""
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2
  side = jnp.max(boxes[..., 2:] - boxes[..., :2], axis=-1) * margin
  return jnp.concatenate([centre, jnp.maximum(side, min_side)[..., None]], axis=-1)


def to_frame(points, frame):
  """Pixel (y, x) points [B, J, 2] -> frame coordinates."""
  return (points - frame[:, None, :2]) / frame[:, None, 2:]


def from_frame(points, frame):
  """Frame coordinates [B, J, 2] -> pixel (y, x) points."""
  return points * frame[:, None, 2:] + frame[:, None, :2]


def window_rois(centres, sides):
  """RoI rows [B * J, 5] (batch index, y1, x1, y2, x2) of squares of `sides` [B] around
  `centres` [B, J, 2], for `ops.roi.roi_align`."""
  b, j = centres.shape[:2]
  half = jnp.broadcast_to(sides[:, None, None] / 2, (b, j, 1))
  index = jnp.broadcast_to(jnp.arange(b, dtype=centres.dtype)[:, None, None], (b, j, 1))
  rois = jnp.concatenate([index, centres - half, centres + half], axis=-1)
  return rois.reshape(b * j, 5)


# ---------------------------------------------------------------------------------------------
# Mask R-CNN keypoint heatmaps (He et al., ICCV 2017, sec. 5): one size x size one-hot target per
# joint in the frame of its RoI, trained with a softmax cross-entropy over the size**2 cells.


def _roi_axis(rois, axis: int):
  start, end = rois[..., axis], rois[..., axis + 2]
  return start, end - start


def heatmap_targets(keypoints, rois, size: int):
  """Target cells of keypoints [R, J, 3] in rois [R, 4]: (index int32 [R, J], valid bool [R, J]).

  detectron2's keypoints_to_heatmap: bin = floor((p - roi_start) * size / roi_extent) per axis,
  a point on the far edge goes to bin size - 1, index = bin_y * size + bin_x (0 where invalid).
  Valid: labelled (v > 0), inside the RoI (far edge included) and the RoI is not degenerate.
  """
  bins, inside = [], []
  for axis in (0, 1):
    start, extent = _roi_axis(rois.astype(jnp.float32)[:, None], axis)
    p = keypoints[..., axis].astype(jnp.float32)
    scale = size / jnp.where(extent > 0, extent, 1.0)
    # Clipping before the cast maps the far edge to size - 1 and keeps far-away points (and
    # float rounding just inside the far edge) from overflowing the integer conversion.
    b = jnp.clip(jnp.floor((p - start) * scale), 0, size - 1).astype(jnp.int32)
    bins.append(b)
    inside.append((extent > 0) & (p >= start) & (p <= start + extent))
  valid = (keypoints[..., 2] > 0) & inside[0] & inside[1]
  index = jnp.where(valid, bins[0] * size + bins[1], 0)
  return index.astype(jnp.int32), valid


def heatmaps_to_keypoints(heatmaps, rois):
  """Keypoints [D, J, 3] (y, x, score) from heatmap logits [D, J, s, s] over rois [D, 4].

  Location: the centre of the argmax cell mapped into the RoI, roi_start + (bin + 0.5) *
  extent / s; score: the max logit.
  """
  d, j, s, _ = heatmaps.shape
  flat = heatmaps.reshape(d, j, s * s).astype(jnp.float32)
  arg = jnp.argmax(flat, axis=-1)
  score = jnp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
  by, bx = arg // s, arg % s
  pos = [by.astype(jnp.float32), bx.astype(jnp.float32)]
  coords = []
  for axis in (0, 1):
    start, extent = _roi_axis(rois.astype(jnp.float32)[:, None], axis)
    coords.append(start + (pos[axis] + 0.5) * extent / s)
  return jnp.stack([coords[0], coords[1], score], axis=-1)


def _bicubic_taps(out_size, in_size: int, max_out: int):
  """PyTorch's upsample_bicubic2d (align_corners=False, A = -0.75) from `in_size` cells to a
  traced `out_size` <= max_out: the 4 source cells [max_out, 4] and weights of each output."""
  a = -0.75
  scale = jnp.float32(in_size) / out_size.astype(jnp.float32)
  real = scale * (jnp.arange(max_out, dtype=jnp.float32) + 0.5) - 0.5
  index = jnp.minimum(jnp.floor(real), in_size - 1)
  t = jnp.clip(real - index, 0.0, 1.0)
  near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1
  far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
  weights = jnp.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)
  cells = jnp.clip(index.astype(jnp.int32)[:, None] + jnp.arange(-1, 3), 0, in_size - 1)
  return cells, weights


def torchvision_keypoints(heatmaps, rois, *, max_size: int | tuple[int, int]):
  """torchvision's heatmaps_to_keypoints: keypoints [D, J, 3] (y, x, score) of D detections.

  Each heatmap [s, s] is resized (bicubic) to the box's integer size (ceil of its sides, at least
  1), the argmax pixel (first in row-major order) gives the keypoint at its centre scaled back to
  the box, and the score is the resized value there. Static shapes: each map is computed on the
  smallest grid of `_decode_grids(max_size)` that holds its box (the rest masked), one detection
  at a time, so the cost follows the box, not the canvas (padding detections, zero boxes, take the
  smallest); boxes larger than `max_size` (none when it is the canvas) would be decoded on a
  clipped map. Call it on all the detections of a batch at once, not under vmap: a batched
  `lax.switch` would compute every grid.
  """
  grids = _decode_grids((max_size, max_size) if isinstance(max_size, int) else max_size)
  s = heatmaps.shape[-1]
  rois = rois.astype(jnp.float32)

  def on_grid(max_h: int, max_w: int):
    def decode(maps, roi):  # [J, s, s], [4]
      size = jnp.maximum(roi[2:] - roi[:2], 1.0)  # (height, width) as torchvision clamps them.
      out = jnp.ceil(size)
      ys, wy = _bicubic_taps(out[0], s, max_h)
      xs, wx = _bicubic_taps(out[1], s, max_w)
      # 4 taps per axis: rows of the column-resized map, then a weighted sum of 4 of those rows.
      maps = maps.astype(jnp.float32)
      cols = sum(maps[:, :, xs[:, k]] * wx[:, k] for k in range(4))  # [J, s, max_w]
      full = sum(cols[:, ys[:, k], :] * wy[:, k, None] for k in range(4))  # [J, max_h, max_w]
      inside = ((jnp.arange(max_h) < out[0])[:, None]) & ((jnp.arange(max_w) < out[1])[None, :])
      flat = jnp.where(inside, full, -jnp.inf).reshape(len(maps), -1)
      arg = jnp.argmax(flat, axis=-1)
      score = jnp.take_along_axis(flat, arg[:, None], axis=-1)[:, 0]
      y_int, x_int = arg // max_w, arg % max_w
      y = (y_int.astype(jnp.float32) + 0.5) * (size[0] / out[0]) + roi[0]
      x = (x_int.astype(jnp.float32) + 0.5) * (size[1] / out[1]) + roi[1]
      return jnp.stack([y, x, score], axis=-1)
    return decode

  branches = [on_grid(h, w) for h, w in grids]

  def one(args):
    maps, roi = args
    need = jnp.ceil(jnp.maximum(roi[2:] - roi[:2], 1.0))
    fits = jnp.asarray([(need[0] <= h) & (need[1] <= w) for h, w in grids[:-1]] + [True])
    return jax.lax.switch(jnp.argmax(fits), branches, maps, roi)

  return jax.lax.map(one, (heatmaps, rois))


def _decode_grids(max_hw: tuple[int, int]) -> list[tuple[int, int]]:
  """Square grids of 64, 128, ... px below `max_hw`, then `max_hw` itself (the same keypoints on
  any grid that holds the box: the taps of a cell do not depend on the grid's size)."""
  grids, side = [], 64
  while side < max(max_hw):
    grids.append((min(side, max_hw[0]), min(side, max_hw[1])))
    side *= 2
  return grids + [tuple(max_hw)]
