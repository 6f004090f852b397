"""YOLO v1 (Redmon, Divvala, Girshick, Farhadi, "You Only Look Once", CVPR 2016).

The image is divided into an S x S grid; every cell predicts B boxes (x, y, w, h, confidence) and
one set of C class probabilities, an S x S x (5B + C) tensor. The head's raw tensor is split into
named parts here so that the loss and the decoder need no model hyperparameters:

  'boxes'        [N, S, S, B, 4]  raw (y, x, sqrt h, sqrt w) (the codebase's y-first order of
                                  the paper's x, y, w, h); y, x are offsets inside the cell,
                                  h, w fractions of the image, all through a sigmoid
  'confidence'   [N, S, S, B]     raw; sigmoid = Pr(object) * IoU(pred, truth)
  'class_logits' [N, S, S, C]     raw; softmax = Pr(class | object), foreground classes only

The paper's last layer is linear; squashing x, y, sqrt w, sqrt h and the confidence into [0, 1]
with a sigmoid (and the class scores with a softmax) keeps early training from diverging while
the loss is still the paper's sum-squared error on those quantities.
"""
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.backbones import get_backbone
from models.layers import ConvBNReLU, Dropout
from ops.box_coding import cell_boxes, to_corners


class YOLOv1(nn.Module):
  """Backbone -> convs at `feature_stride` -> (strided conv to S x S) -> conv or FC head.

  `num_classes` counts the background (the dataset's convention); YOLO predicts the other
  C = num_classes - 1. With `fc_width` > 0 the head is the paper's two fully connected layers
  (flatten -> fc_width -> dropout -> S * S * (5B + C)); with 0 it is a 1x1 conv per cell, which
  is much smaller and enough for small images.
  """
  # Read off the class by the detection task (tasks/detection.py): the loss family, no batch
  # inputs besides the image, and the decoder of the outputs.
  loss_family: ClassVar[str] = 'yolo'
  batch_inputs: ClassVar[dict] = {}

  num_classes: int
  backbone: str = 'vgg_small'
  feature_stride: int = 8  # Backbone level the head reads.
  grid_size: int = 8  # S.
  boxes_per_cell: int = 2  # B.
  head_width: int = 128
  head_convs: int = 2
  fc_width: int = 0  # 0: 1x1 conv head; > 0: the paper's FC head (4096 there).
  dropout_rate: float = 0.0  # After the first FC layer (0.5 in the paper).
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    s, b, c = self.grid_size, self.boxes_per_cell, self.num_classes - 1
    feats = get_backbone(self.backbone, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                         name='backbone')(images, train=train)['features']
    x = feats[self.feature_stride]
    for i in range(self.head_convs):
      x = ConvBNReLU(self.head_width, dtype=self.dtype, bn_axis_name=self.bn_axis_name,
                     name=f'head_conv{i}')(x, train=train)
    h, w = x.shape[1:3]
    if h % s or w % s:
      raise ValueError(f'YOLO grid_size={s} does not divide the {h}x{w} feature map at stride '
                       f'{self.feature_stride} of a {images.shape[1]}x{images.shape[2]} image; '
                       'change data.image_size, model.feature_stride or model.grid_size.')
    if (h, w) != (s, s):  # The paper's stride-2 conv that takes 14x14 to the 7x7 grid.
      x = nn.Conv(self.head_width, (3, 3), (h // s, w // s), padding='SAME', dtype=self.dtype,
                  name='grid_conv')(x)
      x = nn.leaky_relu(x, 0.1)
    out_dim = 5 * b + c
    if self.fc_width:
      x = nn.Dense(self.fc_width, dtype=self.dtype, name='fc1')(x.reshape(x.shape[0], -1))
      x = Dropout(self.dropout_rate, self.bn_axis_name)(nn.leaky_relu(x, 0.1),
                                                        deterministic=not train)
      x = nn.Dense(s * s * out_dim, dtype=self.dtype, name='fc2')(x)
    else:
      x = nn.Conv(out_dim, (1, 1), dtype=self.dtype, name='predict')(x)
    x = x.reshape(x.shape[0], s, s, out_dim).astype(jnp.float32)
    boxes = x[..., :5 * b].reshape(x.shape[0], s, s, b, 5)
    return {'boxes': boxes[..., :4], 'confidence': boxes[..., 4], 'class_logits': x[..., 5 * b:]}

  @staticmethod
  def decode_outputs(outputs: dict, image_hw: tuple[int, int]):
    return decode(outputs, image_hw)  # The module's decoder, for the detection task.


def decode(outputs: dict, image_hw: tuple[int, int]):
  """-> boxes [N, S*S*B, 4] (y1, x1, y2, x2) pixels, scores [N, S*S*B, C] class-specific.

  The paper's test-time score: Pr(class | object) * Pr(object) * IoU = class prob x confidence.
  """
  n = outputs['boxes'].shape[0]
  scale = jnp.asarray([image_hw[0], image_hw[1]] * 2, jnp.float32)
  boxes = to_corners(cell_boxes(outputs['boxes'])) * scale
  conf = jax.nn.sigmoid(outputs['confidence'])  # [N, S, S, B]
  probs = jax.nn.softmax(outputs['class_logits'], axis=-1)  # [N, S, S, C]
  scores = conf[..., None] * probs[..., None, :]  # [N, S, S, B, C]
  return boxes.reshape(n, -1, 4), scores.reshape(n, -1, scores.shape[-1])
