"""The SSD multibox loss (Liu et al. 2016, eq. 1) with 3:1 hard negative mining.

Default boxes are matched to ground truth by IoU >= 0.5, plus the best default box of every
ground-truth box (so each object has at least one). The loss is softmax cross-entropy over C
classes (0 = background) on the positives and the hardest negatives (at most neg_pos_ratio per
positive, per image, ranked by their cross-entropy), plus smooth L1 on the encoded offsets of the
positives, both divided by the number of positives in the batch.
"""
import functools

import jax
import jax.numpy as jnp
import optax

from ops import boxes as box_ops
from ops.box_coding import SSD_BOX_WEIGHTS
from ops.matching import POSITIVE, match


def ssd_targets(anchors, boxes, labels, valid, *, iou_threshold: float = 0.5):
  """One image: -> (classes [D] int32, 0 = background; deltas [D, 4]; positive [D] bool)."""
  matched, label = match(box_ops.iou(anchors, boxes), valid, iou_threshold, iou_threshold,
                         allow_low_quality=True)
  positive = label == POSITIVE
  classes = jnp.where(positive, labels[matched], 0).astype(jnp.int32)
  return classes, box_ops.encode(boxes[matched], anchors, SSD_BOX_WEIGHTS), positive


def hard_negatives(losses, positive, neg_pos_ratio: int = 3):
  """The [D] mask of the highest-loss negatives, min(ratio * #positives, #negatives) of them.

  Static shapes: every default box gets its rank among the negatives by a double argsort.
  """
  num_pos = jnp.sum(positive)
  num_neg = jnp.minimum(neg_pos_ratio * num_pos, positive.shape[0] - num_pos)
  rank = jnp.argsort(jnp.argsort(jnp.where(positive, jnp.inf, -losses)))  # Positives last.
  return ~positive & (rank < num_neg)


def ssd_loss(outputs, batch, *, iou_threshold: float = 0.5, neg_pos_ratio: int = 3,
             alpha: float = 1.0):
  """`loss(outputs, batch) -> (scalar, aux)` for `models.ssd.SSD` outputs."""
  targets = functools.partial(ssd_targets, outputs['anchors'], iou_threshold=iou_threshold)
  labels = batch['labels']
  if 'head_classes' in outputs:  # An imported head's label space (models/ssd_vgg16.py).
    labels = outputs['head_classes'][labels]
  classes, deltas, positive = jax.vmap(targets)(batch['boxes'], labels, batch['valid'])
  ce = optax.softmax_cross_entropy_with_integer_labels(outputs['class_logits'], classes)
  negative = jax.vmap(functools.partial(hard_negatives, neg_pos_ratio=neg_pos_ratio))(
      jax.lax.stop_gradient(ce), positive)
  num_pos = jnp.sum(positive)
  norm = jnp.maximum(num_pos, 1).astype(jnp.float32)
  conf = jnp.sum(ce * (positive | negative)) / norm
  smooth_l1 = optax.huber_loss(outputs['box_deltas'], deltas, delta=1.0).sum(-1)
  loc = jnp.sum(smooth_l1 * positive) / norm
  accuracy = jnp.sum((jnp.argmax(outputs['class_logits'], -1) == classes) & positive) / norm
  return conf + alpha * loc, {'conf_loss': conf, 'loc_loss': loc,
                              'positives_per_image': num_pos / positive.shape[0],
                              'positive_accuracy': accuracy}
