"""Augmentations (numpy, OpenCV's resize) applied consistently to an image and all its targets.

An example is a dict with `image` [H, W, 3] (uint8 in the pipeline; the dtype is kept), `mask`
[H, W] (semantic, 255 = ignore) and optionally `instance_ids` [H, W] (k = instance k, 0 = none),
`instance_masks` [K, H, W], `boxes` float32 [K, 4] (y1, x1, y2, x2; absolute pixels, y2/x2 =
last pixel + 1), `labels` [K] and `keypoints` float32 [K, J, 3] (y, x, v; see ops/joints.py)
with `keypoint_flip`, the joint set's flip permutation (the pipeline sets it from the dataset;
LSP's 14 joints if absent).

Keypoints move with the image; a flip also swaps left and right joints (the person's right hand
becomes their left), and a joint pushed out of the crop becomes unlabelled (v = 0).

Boxes are recomputed as the tight box of each augmented instance mask when masks are present (so a
box cut by the crop hugs what is left of the object, not the clipped original box); otherwise they
are transformed geometrically and clipped (also when `annotated_boxes` is set: datasets whose
boxes are annotated, not the tight box of the stored mask). Either way `box_valid` [K] says which
boxes survived. Region `proposals` [P, 4] (data/proposals.py) always move geometrically, like
annotated boxes, and `proposal_valid` [P] says which survived the crop. Region phrases
`captions` [K, T] (token ids) follow their boxes; a flip maps them through `caption_flip`, the
vocabulary's token permutation ("left" <-> "right"). All randomness comes from
the `np.random.Generator` the caller passes, which the pipeline derives from (seed, index), so
results are deterministic however grain schedules the work.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ops.joints import FLIP_PERMUTATION
from ops.masks import CROP_MARGIN, crop_frames

IGNORE = 255
_MASK_KEYS = ('mask', 'instance_ids')


def resize_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """Half-pixel-centre bilinear resize of [H, W, C] or [H, W] (jax.image.resize's convention, no
  antialiasing); keeps the dtype (uint8 is rounded). OpenCV: ~18x faster than numpy on 640x480."""
  if image.shape[:2] == (out_h, out_w):
    return image
  out = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
  return out.reshape(out_h, out_w, *image.shape[2:])  # cv2 drops a trailing axis of 1.


def resize_nearest(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """Nearest-neighbour resize of the last two axes ([..., H, W]), pixel centres mapped to pixel
  centres; keeps dtype. Two np.take (4x faster than one fancy index; OpenCV's
  INTER_NEAREST_EXACT is no faster and misplaces rows whose centres fall on a source edge)."""
  h, w = array.shape[-2:]
  if (h, w) == (out_h, out_w):
    return array
  ys = np.minimum(((np.arange(out_h) + 0.5) * (h / out_h)).astype(np.int64), h - 1)
  xs = np.minimum(((np.arange(out_w) + 0.5) * (w / out_w)).astype(np.int64), w - 1)
  return np.take(np.take(array, ys, axis=-2), xs, axis=-1)


def crop_or_pad(array: np.ndarray, oy: int, ox: int, out_h: int, out_w: int, fill,
                axes: tuple[int, int] = (0, 1)) -> np.ndarray:
  """The window rows [oy, oy + out_h), cols [ox, ox + out_w) of `array` along `axes`.

  Negative offsets or windows past the end are filled with `fill` (that is how padding happens).
  """
  ay, ax = axes
  h, w = array.shape[ay], array.shape[ax]
  if (oy, ox, h, w) == (0, 0, out_h, out_w):
    return array
  shape = list(array.shape)
  shape[ay], shape[ax] = out_h, out_w
  out = np.full(shape, fill, dtype=array.dtype)
  sy0, sy1 = max(oy, 0), min(oy + out_h, h)
  sx0, sx1 = max(ox, 0), min(ox + out_w, w)
  if sy1 > sy0 and sx1 > sx0:
    src = [slice(None)] * array.ndim
    dst = [slice(None)] * array.ndim
    src[ay], src[ax] = slice(sy0, sy1), slice(sx0, sx1)
    dst[ay] = slice(sy0 - oy, sy1 - oy)
    dst[ax] = slice(sx0 - ox, sx1 - ox)
    out[tuple(dst)] = array[tuple(src)]
  return out


def tight_boxes_from_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(boxes float32 [K, 4], nonempty bool [K]) of binary masks [K, H, W]."""
  masks = masks.astype(bool)
  rows, cols = masks.any(axis=2), masks.any(axis=1)
  h, w = masks.shape[1:]
  boxes = np.stack([np.argmax(rows, 1), np.argmax(cols, 1),
                    h - np.argmax(rows[:, ::-1], 1), w - np.argmax(cols[:, ::-1], 1)], 1)
  nonempty = rows.any(axis=1)
  return np.where(nonempty[:, None], boxes, 0).astype(np.float32), nonempty


