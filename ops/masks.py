"""Mask R-CNN's mask targets and paste-back (He et al., ICCV 2017, sec. 3).

The mask head predicts an m x m mask in the frame of each RoI. Training compares it with the
ground-truth mask cropped at the RoI and resized to m x m (`crop_targets`); as detectron2 does,
that is RoIAlign (aligned=True) of the binary instance mask, thresholded at 0.5, read here from a
small per-box crop of each mask instead of the full-size mask. At inference
each m x m mask is resized back to its box and placed into the image (`paste_masks`), where the
caller thresholds it at 0.5. Boxes are (y1, x1, y2, x2) float pixels; pixel i spans [i, i + 1).
"""
import jax.numpy as jnp
import numpy as np
from jax import lax

# The margin (pixels) around each ground-truth box that its mask crop covers: the bilinear value
# of a mask reaches half a pixel past its pixels, and annotated boxes (COCO) may cut an edge pixel.
CROP_MARGIN = 1.0


def crop_frames(boxes):
  """float32 [..., 4] (numpy or jax): each box's mask-crop frame, the box grown by CROP_MARGIN."""
  return boxes.astype(np.float32) + np.float32(CROP_MARGIN) * np.array([-1, -1, 1, 1], np.float32)


def _sample_weights(start, end, frame_start, frame_end, cells: int, size: int, samples: int):
  """[R, size, cells]: bin i of a `size`-bin RoI [start, end) averages `samples` bilinear reads of
  a `cells`-cell crop of [frame_start, frame_end). Points past the first / last cell centre read
  that cell; points outside the frame read 0."""
  step = (end - start) / size
  offsets = jnp.arange(size, dtype=jnp.float32)[:, None] + (jnp.arange(samples) + 0.5) / samples
  points = start[:, None, None] + offsets * step[:, None, None]  # [R, size, samples]
  extent = frame_end - frame_start
  scale = cells / jnp.where(extent > 0, extent, 1.0)  # Padding boxes: keep the division finite.
  u = (points - frame_start[:, None, None]) * scale[:, None, None] - 0.5
  inside = (points >= frame_start[:, None, None]) & (points < frame_end[:, None, None])
  tent = jnp.maximum(1.0 - jnp.abs(jnp.clip(u, 0.0, cells - 1.0)[..., None] - jnp.arange(cells)),
                     0.0)
  return jnp.where(inside[..., None], tent, 0.0).mean(axis=2)


def crop_targets(crops, gt_boxes, rois, matched, size: int, *, sampling_ratio: int = 2):
  """Binary mask targets float32 [R, size, size] of one image, from per-box mask crops.

  crops: [M, S, S] uint8 coverage 0..255 of each ground-truth instance in its `crop_frames` frame
  (`data.augment.instance_crops`); gt_boxes [M, 4]; rois [R, 4] float pixels; matched [R] int32,
  the instance each RoI is matched to.

  What RoIAlign (aligned=True, `sampling_ratio` points per bin and axis) of the full binary mask
  gives, thresholded at 0.5 as detectron2 does, with the mask read from its crop: each sample
  point is mapped into the matched instance's frame and read bilinearly (0 outside the frame).
  Separable: Wy @ crop @ Wx^T per RoI. Equal to the full-mask targets up to the crop's sampling
  (BENCHMARKS.md "Input pipeline": IoU with them).
  """
  # Targets are labels: no gradient through the proposals.
  rois = lax.stop_gradient(rois).astype(jnp.float32)
  frames = crop_frames(gt_boxes)[matched]
  crop = crops[matched].astype(jnp.float32) * jnp.float32(1 / 255)
  cells = crops.shape[-1]
  wy = _sample_weights(rois[:, 0], rois[:, 2], frames[:, 0], frames[:, 2], cells, size,
                       sampling_ratio)
  wx = _sample_weights(rois[:, 1], rois[:, 3], frames[:, 1], frames[:, 3], cells, size,
                       sampling_ratio)
  # HIGHEST: reduced-precision matmuls on accelerators would move values across the threshold.
  rows = jnp.einsum('ryi,rij->ryj', wy, crop, precision=lax.Precision.HIGHEST)
  out = jnp.einsum('ryj,rxj->ryx', rows, wx, precision=lax.Precision.HIGHEST)
  return (out >= 0.5).astype(jnp.float32)


