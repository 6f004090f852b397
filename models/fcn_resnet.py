"""FCN-ResNet50/101 as torchvision's `fcn_resnet50` / `fcn_resnet101` (segmentation models).

torchvision's FCN is Long et al.'s idea on a ResNet: layer3 and layer4 dilated instead of strided
(output stride 8), one head on layer4 (3x3 conv to 512 without bias, batch norm, ReLU, dropout
0.1, 1x1 conv to the classes), an auxiliary head of the same shape on layer3 (1024 -> 256), and
a bilinear upsampling (half-pixel centres, torch's align_corners=False) of the scores to the
input size. Any input size works (no multiple of 32 needed).

Modules are named after torchvision's state dict with '.' before an index turned into '_'
(`classifier.4.weight` is `classifier_4/kernel`), as models/resnet.py does for the backbone, so
`models.torchvision_dense` maps every key by the same rule.

Input: images float [0, 1]; the model normalises them (`pixel_mean` / `pixel_std` after scaling
by `pixel_scale`; ImageNet's by default, as torchvision's weights expect). Output: logits float32
[B, H, W, num_classes]; while training with `aux_loss`, {'logits', 'aux_logits'} (both at the
input size), which `losses.segmentation.segmentation_loss` sums with the auxiliary weight
(torchvision's reference: 0.5).
"""
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import get_backbone
from models.layers import Conv, Dropout, batch_norm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FCNResNet(nn.Module):
  """torchvision's FCN on `backbone` (resnet50 / resnet101) dilated to output stride 8."""
  num_classes: int
  backbone: str = 'resnet50'
  aux_loss: bool = True  # The auxiliary head on layer3 (torchvision's aux_loss=True).
  dropout_rate: float = 0.1
  pixel_mean: Sequence[float] = IMAGENET_MEAN
  pixel_std: Sequence[float] = IMAGENET_STD
  pixel_scale: float = 1.0  # Input [0, 1] times this before the mean and std.
  dtype: Any = None
  bn_axis_name: str | None = None

  def _head(self, x, prefix: str, *, train: bool) -> jax.Array:
    """torchvision's FCNHead, in_channels // 4 wide; named {prefix}_0 / _1 / _4 as there."""
    x = Conv(x.shape[-1] // 4, (3, 3), padding=[(1, 1)] * 2, use_bias=False, dtype=self.dtype,
             name=f'{prefix}_0')(x)
    x = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype)(name=f'{prefix}_1')(x))
    x = Dropout(self.dropout_rate, self.bn_axis_name)(x, deterministic=not train)
    return Conv(self.num_classes, (1, 1), dtype=self.dtype, name=f'{prefix}_4')(x)

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool):
    mean = jnp.asarray(self.pixel_mean, jnp.float32)
    std = jnp.asarray(self.pixel_std, jnp.float32)
    x = (images.astype(jnp.float32) * self.pixel_scale - mean) / std
    feats = get_backbone(self.backbone, dilate=(False, True, True), dtype=self.dtype,
                         bn_axis_name=self.bn_axis_name, name='backbone')(x, train=train)
    feats = feats['features']  # Keyed by layer: 16 is layer3, 32 layer4 (both at stride 8).
    b, h, w = images.shape[:3]
    resize = lambda s: jax.image.resize(s.astype(jnp.float32), (b, h, w, s.shape[-1]), 'bilinear')
    logits = resize(self._head(feats[32], 'classifier', train=train))
    if not self.aux_loss:
      return logits
    # Built whatever `train` so init creates its variables; jit drops it when unused (eval).
    aux = resize(self._head(feats[16], 'aux_classifier', train=train))
    return {'logits': logits, 'aux_logits': aux} if train else logits
