"""ResNet-18/50 (He et al. 2016) in torchvision's layout, for importing torchvision weights.

Module names follow torchvision's state_dict with '.' before an index turned into '_':
`layer1.0.downsample.1.weight` is `layer1_0/downsample_1/scale`; conv `weight` [O, I, kh, kw] is
`kernel` [kh, kw, I, O]; BN running_mean/var are `batch_stats` mean/var. Paddings are explicit
(torchvision's), not 'SAME', so stride-2 layers see the same pixels as in PyTorch. Bottlenecks
stride in the 3x3 conv (torchvision's "ResNet v1.5").
"""
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from models.layers import Conv, batch_norm, in_loop_body, zero_beyond
from models.upsample import max_pool_with_argmax


class _Block(nn.Module):
  """BasicBlock (two 3x3 convs, expansion 1) or Bottleneck (1x1, 3x3, 1x1 x4, expansion 4)."""
  width: int
  stride: int
  bottleneck: bool
  dtype: Any = None
  bn_axis_name: str | None = None
  frozen_bn: bool = False
  bn_epsilon: float = 1e-5
  dilation: int = 1  # Of the 3x3 conv (torchvision's replace_stride_with_dilation).

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, extent=None, stride: int = 1) -> jax.Array:
    """`stride`: x's stride in input pixels; `extent`: as `ResNet`'s."""
    bn = batch_norm(train, self.bn_axis_name, self.dtype, self.frozen_bn, self.bn_epsilon)
    d = self.dilation
    conv = lambda f, k, s, name: Conv(f, (k, k), (s, s), padding=[(d * (k // 2),) * 2] * 2,
                                      kernel_dilation=(d, d) if k == 3 else (1, 1),
                                      use_bias=False, dtype=self.dtype, name=name)
    if self.bottleneck:
      layers = [(self.width, 1, 1), (self.width, 3, self.stride), (self.width * 4, 1, 1)]
    else:
      layers = [(self.width, 3, self.stride), (self.width, 3, 1)]
    y = x
    for i, (features, k, s) in enumerate(layers, start=1):
      if k == 3 and s == 1:  # Reads one cell (d cells) past the edge; a stride-2 one never does.
        y = zero_beyond(y, extent, stride)
      y = bn(name=f'bn{i}')(conv(features, k, s, f'conv{i}')(y))
      stride *= s
      y = nn.relu(y) if i < len(layers) else y
    if x.shape[-1] != y.shape[-1] or self.stride != 1:
      x = bn(name='downsample_1')(conv(y.shape[-1], 1, self.stride, 'downsample_0')(x))
    return nn.relu(x + y)


def scan_blocks(module: nn.Module, block, names: Sequence[str], x, **kwargs):
  """`block(name=n)` for each of `names` in turn, as one `lax.scan` over their variables (which
  `module` holds under those names, so torchvision's layout stays); for blocks whose variables
  the call does not change (frozen batch norm, or inference).

  Each block's output is then materialised once. Unrolled, XLA:CPU's fusion copied every
  block's elementwise tail (frozen BN, residual add, ReLU) into each consumer, which kept their
  1x1 conv outputs alive until the backward pass: Faster R-CNN R50-FPN's 800x1344 train step
  had 1.994 GB of temporaries against 1.792 GB scanned, peak RSS 3.32 against 3.15 GB, the step
  10.6 s both ways (2026-12-07, quiet 2-core box). It was 35% slower before the convolutions'
  input gradients took the HWIO form (`models.layers._input_grad`).
  """
  per_block = [{col: module.variables[col][name] for col in module.variables
                if names[0] in module.variables[col]} for name in names]
  if kwargs.get('train') or len({leaf.dtype for leaf in jax.tree.leaves(per_block[0])}) > 1:
    rows, unpack = jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_block), lambda v: v
  else:
    rows, unpack = _flat_rows(per_block)
  unbound = block(parent=None)
  body = in_loop_body(lambda y, v: (unbound.apply(unpack(v), y, **kwargs), None))
  return jax.lax.scan(body, x, rows)[0]


def _flat_rows(trees):
  """Trees of one structure and dtype -> ([len(trees), n] their leaves raveled and concatenated,
  row -> the tree). At inference this stacks a stage's variables in one concatenate: a stack per
  leaf was 60 of the 384 kernels of Faster R-CNN R50-FPN's eval step, whose XLA compile went
  3.9 -> 3.3 s with the rows, the step unchanged. The train step compiled 1 s slower with them
  (gradients through the concatenate; 2026-12-07, 2-core box)."""
  leaves, treedef = jax.tree.flatten(trees[0])
  ends = np.cumsum([leaf.size for leaf in leaves])
  rows = jnp.stack([jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(t)])
                    for t in trees])

  def unpack(row):
    return jax.tree.unflatten(treedef, [row[end - leaf.size:end].reshape(leaf.shape)
                                        for end, leaf in zip(ends, leaves, strict=True)])
  return rows, unpack