def _paste_weights(start, end, s: int, n: int):
  """Bilinear weights [D, n, s] from the s mask cells of [start, end) to n image pixels.

  Cell i's value sits at start + (i + 0.5) * extent / s and pixel p's at p + 0.5. Pixels inside
  the box but beyond the first or last cell centre take that cell's value: detectron2's
  zero-padded grid_sample fades them toward 0 instead, which shrinks masks at the box edges.
  """
  extent = end - start
  # Degenerate (padding) boxes cover no pixel centre; the guard only keeps the division finite.
  scale = s / jnp.where(extent > 0, extent, 1.0)
  centres = jnp.arange(n, dtype=jnp.float32) + 0.5
  u = (centres[None, :] - start[:, None]) * scale[:, None] - 0.5  # [D, n] in cell units
  u = jnp.clip(u, 0.0, s - 1.0)
  cells = jnp.arange(s, dtype=jnp.float32)
  w = jnp.maximum(1.0 - jnp.abs(u[..., None] - cells), 0.0)  # The bilinear tent.
  inside = (centres[None, :] >= start[:, None]) & (centres[None, :] < end[:, None])
  return jnp.where(inside[..., None], w, 0.0)


def paste_masks(masks, boxes, image_hw):
  """Masks [D, s, s] (probabilities) pasted into an image of static size (H, W): [D, H, W].

  Bilinear, separable: paste = Wy @ mask @ Wx^T per detection with Wy [D, H, s], Wx [D, W, s].
  Pixels whose centre lies outside the box are 0, as are all pixels of a zero-size box.
  """
  height, width = (int(v) for v in image_hw)
  s = masks.shape[-1]
  boxes = boxes.astype(jnp.float32)
  wy = _paste_weights(boxes[:, 0], boxes[:, 2], s, height)
  wx = _paste_weights(boxes[:, 1], boxes[:, 3], s, width)
  # HIGHEST: reduced-precision matmuls on accelerators would move values across the threshold.
  rows = jnp.einsum("dyi,dij->dyj", wy, masks.astype(jnp.float32),
                    precision=lax.Precision.HIGHEST)
  return jnp.einsum("dyj,dxj->dyx", rows, wx, precision=lax.Precision.HIGHEST)



def _torchvision_paste_weights(start, end, s: int, n: int):
  """Weights [D, n, s + 2] of torchvision's paste along one axis: the mask padded by one cell,
  the box grown by (s + 2) / s and cut to integers, bilinear (align_corners=False) from s + 2
  cells to the integer box's extent + 1 pixels."""
  half = (end - start) * 0.5 * jnp.float32((s + 2) / s)
  centre = (end + start) * 0.5
  lo = jnp.trunc(centre - half).astype(jnp.int32)  # int64 conversion truncates toward zero.
  hi = jnp.trunc(centre + half).astype(jnp.int32)
  length = jnp.maximum(hi - lo + 1, 1)
  scale = jnp.float32(s + 2) / length.astype(jnp.float32)
  c = jnp.arange(n)[None, :] - lo[:, None]  # Each pixel's column in the resized mask.
  src = jnp.maximum(scale[:, None] * (c.astype(jnp.float32) + 0.5) - 0.5, 0.0)
  low = jnp.floor(src).astype(jnp.int32)
  frac = src - low
  high = jnp.where(low < s + 1, low + 1, low)
  cells = jnp.arange(s + 2)
  w = ((1.0 - frac)[..., None] * (cells == low[..., None])
       + frac[..., None] * (cells == high[..., None]))
  inside = (c >= 0) & (c < length[:, None])
  return jnp.where(inside[..., None], w, 0.0)


def paste_masks_torchvision(masks, boxes, image_hw):
  """torchvision's paste_masks_in_image (padding 1): masks [D, s, s] -> [D, H, W] probabilities.

  The mask gets a border of zeros, its box grows by (s + 2) / s about the centre and is cut to
  integer corners, and the mask is resized (bilinear) to that box's size + 1 and written in;
  separable, as `paste_masks`.
  """
  height, width = (int(v) for v in image_hw)
  s = masks.shape[-1]
  boxes = boxes.astype(jnp.float32)
  padded = jnp.pad(masks.astype(jnp.float32), ((0, 0), (1, 1), (1, 1)))
  wy = _torchvision_paste_weights(boxes[:, 0], boxes[:, 2], s, height)
  wx = _torchvision_paste_weights(boxes[:, 1], boxes[:, 3], s, width)
  rows = jnp.einsum("dyi,dij->dyj", wy, padded, precision=lax.Precision.HIGHEST)
  return jnp.einsum("dyj,dxj->dyx", rows, wx, precision=lax.Precision.HIGHEST)
