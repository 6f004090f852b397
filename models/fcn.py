"""Fully convolutional networks, FCN-32s/16s/8s (Long, Shelhamer & Darrell, CVPR 2015).

The classifier head ("fc6", "fc7" as convolutions, with dropout) scores the stride-32 map; FCN-16s
and FCN-8s add 1x1 scores of the stride-16 and stride-8 features after upsampling the coarser
scores 2x (the skip connections), then everything is upsampled to the input resolution.

Differences from the paper: SAME padding instead of padding the input by 100 and cropping (so any
H, W divisible by 32 works), BatchNorm in the backbone, and every upsampling step is learnable or
parameter-free according to `upsample` (the paper fixes the final bilinear one).
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import get_backbone
from models.layers import Dropout
from models.upsample import Upsample, check_upsample_kind, spatial_switches

PARAMETER_FREE_KINDS = ('nearest', 'bed_of_nails', 'max_unpool')

# Head (fc6 width, fc6 kernel) per backbone; vgg16's is the paper's 4096-wide 7x7 "fc6".
HEADS = {'vgg16': (4096, 7), 'vgg_small': (256, 3), 'resnet18': (512, 3), 'resnet50': (1024, 3)}


class FCN(nn.Module):
  """FCN-`finest_stride`s: logits float32 [B, H, W, num_classes] for H, W divisible by 32.

  Upsampling by `upsample` ('nearest', 'bed_of_nails', 'max_unpool', 'transpose_conv',
  'resize_conv'): 'transpose_conv' upsamples by f in one step (kernel 2f, stride f, bilinear init,
  as in the paper); the other kinds take 2x steps. 'max_unpool' uses *spatial* switches: the score
  maps have num_classes channels, unlike the encoder's pooled maps, so each 2x2 window's switch is
  the position of the largest channel-summed activation of the encoder's map at the finer stride
  (`pre_pool`), shared by all classes. Each parameter-free 2x step is followed by a 3x3 conv.
  """
  num_classes: int
  finest_stride: int = 8  # 32, 16 or 8: FCN-32s, FCN-16s, FCN-8s.
  backbone: str = 'vgg_small'
  upsample: str = 'transpose_conv'
  head_features: int | None = None  # Default: HEADS[backbone].
  head_kernel: int | None = None
  dropout_rate: float = 0.5
  dtype: Any = None
  bn_axis_name: str | None = None

  def __post_init__(self):
    check_upsample_kind(self.upsample)
    if self.finest_stride not in (8, 16, 32):
      raise ValueError(f'finest_stride must be 8, 16 or 32, got {self.finest_stride}')
    super().__post_init__()

  def _upsample(self, x, src: int, dst: int, pre_pool: dict[int, jax.Array]) -> jax.Array:
    """Scores at stride `src` -> stride `dst`; modules are named by the stride they start from."""
    if self.upsample == 'transpose_conv':
      return Upsample('transpose_conv', src // dst, dtype=self.dtype, name=f'up{src}')(x)
    while src > dst:
      switches = (spatial_switches(pre_pool[src], 2, 2) if self.upsample == 'max_unpool'
                  else None)
      x = Upsample(self.upsample, 2, dtype=self.dtype, name=f'up{src}')(x, switches)
      if self.upsample in PARAMETER_FREE_KINDS:
        # Bed of nails and max unpooling leave 3 of every 4 pixels at zero; a learned 3x3 conv
        # after each step fills them in, as the lecture's unpool-then-conv decoders do.
        x = nn.Conv(x.shape[-1], (3, 3), padding='SAME', dtype=self.dtype, name=f'refine{src}')(x)
      src //= 2
    return x

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    if images.shape[1] % 32 or images.shape[2] % 32:
      raise ValueError(f'FCN needs H and W divisible by 32, got {images.shape[1:3]}')
    enc = get_backbone(self.backbone, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                       name='backbone')(images, train=train)
    feats = enc['features']
    width, kernel = HEADS[self.backbone]
    width, kernel = self.head_features or width, self.head_kernel or kernel
    conv = lambda f, k, name, **kw: nn.Conv(f, (k, k), padding='SAME', dtype=self.dtype,
                                            name=name, **kw)
    x = feats[32]
    for name, k in (('fc6', kernel), ('fc7', 1)):
      x = nn.relu(conv(width, k, name)(x))
      x = Dropout(self.dropout_rate, self.bn_axis_name)(x, deterministic=not train)
    score = conv(self.num_classes, 1, 'score_fr')(x)
    stride = 32
    for skip in (16, 8):
      if skip < self.finest_stride:
        break
      score = self._upsample(score, stride, skip, enc['pre_pool'])
      # Paper names (pool4 is stride 16); zero-initialised as in the paper, so training starts
      # from the coarser net's prediction.
      score = score + conv(self.num_classes, 1, f'score_pool{skip.bit_length() - 1}',
                           kernel_init=nn.initializers.zeros_init())(feats[skip])
      stride = skip
    return self._upsample(score, stride, 1, enc['pre_pool']).astype(jnp.float32)
