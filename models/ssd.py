"""SSD: Single Shot MultiBox Detector (Liu et al., ECCV 2016).

Class scores (C classes including the background) and box offsets are predicted by a 3x3 conv at
every cell of several feature maps: some backbone levels plus extra layers that halve the
resolution (1x1 conv to width / 2, then a stride-2 3x3 conv). Each cell of level k has default
boxes of scale s_k (linear from s_min to s_max over the levels), one per aspect ratio
a in {1, r, 1/r for r in the level's ratios} (w = s sqrt(a), h = s / sqrt(a)), plus one extra
square box of scale sqrt(s_k s_{k+1}) (s_{m+1} = 1). Box offsets use the Faster R-CNN coder with
the paper's variances (0.1 for centres, 0.2 for sizes).

Outputs: 'class_logits' [N, D, C], 'box_deltas' [N, D, 4] and 'anchors' [D, 4] (the default boxes
in pixels, a constant), ordered level by level, then (row, column, box).

Differences from the paper: the backbone has BatchNorm, so conv4_3's L2Norm layer is not needed;
extra layers pad 'SAME', so the last maps of SSD300 are 5, 3, 2 instead of 5, 3, 1.
"""
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from models.backbones import get_backbone
from models.layers import Conv, ConvBNReLU, batch_norm
from ops import boxes as box_ops
from ops.anchors import grid_anchors
from ops.box_coding import SSD_BOX_WEIGHTS


def default_boxes(image_hw: tuple[int, int], feature_sizes: Sequence[int], min_scale: float,
                  max_scale: float, aspect_ratios: Sequence[Sequence[float]]) -> np.ndarray:
  """The default boxes [D, 4] (y1, x1, y2, x2) in pixels of square feature maps.

  Built with `ops.anchors.grid_anchors` on the unit square (offset=0.5: box centres at the cell
  centres, as in the paper) and scaled to the image. grid_anchors' ratio is height / width, so
  the paper's width / height ratio r appears as 1 / r.
  """
  m = len(feature_sizes)
  scales = list(np.linspace(min_scale, max_scale, m)) + [1.0]
  levels = []
  for k, f in enumerate(feature_sizes):
    ratios = [1.0] + [a for r in aspect_ratios[k] for a in (1.0 / r, float(r))]
    main = grid_anchors((f, f), 1.0 / f, [scales[k]], ratios, offset=0.5).reshape(f * f, -1, 4)
    extra = grid_anchors((f, f), 1.0 / f, [math.sqrt(scales[k] * scales[k + 1])], [1.0],
                         offset=0.5).reshape(f * f, 1, 4)
    levels.append(np.concatenate([main[:, :1], extra, main[:, 1:]], axis=1).reshape(-1, 4))
  h, w = image_hw
  return (np.concatenate(levels) * np.asarray([h, w, h, w], np.float32)).astype(np.float32)


def boxes_per_cell(ratios: Sequence[float]) -> int:
  return 2 + 2 * len(ratios)


class SSD(nn.Module):
  """Backbone levels `feature_strides` + len(extra_widths) extra levels -> multibox heads."""
  # Read off the class by the detection task (tasks/detection.py): the loss family, no batch
  # inputs besides the image, and the decoder of the outputs.
  loss_family: ClassVar[str] = 'ssd'
  batch_inputs: ClassVar[dict] = {}

  num_classes: int
  backbone: str = 'vgg_small'
  feature_strides: Sequence[int] = (8, 16, 32)
  extra_widths: Sequence[int] = (128,)
  min_scale: float = 0.2  # s_min.
  max_scale: float = 0.9  # s_max.
  aspect_ratios: Sequence[Sequence[float]] = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0,))  # Per level.
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    num_levels = len(self.feature_strides) + len(self.extra_widths)
    if len(self.aspect_ratios) != num_levels:
      raise ValueError(f'SSD has {num_levels} feature maps ({len(self.feature_strides)} backbone '
                       f'+ {len(self.extra_widths)} extra) but {len(self.aspect_ratios)} '
                       'aspect-ratio lists; give one list per map.')
    feats = get_backbone(self.backbone, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                         name='backbone')(images, train=train)['features']
    maps = [feats[s] for s in self.feature_strides]
    x = maps[-1]
    for i, width in enumerate(self.extra_widths):
      x = ConvBNReLU(width // 2, kernel_size=1, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                     name=f'extra{i}_reduce')(x, train=train)
      x = Conv(width, (3, 3), (2, 2), padding='SAME', dtype=self.dtype, name=f'extra{i}')(x)
      x = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype)(name=f'extra{i}_bn')(x))
      maps.append(x)

    n, logits, deltas = images.shape[0], [], []
    for k, (fmap, ratios) in enumerate(zip(maps, self.aspect_ratios, strict=True)):
      if fmap.shape[1] != fmap.shape[2]:
        raise ValueError(f'SSD needs square feature maps (square images); level {k} is '
                         f'{fmap.shape[1]}x{fmap.shape[2]}.')
      a = boxes_per_cell(ratios)
      cls = Conv(a * self.num_classes, (3, 3), dtype=self.dtype, name=f'class_head{k}')(fmap)
      box = Conv(a * 4, (3, 3), dtype=self.dtype, name=f'box_head{k}')(fmap)
      logits.append(cls.reshape(n, -1, self.num_classes))
      deltas.append(box.reshape(n, -1, 4))
    anchors = default_boxes(images.shape[1:3], [m.shape[1] for m in maps], self.min_scale,
                            self.max_scale, self.aspect_ratios)
    return {'class_logits': jnp.concatenate(logits, 1).astype(jnp.float32),
            'box_deltas': jnp.concatenate(deltas, 1).astype(jnp.float32),
            'anchors': jnp.asarray(anchors)}

  @staticmethod
  def decode_outputs(outputs: dict, image_hw: tuple[int, int]):
    return decode(outputs, image_hw)  # The module's decoder, for the detection task.


def decode(outputs: dict, image_hw: tuple[int, int]):
  """-> boxes [N, D, 4] pixels, scores [N, D, C - 1] softmax probabilities of the foreground."""
  del image_hw  # The default boxes are already in pixels.
  boxes = box_ops.decode(outputs['box_deltas'], outputs['anchors'], SSD_BOX_WEIGHTS)
  return boxes, jax.nn.softmax(outputs['class_logits'], axis=-1)[..., 1:]
