"""DeconvNet (Noh, Hong & Han, ICCV 2015): a VGG encoder and a mirrored unpool + deconv decoder.

Every decoder stage max-unpools with the per-channel switches of the matching encoder pool, then
applies "deconvolution" layers (3x3 stride-1 transpose convs + BN + ReLU), the last of which
narrows to the next stage's width, as the paper's deconv5..deconv1.

Differences from the paper: fc6/fc7 are SAME convs of `head_kernel` (the paper's 7x7 VALID fc6
and its 7x7 deconvolution assume a 224x224 input), so any H, W divisible by 32 works.
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import get_backbone
from models.layers import ConvBNReLU
from models.upsample import max_unpool
from models.vgg import VGG


class DeconvNet(nn.Module):
  """Logits float32 [B, H, W, num_classes] for H, W divisible by 32; `backbone` must be a VGG."""
  num_classes: int
  backbone: str = 'vgg_small'
  head_features: int = 256  # The paper's fc6/fc7 are 4096 wide.
  head_kernel: int = 3
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    if images.shape[1] % 32 or images.shape[2] % 32:
      raise ValueError(f'DeconvNet needs H and W divisible by 32, got {images.shape[1:3]}')
    encoder = get_backbone(self.backbone, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                           name='backbone')
    if not isinstance(encoder, VGG):
      raise ValueError(f'DeconvNet needs a VGG backbone (pooling switches), got {self.backbone}')
    enc = encoder(images, train=train)
    widths = tuple(encoder.widths)
    convs = encoder.convs_per_stage
    convs = (convs,) * len(widths) if isinstance(convs, int) else tuple(convs)
    block = lambda f, name, k=3, transpose=True: ConvBNReLU(
        f, k, transpose, self.dtype, self.bn_axis_name, name=name)

    x = enc['features'][2**len(widths)]
    x = block(self.head_features, 'fc6', self.head_kernel, transpose=False)(x, train=train)
    x = block(self.head_features, 'fc7', 1, transpose=False)(x, train=train)
    x = block(widths[-1], 'deconv_fc6', self.head_kernel)(x, train=train)
    for stage in range(len(widths), 0, -1):
      x = max_unpool(x, enc['switches'][2**stage], 2, 2)
      out_width = widths[max(stage - 2, 0)]  # Narrow to the next (shallower) stage's width.
      for i in range(convs[stage - 1], 0, -1):  # deconvK_i mirrors convK_i, so counts down.
        x = block(widths[stage - 1] if i > 1 else out_width,
                  f'deconv{stage}_{i}')(x, train=train)
    logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name='score')(x)
    return logits.astype(jnp.float32)
