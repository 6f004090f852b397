"""Fast R-CNN's RoI heads (Girshick, ICCV 2015): proposal sampling, RoI pooling, box head.

Training labels each proposal (ground-truth boxes are added to the proposals, as detectron2 does,
so every object has a perfect RoI from step 0) foreground at IoU >= 0.5 with a ground-truth box,
background below, and samples 64 RoIs per image with at most 25% foreground (the paper: 128 RoIs
from 2 images). Each RoI is pooled to 7x7 from the feature map (RoI max pooling as in the paper,
or RoIAlign from Mask R-CNN) and a two-layer MLP predicts C class scores (0 = background) and
class-specific box deltas for the C - 1 foreground classes.
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from ops import boxes as box_ops
from ops.matching import POSITIVE, match, sample_balanced
from ops.roi import roi_align, roi_pool

ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # The Fast R-CNN code's target normalisation (0.1, 0.2).


def label_and_sample(proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, rng, *,
                     fg_iou: float = 0.5, batch_size: int = 64,
                     positive_fraction: float = 0.25) -> dict:
  """One image: `batch_size` training RoIs [R, 4] drawn from proposals + ground truth.

  Returns 'boxes' [R, 4], 'valid' [R], 'classes' [R] int32 (0 = background) and 'deltas' [R, 4]
  (the regression target to the matched box; meaningful where classes > 0).
  """
  boxes = jnp.concatenate([proposals, gt_boxes])
  valid = jnp.concatenate([proposal_valid, gt_valid])
  matched, labels = match(box_ops.iou(boxes, gt_boxes), gt_valid, fg_iou, fg_iou)
  labels = jnp.where(valid, labels, -1)  # Padding is never sampled.
  index, sampled = sample_balanced(labels, batch_size, positive_fraction, rng)
  rois, gt = boxes[index], gt_boxes[matched[index]]
  foreground = sampled & (labels[index] == POSITIVE)
  return {'boxes': rois, 'valid': sampled,
          'classes': jnp.where(foreground, gt_labels[matched[index]], 0).astype(jnp.int32),
          'deltas': box_ops.encode(gt, rois, ROI_BOX_WEIGHTS)}


def pool_rois(features, rois, *, output_size: int, stride: int, method: str):
  """features [B, H, W, C], rois [B, R, 4] pixels -> [B, R, s, s, C].

  Per image (vmap), so the RoIs of one image never look at the others' feature maps: the
  interpolation matrices of RoIAlign's backward pass stay [R, s, H] instead of [B * R, s, B * H].
  """
  size = (output_size, output_size)

  def one_image(fmap, boxes):
    rows = jnp.concatenate([jnp.zeros((len(boxes), 1), boxes.dtype), boxes], axis=1)
    if method == 'align':
      return roi_align(fmap[None], rows, size, 1.0 / stride, sampling_ratio=2, aligned=True)
    if method == 'pool':
      return roi_pool(fmap[None], rows, size, 1.0 / stride)
    raise ValueError(f"Unknown RoI pooling {method!r}; valid: 'align' (RoIAlign), 'pool' "
                     "(Fast R-CNN's RoI max pooling).")

  return jax.vmap(one_image)(features, rois)


class BoxHead(nn.Module):
  """pooled RoIs [..., s, s, C] -> class logits [..., C], class-specific deltas [..., C - 1, 4]."""
  num_classes: int  # Including the background.
  hidden: int = 256
  dtype: Any = None

  @nn.compact
  def __call__(self, pooled: jax.Array) -> tuple[jax.Array, jax.Array]:
    lead = pooled.shape[:-3]
    x = pooled.reshape(*lead, -1)
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc6')(x))
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc7')(x))
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                      dtype=self.dtype, name='class_logits')(x)
    deltas = nn.Dense((self.num_classes - 1) * 4, kernel_init=nn.initializers.normal(0.001),
                      dtype=self.dtype, name='box_deltas')(x)
    return (logits.astype(jnp.float32),
            deltas.reshape(*lead, self.num_classes - 1, 4).astype(jnp.float32))
