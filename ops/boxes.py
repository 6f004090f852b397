"""Box utilities: areas, pairwise IoU, the Faster R-CNN box coder, clipping, format conversion.

Boxes are (y1, x1, y2, x2) in absolute pixels. Every function accepts arbitrary leading batch
dimensions (the last axis is the 4 coordinates) unless its docstring says otherwise.
"""
import math

import jax.numpy as jnp
import numpy as np

# detectron2's clamp on dh/dw before exp(): boxes at most 1000/16 times larger than their anchor.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)

# Guards log() and division against zero-size boxes (padded ground truth) so targets stay finite.
_EPS = 1e-6


def area(boxes):
  """Area of each box; inverted boxes count as empty. [..., 4] -> [...]."""
  h = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
  w = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
  return h * w


def iou(a, b):
  """Pairwise IoU [..., N, 4] x [..., M, 4] -> [..., N, M].

  Written as inter / (area_a + area_b - inter), torchvision's expression, so NMS decisions match it
  bit for bit. A pair whose union is empty (both boxes degenerate) has IoU 0, never NaN.
  """
  a = a[..., :, None, :]
  b = b[..., None, :, :]
  ih = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0.0)
  iw = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0.0)
  inter = ih * iw
  union = area(a) + area(b) - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def box_centers(boxes):
  """Centres (cy, cx) of boxes. [..., 4] -> [..., 2]."""
  return jnp.stack([(boxes[..., 0] + boxes[..., 2]) * 0.5, (boxes[..., 1] + boxes[..., 3]) * 0.5],
                   axis=-1)


def _center_size(boxes):
  h = boxes[..., 2] - boxes[..., 0]
  w = boxes[..., 3] - boxes[..., 1]
  return boxes[..., 0] + 0.5 * h, boxes[..., 1] + 0.5 * w, h, w


def encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
  """Regression targets (dy, dx, dh, dw) that take `anchors` to `boxes` (detectron2's coder).

  dy = wy * (cy - cy_a) / h_a, dh = wh * log(h / h_a), likewise for x/w. Shapes broadcast,
  [..., 4] -> [..., 4]. Zero-size boxes (padding) give large but finite targets; mask them out.
  """
  wy, wx, wh, ww = weights
  cy, cx, h, w = _center_size(boxes)
  acy, acx, ah, aw = _center_size(anchors)
  ah = jnp.maximum(ah, _EPS)
  aw = jnp.maximum(aw, _EPS)
  return jnp.stack([
      wy * (cy - acy) / ah,
      wx * (cx - acx) / aw,
      wh * jnp.log(jnp.maximum(h, _EPS) / ah),
      ww * jnp.log(jnp.maximum(w, _EPS) / aw),
  ], axis=-1)


def decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), scale_clamp=DEFAULT_SCALE_CLAMP):
  """Inverse of `encode`: apply (dy, dx, dh, dw) to `anchors`. [..., 4] -> [..., 4] boxes.

  dh/dw are clamped at `scale_clamp` (log(1000/16), as detectron2) so exp() cannot overflow.
  """
  wy, wx, wh, ww = weights
  acy, acx, ah, aw = _center_size(anchors)
  dy = deltas[..., 0] / wy
  dx = deltas[..., 1] / wx
  dh = jnp.minimum(deltas[..., 2] / wh, scale_clamp)
  dw = jnp.minimum(deltas[..., 3] / ww, scale_clamp)
  cy = dy * ah + acy
  cx = dx * aw + acx
  h = jnp.exp(dh) * ah
  w = jnp.exp(dw) * aw
  return jnp.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip(boxes, hw):
  """Clip boxes to an image of size hw = (height, width); y to [0, h], x to [0, w].

  `hw` is a pair of numbers or an array [..., 2] that broadcasts against boxes[..., :2] (one size
  per image when images in a batch have different valid sizes).
  """
  hw = jnp.asarray(hw, boxes.dtype)
  h = hw[..., 0:1]
  w = hw[..., 1:2]
  y = jnp.clip(boxes[..., 0::2], 0.0, h)
  x = jnp.clip(boxes[..., 1::2], 0.0, w)
  return jnp.stack([y[..., 0], x[..., 0], y[..., 1], x[..., 1]], axis=-1)


def yxyx_to_xywh(boxes):
  """(y1, x1, y2, x2) -> (x, y, w, h), the COCO JSON format.

  numpy in, numpy out: the COCO boundary runs on the host and should not round-trip via a device.
  """
  xp = np if isinstance(boxes, np.ndarray) else jnp
  return xp.stack([boxes[..., 1], boxes[..., 0], boxes[..., 3] - boxes[..., 1],
                   boxes[..., 2] - boxes[..., 0]], axis=-1)


def xywh_to_yxyx(boxes):
  """(x, y, w, h) -> (y1, x1, y2, x2). Works on numpy and jax arrays."""
  xp = np if isinstance(boxes, np.ndarray) else jnp
  return xp.stack([boxes[..., 1], boxes[..., 0], boxes[..., 1] + boxes[..., 3],
                   boxes[..., 0] + boxes[..., 2]], axis=-1)

