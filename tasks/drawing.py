"""Pictures people look at: coloured masks over images, side-by-side panels (Pillow only)."""
import colorsys

import numpy as np
from PIL import Image, ImageDraw


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
  return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def blend(image: np.ndarray, overlay: np.ndarray, alpha: float = 0.55) -> np.ndarray:
  """Mixes an RGB uint8 overlay into an RGB uint8 image (where the overlay is not black)."""
  on = overlay.any(-1, keepdims=True)
  mixed = (1 - alpha) * image + alpha * overlay
  return np.where(on, mixed, image).round().astype(np.uint8)


def save_panel(tiles: list[np.ndarray], titles: list[str], path: str, scale: int = 4):
  """Saves uint8 RGB tiles side by side, nearest-upscaled so small images stay readable."""
  tiles = [np.kron(t, np.ones((scale, scale, 1), np.uint8)) for t in tiles]
  h, w = tiles[0].shape[:2]
  title_h, gap = 14, 4
  canvas = Image.new('RGB', (len(tiles) * (w + gap) - gap, h + title_h), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for i, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
    canvas.paste(Image.fromarray(tile), (i * (w + gap), title_h))
    draw.text((i * (w + gap) + 2, 1), title, fill=(0, 0, 0))
  canvas.save(path)
