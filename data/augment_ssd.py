"""SSD's training augmentation, as torchvision's detection reference (presets.py, recipe "ssd").

In order: RandomPhotometricDistort (each with probability 1/2: brightness x U(0.875, 1.125);
contrast x U(0.5, 1.5) before or after the next two, towards the image's mean grey; saturation x
U(0.5, 1.5), towards each pixel's grey; hue + U(-0.05, 0.05) turns; a random channel
permutation), RandomZoomOut (probability 1/2: the image placed at a random spot of a canvas 1 to
4 times its size, filled with the reference's mean colour (123, 117, 104)), RandomIoUCrop (Liu et
al.'s sampler: a minimum IoU drawn from {0, 0.1, 0.3, 0.5, 0.7, 0.9, leave as is}, up to 40 crops
of 0.3-1 of each side and aspect 1/2-2 tried for one containing a box centre and overlapping one
such box by that IoU, otherwise a new minimum; boxes whose centre is outside are dropped) and
RandomHorizontalFlip. Then the image is stretched to `out_hw` (SSD300's model transform:
300 x 300, aspect not kept), so batches keep static shapes.

Zoom-out and crop are one window of the source image (negative offsets are the canvas), so the
zoomed canvas is never built; the geometry of every target (masks, instance ids, keypoints, boxes,
tight or annotated) is `data.augment.transform`'s. The crop trials are drawn at once (numpy), the
first one that passes is taken: the same distribution as the reference's loop. Differences: the
colour steps run in float32 on the uint8 image and round once at the end (the reference's PIL
steps round after each), hue turns in OpenCV's float HSV (PIL's is 8-bit); boxes of instance-mask
datasets (no `annotated_boxes`) hug what the crop leaves of each mask, as data/augment.py's do,
where the reference clamps the box.
"""
from __future__ import annotations

import cv2
import numpy as np

from data import augment

FILL = np.asarray((123, 117, 104), np.uint8)  # The reference's mean colour (0-255) for zoom-out.
_MIN_IOUS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, None)  # None: leave the image as it is.
_GREY = np.asarray((0.299, 0.587, 0.114), np.float32)  # ITU-R 601-2 luma, as PIL's 'L'.


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [H, W, 3]: torchvision's RandomPhotometricDistort (p = 0.5 each)."""
  x = image.astype(np.float32) / 255.0
  r = rng.random(7)
  blend = lambda other, f: np.clip(other + f * (x - other), 0.0, 1.0)  # PIL's ImageEnhance.
  contrast = lambda: blend(np.float32((x @ _GREY).mean()), rng.uniform(0.5, 1.5))
  if r[0] < 0.5:
    x = np.clip(x * rng.uniform(0.875, 1.125), 0.0, 1.0)
  if r[1] < 0.5 and r[2] < 0.5:
    x = contrast()
  if r[3] < 0.5:
    x = blend((x @ _GREY)[..., None], rng.uniform(0.5, 1.5))
  if r[4] < 0.5:
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # Hue in degrees.
    hsv[..., 0] = (hsv[..., 0] + 360.0 * rng.uniform(-0.05, 0.05)) % 360.0
    x = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)
  if r[1] >= 0.5 and r[5] < 0.5:
    x = contrast()
  if r[6] < 0.5:
    x = x[..., rng.permutation(3)]
  return np.round(x * 255.0).astype(np.uint8)