class ResNet(nn.Module):
  """Returns {'features': {2: stem conv, 4: layer1, 8: layer2, 16: layer3, 32: layer4},
              'pre_pool': {s: the last map at stride s // 2 before downsampling to s}}.

  pre_pool[2] is the input image (the stem conv strides it). With `num_classes`, also 'logits'
  from global average pooling and `fc` (torchvision's classifier).

  `frozen_bn`: every batch norm is `FrozenBatchNorm` (torchvision's detection backbones).
  `trainable_layers` (torchvision's trainable_backbone_layers, 0..5): only the last that many of
  (conv1, layer1, ..., layer4) get gradients; the others sit below a stop_gradient (the optimizer
  must also leave them alone: `frozen_stages`).
  `extent` [B, 2] (a call argument, or None): each image's padded size in input pixels, a
  multiple of 32, in a larger canvas; the input must be 0 beyond it. Every 3x3 stride-1 conv
  then sees zeros past that edge, so the features within it are those of the image alone on a
  canvas of that size (torchvision's batch-of-one evaluation). Cells beyond it hold garbage. The
  other spatial ops never read past an even-sized edge: the stride-2 3x3 convs and the max pool
  (pad 1) read rows 2i - 1..2i + 1 <= n - 1 and the stem reads the (zero) input.
  `dilate` (torchvision's replace_stride_with_dilation, for layer2..4): a dilated layer keeps the
  resolution of the one before and dilates its 3x3 convs instead (the first block by the previous
  dilation, the others by twice that). 'features' keys still name the layers: with FCN's
  (False, True, True), features[16] and features[32] are at stride 8.
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  bottleneck: bool = False
  num_classes: int | None = None
  dtype: Any = None
  bn_axis_name: str | None = None
  frozen_bn: bool = False
  bn_epsilon: float = 1e-5  # torchvision's COCO detectors: 0 (their overwrite_eps).
  trainable_layers: int = 5
  dilate: Sequence[bool] = (False, False, False)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, extent=None) -> dict[str, Any]:
    pre_pool = {2: x}
    x = Conv(64, (7, 7), (2, 2), padding=[(3, 3)] * 2, use_bias=False, dtype=self.dtype,
                name='conv1')(x)
    if not 0 <= self.trainable_layers <= 5:
      raise ValueError(f'trainable_layers must be 0..5 (got {self.trainable_layers}).')
    frozen_stages = 5 - self.trainable_layers  # Stage 0 is the stem, 1..4 the layers.
    x = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype, self.frozen_bn,
                           self.bn_epsilon)(name='bn1')(x))
    x = jax.lax.stop_gradient(x) if frozen_stages > 0 else x
    features = {2: x}
    pre_pool[4] = x
    # The elementwise running max (switches unused): XLA:CPU's reduce-window max and its gradient
    # took a sixth of ResNet-18's train step on 64x64 images.
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    x = max_pool_with_argmax(x, 3, 2)[0]
    dilation, resolution = 1, 4  # The stride of x.
    for stage, n in enumerate(self.stage_sizes):
      stride, step, previous = 4 * 2**stage, 2 if stage > 0 else 1, dilation
      if stage > 0 and self.dilate[stage - 1]:
        dilation, step = dilation * 2, 1
      if stage > 0:
        pre_pool[stride] = x
      block = functools.partial(_Block, 64 * 2**stage, dtype=self.dtype,
                                bottleneck=self.bottleneck, bn_axis_name=self.bn_axis_name,
                                frozen_bn=self.frozen_bn, bn_epsilon=self.bn_epsilon)
      x = block(step, dilation=previous, name=f'layer{stage + 1}_0')(
          x, train=train, extent=extent, stride=resolution)
      resolution *= step
      repeated, kwargs = functools.partial(block, 1, dilation=dilation), dict(
          train=train, extent=extent, stride=resolution)
      names = [f'layer{stage + 1}_{i}' for i in range(1, n)]
      # Training scans only the stride-4 and -8 stages, and only with frozen batch norm (batch
      # statistics are variables the call changes): there unrolled blocks cost memory (see
      # `scan_blocks`). Elsewhere unrolled compiles faster: XLA:CPU compiles equal fusions once,
      # so repeated blocks add few kernels, while a scan's stacking of variables, residuals and
      # gradients adds its own. Faster R-CNN R50-FPN 800x1344 b1: 717 -> 598 kernels, XLA 15.1
      # -> 13.7 s, peak RSS at b2 4.16 -> 4.22 GB (all stages unrolled: 541, 13.0 s, 4.40 GB;
      # `tools.bench_profile --compile-phases`, BENCHMARKS.md twelfth session).
      scan = not train or (self.frozen_bn and resolution <= 8)
      if self.is_initializing() or not scan or len(names) < 2:
        for name in names:
          x = repeated(name=name)(x, **kwargs)
      else:
        x = scan_blocks(self, repeated, names, x, **kwargs)
      x = jax.lax.stop_gradient(x) if stage + 1 < frozen_stages else x
      features[stride] = x
    out = {'features': features, 'pre_pool': pre_pool}
    if self.num_classes is not None:
      out['logits'] = nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(
          jnp.mean(x, axis=(1, 2)))
    return out


def frozen_stages(trainable_layers: int) -> tuple[str, ...]:
  """Parameter name prefixes of the stages `trainable_layers` leaves untrained."""
  return ('conv1', 'bn1', 'layer1_', 'layer2_', 'layer3_', 'layer4_')[:(5 - trainable_layers) + (
      1 if trainable_layers < 5 else 0)]


RESNET18 = dict(stage_sizes=(2, 2, 2, 2), bottleneck=False)
RESNET50 = dict(stage_sizes=(3, 4, 6, 3), bottleneck=True)
RESNET101 = dict(stage_sizes=(3, 4, 23, 3), bottleneck=True)
