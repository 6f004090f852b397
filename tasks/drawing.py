"""Pictures people look at: coloured masks over images, side-by-side panels (Pillow only)."""
import colorsys

import numpy as np
from PIL import Image, ImageDraw

from ops.joints import JOINT_NAMES


def palette(num_colors: int) -> np.ndarray:
  """[num_colors, 3] uint8; colour 0 (background) is black, the rest evenly spaced hues."""
  colors = [(0, 0, 0)] + [
      tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(num_colors - 1, 1), 0.85, 1.0))
      for i in range(num_colors - 1)]
  return np.asarray(colors, np.uint8)


def colorize(mask: np.ndarray, num_classes: int, ignore_label: int = 255) -> np.ndarray:
  """Label map [H, W] -> RGB uint8; ignored pixels are white."""
  colors = palette(num_classes)
  out = colors[np.clip(mask, 0, num_classes - 1)]
  out[mask == ignore_label] = 255
  return out


def to_uint8(image: np.ndarray) -> np.ndarray:
  """A batch's image (the pipeline's uint8, or float in [0, 1]) as uint8."""
  if image.dtype == np.uint8:
    return image
  return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def blend(image: np.ndarray, overlay: np.ndarray, alpha: float = 0.55) -> np.ndarray:
  """Mixes an RGB uint8 overlay into an RGB uint8 image (where the overlay is not black)."""
  on = overlay.any(-1, keepdims=True)
  mixed = (1 - alpha) * image + alpha * overlay
  return np.where(on, mixed, image).round().astype(np.uint8)


def upscale(tile: np.ndarray, scale: int) -> np.ndarray:
  """Nearest-neighbour upscaling of an RGB uint8 tile by an integer factor."""
  return np.kron(tile, np.ones((scale, scale, 1), np.uint8))


def draw_boxes(image: np.ndarray, boxes, labels, class_names, scores=None,
               scale: int = 4) -> np.ndarray:
  """The image upscaled by `scale` with (y1, x1, y2, x2) pixel boxes in their class colours.

  Each box is captioned with its class name (and score if given). Drawing after upscaling keeps
  the captions readable on small images.
  """
  canvas = Image.fromarray(upscale(image, scale))
  draw = ImageDraw.Draw(canvas)
  colors = palette(len(class_names))
  for k, (box, label) in enumerate(zip(np.asarray(boxes), np.asarray(labels), strict=True)):
    y1, x1, y2, x2 = (float(v) * scale for v in box)
    color = tuple(int(c) for c in colors[int(label)])
    draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=color, width=2)
    caption = class_names[int(label)] + ('' if scores is None else f' {float(scores[k]):.2f}')
    left, top, right, bottom = draw.textbbox((0, 0), caption)
    ty = y1 - (bottom - top) - 3 if y1 >= bottom - top + 3 else y1 + 2  # Above, or inside at top.
    draw.rectangle([x1, ty, x1 + right - left + 3, ty + bottom - top + 2], fill=color)
    draw.text((x1 + 2 - left, ty + 1 - top), caption, fill=(0, 0, 0))
  return np.asarray(canvas)


def _legend_rows(names, ids, width: int, draw: ImageDraw.ImageDraw) -> list[list[int]]:
  """The class ids of `ids` in rows that fit `width` pixels (so long class lists wrap)."""
  rows, x = [[]], 2
  for k in ids:
    step = 12 + int(draw.textlength(names[k])) + 10
    if rows[-1] and x + step > width:
      rows.append([])
      x = 2
    rows[-1].append(k)
    x += step
  return rows


def prediction_title(num_shown: int, threshold: float) -> str:
  """A detection panel's title; an empty panel says that no box reached the display threshold
  (rather than leaving the reader to guess whether drawing failed)."""
  return 'prediction' if num_shown else f'prediction: no detection >= {threshold:g}'


