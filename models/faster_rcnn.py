"""Faster R-CNN (Ren et al., NeurIPS 2015): one backbone pass, an RPN, and Fast R-CNN's RoI heads.

The four losses (RPN objectness and box, RoI classification and box) train jointly ("approximate
joint training": no gradient through the proposal coordinates). Target assignment needs the
ground truth and a random minibatch, so in training the model takes the batch's boxes and draws
from the 'sample' rng; its outputs carry the targets and `losses.rcnn` stays a pure function of
them. Outputs: those of `RoIDetector` plus, in training, 'rpn_logits' [B, N], 'rpn_deltas'
[B, N, 4] and 'rpn_targets' (positive, negative, deltas) over the N anchors.

Differences from the paper: a single feature level of any of our backbones (the paper: VGG16
conv5_3 at stride 16) with BatchNorm, so no layers are frozen; RoIAlign is available besides RoI
max pooling; detectron2's sampling details (ground truth added to the proposals; background is
every IoU below 0.5, not [0.1, 0.5)).
"""
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import backbone_features
from models.roi_heads import RoIDetector, pool_rois
from models.rpn import RPNHead, propose, rpn_targets
from ops.anchors import grid_anchors, num_anchors_per_cell


class FasterRCNN(RoIDetector):
  feature_stride: int = 16  # VGG16 conv5_3.
  anchor_sizes: Sequence[float] = (128.0, 256.0, 512.0)  # The paper: 3 scales x 3 ratios.
  anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  rpn_width: int = 512
  rpn_batch_size: int = 256
  pre_nms_topk_train: int = 2000
  post_nms_topk_train: int = 2000
  pre_nms_topk_test: int = 6000
  post_nms_topk_test: int = 300
  rpn_nms_iou: float = 0.7
  roi_pooling: str = 'pool'  # 'pool' (RoI max pooling) or 'align' (RoIAlign).
  roi_size: int = 7

  def anchors(self, feature_hw) -> jax.Array:
    # Anchors centred on the cells: with few cells per image, offset 0 leaves the last row and
    # column of the image without a centred anchor.
    return jnp.asarray(grid_anchors(feature_hw, self.feature_stride, self.anchor_sizes,
                                    self.anchor_ratios, offset=0.5))

  @nn.compact
  def __call__(self, images, gt_boxes=None, gt_labels=None, gt_valid=None, *, train: bool):
    features = backbone_features(self.backbone, images, train=train, dtype=self.dtype,
                                 bn_axis_name=self.bn_axis_name)[self.feature_stride]
    anchors = self.anchors(features.shape[1:3])
    rpn_logits, rpn_deltas = RPNHead(num_anchors_per_cell(self.anchor_sizes, self.anchor_ratios),
                                     self.rpn_width, self.dtype, name='rpn')(features)
    proposals, proposal_valid = jax.vmap(functools.partial(
        propose, anchors=anchors, image_hw=images.shape[1:3], nms_iou=self.rpn_nms_iou,
        pre_nms_topk=self.pre_nms_topk_train if train else self.pre_nms_topk_test,
        post_nms_topk=self.post_nms_topk_train if train else self.post_nms_topk_test))(
            rpn_logits, rpn_deltas)
    roi_features = functools.partial(pool_rois, features, output_size=self.roi_size,
                                     stride=self.feature_stride, method=self.roi_pooling)
    out = self.roi_outputs(roi_features, proposals, proposal_valid, gt_boxes, gt_labels,
                           gt_valid, train=train)
    if train:
      rpn = jax.vmap(functools.partial(rpn_targets, anchors, batch_size=self.rpn_batch_size))(
          gt_boxes, gt_valid, jax.random.split(self.make_rng('sample'), len(images)))
      out.update(rpn_logits=rpn_logits, rpn_deltas=rpn_deltas, rpn_targets=rpn)
    return out