def ids_to_masks(instance_ids: np.ndarray, num: int) -> np.ndarray:
  """uint8 [num, H, W] one-hot of ids 1..num."""
  ids = np.arange(1, num + 1, dtype=instance_ids.dtype)
  return (instance_ids[None] == ids[:, None, None]).astype(np.uint8)


def _frame_taps(start: float, end: float, size: int, lo: int, hi: int, n: int):
  """(rows [size, T], weights [size, T]): cell i of a `size`-cell crop of [start, end) averages
  the bilinear value of an n-row image (rows lo..hi - 1 given, indices relative to lo) at
  ceil(extent / size) points per cell, RoIAlign's adaptive grid (aligned; points over half a
  pixel outside the image read 0, as RoIAlign's)."""
  k = max(1, math.ceil((end - start) / size))
  points = start + (np.arange(size)[:, None] + (np.arange(k) + 0.5) / k) * ((end - start) / size)
  t = points - 0.5  # Pixel r's value sits at r + 0.5.
  weight = np.where((t >= -1) & (t <= n), np.float32(1 / k), np.float32(0))
  t = np.clip(t, 0, n - 1) - lo
  low = np.floor(t).astype(np.int64)
  frac = (t - low).astype(np.float32) * weight
  rows = np.concatenate([low, np.minimum(low + 1, hi - lo - 1)], 1)
  return rows, np.concatenate([weight - frac, frac], 1)


