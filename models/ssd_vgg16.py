"""SSD300-VGG16 as torchvision's `ssd300_vgg16` (Liu et al., ECCV 2016, the paper's network).

Backbone (`SSDVGG16`, torchvision's SSDFeatureExtractorVGG): VGG16 without batch norm; pool3 in
ceil mode (75 -> 38, so conv4_3 is 38x38 at 300 px), conv4_3 L2-normalised across channels and
scaled by a learned per-channel weight (initialised to 20); pool5 3x3 stride 1; fc6 as a 3x3
conv with dilation 6 to 1024, fc7 a 1x1; four extra blocks (1x1 conv, then a 3x3 conv: stride 2
twice, then unpadded twice), so the heads read 38, 19, 10, 5, 3, 1 maps at 300x300.
Heads: one 3x3 conv per map for the class logits and one for the box offsets (Faster R-CNN coder,
weights 10, 10, 5, 5). Default boxes (`torchvision_default_boxes`): scales 0.07 ... 1.05, steps
8 ... 300, aspect ratios (2), (2, 3) x 3, (2), (2); per cell [s, s], [s', s'] with
s' = sqrt(s_k s_k+1), then (s sqrt(a), s / sqrt(a)) and its transpose per ratio; sizes clipped to
the image. Input: [0, 1] images stretched to 300x300 by the data pipeline; the model subtracts
`pixel_mean` and divides by `pixel_std` after scaling by `pixel_scale` (torchvision: mean
(0.48235, 0.45882, 0.40784), std 1/255, i.e. 0-255 pixels minus the mean).

Outputs as `models.ssd.SSD`'s: 'class_logits' [N, D, C], 'box_deltas' [N, D, 4] (dy, dx, dh, dw)
and 'anchors' [D, 4] (y1, x1, y2, x2 pixels), so `losses.ssd.ssd_loss` (matching at IoU 0.5 plus
each object's best box, 3:1 hard negatives, as torchvision) trains it. `select_detections` is
torchvision's post-processing: per class the scores above 0.01, at most 400, then per-class NMS
at 0.45 and the best 200.
"""
import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from models.layers import Conv
from models.upsample import max_pool_with_argmax
from ops import boxes as box_ops
from ops.box_coding import SSD_BOX_WEIGHTS
from ops.nms import batched_nms, map_images

MEAN = (0.48235, 0.45882, 0.40784)
STD = (1.0 / 255.0,) * 3
SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
STEPS = (8, 16, 32, 64, 100, 300)
ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
EXTRAS = ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0))  # mid, out,
# stride and padding of each extra block's 3x3 conv.


def _max_pool(x, k: int, s: int, pad: tuple[int, int]):
  """torch's MaxPool2d(k, s) with (before, after) padding of -inf (ceil mode pads after)."""
  x = jnp.pad(x, ((0, 0), pad, pad, (0, 0)), constant_values=-jnp.inf)
  return max_pool_with_argmax(x, k, s)[0]


class SSDVGG16(nn.Module):
  """VGG16 + L2Norm + fc6/fc7 + extras -> the six maps [38, 19, 10, 5, 3, 1 at 300 px]."""
  width_divisor: int = 1  # Every width / this: 1 is torchvision's; more for CPU-sized tests.
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> list[jax.Array]:
    del train  # No batch norm or dropout.
    conv = lambda f, k, name, stride=1, pad=1, dilation=1: Conv(
        f // self.width_divisor, (k, k), (stride, stride), padding=[(pad, pad)] * 2,
        kernel_dilation=(dilation,) * 2, dtype=self.dtype, name=name)
    maps = []
    for stage, widths in enumerate(VGG16_STAGES, start=1):
      if stage > 1:  # pool1..pool4; pool3 in ceil mode (one row/column of -inf after).
        size = x.shape[1]
        x = _max_pool(x, 2, 2, (0, size % 2 if stage == 4 else 0))
      for i, width in enumerate(widths, start=1):
        x = nn.relu(conv(width, 3, f'conv{stage}_{i}')(x))
      if stage == 4:
        scale = self.param('l2norm_scale', nn.initializers.constant(20.0), (x.shape[-1],))
        norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), -1, keepdims=True))
        maps.append(scale * x / jnp.maximum(norm, 1e-12))  # torch's F.normalize eps.
    x = _max_pool(x, 3, 1, (1, 1))  # pool5.
    x = nn.relu(conv(1024, 3, 'fc6', pad=6, dilation=6)(x))
    x = nn.relu(conv(1024, 1, 'fc7', pad=0)(x))
    maps.append(x)
    for i, (mid, out, stride, pad) in enumerate(EXTRAS):
      x = nn.relu(conv(mid, 1, f'extra{i}_reduce', pad=0)(x))
      x = nn.relu(conv(out, 3, f'extra{i}', stride=stride, pad=pad)(x))
      maps.append(x)
    return maps