def zoom_out(h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
  """(canvas_h, canvas_w, top, left) of torchvision's RandomZoomOut (p = 0.5, sides x 1-4); the
  image itself, (h, w, 0, 0), when not applied."""
  if rng.random() >= 0.5:
    return h, w, 0, 0
  r = rng.uniform(1.0, 4.0)
  ch, cw = int(h * r), int(w * r)
  u = rng.random(2)
  return ch, cw, int((ch - h) * u[1]), int((cw - w) * u[0])


def iou_crop(boxes: np.ndarray, h: int, w: int, rng: np.random.Generator, trials: int = 40):
  """torchvision's RandomIoUCrop of an h x w image with boxes [K, 4] (y1, x1, y2, x2): the window
  (top, left, height, width) and which boxes it keeps (centre strictly inside), or None to leave
  the image as it is."""
  cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
  while True:  # Ends: each round leaves the image as it is with probability 1/7.
    min_iou = _MIN_IOUS[rng.integers(len(_MIN_IOUS))]
    if min_iou is None:
      return None
    scale = rng.uniform(0.3, 1.0, (trials, 2))
    nw, nh = (w * scale[:, 0]).astype(np.int64), (h * scale[:, 1]).astype(np.int64)
    u = rng.random((trials, 2))
    left, top = ((w - nw) * u[:, 0]).astype(np.int64), ((h - nh) * u[:, 1]).astype(np.int64)
    ok = (nw >= 0.5 * nh) & (nw <= 2.0 * nh) & (nw > 0) & (nh > 0)
    inside = ((left[:, None] < cx) & (cx < (left + nw)[:, None])
              & (top[:, None] < cy) & (cy < (top + nh)[:, None]))  # [trials, K]
    inter_h = np.clip(np.minimum(boxes[:, 2], (top + nh)[:, None])
                      - np.maximum(boxes[:, 0], top[:, None]), 0, None)
    inter_w = np.clip(np.minimum(boxes[:, 3], (left + nw)[:, None])
                      - np.maximum(boxes[:, 1], left[:, None]), 0, None)
    inter = inter_h * inter_w
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / (area + (nh * nw)[:, None] - inter)
    ok &= inside.any(1) & (np.where(inside, iou, -1.0).max(1, initial=-1.0) >= min_iou)
    if ok.any():
      t = int(np.argmax(ok))
      return (int(top[t]), int(left[t]), int(nh[t]), int(nw[t])), inside[t]


def ssd_augment(ex: dict, rng: np.random.Generator, *, out_hw: tuple[int, int],
                flip: bool = True) -> dict:
  """The recipe of the module docstring on a decoded example (uint8 image); the image stretched
  to out_hw."""
  h, w = ex['image'].shape[:2]
  ex = dict(ex, image=photometric_distort(ex['image'], rng))
  ch, cw, top, left = zoom_out(h, w, rng)
  boxes = ex['boxes'].reshape(-1, 4) + np.asarray([top, left, top, left], np.float32)
  crop = iou_crop(boxes, ch, cw, rng)
  (wy, wx, nh, nw), keep = crop or ((0, 0, ch, cw), np.ones(len(boxes), bool))
  if not keep.all():  # Dropped boxes become empty: transform's box_valid drops them.
    ex['boxes'] = np.where(keep[:, None], ex['boxes'], 0).astype(np.float32)
    if 'instance_ids' in ex:
      dropped = np.flatnonzero(~keep) + 1
      ex['instance_ids'] = np.where(np.isin(ex['instance_ids'], dropped), 0, ex['instance_ids'])
  oy, ox = wy - top, wx - left
  ex = augment.transform(ex, flip=False, out_hw=(h, w), oy=oy, ox=ox, crop_hw=(nh, nw))
  # The canvas is the mean colour, not transform's zero padding (a new array where it padded).
  y0, x0, y1, x1 = max(0, -oy), max(0, -ox), min(nh, h - oy), min(nw, w - ox)
  if (y0, x0, y1, x1) != (0, 0, nh, nw):
    image = ex['image']
    image[:y0], image[y1:], image[:, :x0], image[:, x1:] = FILL, FILL, FILL, FILL
  return augment.transform(ex, flip=bool(flip and rng.random() < 0.5), out_hw=out_hw, oy=0,
                           ox=0, crop_hw=out_hw)


RECIPES = {'ssd': ssd_augment}


def recipe(name: str):
  """The augmentation function of `config.data.augment.recipe`."""
  if name not in RECIPES:
    raise ValueError(f'config.data.augment.recipe={name!r}: valid: {", ".join(RECIPES)} (or None '
                     'for the flip/scale/crop recipe of data/augment.py)')
  return RECIPES[name]
