"""Anchor boxes for one or several feature levels, computed on the host from static shapes.

Follows detectron2's DefaultAnchorGenerator: for every cell, one anchor per (size, aspect ratio),
sizes outer and ratios inner; aspect ratio = height / width; an anchor of size s has area s**2.
Anchors are ordered (row, column, anchor), matching a conv head's [H, W, A * 4] output reshaped
to [H * W * A, 4]. Boxes are (y1, x1, y2, x2) in image pixels, float32 numpy arrays (constants
under jit).
"""
import math
from collections.abc import Sequence

import numpy as np


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """The A = len(sizes) * len(aspect_ratios) anchors of one cell, centred on (0, 0). [A, 4]."""
  out = []
  for size in sizes:
    for ratio in aspect_ratios:
      w = math.sqrt(size * size / ratio)
      h = ratio * w
      out.append((-h / 2.0, -w / 2.0, h / 2.0, w / 2.0))
  return np.asarray(out, np.float32).reshape(-1, 4)


def grid_anchors(feature_hw: tuple[int, int], stride: float, sizes: Sequence[float],
                 aspect_ratios: Sequence[float], offset: float = 0.0) -> np.ndarray:
  """Anchors of one feature level of size feature_hw = (H, W). Returns [H * W * A, 4].

  The anchors of cell (i, j) are centred on ((i + offset) * stride, (j + offset) * stride).
  offset=0.0 is detectron2's default (MODEL.ANCHOR_GENERATOR.OFFSET) and torchvision's; pass
  offset=0.5 to centre anchors on the cells' centres.
  """
  h, w = feature_hw
  ys = (np.arange(h, dtype=np.float64) + offset) * stride
  xs = (np.arange(w, dtype=np.float64) + offset) * stride
  yy, xx = np.meshgrid(ys, xs, indexing="ij")
  shifts = np.stack([yy, xx, yy, xx], axis=-1).reshape(-1, 1, 4)
  base = cell_anchors(sizes, aspect_ratios).astype(np.float64)[None]
  return (shifts + base).reshape(-1, 4).astype(np.float32)


def feature_shapes(image_hw: tuple[int, int], strides: Sequence[int]) -> list[tuple[int, int]]:
  """Feature map sizes of a backbone with 'same' padding: ceil(image / stride) per level."""
  return [(-(-image_hw[0] // s), -(-image_hw[1] // s)) for s in strides]


def multilevel_anchors(feature_hws: Sequence[tuple[int, int]], strides: Sequence[float],
                       sizes: Sequence[Sequence[float]],
                       aspect_ratios: Sequence[float] | Sequence[Sequence[float]],
                       offset: float = 0.0) -> tuple[np.ndarray, list[int]]:
  """Anchors of several levels (e.g. FPN P2..P6), concatenated level by level.

  `sizes[l]` are the sizes of level l (FPN: one size per level, e.g. ((32,), (64,), ...));
  `aspect_ratios` is one list shared by all levels or one list per level.
  Returns (anchors [sum_l H_l * W_l * A_l, 4], counts per level) so per-level outputs can be split.
  """
  if len(feature_hws) != len(strides) or len(sizes) != len(strides):
    raise ValueError(f"Got {len(feature_hws)} feature shapes, {len(strides)} strides and "
                     f"{len(sizes)} size lists; give one of each per level.")
  if aspect_ratios and not isinstance(aspect_ratios[0], Sequence):
    aspect_ratios = [aspect_ratios] * len(strides)
  levels = [grid_anchors(hw, s, sz, ar, offset)
            for hw, s, sz, ar in zip(feature_hws, strides, sizes, aspect_ratios, strict=True)]
  return np.concatenate(levels, axis=0), [len(a) for a in levels]