def save_panel(tiles: list[np.ndarray], titles: list[str], path: str, scale: int = 4,
               legend: list[str] | None = None, legend_ids=None):
  """Saves uint8 RGB tiles side by side, nearest-upscaled so small images stay readable.

  `legend`: class names drawn under the tiles in their `palette` colours, wrapped into as many
  rows as the width needs; `legend_ids`: only these classes (e.g. those in the picture).
  """
  tiles = [upscale(t, scale) for t in tiles]
  h, w = tiles[0].shape[:2]
  title_h, gap, row_h = 14, 4, 14
  width = len(tiles) * (w + gap) - gap
  ids = range(len(legend)) if legend and legend_ids is None else sorted(set(legend_ids or ()))
  measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  rows = _legend_rows(legend, ids, width, measure) if legend else []
  canvas = Image.new('RGB', (width, h + title_h + row_h * len(rows) + (2 if rows else 0)),
                     (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for i, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
    canvas.paste(Image.fromarray(tile), (i * (w + gap), title_h))
    draw.text((i * (w + gap) + 2, 1), title, fill=(0, 0, 0))
  colors = palette(len(legend)) if legend else None
  for r, row in enumerate(rows):
    x, y = 2, h + title_h + 3 + r * row_h
    for k in row:
      color = tuple(int(c) for c in colors[k])
      draw.rectangle([x, y, x + 9, y + 9], fill=color, outline=(0, 0, 0))
      draw.text((x + 12, y - 1), legend[k], fill=(0, 0, 0))
      x += 12 + int(draw.textlength(legend[k])) + 10
  canvas.save(path)


def _joint_side(name: str) -> str:
  return 'right' if name.startswith('right') else 'left' if name.startswith('left') else 'centre'


def _skeleton(draw: ImageDraw.ImageDraw, points, edges, labelled, scale: int, joint_names):
  colors = {'right': (240, 50, 50), 'left': (60, 110, 255), 'centre': (250, 220, 40)}
  side = [_joint_side(n) for n in joint_names]
  xy = lambda j: (float(points[j, 1]) * scale, float(points[j, 0]) * scale)
  for a, b in edges:
    if labelled[a] and labelled[b]:
      draw.line([xy(a), xy(b)], fill=colors[side[a] if side[a] == side[b] else 'centre'],
                width=2)
  for j in np.flatnonzero(labelled):
    x, y = xy(j)
    draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colors[side[j]], outline=(0, 0, 0))


def draw_skeleton(image: np.ndarray, points: np.ndarray, edges, labelled=None,
                  scale: int = 4, joint_names=JOINT_NAMES) -> np.ndarray:
  """The image upscaled by `scale` with (y, x) pixel joints [J, 2] joined by `edges` (pairs).

  The person's right side is drawn red, the left blue (by joint name), the rest yellow, so
  swapped sides show at a glance. Unlabelled joints (`labelled` False) and their sticks are left
  out.
  """
  canvas = Image.fromarray(upscale(image, scale))
  labelled = np.ones(len(points), bool) if labelled is None else np.asarray(labelled, bool)
  _skeleton(ImageDraw.Draw(canvas), points, edges, labelled, scale, joint_names)
  return np.asarray(canvas)


def draw_instances(image: np.ndarray, boxes, labels, class_names, *, masks=None, scores=None,
                   keypoints=None, keypoint_labelled=None, edges=(), joint_names=JOINT_NAMES,
                   scale: int = 4) -> np.ndarray:
  """Instances over the image: each mask [K, H, W] and box in its class's colour (the panels'
  legend), the boxes captioned with their class (and score), and (y, x) keypoints [K, J, 2] as
  skeletons; upscaled by `scale`."""
  if masks is not None and len(masks):
    colors = palette(len(class_names))
    # Later (lower-scoring) instances first, so the best one's mask wins where masks overlap.
    overlay = np.zeros_like(image)
    for k in reversed(range(len(masks))):
      overlay[np.asarray(masks[k], bool)] = colors[int(labels[k])]
    image = blend(image, overlay)
  canvas = Image.fromarray(draw_boxes(image, boxes, labels, class_names, scores, scale))
  if keypoints is not None:
    draw = ImageDraw.Draw(canvas)
    for k, points in enumerate(keypoints):
      labelled = (np.ones(len(points), bool) if keypoint_labelled is None
                  else keypoint_labelled[k])
      _skeleton(draw, points, edges, labelled, scale, joint_names)
  return np.asarray(canvas)


def draw_captions(image: np.ndarray, boxes, captions, scores=None, *, scale: int = 4,
                  text_width: int = 420, rows: int = 8) -> np.ndarray:
  """Numbered boxes, each in its own colour, beside a column listing their captions (dense
  captioning). The tile is image height x (image width + text_width) for up to `rows` captions,
  so that panels of different images line up."""
  count = len(captions)
  names = [''] + [str(k + 1) for k in range(count)]
  tile = draw_boxes(image, boxes, np.arange(1, count + 1), names, scores, scale)
  line = 14
  canvas = Image.new('RGB', (tile.shape[1] + text_width, max(tile.shape[0], line * rows + 4)),
                     (255, 255, 255))
  canvas.paste(Image.fromarray(tile), (0, 0))
  draw = ImageDraw.Draw(canvas)
  colors = palette(count + 1)
  x = tile.shape[1] + 6
  for k, text in enumerate(captions[:rows]):
    y = 4 + line * k
    draw.rectangle([x, y + 1, x + 9, y + 10], fill=tuple(int(c) for c in colors[k + 1]),
                   outline=(0, 0, 0))
    draw.text((x + 14, y), f'{k + 1}. {text}', fill=(0, 0, 0))
  return np.asarray(canvas)
