"""Anchor boxes for one or several feature levels, computed on the host from static shapes.

Follows detectron2's DefaultAnchorGenerator: for every cell, one anchor per (size, aspect ratio),
sizes outer and ratios inner; aspect ratio = height / width; an anchor of size s has area s**2.
Anchors are ordered (row, column, anchor), matching a conv head's [H, W, A * 4] output reshaped
to [H * W * A, 4]. Boxes are (y1, x1, y2, x2) in image pixels, float32 numpy arrays (constants
under jit).
"""
import math
from collections.abc import Sequence

import jax.numpy as jnp
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


def torchvision_cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """torchvision's AnchorGenerator.generate_anchors: ratios outer, sizes inner, each corner
  rounded to an integer (half to even), computed in float32 as there. [A, 4]."""
  scales = np.asarray(sizes, np.float32)
  h_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
  w_ratios = np.float32(1) / h_ratios
  ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
  hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
  return np.round(np.stack([-hs, -ws, hs, ws], axis=1) / np.float32(2))


def grid_anchors(feature_hw: tuple[int, int], stride: float | tuple[float, float],
                 sizes: Sequence[float], aspect_ratios: Sequence[float], offset: float = 0.0, *,
                 cell: np.ndarray | None = None) -> np.ndarray:
  """Anchors of one feature level of size feature_hw = (H, W). Returns [H * W * A, 4].

  The anchors of cell (i, j) are centred on ((i + offset) * stride_y, (j + offset) * stride_x);
  `stride` is one number or (stride_y, stride_x). offset=0.0 is detectron2's default
  (MODEL.ANCHOR_GENERATOR.OFFSET) and torchvision's; pass offset=0.5 to centre anchors on the
  cells' centres. `cell`: the cell's anchors [A, 4] (default `cell_anchors(sizes, ratios)`).
  """
  h, w = feature_hw
  sy, sx = stride if isinstance(stride, tuple) else (stride, stride)
  ys = (np.arange(h, dtype=np.float64) + offset) * sy
  xs = (np.arange(w, dtype=np.float64) + offset) * sx
  yy, xx = np.meshgrid(ys, xs, indexing="ij")
  shifts = np.stack([yy, xx, yy, xx], axis=-1).reshape(-1, 1, 4)
  if cell is None:
    cell = cell_anchors(sizes, aspect_ratios)
  return (shifts + cell.astype(np.float64)[None]).reshape(-1, 4).astype(np.float32)


def torchvision_anchors(canvas_hw: tuple[int, int], feature_hws: Sequence[tuple[int, int]],
                        sizes: Sequence[Sequence[float]],
                        aspect_ratios: Sequence[float]) -> np.ndarray:
  """torchvision's AnchorGenerator on a padded canvas: rounded cell anchors, offset 0, and per
  level and axis the stride canvas // feature size (so P6 of an 800-row canvas, 13 rows, has
  stride 61, not 64). Levels concatenated. [sum_l H_l * W_l * A, 4]."""
  levels = []
  for (h, w), size in zip(feature_hws, sizes, strict=True):
    stride = (canvas_hw[0] // h, canvas_hw[1] // w)
    levels.append(grid_anchors((h, w), stride, size, aspect_ratios,
                               cell=torchvision_cell_anchors(size, aspect_ratios)))
  return np.concatenate(levels, axis=0)


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


def torchvision_image_anchors(padded_hw, feature_hws: Sequence[tuple[int, int]],
                              strides: Sequence[int], sizes: Sequence[Sequence[float]],
                              aspect_ratios: Sequence[float]):
  """`torchvision_anchors` of one image whose padded size `padded_hw` ([2] int, traced) is
  smaller than the canvas its feature maps [H_l, W_l] cover: torchvision's grid of that image
  has ceil(padded / stride_l) cells per axis, so its strides are padded // those counts; our
  cells beyond them do not exist there. Returns (anchors [sum_l H_l * W_l * A, 4], valid [...])."""
  anchors, valid = [], []
  for (h, w), stride, size in zip(feature_hws, strides, sizes, strict=True):
    cells = -(-padded_hw // stride)  # torchvision's feature size of the padded image.
    step = padded_hw // cells
    ys, xs = jnp.arange(h), jnp.arange(w)
    yy, xx = jnp.meshgrid(ys * step[0], xs * step[1], indexing='ij')
    shifts = jnp.stack([yy, xx, yy, xx], axis=-1).reshape(-1, 1, 4).astype(jnp.float32)
    cell = jnp.asarray(torchvision_cell_anchors(size, aspect_ratios))
    anchors.append((shifts + cell[None]).reshape(-1, 4))
    inside = (ys[:, None] < cells[0]) & (xs[None, :] < cells[1])
    valid.append(jnp.repeat(inside.reshape(-1), len(cell)))
  return jnp.concatenate(anchors), jnp.concatenate(valid)

