"""Box parameterisations that a detector's model (decoding) and its loss (targets) both use.

Kept below models/ and losses/ so that neither imports the other. The R-CNN family's coder
weights stay with their models (models/rpn.py, models/roi_heads.py): only the models use them.
"""
import jax
import jax.numpy as jnp

# SSD: 1 / the paper's variances (0.1, 0.1, 0.2, 0.2) of the Faster R-CNN coder (ops.boxes.encode).
SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


# YOLO v1: raw (y, x, sqrt h, sqrt w) per cell and box (models/yolo.py).
def cell_boxes(raw_boxes: jax.Array) -> jax.Array:
  """Raw [..., S, S, B, 4] -> normalised (cy, cx, sqrt h, sqrt w) in image fractions.

  The predicted (x, y) are offsets inside cell (i, j), so the centre is ((i, j) + offset) / S.
  """
  s = raw_boxes.shape[-3]
  t = jax.nn.sigmoid(raw_boxes)
  grid = jnp.arange(s, dtype=jnp.float32)
  cy = (grid[:, None, None] + t[..., 0]) / s
  cx = (grid[None, :, None] + t[..., 1]) / s
  return jnp.stack([cy, cx, t[..., 2], t[..., 3]], axis=-1)


def to_corners(centre_sqrt_size: jax.Array) -> jax.Array:
  """(cy, cx, sqrt h, sqrt w) -> (y1, x1, y2, x2), all in image fractions."""
  cy, cx = centre_sqrt_size[..., 0], centre_sqrt_size[..., 1]
  h, w = centre_sqrt_size[..., 2] ** 2, centre_sqrt_size[..., 3] ** 2
  return jnp.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
