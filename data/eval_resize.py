"""Eval-time input as torchvision's GeneralizedRCNNTransform, with static shapes.

With `data.eval_min_size` set, each eval image is resized by scale = min(min_size / min(h, w),
max_size / max(h, w)) to (floor(h * scale), floor(w * scale)) (bilinear, half-pixel centres, no
antialias; upscaling too; `bilinear`: torch's arithmetic in float32, kept in float32 in the
batch), then padded bottom/right to a canvas. torchvision pads each batch to
its own multiple of 32; static shapes need a fixed set instead: a landscape canvas
(min_size x max_size rounded up to the divisor), a portrait one and a square one. A batch takes
the smallest that holds all of its images, so eval compiles at most three shapes (one per
orientation when batches do not mix them). With `data.eval_fixed_size` (h, w) instead, each
image is stretched to exactly h x w (torchvision's `fixed_size`, SSD300's 300 x 300: no aspect
kept), which is also the one canvas. Without either, images are fitted into `image_size` x
`image_size` (downscale only), as before.

Every eval element records where its content is: `image_hw` (the resized size inside the
canvas), `orig_hw` (the source image's size) and `image_id` (the dataset's id), so predictions
map back to the original frame by the per-axis ratios orig_hw / image_hw.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from data import augment

_FILL = {'image': 0, 'mask': augment.IGNORE, 'instance_ids': 0}  # Padding of each pixel array.


class Rule(NamedTuple):
  """The eval resize of a config: the min/max-size rule, or a stretch to `fixed_hw`."""
  min_size: int
  max_size: int
  divisor: int
  fixed_hw: tuple[int, int] | None = None

  def out_hw(self, h: int, w: int) -> tuple[int, int]:
    """The resized size of an h x w image."""
    return self.fixed_hw or resized_hw(h, w, self.min_size, self.max_size)

  def canvases(self) -> list[tuple[int, int]]:
    """The fixed canvases, smallest first."""
    return [self.fixed_hw] if self.fixed_hw else canvases(self.min_size, self.max_size,
                                                          self.divisor)


def settings(cfg) -> Rule | None:
  """The eval `Rule` of `cfg` (a config.data block), or None for the fit path."""
  get = lambda k, d=None: cfg.get(k, d) if hasattr(cfg, 'get') else getattr(cfg, k, d)
  fixed = get('eval_fixed_size')
  if fixed is not None:
    if get('eval_min_size') is not None:
      raise ValueError(f'data.eval_fixed_size={tuple(fixed)} and data.eval_min_size='
                       f'{get("eval_min_size")}: set one of them (stretch or min/max-size rule)')
    if len(fixed) != 2 or min(int(v) for v in fixed) < 1:
      raise ValueError(f'data.eval_fixed_size={tuple(fixed)}: need (height, width), both >= 1')
    return Rule(0, 0, 1, (int(fixed[0]), int(fixed[1])))
  if get('eval_min_size') is None:
    return None
  min_size, max_size, divisor = (int(get(k, d)) for k, d in (
      ('eval_min_size', None), ('eval_max_size', 1333), ('eval_size_divisor', 32)))
  if min(min_size, max_size, divisor) < 1 or min_size > max_size:
    raise ValueError(f'data.eval_min_size={min_size}, eval_max_size={max_size}, '
                     f'eval_size_divisor={divisor}: need 1 <= min_size <= max_size, divisor >= 1')
  return Rule(min_size, max_size, divisor)


def resized_hw(h: int, w: int, min_size: int, max_size: int) -> tuple[int, int]:
  """The reference's resized size of an h x w image (see the module docstring)."""
  scale = min(min_size / min(h, w), max_size / max(h, w))
  return max(1, math.floor(h * scale)), max(1, math.floor(w * scale))


def canvases(min_size: int, max_size: int, divisor: int) -> list[tuple[int, int]]:
  """The fixed canvases, smallest first: landscape, portrait, square."""
  short, long = (-(-s // divisor) * divisor for s in (min_size, max_size))
  return [(short, long), (long, short), (long, long)]


def _bilinear_axis(n_in: int, n_out: int):
  """torch's source cells and weights along one axis (align_corners=False, scale in / out)."""
  src = np.float32(n_in / n_out) * (np.arange(n_out, dtype=np.float32) + np.float32(0.5))
  src = np.maximum(src - np.float32(0.5), np.float32(0))
  low = src.astype(np.int64)
  frac = src - low.astype(np.float32)
  return low, np.minimum(low + 1, n_in - 1), np.float32(1) - frac, frac


def bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """float32 [H, W, C] -> [out_h, out_w, C] with torch's F.interpolate(mode='bilinear') arithmetic:
  within 1.2e-7 of torch on tools/parity.py's images, where cv2's INTER_LINEAR is up to 2.5e-5
  off and rounding to uint8 2e-3 (enough to move detections of converted torchvision weights)."""
  y0, y1, wy0, wy1 = _bilinear_axis(image.shape[0], out_h)
  x0, x1, wx0, wx1 = _bilinear_axis(image.shape[1], out_w)
  top, bottom = image[y0], image[y1]
  wx0, wx1 = wx0[None, :, None], wx1[None, :, None]
  return (wy0[:, None, None] * (wx0 * top[:, x0] + wx1 * top[:, x1])
          + wy1[:, None, None] * (wx0 * bottom[:, x0] + wx1 * bottom[:, x1]))


def resize(ex: dict, rule: Rule) -> dict:
  """A decoded (float image) example resized by `rule`, unpadded; the image by `bilinear`."""
  out_hw = rule.out_hw(*ex['image'].shape[:2])
  out = augment.transform(ex, flip=False, out_hw=out_hw, oy=0, ox=0, crop_hw=out_hw)
  return dict(out, image=bilinear(np.asarray(ex['image'], np.float32), *out_hw))


def frame_keys(orig_hw, image_hw, image_id) -> dict:
  """`orig_hw`, `image_hw` and `image_id` of one eval element (CONTRACTS.md)."""
  return dict(orig_hw=np.asarray(orig_hw, np.int32), image_hw=np.asarray(image_hw, np.int32),
              image_id=np.int64(image_id))


def canvas_for(sizes, choices: list[tuple[int, int]]) -> tuple[int, int]:
  """The first canvas of `choices` that holds every (h, w) of `sizes`."""
  h, w = (max(s[i] for s in sizes) for i in (0, 1))
  for canvas in choices:
    if canvas[0] >= h and canvas[1] >= w:
      return canvas
  raise ValueError(f'an eval image of {h}x{w} fits none of the canvases {choices}')


def collate(elements: list[dict], choices: list[tuple[int, int]]) -> dict:
  """Elements of different sizes -> one batch padded (bottom/right) to the first fitting canvas.

  Padding elements (example_valid False) take whatever canvas the real ones need.
  """
  real = [e for e in elements if e['example_valid']] or elements[:1]
  ch, cw = canvas_for([e['image'].shape[:2] for e in real], choices)
  padded = []
  for e in elements:
    e = dict(e)
    for key, fill in _FILL.items():
      if key in e:  # The per-pixel targets the task reads (data.pipeline.PIXEL_TARGETS).
        e[key] = augment.crop_or_pad(e[key], 0, 0, ch, cw, fill)
    padded.append(e)
  return {k: np.stack([e[k] for e in padded]) for k in padded[0]}
