"""MobileNet v1 (Howard et al. 2017), one of the feature extractors of Huang et al. (CVPR 2017).

Table 1 of the paper: a 3x3 stride-2 conv, then 13 depthwise-separable blocks, each a 3x3
depthwise conv + BN + ReLU and a 1x1 pointwise conv + BN + ReLU, all widths times the width
multiplier alpha (Section 3.3). Convs have no bias (BN follows) and explicit padding 1, as in
resnet.py: 'SAME' would pad stride-2 layers on the bottom and right only.
"""
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.layers import batch_norm
from models.upsample import window_slices

# (pointwise output channels, depthwise stride) of the 13 blocks of Table 1 at alpha = 1. The
# table's last "Conv dw / s2" maps 7x7 to 7x7, i.e. it is stride 1.
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def depthwise_conv_lax(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """3x3 depthwise conv, padding 1, as one grouped convolution (feature_group_count = C)."""
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), [(1, 1), (1, 1)],
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=x.shape[-1])


def depthwise_conv_slices(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The same conv as the sum over the 9 taps of a shifted (strided) slice times w[dy, dx, c].

  XLA fuses this into elementwise loops, where XLA:CPU's grouped convolution with C groups is
  slow, its backward pass above all (see `DepthwiseConv`).
  """
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  taps = kernel[:, :, 0].reshape(9, -1)  # [dy * 3 + dx, C], the slices' order.
  return sum(window * tap for window, tap in zip(window_slices(x, 3, stride), taps, strict=True))


class DepthwiseConv(nn.Module):
  """3x3 depthwise conv without bias, padding 1.

  The parameter is `kernel` [3, 3, 1, C] with nn.Conv's initializer, i.e. that of
  `nn.Conv(C, (3, 3), feature_group_count=C, use_bias=False)`, so checkpoints do not depend on
  the implementation. Slices, not `depthwise_conv_lax`: on XLA:CPU (jax 0.10.2, 2 shared cores)
  a [16, 32, 32, 64] input takes 21.5 ms forward and 59 ms forward + backward as a grouped conv
  (stride 2: 5.8 / 81 ms), 0.55 / 26 ms as slices (stride 2: 0.5 / 9 ms); a training step of
  mobilenet_v1_small on 16 64x64 images 77 ms vs 32 ms, of mobilenet_v1 445 ms vs 155 ms.
  """
  stride: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, 1, x.shape[-1]))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return depthwise_conv_slices(x, kernel, self.stride)


class SeparableBlock(nn.Module):
  """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU (Figure 3, right).

  Not `ConvBNReLU` for the pointwise conv: that conv has a bias, which BN makes redundant.
  """
  features: int
  stride: int = 1
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bn = batch_norm(train, self.bn_axis_name, self.dtype)
    x = nn.relu(bn(name='dw_bn')(DepthwiseConv(self.stride, self.dtype, name='dw')(x)))
    x = nn.Conv(self.features, (1, 1), use_bias=False, dtype=self.dtype, name='pw')(x)
    return nn.relu(bn(name='pw_bn')(x))


class MobileNetV1(nn.Module):
  """Returns {'features': {s: the output of the last block at stride s} for s = 2, 4, ..., 32,
              'pre_pool': {s: the map a stride-2 layer downsamples to s}} (as ResNet's).

  At alpha = 1 the channels are 64, 128, 256, 512, 1024 (Table 1); the stride-2 map comes from
  the first block, which runs at the stem conv's resolution. pre_pool[2] is the input image.
  """
  alpha: float = 1.0
  stem_width: int = 32
  blocks: Sequence[tuple[int, int]] = MOBILENET_V1_BLOCKS
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, dict[int, jax.Array]]:
    width = lambda c: max(1, round(c * self.alpha))
    pre_pool = {2: x}
    x = nn.Conv(width(self.stem_width), (3, 3), (2, 2), padding=[(1, 1)] * 2, use_bias=False,
                dtype=self.dtype, name='conv0')(x)
    x = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype)(name='bn0')(x))
    features, stride = {}, 2
    for i, (channels, s) in enumerate(self.blocks, start=1):
      if s > 1:
        pre_pool[stride * s] = x
      x = SeparableBlock(width(channels), s, self.dtype, self.bn_axis_name,
                         name=f'block{i}')(x, train=train)
      stride *= s
      features[stride] = x  # The last block at each stride wins.
    return {'features': features, 'pre_pool': pre_pool}


MOBILENET_V1 = dict(alpha=1.0)
# alpha 0.25 for 64x64 Shapes: widths 16, 32, 64, 128, 256 at strides 2..32 (vgg_small: 16..128).
MOBILENET_V1_SMALL = dict(alpha=0.25)