def torchvision_default_boxes(image_hw: tuple[int, int], grid_sizes: Sequence[tuple[int, int]],
                              scales: Sequence[float] = SCALES, steps: Sequence[int] = STEPS,
                              aspect_ratios=ASPECT_RATIOS) -> np.ndarray:
  """torchvision's DefaultBoxGenerator (clip=True): [D, 4] (y1, x1, y2, x2) pixels.

  Cell centres at (i + 0.5) * step / image size (not the grid's cell centres: 300 / 8 = 37.5
  cells for a 38-cell map), cell-major, boxes of a cell in the order of the module docstring.
  """
  h, w = image_hw
  levels = []
  for k, (fh, fw) in enumerate(grid_sizes):
    s, s_next = scales[k], math.sqrt(scales[k] * scales[k + 1])
    wh = [(s, s), (s_next, s_next)]
    for a in aspect_ratios[k]:
      wh += [(s * math.sqrt(a), s / math.sqrt(a)), (s / math.sqrt(a), s * math.sqrt(a))]
    wh = np.clip(np.asarray(wh, np.float32), 0, 1)  # [A, 2] (w, h).
    cy = ((np.arange(fh, dtype=np.float32) + 0.5) / np.float32(h / steps[k]))
    cx = ((np.arange(fw, dtype=np.float32) + 0.5) / np.float32(w / steps[k]))
    cy, cx = np.meshgrid(cy, cx, indexing='ij')
    centre = np.stack([cy.ravel(), cx.ravel()], -1)[:, None, :]  # [F, 1, 2] (y, x).
    half = wh[None, :, ::-1] / 2  # [1, A, 2] (h, w) / 2.
    size = np.asarray([h, w], np.float32)
    levels.append(np.concatenate([(centre - half) * size, (centre + half) * size], -1)
                  .reshape(-1, 4))
  return np.concatenate(levels).astype(np.float32)


