"""Region Proposal Network (Ren et al., NeurIPS 2015, sec. 3.1): anchors, head, targets, proposals.

At every cell of a feature map, A anchors (sizes x aspect ratios, `ops.anchors`) get an
objectness logit and box deltas from a 3x3 conv followed by two sibling 1x1 convs. Training
labels an anchor positive at IoU >= 0.7 with a ground-truth box (plus each box's best anchors),
negative below 0.3, and samples 256 anchors per image with at most half positives. Proposals are
the decoded top-scoring anchors after NMS at IoU 0.7, a fixed number per image (padded, with a
validity mask) so that shapes stay static.
"""
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.layers import Conv, ConvParams, sibling_1x1_convs
from ops import boxes as box_ops
from ops.matching import match_boxes, sample_balanced_mask
from ops.nms import batched_nms, nms

RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # The paper's RPN parameterisation (no scaling).


class RPNHead(nn.Module):
  """features [B, H, W, C] -> objectness logits [B, H*W*A], deltas [B, H*W*A, 4]."""
  num_anchors: int
  width: int = 256
  dtype: Any = None

  @nn.compact
  def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = nn.relu(Conv(self.width, (3, 3), dtype=self.dtype, name='conv')(features))
    init = nn.initializers.normal(0.01)  # The paper's N(0, 0.01) for the new layers.
    logits, deltas = sibling_1x1_convs(x, [
        ConvParams(self.num_anchors, (1, 1), init, name='objectness')(x.shape[-1]),
        ConvParams(self.num_anchors * 4, (1, 1), init, name='deltas')(x.shape[-1])], self.dtype)
    b = len(features)
    return (logits.reshape(b, -1).astype(jnp.float32),
            deltas.reshape(b, -1, 4).astype(jnp.float32))


def rpn_targets(anchors, gt_boxes, gt_valid, rng, *, pos_iou: float = 0.7, neg_iou: float = 0.3,
                batch_size: int = 256, positive_fraction: float = 0.5) -> dict:
  """One image: the sampled anchors' labels and regression targets.

  Returns 'positive' [N] and 'negative' [N] bool (the sampled minibatch; everything else does not
  enter the loss) and 'deltas' [N, 4] (meaningful where positive).
  """
  matched, labels = match_boxes(anchors, gt_boxes, gt_valid, pos_iou, neg_iou,
                                allow_low_quality=True)
  positive, negative = sample_balanced_mask(labels, batch_size, positive_fraction, rng)
  deltas = box_ops.encode(gt_boxes[matched], anchors, RPN_BOX_WEIGHTS)
  return {'positive': positive, 'negative': negative, 'deltas': deltas}


def propose(logits, deltas, anchors, image_hw, *, pre_nms_topk: int, post_nms_topk: int,
            nms_iou: float = 0.7, min_size: float = 0.0,
            level_counts: Sequence[int] | None = None,
            anchor_valid=None) -> tuple[jax.Array, jax.Array]:
  """One image: the `post_nms_topk` proposals [P, 4] (best first) and their validity [P].

  The `pre_nms_topk` highest-scoring anchors are decoded, clipped to the image (`image_hw`, a
  pair or a [2] array) and suppressed at `nms_iou`; boxes with a side below `min_size` pixels
  (and empty boxes) are dropped. With `level_counts` (the anchors of each FPN level, in order),
  the top-k and the NMS are per level (torchvision's and detectron2's `batched_nms` over
  levels, on sigmoid scores) before the best `post_nms_topk` over all levels are kept. No
  gradient flows through proposals (the paper's approximate joint training).
  """
  logits, deltas = jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas)
  if level_counts is None:
    scores, top = jax.lax.top_k(logits, min(pre_nms_topk, logits.shape[0]))
    levels = None
  else:
    tops, levels, start = [], [], 0
    for level, n in enumerate(level_counts):
      _, top = jax.lax.top_k(logits[start:start + n], min(pre_nms_topk, n))
      tops.append(top + start)
      levels.append(jnp.full(top.shape, level, jnp.int32))
      start += n
    top, levels = jnp.concatenate(tops), jnp.concatenate(levels)
    scores = jax.nn.sigmoid(logits[top])
  boxes = box_ops.clip(box_ops.decode(deltas[top], anchors[top], RPN_BOX_WEIGHTS), image_hw)
  sides = boxes[:, 2:] - boxes[:, :2]
  # Empty boxes (clipped away entirely) never count, whatever `min_size` (torchvision: >= 1e-3).
  big_enough = jnp.all((sides >= min_size) & (sides > 0), axis=-1)
  if anchor_valid is not None:  # [N]: anchors that do not exist for this image.
    big_enough &= anchor_valid[top]
  if levels is None:
    keep, valid = nms(boxes, scores, nms_iou, post_nms_topk, valid_mask=big_enough)
  else:
    keep, valid = batched_nms(boxes, scores, levels, nms_iou, post_nms_topk,
                              valid_mask=big_enough)
  return jnp.where(valid[:, None], boxes[keep], 0.0), valid
