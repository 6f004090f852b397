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

Options (`config.model.rpn`, `config.model.roi`, see `RPNOptions` and `roi_heads.RoIOptions`)
cover torchvision's detectors exactly (configs/det/faster_rcnn_r50_fpn_torchvision.py):
anchor placement ('torchvision': rounded cell anchors at offset 0, stride = canvas // feature
size per axis), proposals per FPN level (top-k and NMS per level, then the best over all levels),
a minimum proposal size, clipping to each image's own size (`image_hw` [B, 2], the batch key of
the same name: the content inside a padded canvas), RoIAlign `aligned`, input normalisation
(`pixel_mean` / `pixel_std` after scaling the [0, 1] input by `pixel_scale`; padding stays 0),
frozen batch norm and `trainable_layers` (torchvision's FrozenBatchNorm2d and
trainable_backbone_layers, ResNet backbones), and `per_image_canvas`: at test time each image in
a larger canvas gives what it gives alone at its own padded size (torchvision's evaluation).

Differences from the paper: any of our backbones (the paper: VGG16 conv5_3 at stride 16) with
BatchNorm (frozen with `frozen_bn`); RoIAlign is available besides RoI max pooling; detectron2's
sampling details (ground truth added to the proposals; background is every IoU below 0.5, not
[0.1, 0.5)).
"""
import dataclasses
import functools
from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from models.backbones import backbone_features
from models.fpn import FPN, pool_pyramid
from models.layers import inside_extent, zero_beyond
from models.options import resolve_fields
from models.roi_heads import RoIDetector, decode
from models.rpn import RPNHead, propose, rpn_targets
from ops.anchors import multilevel_anchors, torchvision_anchors, torchvision_image_anchors
from ops.nms import map_images, select_batch_detections


@dataclasses.dataclass(frozen=True)
class RPNOptions:
  """`config.model.rpn`: anchors, the RPN head, its training minibatch and the proposals."""
  # Without FPN: sizes x ratios at every cell (the paper). With FPN: one size per level.
  anchor_sizes: Sequence[float] = (128.0, 256.0, 512.0)
  anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0)  # Height / width.
  # 'centred': exact anchors centred on the cells at the nominal stride (offset 0.5: with few
  # cells per image, offset 0 leaves the last row and column without a centred anchor).
  # 'torchvision': see `ops.anchors.torchvision_anchors` (needs the FPN; the canvas is the padded
  # batch, so the canvas must be torchvision's padded size for identical anchors).
  anchor_placement: str = 'centred'
  # 'torchvision' only: the size its strides come from. 'batch': the padded batch (torchvision
  # on a batch). 'image': each image's `image_hw` padded to `size_divisor` (torchvision on one
  # image, as its COCO evaluation runs), cells beyond it dropped.
  anchor_canvas: str = 'batch'
  size_divisor: int = 32
  width: int = 512
  batch_size: int = 256  # Sampled anchors per image in training.
  pre_nms_topk_train: int = 2000
  post_nms_topk_train: int = 2000
  pre_nms_topk_test: int = 6000
  post_nms_topk_test: int = 300
  nms_iou: float = 0.7
  # True: pre-NMS top-k and NMS per FPN level, then the post-NMS top-k over all levels
  # (torchvision, detectron2). False: one top-k and one NMS over all anchors.
  per_level: bool = False
  min_size: float = 0.0  # Proposals with a side below it (after clipping) are dropped.


class FasterRCNN(RoIDetector):
  # Passed when the batch has it: each image's size inside the canvas (clipping, anchors).
  optional_inputs: ClassVar[dict] = {'image_hw': 'image_hw'}

  feature_stride: int = 16  # VGG16 conv5_3; unused with FPN.
  fpn_strides: Sequence[int] = ()  # E.g. (4, 8, 16, 32): FPN on these backbone levels, plus P6.
  fpn_width: int = 256
  rpn: RPNOptions = RPNOptions()
  # Input normalisation of the [0, 1] images: (x * pixel_scale - mean) / std per channel (empty:
  # none). torchvision: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), scale 1.
  pixel_mean: Sequence[float] = ()
  pixel_std: Sequence[float] = ()
  pixel_scale: float = 1.0
  frozen_bn: bool = False  # Backbone batch norm fixed (running statistics, no gradient).
  bn_epsilon: float = 1e-5  # Backbone batch norm; torchvision's COCO weights: 0.
  trainable_layers: int = 5  # ResNet stages trained from the top (torchvision's 0..5).
  # Test time with `image_hw` (ResNet backbones): each image's features are zeroed beyond its
  # padded size (image_hw rounded up to rpn.size_divisor) before every conv that reads across
  # that edge, its anchors there never score, and RoIAlign clamps its samples at that edge: the
  # image's outputs are those of the image alone on a canvas of its padded size (torchvision's
  # batch-of-one evaluation). Training (torchvision: one padded batch) is unchanged.
  per_image_canvas: bool = False

  def __post_init__(self):
    resolve_fields(self, rpn=RPNOptions)
    super().__post_init__()

  def anchors(self, level_hw: dict[int, tuple[int, int]],
              canvas_hw: tuple[int, int] | None = None) -> jax.Array:
    """The anchors of every level {stride: (H, W)}, level by level, cells row-major."""
    strides = sorted(level_hw)
    rpn = self.rpn
    if self.fpn_strides and len(rpn.anchor_sizes) != len(strides):
      raise ValueError(f'With FPN, give one anchor size per pyramid level: {len(strides)} levels '
                       f'(strides {strides}) but model.rpn.anchor_sizes={tuple(rpn.anchor_sizes)}.')
    sizes = [(s,) for s in rpn.anchor_sizes] if self.fpn_strides else [rpn.anchor_sizes]
    if rpn.anchor_placement == 'torchvision':
      if canvas_hw is None:
        raise ValueError("model.rpn.anchor_placement='torchvision' needs the canvas size.")
      return jnp.asarray(torchvision_anchors(canvas_hw, [level_hw[s] for s in strides], sizes,
                                             rpn.anchor_ratios))
    if rpn.anchor_placement != 'centred':
      raise ValueError(f'unknown model.rpn.anchor_placement {rpn.anchor_placement!r}; valid: '
                       "'centred', 'torchvision'.")
    anchors, _ = multilevel_anchors([level_hw[s] for s in strides], strides, sizes,
                                    rpn.anchor_ratios, offset=0.5)
    return jnp.asarray(anchors)

  def image_anchors(self, level_hw, image_hw):
    """Per image ([B, N, 4], valid [B, N]): torchvision's anchors of each image's own padded
    size (`ops.anchors.torchvision_image_anchors`)."""
    strides = sorted(level_hw)
    d = self.rpn.size_divisor
    padded = (-(-jnp.asarray(image_hw, jnp.int32) // d)) * d
    return jax.vmap(lambda hw: torchvision_image_anchors(
        hw, [level_hw[s] for s in strides], strides, [(s,) for s in self.rpn.anchor_sizes],
        self.rpn.anchor_ratios))(padded)

  def roi_head(self, pyramid, pool):
    """RoIs [B, R, 4] -> (logits, deltas): Fast R-CNN's head on `roi.size` pooled features."""
    del pyramid  # Read through `pool`; R-FCN's head reads the map itself.
    return self.fast_rcnn_head(functools.partial(pool, output_size=self.roi.size))

  def normalize(self, images, image_hw):
    """The model's input normalisation; pixels outside each image's `image_hw` stay 0."""
    if not self.pixel_mean:
      return images
    mean = jnp.asarray(self.pixel_mean, jnp.float32)
    std = jnp.asarray(self.pixel_std or (1.0,) * len(self.pixel_mean), jnp.float32)
    x = (images.astype(jnp.float32) * self.pixel_scale - mean) / std
    return x if image_hw is None else zero_beyond(x, image_hw)

  def image_extent(self, image_hw, *, train: bool):
    """[B, 2] each image's padded size for `per_image_canvas`, or None where it is off."""
    if not self.per_image_canvas or image_hw is None or train:
      return None
    d = self.rpn.size_divisor
    if not self.backbone.startswith('resnet') or d % 32:
      raise ValueError(f'model.per_image_canvas needs a ResNet backbone and a '
                       f'model.rpn.size_divisor that is a multiple of 32 (got {self.backbone!r}, '
                       f'{d}); set model.per_image_canvas=False.')
    return (-(-jnp.asarray(image_hw, jnp.int32) // d)) * d

  @nn.compact
  def __call__(self, images, gt_boxes=None, gt_labels=None, gt_valid=None, *, train: bool,
               image_hw=None):
    return self.detect_boxes(images, gt_boxes, gt_labels, gt_valid, train=train,
                             image_hw=image_hw)[0]

  def train_head_pools(self) -> tuple[tuple[int, int], ...]:
    """(slots, size) pairs: in training, heads on top (Mask R-CNN's) read the first `slots` of the
    box head's sampled RoIs pooled at `size`, which `detect_boxes` pools with the box head's."""
    return ()

  def detect_boxes(self, images, gt_boxes, gt_labels, gt_valid, *, train: bool, image_hw=None):
    """-> (the outputs above, `pool(rois [B, R, 4], output_size) -> [B, R, s, s, C]`).

    The pooler reads the RoI features (one level, or each RoI's FPN level), so heads added on
    top (Mask R-CNN's) pool the same features at their own resolution; in training the outputs
    hold those of `train_head_pools` under 'head_pooled' {size: [B, slots, s, s, C]}.
    `image_hw` [B, 2]: each image's size inside the canvas (default: the canvas).
    """
    canvas = images.shape[1:3]
    clip_hw = (jnp.broadcast_to(jnp.asarray(canvas, jnp.float32), (len(images), 2))
               if image_hw is None else jnp.asarray(image_hw, jnp.float32))
    backbone_kwargs = {}
    if self.frozen_bn or self.trainable_layers != 5 or self.bn_epsilon != 1e-5:
      if not self.backbone.startswith('resnet'):
        raise ValueError(f'model.frozen_bn, trainable_layers and bn_epsilon need a ResNet '
                         f'backbone (got {self.backbone!r}); leave them at their defaults.')
      backbone_kwargs = dict(frozen_bn=self.frozen_bn, trainable_layers=self.trainable_layers,
                             bn_epsilon=self.bn_epsilon)
    extent = self.image_extent(image_hw, train=train)
    features = backbone_features(self.backbone, self.normalize(images, image_hw), train=train,
                                 dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                                 extent=extent, **backbone_kwargs)
    if self.fpn_strides:
      pyramid = FPN(self.fpn_strides, self.fpn_width, dtype=self.dtype, name='fpn')(
          features, extent)
      roi_strides = tuple(self.fpn_strides)
    else:  # The RPN head's 3x3 conv reads across the edge.
      s = self.feature_stride
      pyramid = {s: zero_beyond(features[s], extent, s)}
      roi_strides = (s,)
    level_hw = {s: p.shape[1:3] for s, p in pyramid.items()}
    rpn = self.rpn
    anchors = self.anchors(level_hw, canvas)
    anchor_valid = None
    if rpn.anchor_placement == 'torchvision' and rpn.anchor_canvas == 'image':
      anchors, anchor_valid = self.image_anchors(level_hw, clip_hw)
    elif rpn.anchor_canvas != 'batch':
      raise ValueError(f"unknown model.rpn.anchor_canvas {rpn.anchor_canvas!r}; valid: 'batch', "
                       "'image' (with anchor_placement='torchvision').")
    per_cell = len(rpn.anchor_ratios) * (1 if self.fpn_strides else len(rpn.anchor_sizes))
    if extent is not None and anchor_valid is None:  # The cells within each image's extent.
      anchor_valid = jnp.concatenate([jnp.repeat(
          inside_extent(level_hw[s], extent, s).reshape(len(images), -1), per_cell, axis=1)
          for s in sorted(level_hw)], axis=1)
      anchors = jnp.broadcast_to(anchors, (*anchor_valid.shape, 4))
    rpn_head = RPNHead(per_cell, rpn.width, self.dtype, name='rpn')  # Shared by levels.
    rpn_logits, rpn_deltas = (jnp.concatenate(x, axis=1) for x in zip(
        *(rpn_head(pyramid[s]) for s in sorted(pyramid)), strict=True))
    counts = [int(np.prod(level_hw[s])) * per_cell for s in sorted(level_hw)]
    select = functools.partial(
        propose, nms_iou=rpn.nms_iou, min_size=rpn.min_size,
        level_counts=counts if rpn.per_level else None,
        pre_nms_topk=rpn.pre_nms_topk_train if train else rpn.pre_nms_topk_test,
        post_nms_topk=rpn.post_nms_topk_train if train else rpn.post_nms_topk_test)
    if anchor_valid is None:
      proposals, proposal_valid = map_images(
          lambda logits, deltas, hw: select(logits, deltas, anchors, hw),
          rpn_logits, rpn_deltas, clip_hw)
    else:  # Per-image anchors; the cells an image does not have never score.
      proposals, proposal_valid = map_images(
          lambda logits, deltas, hw, a, ok: select(logits, deltas, a, hw, anchor_valid=ok),
          jnp.where(anchor_valid, rpn_logits, -jnp.inf), rpn_deltas, clip_hw, anchors,
          anchor_valid)

    # RoIAlign clamps samples past the last row (column) of its map to it; the map of an image
    # alone ends at its extent, so the cells beyond repeat the last ones inside.
    pooled = pyramid if extent is None else {s: _edge_clamped(pyramid[s], extent, s)
                                             for s in roi_strides}

    head_pooled = {}  # Training: the heads' RoIs (`train_head_pools`) by size.

    def pool(rois, output_size: int):
      # The box head's call in training also pools the heads' RoIs: one RoIAlign, so one
      # gradient of the pyramid in the backward pass. Each call had its own, 174 MiB each at
      # 800x1344 batch 2: Mask R-CNN's XLA temporaries 3.15 -> 2.96 GB (b1: 1.64 -> 1.53).
      heads = [] if head_pooled or not train else list(self.train_head_pools())
      first, *rest = pool_pyramid(
          pooled, [(rois, output_size)] + [(rois[:, :n], size) for n, size in heads],
          roi_strides, method=self.roi.pooling, aligned=self.roi.aligned,
          sampling_ratio=self.roi.sampling_ratio)
      head_pooled.update(zip((size for _, size in heads), rest, strict=True))
      return first

    out = self.roi_outputs(self.roi_head(pyramid, pool), proposals, proposal_valid, gt_boxes,
                           gt_labels, gt_valid, train=train)
    if head_pooled:
      out['head_pooled'] = head_pooled
    if train:
      targets = functools.partial(rpn_targets, batch_size=rpn.batch_size)
      rngs = jax.random.split(self.make_rng('sample'), len(images))
      rpn_t = (jax.vmap(functools.partial(targets, anchors))(gt_boxes, gt_valid, rngs)
               if anchor_valid is None else jax.vmap(targets)(anchors, gt_boxes, gt_valid, rngs))
      out.update(rpn_logits=rpn_logits, rpn_deltas=rpn_deltas, rpn_targets=rpn_t)
    return out, pool


def _edge_clamped(x, extent, stride: int):
  """x [B, h, w, C] with each image's cells beyond ceil(extent / stride) copies of the last
  row / column within it."""
  cells = -(-extent // stride)
  rows = jnp.minimum(jnp.arange(x.shape[1])[None], cells[:, :1] - 1)  # [B, h]
  cols = jnp.minimum(jnp.arange(x.shape[2])[None], cells[:, 1:] - 1)  # [B, w]
  return jax.vmap(lambda f, r, c: f[r][:, c])(x, rows, cols)


class FasterRCNNWithHeads(FasterRCNN):
  """Faster R-CNN with heads on its RoIs (Mask R-CNN's mask and keypoints, DenseCap's captions).

  The heads train on the foreground RoIs of the box head's minibatch: `label_and_sample` puts them
  first, so the first int(roi.batch_size * roi.positive_fraction) RoIs hold all of them at a
  static size. At test time they run on the final detections, which the model selects itself
  (box decoding, clipping to `image_hw`, per-class NMS, top-D; the task passes config.detect)
  and returns under 'detections'.
  """
  score_threshold: float = 0.05
  nms_iou_threshold: float = 0.5
  pre_nms_topk: int = 1000
  max_detections: int = 100
  min_size: float = 0.0  # Detections with a side below it are dropped (torchvision: 1e-2).

  @property
  def num_head_rois(self) -> int:
    """The heads' slots in training: the foreground slots of the box head's RoIs."""
    return int(self.roi.batch_size * self.roi.positive_fraction)

  def head_rois(self, out: dict, image_hw, *, train: bool) -> dict:
    """The RoIs the heads see: boxes [B, N, 4], classes [B, N], and in training `valid` and the
    matched ground truth index `matched` (`label_and_sample`'s targets of those slots).
    `image_hw`: (H, W) of the canvas or [B, 2] per image, for clipping."""
    if train:
      return jax.tree.map(lambda x: x[:, :self.num_head_rois], out['roi_targets'])
    out['detections'] = select_batch_detections(
        *decode(out, image_hw), image_hw, score_threshold=self.score_threshold,
        iou_threshold=self.nms_iou_threshold, pre_nms_topk=self.pre_nms_topk,
        max_detections=self.max_detections, min_size=self.min_size)
    return {'boxes': out['detections']['boxes'], 'classes': out['detections']['labels']}
