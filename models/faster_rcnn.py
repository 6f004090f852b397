"""Faster R-CNN (Ren et al., NeurIPS 2015): one backbone pass, an RPN, and Fast R-CNN's RoI heads.

The four losses (RPN objectness and box, RoI classification and box) train jointly ("approximate
joint training": no gradient through the proposal coordinates). Target assignment needs the
ground truth and a random minibatch, so in training the model takes the batch's boxes and draws
from the 'sample' rng; its outputs carry the targets and `losses.rcnn` stays a pure function of
them. Outputs: those of `RoIDetector` plus, in training, 'rpn_logits' [B, N], 'rpn_deltas'
[B, N, 4] and 'rpn_targets' (positive, negative, deltas) over the N anchors.

With `fpn_strides` the RPN and the RoI heads work on a Feature Pyramid (`models/fpn.py`, Lin et
al. 2017): one anchor size per pyramid level (P2..P6), one RPN head shared by the levels, and each
RoI pooled from the level its size selects (P2..P5). Without it, one feature level.

Differences from the paper: any of our backbones (the paper: VGG16 conv5_3 at stride 16) with
BatchNorm, so no layers are frozen; RoIAlign is available besides RoI max pooling; detectron2's
sampling details (ground truth added to the proposals; background is every IoU below 0.5, not
[0.1, 0.5)); with FPN, pre-NMS top-k over all levels together (detectron2: per level).
"""
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import backbone_features
from models.fpn import FPN, pool_pyramid
from models.roi_heads import RoIDetector, decode
from models.rpn import RPNHead, propose, rpn_targets
from ops.anchors import multilevel_anchors
from ops.nms import select_batch_detections


class FasterRCNN(RoIDetector):
  feature_stride: int = 16  # VGG16 conv5_3; unused with FPN.
  fpn_strides: Sequence[int] = ()  # E.g. (4, 8, 16, 32): FPN on these backbone levels, plus P6.
  fpn_width: int = 256
  # Without FPN: 3 scales x 3 ratios at every cell (the paper). With FPN: one size per level.
  anchor_sizes: Sequence[float] = (128.0, 256.0, 512.0)
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

  def anchors(self, level_hw: dict[int, tuple[int, int]]) -> jax.Array:
    """The anchors of every level {stride: (H, W)}, level by level, cells row-major."""
    strides = sorted(level_hw)
    if self.fpn_strides and len(self.anchor_sizes) != len(strides):
      raise ValueError(f'With FPN, give one anchor size per pyramid level: {len(strides)} levels '
                       f'(strides {strides}) but anchor_sizes={tuple(self.anchor_sizes)}.')
    sizes = [(s,) for s in self.anchor_sizes] if self.fpn_strides else [self.anchor_sizes]
    # Anchors centred on the cells: with few cells per image, offset 0 leaves the last row and
    # column of the image without a centred anchor.
    anchors, _ = multilevel_anchors([level_hw[s] for s in strides], strides, sizes,
                                    self.anchor_ratios, offset=0.5)
    return jnp.asarray(anchors)

  def roi_head(self, pyramid, pool):
    """RoIs [B, R, 4] -> (logits, deltas): Fast R-CNN's head on `roi_size` pooled features."""
    del pyramid  # Read through `pool`; R-FCN's head reads the map itself.
    return self.fast_rcnn_head(functools.partial(pool, output_size=self.roi_size))

  @nn.compact
  def __call__(self, images, gt_boxes=None, gt_labels=None, gt_valid=None, *, train: bool):
    return self.detect_boxes(images, gt_boxes, gt_labels, gt_valid, train=train)[0]

  def detect_boxes(self, images, gt_boxes, gt_labels, gt_valid, *, train: bool):
    """-> (the outputs above, `pool(rois [B, R, 4], output_size) -> [B, R, s, s, C]`).

    The pooler reads the RoI features (one level, or each RoI's FPN level), so heads added on
    top (Mask R-CNN's) pool the same features at their own resolution.
    """
    features = backbone_features(self.backbone, images, train=train, dtype=self.dtype,
                                 bn_axis_name=self.bn_axis_name)
    if self.fpn_strides:
      pyramid = FPN(self.fpn_strides, self.fpn_width, dtype=self.dtype, name='fpn')(features)
      roi_strides = tuple(self.fpn_strides)
    else:
      pyramid = {self.feature_stride: features[self.feature_stride]}
      roi_strides = (self.feature_stride,)
    anchors = self.anchors({s: p.shape[1:3] for s, p in pyramid.items()})
    per_cell = len(self.anchor_ratios) * (1 if self.fpn_strides else len(self.anchor_sizes))
    rpn_head = RPNHead(per_cell, self.rpn_width, self.dtype, name='rpn')  # Shared by levels.
    rpn_logits, rpn_deltas = (jnp.concatenate(x, axis=1) for x in zip(
        *(rpn_head(pyramid[s]) for s in sorted(pyramid)), strict=True))
    proposals, proposal_valid = jax.vmap(functools.partial(
        propose, anchors=anchors, image_hw=images.shape[1:3], nms_iou=self.rpn_nms_iou,
        pre_nms_topk=self.pre_nms_topk_train if train else self.pre_nms_topk_test,
        post_nms_topk=self.post_nms_topk_train if train else self.post_nms_topk_test))(
            rpn_logits, rpn_deltas)

    def pool(rois, output_size: int):
      return pool_pyramid(pyramid, rois, roi_strides, output_size=output_size,
                          method=self.roi_pooling)

    out = self.roi_outputs(self.roi_head(pyramid, pool), proposals, proposal_valid, gt_boxes,
                           gt_labels, gt_valid, train=train)
    if train:
      rpn = jax.vmap(functools.partial(rpn_targets, anchors, batch_size=self.rpn_batch_size))(
          gt_boxes, gt_valid, jax.random.split(self.make_rng('sample'), len(images)))
      out.update(rpn_logits=rpn_logits, rpn_deltas=rpn_deltas, rpn_targets=rpn)
    return out, pool


class FasterRCNNWithHeads(FasterRCNN):
  """Faster R-CNN with heads on its RoIs (Mask R-CNN's mask and keypoints, DenseCap's captions).

  The heads train on the foreground RoIs of the box head's minibatch: `label_and_sample` puts them
  first, so the first int(roi_batch_size * roi_positive_fraction) RoIs hold all of them at a
  static size. At test time they run on the final detections, which the model selects itself
  (box decoding, per-class NMS, top-D; the task passes config.detect) and returns under
  'detections'.
  """
  score_threshold: float = 0.05
  nms_iou_threshold: float = 0.5
  pre_nms_topk: int = 1000
  max_detections: int = 100

  def head_rois(self, out: dict, image_hw: tuple[int, int], *, train: bool) -> dict:
    """The RoIs the heads see: boxes [B, N, 4], classes [B, N], and in training `valid` and the
    matched ground truth index `matched` (`label_and_sample`'s targets of those slots)."""
    if train:
      num_fg = int(self.roi_batch_size * self.roi_positive_fraction)
      return jax.tree.map(lambda x: x[:, :num_fg], out['roi_targets'])
    out['detections'] = select_batch_detections(
        *decode(out, image_hw), image_hw, score_threshold=self.score_threshold,
        iou_threshold=self.nms_iou_threshold, pre_nms_topk=self.pre_nms_topk,
        max_detections=self.max_detections)
    return {'boxes': out['detections']['boxes'], 'classes': out['detections']['labels']}
