"""DeepPose (Toshev & Szegedy, CVPR 2014): human pose as regression of the joint coordinates.

Stage 1 crops the person's square frame (the box, enlarged by `margin`) out of the image with a
bilinear RoIAlign, runs a backbone and regresses all joints, normalised to that frame
(`ops/keypoints.py`: the frame spans [-0.5, 0.5]). The optional cascade stage crops a window of
`refine_scale` x the frame around each stage-1 joint and regresses that joint's displacement in
the window's normalised coordinates, which sees the joint at a higher resolution.

Differences from the paper: any of our backbones instead of AlexNet; a square frame instead of
normalising y and x by the box height and width separately; the stage-2 network is shared by all
joints' windows (it outputs every joint's displacement and each window keeps its own joint's, so
the network knows which joint it looks at); both stages train together, stage 2 seeing the
stop-gradient stage-1 output instead of the paper's separately trained stages on simulated
stage-1 predictions.
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import backbone_features
from models.layers import RegressionHead
from ops.keypoints import from_frame, square_frame, window_rois
from ops.roi import roi_align


class DeepPose(nn.Module):
  """(images [B, H, W, 3], person boxes [B, 4]) -> {'joints': float32 [B, stages, J, 2] (y, x) in
  the person frame, 'frame': float32 [B, 3] (centre y, centre x, side) in pixels}."""
  num_joints: int = 14
  backbone: str = 'vgg_small'
  input_size: int = 64  # Side of the person crop the backbone sees.
  feature_stride: int = 32  # The feature map the regressor flattens.
  hidden: int = 256
  dropout_rate: float = 0.0
  margin: float = 1.2  # Frame side = margin x the longer side of the person box.
  cascade: bool = False  # Add the refinement stage.
  refine_size: int = 32  # Side of each joint's crop.
  refine_scale: float = 0.25  # Joint window side / frame side (the paper's sigma).
  refine_stride: int = 8
  frozen_backbone: bool = False  # Stage 1's backbone fixed (transfer learning).
  dtype: Any = None
  bn_axis_name: str | None = None

  def _regress(self, crops, *, train, stride, prefix, frozen=False):
    features = backbone_features(self.backbone, crops, train=train, frozen=frozen,
                                 module_name=f'{prefix}backbone', dtype=self.dtype,
                                 bn_axis_name=self.bn_axis_name)
    out = RegressionHead(self.num_joints * 2, self.hidden, self.dropout_rate, self.dtype,
                         self.bn_axis_name, name=f'{prefix}regressor')(
        features[stride], train=train)
    return out.reshape(len(crops), self.num_joints, 2)

  @nn.compact
  def __call__(self, images: jax.Array, boxes: jax.Array, *, train: bool) -> dict:
    b, j = len(images), self.num_joints
    frame = square_frame(boxes.astype(jnp.float32), self.margin)
    size = (self.input_size, self.input_size)
    person = roi_align(images, window_rois(frame[:, None, :2], frame[:, 2]), size, aligned=True)
    joints = self._regress(person, train=train, stride=self.feature_stride, prefix='',
                           frozen=self.frozen_backbone)
    stages = [joints]
    if self.cascade:
      coarse = jax.lax.stop_gradient(joints)
      rois = window_rois(from_frame(coarse, frame), frame[:, 2] * self.refine_scale)
      windows = roi_align(images, rois, (self.refine_size,) * 2, aligned=True)
      delta = self._regress(windows, train=train, stride=self.refine_stride, prefix='refine_')
      own = delta.reshape(b, j, j, 2)[:, jnp.arange(j), jnp.arange(j)]  # Window k -> joint k.
      stages.append(coarse + own * self.refine_scale)
    return {'joints': jnp.stack(stages, axis=1), 'frame': frame}
