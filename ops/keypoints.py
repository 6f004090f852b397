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