class SSDVGG16Detector(nn.Module):
  """torchvision's ssd300_vgg16: `SSDVGG16` ('backbone'), class and box heads per map."""
  loss_family: ClassVar[str] = 'ssd'
  batch_inputs: ClassVar[dict] = {}

  num_classes: int
  pixel_mean: Sequence[float] = MEAN
  pixel_std: Sequence[float] = STD
  pixel_scale: float = 1.0
  width_divisor: int = 1  # Backbone widths / this (`SSDVGG16`).
  # Imported heads with another label space (torchvision's 91 COCO ids): the head's class of each
  # dataset label, background first. The head has max + 1 classes; 'class_logits' stay the head's
  # (torchvision's softmax over all of them) and 'head_classes' goes out with them, so the loss
  # maps the labels in and `decode` takes the dataset's columns of the scores.
  head_classes: Sequence[int] = ()
  dtype: Any = None
  bn_axis_name: str | None = None  # Unused (no batch norm); every model takes it.

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    mean = jnp.asarray(self.pixel_mean, jnp.float32)
    std = jnp.asarray(self.pixel_std, jnp.float32)
    x = (images.astype(jnp.float32) * self.pixel_scale - mean) / std
    maps = SSDVGG16(self.width_divisor, self.dtype, name='backbone')(x, train=train)
    if self.head_classes and len(self.head_classes) != self.num_classes:
      raise ValueError(f'model.head_classes has {len(self.head_classes)} entries for '
                       f'{self.num_classes} dataset classes; give one head class per dataset '
                       'class, background (0) first.')
    classes = max(self.head_classes) + 1 if self.head_classes else self.num_classes
    n, logits, deltas = images.shape[0], [], []
    for k, (fmap, ratios) in enumerate(zip(maps, ASPECT_RATIOS, strict=True)):
      a = 2 + 2 * len(ratios)
      head = functools.partial(Conv, kernel_size=(3, 3), padding=[(1, 1)] * 2, dtype=self.dtype)
      logits.append(head(a * classes, name=f'class_head{k}')(fmap).reshape(n, -1, classes))
      deltas.append(head(a * 4, name=f'box_head{k}')(fmap).reshape(n, -1, 4))
    anchors = torchvision_default_boxes(images.shape[1:3], [m.shape[1:3] for m in maps])
    out = {'class_logits': jnp.concatenate(logits, 1).astype(jnp.float32),
           'box_deltas': jnp.concatenate(deltas, 1).astype(jnp.float32),
           'anchors': jnp.asarray(anchors)}
    if self.head_classes:
      out['head_classes'] = jnp.asarray(self.head_classes, jnp.int32)
    return out

  @staticmethod
  def decode_outputs(outputs: dict, image_hw):
    return decode(outputs, image_hw)

  @staticmethod
  def postprocess_detections(outputs: dict, image_hw, detect_config) -> dict:
    """torchvision's own selection instead of the detection task's shared one."""
    return detect_from_config(outputs, image_hw, detect_config)


def select_detections(boxes, scores, *, score_threshold: float = 0.01, topk_per_class: int = 400,
                      iou_threshold: float = 0.45, max_detections: int = 200) -> dict:
  """One image, torchvision's SSD.postprocess_detections: boxes [D, 4], scores [D, C - 1] ->
  'boxes' [M, 4], 'scores', 'labels' (1..C-1), 'valid' [M], M = max_detections, best first."""
  per_class, top = lax.top_k(scores.T, min(topk_per_class, scores.shape[0]))  # [C - 1, K].
  labels = jnp.broadcast_to(jnp.arange(1, scores.shape[1] + 1, dtype=jnp.int32)[:, None],
                            top.shape).reshape(-1)
  cand_boxes, cand_scores = boxes[top.reshape(-1)], per_class.reshape(-1)
  keep, valid = batched_nms(cand_boxes, cand_scores, labels, iou_threshold, max_detections,
                            valid_mask=cand_scores > score_threshold)
  return {'boxes': jnp.where(valid[:, None], cand_boxes[keep], 0.0),
          'scores': jnp.where(valid, cand_scores[keep], 0.0),
          'labels': jnp.where(valid, labels[keep], 0), 'valid': valid}


def decode(outputs: dict, image_hw):
  """-> boxes [N, D, 4] clipped to `image_hw` ((H, W) or [N, 2]), scores [N, D, C - 1] (softmax,
  foreground)."""
  boxes = box_ops.decode(outputs['box_deltas'], outputs['anchors'], SSD_BOX_WEIGHTS)
  hw = jnp.broadcast_to(jnp.asarray(image_hw, jnp.float32), (boxes.shape[0], 2))
  scores = jax.nn.softmax(outputs['class_logits'], -1)
  columns = outputs['head_classes'][1:] if 'head_classes' in outputs else slice(1, None)
  scores = scores[..., columns]
  return box_ops.clip(boxes, hw[:, None]), scores


def detect(outputs: dict, image_hw, **select_kwargs) -> dict:
  """A batch's detections, torchvision's post-processing (`select_detections`)."""
  boxes, scores = decode(outputs, image_hw)
  return map_images(functools.partial(select_detections, **select_kwargs), boxes, scores)


def detect_from_config(outputs: dict, image_hw, detect_config) -> dict:
  """`detect` with `config.detect`'s fields; its pre_nms_topk counts per class here (400)."""
  return detect(outputs, image_hw, score_threshold=detect_config.score_threshold,
                topk_per_class=detect_config.pre_nms_topk,
                iou_threshold=detect_config.nms_iou_threshold,
                max_detections=detect_config.max_detections)
