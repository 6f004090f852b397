"""VGG-style backbone (Simonyan & Zisserman 2015) with BatchNorm, recording pooling switches.

Each of the 5 stages is `convs_per_stage` x (3x3 conv, BN, ReLU) then a 2x2 stride-2 max pool,
so stage k ends at stride 2**k. `vgg16` is the vgg16_bn layout of torchvision's `features`.
"""
from collections.abc import Sequence
from typing import Any

import jax
from flax import linen as nn

from models.layers import ConvBNReLU
from models.upsample import max_pool_with_argmax


class VGG(nn.Module):
  """Returns {'features': {2: pool1, ..., 32: pool5},
              'pre_pool': {s: the map pooled into stride s (at stride s // 2)},
              'switches': {s: per-channel 2x2 switches of that pool}}.

  Decoders unpool with 'switches' (DeconvNet) or derive spatial switches from 'pre_pool' (FCN).
  """
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  convs_per_stage: int | Sequence[int] = 2
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, dict[int, jax.Array]]:
    convs = self.convs_per_stage
    convs = (convs,) * len(self.widths) if isinstance(convs, int) else tuple(convs)
    out = {'features': {}, 'pre_pool': {}, 'switches': {}}
    for stage, (width, n) in enumerate(zip(self.widths, convs, strict=True), start=1):
      for i in range(1, n + 1):
        x = ConvBNReLU(width, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                       name=f'conv{stage}_{i}')(x, train=train)
      stride = 2**stage
      out['pre_pool'][stride] = x
      x, out['switches'][stride] = max_pool_with_argmax(x, 2, 2)
      out['features'][stride] = x
    return out


VGG_SMALL = dict(widths=(16, 32, 64, 128, 128), convs_per_stage=2)
VGG16 = dict(widths=(64, 128, 256, 512, 512), convs_per_stage=(2, 2, 3, 3, 3))
