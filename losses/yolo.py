"""The YOLO v1 loss (Redmon et al. 2016, eq. 3): sum-squared error, lambda_coord, lambda_noobj.

Per image, the cell containing an object's centre is responsible for it; of that cell's B
predictors, the one whose box has the highest IoU with the object is "responsible" and gets the
coordinate and objectness terms (confidence target = that IoU). Every other predictor is pushed
towards confidence 0 with weight lambda_noobj. Class probabilities are per cell and only trained
in cells with an object. Width and height enter as square roots so that an error in a small box
costs more than the same error in a large one. Everything is vectorised over the padded ground
truth; a cell with several object centres takes the first listed one (the paper's model can only
predict one class per cell).
"""
import functools

import jax
import jax.numpy as jnp

from ops.box_coding import cell_boxes, to_corners
from ops.boxes import iou


def yolo_targets(boxes, labels, valid, *, image_hw, grid_size: int, num_classes: int) -> dict:
  """Targets of one image. boxes [M, 4] pixels, labels [M] in 1..C, valid [M].

  Returns, per cell of the S x S grid: 'has_object' [S, S] bool, 'offset' [S, S, 2] (y, x) of the
  object's centre inside the cell in [0, 1), 'sqrt_size' [S, S, 2] (sqrt h, sqrt w) as image
  fractions, 'box' [S, S, 4] (y1, x1, y2, x2) image fractions, 'class' [S, S, C] one-hot
  (labels 1..C -> index 0..C-1). Cells without an object hold zeros.
  """
  s, m = grid_size, boxes.shape[0]
  size = jnp.asarray(image_hw, jnp.float32)
  frac = boxes / jnp.concatenate([size, size])
  centre = (frac[:, :2] + frac[:, 2:]) / 2  # [M, 2] (cy, cx)
  ij = jnp.clip(jnp.floor(centre * s), 0, s - 1).astype(jnp.int32)
  cell = ij[:, 0] * s + ij[:, 1]
  in_cell = (cell[:, None] == jnp.arange(s * s)[None]) & valid[:, None]  # [M, S*S]
  # The first listed box wins its cell: highest priority = lowest index.
  owner = jnp.argmax(jnp.where(in_cell, m - jnp.arange(m)[:, None], 0), axis=0)  # [S*S]
  has_object = jnp.any(in_cell, axis=0)
  cell_yx = jnp.stack(jnp.divmod(jnp.arange(s * s), s), axis=-1).astype(jnp.float32)
  offset = centre[owner] * s - cell_yx
  sqrt_size = jnp.sqrt(jnp.maximum(frac[owner, 2:] - frac[owner, :2], 0.0))
  onehot = jax.nn.one_hot(labels[owner] - 1, num_classes)
  keep = has_object[:, None]
  out = {'has_object': has_object, 'offset': jnp.where(keep, offset, 0.0),
         'sqrt_size': jnp.where(keep, sqrt_size, 0.0), 'box': jnp.where(keep, frac[owner], 0.0),
         'class': jnp.where(keep, onehot, 0.0)}
  return {k: v.reshape((s, s) + v.shape[1:]) for k, v in out.items()}


def responsible_predictor(pred_boxes, target_boxes, has_object):
  """One-hot [..., B] of the predictor with the highest IoU with its cell's object (0 if none).

  pred_boxes [..., B, 4] and target_boxes [..., 4] in the same (corner) units. Also returns the
  IoUs [..., B], the confidence targets.
  """
  ious = iou(pred_boxes, target_boxes[..., None, :])[..., 0]
  best = jax.nn.one_hot(jnp.argmax(ious, axis=-1), pred_boxes.shape[-2])
  return best * has_object[..., None], ious


def yolo_loss(outputs, batch, *, lambda_coord: float = 5.0, lambda_noobj: float = 0.5):
  """`loss(outputs, batch) -> (scalar, aux)` for `models.yolo.YOLOv1` outputs.

  The sum over cells and predictors of the paper's five terms, averaged over the images.
  """
  n, s = outputs['boxes'].shape[:2]
  num_classes = outputs['class_logits'].shape[-1]
  targets = jax.vmap(functools.partial(
      yolo_targets, image_hw=batch['image'].shape[1:3], grid_size=s, num_classes=num_classes))(
          batch['boxes'], batch['labels'], batch['valid'])
  has_object = targets['has_object'].astype(jnp.float32)
  pred = cell_boxes(outputs['boxes'])  # [N, S, S, B, 4] (cy, cx, sqrt h, sqrt w).
  resp, ious = responsible_predictor(to_corners(pred), targets['box'], has_object)

  offset = jax.nn.sigmoid(outputs['boxes'][..., :2])
  coord = (jnp.sum((offset - targets['offset'][..., None, :]) ** 2, -1)
           + jnp.sum((pred[..., 2:] - targets['sqrt_size'][..., None, :]) ** 2, -1))
  conf = jax.nn.sigmoid(outputs['confidence'])
  probs = jax.nn.softmax(outputs['class_logits'], axis=-1)
  terms = {
      'coord_loss': lambda_coord * jnp.sum(resp * coord),
      'object_loss': jnp.sum(resp * (conf - jax.lax.stop_gradient(ious)) ** 2),
      'noobject_loss': lambda_noobj * jnp.sum((1.0 - resp) * conf ** 2),
      'class_loss': jnp.sum(has_object[..., None] * (probs - targets['class']) ** 2),
  }
  terms = {k: v / n for k, v in terms.items()}
  total = sum(terms.values())
  return total, {**terms, 'num_objects': jnp.sum(has_object) / n}
