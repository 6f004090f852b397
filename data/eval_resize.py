"""Eval-time input as torchvision's GeneralizedRCNNTransform, with static shapes.

With `data.eval_min_size` set, each eval image is resized by scale = min(min_size / min(h, w),
max_size / max(h, w)) to (floor(h * scale), floor(w * scale)) (bilinear, half-pixel centres, no
antialias; upscaling too), then padded bottom/right to a canvas. torchvision pads each batch to
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


def resize(ex: dict, rule: Rule) -> dict:
  """A decoded (float image) example resized by `rule`, unpadded."""
  out_hw = rule.out_hw(*ex['image'].shape[:2])
  return augment.transform(ex, flip=False, out_hw=out_hw, oy=0, ox=0, crop_hw=out_hw)


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
