"""Normalised frames for keypoint regression (DeepPose's box normalisation, Toshev & Szegedy 2014).

A frame is a square window [B, 3] = (centre y, centre x, side) in image pixels. Points in the
frame are `(p - centre) / side`, so the window spans [-0.5, 0.5] on both axes whatever the person's
size. jax or numpy arrays; static shapes throughout.
"""
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
