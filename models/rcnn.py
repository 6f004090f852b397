"""The detectors before Faster R-CNN, each fixing the previous one's bottleneck (the lecture).

- `SlidingWindow`: classify every window of a dense grid (several sizes and aspect ratios) with a
  CNN on its crop, then NMS. The number of windows, and so the cost, explodes.
- `RCNN` (Girshick et al., CVPR 2014): the same per-crop CNN, on ~2k external region proposals
  (selective search) instead of every window, warped to a fixed size with some context, with
  class-specific box regression and softmax or the paper's linear SVMs (`classifier='svm'`).
- `SPPNet` (He et al., ECCV 2014): one backbone pass per image; each proposal's window of the
  shared feature map is pooled into a spatial pyramid for the head.
- `FastRCNN` (Girshick, ICCV 2015): the same with one level of RoI pooling, trained end to end;
  the per-proposal work is only the small head.

External proposals come with the batch ('proposals' [B, P, 4] pixels, 'proposal_valid' [B, P]:
`data/proposals.py`). All four share `RoIDetector`'s sampling, box head and outputs.
"""
import functools
from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import backbone_features
from models.roi_heads import GROUND_TRUTH, PROPOSALS, RoIDetector, pool_rois
from ops import boxes as box_ops
from ops.anchors import grid_anchors
from ops.psroi import spatial_pyramid_pool


class FastRCNN(RoIDetector):
  """roi.pooling: 'pool', the paper's RoI max pooling (the default), or 'align' (RoIAlign)."""

  batch_inputs: ClassVar[dict] = {**PROPOSALS, **GROUND_TRUTH}
  feature_stride: int = 16

  @nn.compact
  def __call__(self, images, proposals, proposal_valid, gt_boxes=None, gt_labels=None,
               gt_valid=None, *, train: bool):
    features = backbone_features(self.backbone, images, train=train, dtype=self.dtype,
                                 bn_axis_name=self.bn_axis_name)[self.feature_stride]
    return self.roi_outputs(self.fast_rcnn_head(self.roi_features(features)), proposals,
                            proposal_valid, gt_boxes, gt_labels, gt_valid, train=train)

  def roi_features(self, features):
    """RoIs [B, R, 4] -> pooled [B, R, s, s, C] from the shared feature map."""
    return functools.partial(pool_rois, features, output_size=self.roi.size,
                             stride=self.feature_stride, method=self.roi.pooling,
                             aligned=self.roi.aligned, sampling_ratio=self.roi.sampling_ratio)


class SPPNet(FastRCNN):
  """SPP-net (He, Zhang, Ren, Sun, ECCV 2014): Fast R-CNN's predecessor in the lecture's chart.

  The image goes through the CNN once; each proposal's window of the feature map is max-pooled
  into a fixed-length spatial pyramid (`ops.psroi.spatial_pyramid_pool`, the paper's 1x1, 2x2,
  3x3 and 6x6 bins for detection) that the FC head classifies. The paper fine-tunes only the FC
  layers and trains SVMs and box regressors in separate stages; here it trains end to end like
  Fast R-CNN, so the two differ in the pooling alone (Fast R-CNN's one 7x7 level).
  """
  spp_levels: Sequence[int] = (1, 2, 3, 6)

  def roi_features(self, features):
    """RoIs [B, R, 4] -> pyramids [B, R, sum(l * l) * C], one image at a time."""
    def one_image(fmap, boxes):
      rows = jnp.concatenate([jnp.zeros((len(boxes), 1), boxes.dtype), boxes], axis=1)
      return spatial_pyramid_pool(fmap[None], rows, tuple(self.spp_levels),
                                  1.0 / self.feature_stride)

    return lambda rois: jax.vmap(one_image)(features, rois)


class RCNN(RoIDetector):
  batch_inputs: ClassVar[dict] = {**PROPOSALS, **GROUND_TRUTH}
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
    head = self.fast_rcnn_head(functools.partial(self.crop_features, images, train=train))
    return self.roi_outputs(head, proposals, proposal_valid, gt_boxes, gt_labels, gt_valid,
                            train=train)


class SlidingWindow(RCNN):
  """R-CNN's per-crop classifier on every window of a grid instead of proposals."""
  batch_inputs: ClassVar[dict] = GROUND_TRUTH  # The windows replace the proposals.

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
    head = self.fast_rcnn_head(functools.partial(self.crop_features, images, train=train))
    return self.roi_outputs(head, windows, valid, gt_boxes, gt_labels, gt_valid, train=train)
