"""R-FCN (Dai, Li, He, Sun, NeurIPS 2016): region-based, fully convolutional detection.

Faster R-CNN's per-RoI FC head is the cost that grows with the number of proposals. R-FCN moves
all learned computation before the RoIs: convolutions turn the shared feature map into k x k
position-sensitive score maps per class (and k x k x 4 class-agnostic box maps), and each RoI is
scored by position-sensitive RoI pooling (`ops.psroi.ps_roi_pool`: bin (i, j) of the RoI reads
only the (i, j) maps, "is this the top-left part of a cat?") followed by a vote, the average over
the k x k bins. Per RoI there is no learned layer at all. The RPN is Faster R-CNN's, on the same
map (`models/faster_rcnn.py`); training, sampling and losses are those of `RoIDetector`.

Differences from the paper: our backbones instead of ResNet-101 with a dilated stride-16 conv5,
and no online hard example mining (the paper's OHEM; we sample RoIs as Fast R-CNN does).
"""
import jax
import jax.numpy as jnp
from flax import linen as nn

from models.faster_rcnn import FasterRCNN
from ops.psroi import ps_roi_pool


class RFCN(FasterRCNN):
  """roi.size is k, the paper's 7 x 7 bins."""
  rfcn_width: int = 1024  # The paper's 1x1 conv that reduces conv5 (2048-d) before the maps.

  def roi_head(self, pyramid, pool):
    """RoIs [B, R, 4] -> (logits [B, R, C], deltas [B, R, C - 1, 4]) by voting over k x k bins."""
    del pool
    if self.fpn_strides:
      raise ValueError('R-FCN scores RoIs on one feature map; set model.fpn_strides=() (no FPN).')
    k, c = self.roi.size, self.num_classes
    x = nn.relu(nn.Conv(self.rfcn_width, (1, 1), dtype=self.dtype, name='reduce')(
        pyramid[self.feature_stride]))
    score_maps = nn.Conv(k * k * c, (1, 1), dtype=self.dtype, name='class_maps')(x)
    box_maps = nn.Conv(k * k * 4, (1, 1), kernel_init=nn.initializers.normal(0.001),
                       dtype=self.dtype, name='box_maps')(x)
    maps = jnp.concatenate([score_maps, box_maps], axis=-1).astype(jnp.float32)

    def vote(fmap, boxes):  # One image: [H, W, k*k*(C + 4)], [R, 4] -> [R, C + 4].
      rows = jnp.concatenate([jnp.zeros((len(boxes), 1), boxes.dtype), boxes], axis=1)
      scores = ps_roi_pool(fmap[None, ..., :k * k * c], rows, k, 1.0 / self.feature_stride)
      deltas = ps_roi_pool(fmap[None, ..., k * k * c:], rows, k, 1.0 / self.feature_stride)
      return jnp.concatenate([scores.mean((1, 2)), deltas.mean((1, 2))], axis=-1)

    def head(rois):
      voted = jax.vmap(vote)(maps, rois)
      logits, deltas = voted[..., :c], voted[..., c:]
      # Class-agnostic boxes (the paper's 4k^2 maps), shared by every class.
      return logits, jnp.broadcast_to(deltas[..., None, :], (*deltas.shape[:2], c - 1, 4))

    return head