def instance_crops(instance_ids: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
  """uint8 [K, size, size]: instance k's mask (the pixels k + 1 of the id map) in the frame of
  its box (`ops.masks.crop_frames`), each cell its coverage 0..255; all 0 for an empty box.

  Separable, over the frame's rows and columns only, as gathers of the 2 taps of each sample
  point (no BLAS: its threads crawl on a busy host). Mask R-CNN samples its 28x28 targets from
  these (`ops.masks.crop_targets`)."""
  out = np.zeros((len(boxes), size, size), np.uint8)
  h, w = instance_ids.shape
  for k, (y1, x1, y2, x2) in enumerate(crop_frames(boxes)):
    r0, r1 = max(0, math.floor(y1)), min(h, math.ceil(y2) + 1)
    c0, c1 = max(0, math.floor(x1)), min(w, math.ceil(x2) + 1)
    if y2 - y1 <= 2 * CROP_MARGIN or x2 - x1 <= 2 * CROP_MARGIN or r1 <= r0 or c1 <= c0:
      continue
    plane = (instance_ids[r0:r1, c0:c1] == k + 1).astype(np.float32)
    ry, wy = _frame_taps(y1, y2, size, r0, r1, h)
    rx, wx = _frame_taps(x1, x2, size, c0, c1, w)
    rows = np.einsum('st,stc->sc', wy, plane[ry])
    out[k] = np.round(np.einsum('ut,sut->su', wx, rows[:, rx]) * 255)
  return out


def _geometric_boxes(boxes, flip_w, sy, sx, oy, ox, out_h, out_w):
  """Flip (in a width `flip_w` image, or None), scale, shift and clip boxes [K, 4]."""
  boxes = boxes.astype(np.float32).copy()
  if flip_w is not None:
    boxes[:, [1, 3]] = flip_w - boxes[:, [3, 1]]
  boxes *= np.array([sy, sx, sy, sx], np.float32)
  boxes -= np.array([oy, ox, oy, ox], np.float32)
  boxes = boxes.clip(0, np.array([out_h, out_w, out_h, out_w], np.float32))
  valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  return np.where(valid[:, None], boxes, 0).astype(np.float32), valid


def _transform_keypoints(keypoints, flip_order, flip_w, sy, sx, oy, ox, out_h, out_w):
  """Flip (in a width `flip_w` image, or None; joints permuted by `flip_order`), scale and shift
  keypoints [K, J, 3]."""
  points, v = keypoints[..., :2].astype(np.float32), keypoints[..., 2]
  if flip_w is not None:
    if len(flip_order) != keypoints.shape[1]:
      raise ValueError(f'{keypoints.shape[1]} joints but a flip permutation of {len(flip_order)}; '
                       'set the example\'s `keypoint_flip`')
    points = np.stack([points[..., 0], flip_w - points[..., 1]], -1)[:, flip_order]
    v = v[:, flip_order]
  points = points * np.array([sy, sx], np.float32) - np.array([oy, ox], np.float32)
  inside = np.all((points >= 0) & (points < np.array([out_h, out_w], np.float32)), axis=-1)
  v = np.where(inside, v, 0)
  points = np.where(v[..., None] > 0, points, 0)
  return np.concatenate([points, v[..., None]], -1).astype(np.float32)


def _finish_boxes(ex: dict, geometric) -> dict:
  """Sets `boxes` and `box_valid`: tight around instance masks if any, else geometric."""
  num = len(ex['boxes']) if 'boxes' in ex else 0
  if ex.get('annotated_boxes'):  # COCO: its boxes, not the visible pixels of overlapping masks.
    ex['boxes'], ex['box_valid'] = geometric(ex['boxes'])
  elif 'instance_ids' in ex and 'boxes' in ex:
    ex['boxes'], ex['box_valid'] = tight_boxes_from_masks(ids_to_masks(ex['instance_ids'], num))
  elif 'instance_masks' in ex:
    ex['boxes'], ex['box_valid'] = tight_boxes_from_masks(ex['instance_masks'])
  elif 'boxes' in ex:
    ex['boxes'], ex['box_valid'] = geometric(ex['boxes'])
  else:
    ex['box_valid'] = np.zeros((0,), bool)
  return ex


def transform(ex: dict, *, flip: bool, out_hw: tuple[int, int], oy: int, ox: int,
              crop_hw: tuple[int, int]) -> dict:
  """Flip, resize to `out_hw`, then take the window (oy, ox, crop_hw): the deterministic core."""
  ex = dict(ex)
  h, w = ex['image'].shape[:2]
  (nh, nw), (ch, cw) = out_hw, crop_hw
  if flip:
    ex['image'] = ex['image'][:, ::-1]
    for k in _MASK_KEYS:
      if k in ex:
        ex[k] = ex[k][:, ::-1]
    if 'instance_masks' in ex:
      ex['instance_masks'] = ex['instance_masks'][:, :, ::-1]
  ex['image'] = crop_or_pad(resize_bilinear(ex['image'], nh, nw), oy, ox, ch, cw, 0)
  # The content's extent in the window (rows/cols past it are padding), for `image_hw`.
  ex['image_hw'] = np.asarray([max(0, min(ch, nh - oy)), max(0, min(cw, nw - ox))], np.int32)
  if 'mask' in ex:
    ex['mask'] = crop_or_pad(resize_nearest(ex['mask'], nh, nw), oy, ox, ch, cw, IGNORE)
  if 'instance_ids' in ex:
    ex['instance_ids'] = crop_or_pad(resize_nearest(ex['instance_ids'], nh, nw), oy, ox, ch, cw, 0)
  if 'instance_masks' in ex:
    ex['instance_masks'] = crop_or_pad(
        resize_nearest(ex['instance_masks'], nh, nw), oy, ox, ch, cw, 0, axes=(1, 2))
  motion = (w if flip else None, nh / h, nw / w, oy, ox, ch, cw)
  if 'keypoints' in ex:
    flip_order = ex.get('keypoint_flip', FLIP_PERMUTATION)
    ex['keypoints'] = _transform_keypoints(ex['keypoints'], flip_order, *motion)
  if 'proposals' in ex:
    ex['proposals'], ex['proposal_valid'] = _geometric_boxes(ex['proposals'], *motion)
  if flip and 'captions' in ex:  # "left of" becomes "right of"; the image caption is unaffected.
    ex['captions'] = ex['caption_flip'][ex['captions']]
  return _finish_boxes(ex, lambda b: _geometric_boxes(b, *motion))


def recipe_scale(h: int, w: int, min_size: int | None, max_size: int | None) -> float:
  """The detection recipe's resize factor: shorter side to `min_size` unless the longer side would
  exceed `max_size` (torchvision's GeneralizedRCNNTransform); 1.0 when min_size is None."""
  if min_size is None:
    return 1.0
  scale = min_size / min(h, w)
  return min(scale, max_size / max(h, w)) if max_size else scale


def random_augment(ex: dict, rng: np.random.Generator, *, crop_hw: tuple[int, int],
                   flip: bool = True, scale_min: float = 1.0, scale_max: float = 1.0,
                   min_size: int | None = None, max_size: int | None = None) -> dict:
  """Random horizontal flip, resize, random crop/pad to crop_hw.

  The resize factor is `recipe_scale` (1 without `min_size`) times a random jitter in
  [scale_min, scale_max]. Without `min_size` an image smaller than the crop is placed at a random
  offset; with it (the detection recipe) at the top-left corner, as torchvision pads
  bottom/right, so that `image_hw` is its extent. Padding: image 0, mask 255 (ignore), instance
  ids/masks 0.
  """
  h, w = ex['image'].shape[:2]
  do_flip = bool(flip and rng.random() < 0.5)
  scale = rng.uniform(scale_min, scale_max) if scale_max > scale_min else scale_min
  scale *= recipe_scale(h, w, min_size, max_size)
  nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
  ch, cw = crop_hw
  # Offsets in [min(0, n - c), max(0, n - c)]: a random crop if larger, a random placement if not.
  low_y, low_x = (0, 0) if min_size else (min(0, nh - ch), min(0, nw - cw))
  oy = int(rng.integers(low_y, max(0, nh - ch) + 1))
  ox = int(rng.integers(low_x, max(0, nw - cw) + 1))
  return transform(ex, flip=do_flip, out_hw=(nh, nw), oy=oy, ox=ox, crop_hw=crop_hw)


def fitted_hw(h: int, w: int, size_hw: tuple[int, int]) -> tuple[int, int]:
  """The size `fit` resizes an h x w image to (before padding)."""
  scale = min(1.0, size_hw[0] / h, size_hw[1] / w)
  return max(1, round(h * scale)), max(1, round(w * scale))


def fit(ex: dict, size_hw: tuple[int, int]) -> dict:
  """Eval-time: downscale (keeping aspect) only if larger than size_hw, then pad bottom/right."""
  out_hw = fitted_hw(*ex['image'].shape[:2], size_hw)
  return transform(ex, flip=False, out_hw=out_hw, oy=0, ox=0, crop_hw=size_hw)
