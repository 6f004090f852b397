"""The detectors before Faster R-CNN, each fixing the previous one's bottleneck (the lecture).

- `SlidingWindow`: classify every window of a dense grid (several sizes and aspect ratios) with a
  CNN on its crop, then NMS. The number of windows, and so the cost, explodes.
- `RCNN` (Girshick et al., CVPR 2014): the same per-crop CNN, on ~2k external region proposals
  (selective search) instead of every window, warped to a fixed size with some context, with
  class-specific box regression and softmax or the paper's linear SVMs (`classifier='svm'`).
- `FastRCNN` (Girshick, ICCV 2015): one backbone pass per image; each proposal is RoI-pooled
  from the shared feature map, so the per-proposal work is only the small head.

External proposals come with the batch ('proposals' [B, P, 4] pixels, 'proposal_valid' [B, P]:
`data/proposals.py`). All three share `RoIDetector`'s sampling, box head and outputs.
"""
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import backbone_features
from models.roi_heads import RoIDetector, pool_rois
from ops import boxes as box_ops
from ops.anchors import grid_anchors


class FastRCNN(RoIDetector):
  feature_stride: int = 16
  roi_pooling: str = 'pool'  # The paper's RoI max pooling; 'align' for RoIAlign.
  roi_size: int = 7

  @nn.compact
  def __call__(self, images, proposals, proposal_valid, gt_boxes=None, gt_labels=None,
               gt_valid=None, *, train: bool):
    features = backbone_features(self.backbone, images, train=train, dtype=self.dtype,
                                 bn_axis_name=self.bn_axis_name)[self.feature_stride]
    roi_features = functools.partial(pool_rois, features, output_size=self.roi_size,
                                     stride=self.feature_stride, method=self.roi_pooling)
    return self.roi_outputs(roi_features, proposals, proposal_valid, gt_boxes, gt_labels,
                            gt_valid, train=train)


class RCNN(RoIDetector):
  crop_size: int = 224  # The paper warps every region to 227x227.
  context: float = 227.0 / 195.0  # 16 pixels of context on each side at 227: the box grows 1.16x.
  feature_stride: int = 32  # The crop's feature map that the head flattens.

  def crop_features(self, images, rois, *, train: bool):
    """[B, R, 4] RoIs -> per-crop features [B, R, h, w, C]: one CNN pass per region."""
    centre = box_ops.box_centers(rois)
    half = (rois[..., 2:] - rois[..., :2]) * (0.5 * self.context)
    context_boxes = jnp.concatenate([centre - half, centre + half], axis=-1)
    crops = pool_rois(images, context_boxes, output_size=self.crop_size, stride=1,
                      method='align')  # Bilinear warp; outside the image reads zeros.
    b, r = crops.shape[:2]
    features = backbone_features(self.backbone, crops.reshape(b * r, *crops.shape[2:]),
                                 train=train, dtype=self.dtype,
                                 bn_axis_name=self.bn_axis_name)[self.feature_stride]
    return features.reshape(b, r, *features.shape[1:])

  @nn.compact
  def __call__(self, images, proposals, proposal_valid, gt_boxes=None, gt_labels=None,
               gt_valid=None, *, train: bool):
    return self.roi_outputs(functools.partial(self.crop_features, images, train=train),
                            proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, train=train)


class SlidingWindow(RCNN):
  """R-CNN's per-crop classifier on every window of a grid instead of proposals."""
  window_stride: int = 8
  window_sizes: Sequence[float] = (16.0, 24.0, 32.0)
  window_ratios: Sequence[float] = (0.5, 1.0, 2.0)  # Height / width.
  box_regression: bool = False  # The baseline: the window is the detection.
  context: float = 1.0

  def windows(self, image_hw) -> jax.Array:
    grid = (image_hw[0] // self.window_stride, image_hw[1] // self.window_stride)
    return box_ops.clip(jnp.asarray(grid_anchors(grid, self.window_stride, self.window_sizes,
                                                 self.window_ratios, offset=0.5)), image_hw)

  @nn.compact
  def __call__(self, images, gt_boxes=None, gt_labels=None, gt_valid=None, *, train: bool):
    windows = self.windows(images.shape[1:3])
    b = len(images)
    windows = jnp.broadcast_to(windows, (b, *windows.shape))
    valid = jnp.ones(windows.shape[:2], bool)
    return self.roi_outputs(functools.partial(self.crop_features, images, train=train),
                            windows, valid, gt_boxes, gt_labels, gt_valid, train=train)
