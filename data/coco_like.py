"""A synthetic set in COCO 2017's file format, for input-pipeline benchmarks and tests.

`write_coco_like(manual_dir, ...)` writes what the `coco2017` builder (data/coco.py) reads from
its manual dir, extracted: annotations/instances_{train,val}2017.json and one JPEG per image in
train2017/ and val2017/. The images look like COCO's to the pipeline: 640x480 (landscape) JPEGs of
~120 KB (textured backgrounds, quality 90), each with 3-10 filled polygon objects annotated as
polygons with COCO's sparse category ids (1..90, the 80 real ones). Every image comes from its own
generator seeded by (seed, split, index): the content does not depend on the order of generation.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from data.coco import CLASS_NAMES

# COCO's category ids of CLASS_NAMES[1:], in order (the official ids skip 12, 26, 29, 30, ...).
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90)
_FOLDERS = {'train': 'train2017', 'validation': 'val2017'}
_SPLIT_IDS = {'train': 1, 'validation': 2}


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """uint8 [h, w, 3]: smooth colour blobs plus fine grain (what makes real photos ~120 KB)."""
  coarse = rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), np.uint8)
  image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
  image += rng.integers(-24, 25, (h, w, 3), np.int16)
  return np.clip(image, 0, 255).astype(np.uint8)


def _polygon(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """float32 [V, 2] (x, y): a star-shaped polygon of 5-12 vertices, 20-300 px across."""
  cx, cy = rng.uniform(0, w), rng.uniform(0, h)
  radius = rng.uniform(10, 150)
  angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 13))))
  radii = radius * rng.uniform(0.5, 1.0, len(angles))
  points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
  return np.clip(points, 0, [w - 1, h - 1]).astype(np.float32)


def make_image(seed: int, split: str, index: int, *, height: int = 480, width: int = 640,
               quality: int = 90) -> tuple[bytes, list[dict]]:
  """(JPEG bytes, annotations without ids) of one synthetic image."""
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
  image = _texture(rng, height, width)
  anns = []
  for _ in range(int(rng.integers(3, 11))):
    points = _polygon(rng, height, width)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    drawn = np.zeros((height, width), np.uint8)
    cv2.fillPoly(drawn, [np.round(points).astype(np.int32)], 1)
    cv2.fillPoly(image, [np.round(points).astype(np.int32)], colour)
    x1, y1 = points.min(0)
    x2, y2 = points.max(0)
    anns.append(dict(category_id=int(rng.choice(COCO_CATEGORY_IDS)), iscrowd=0,
                     segmentation=[[round(float(v), 2) for v in points.ravel()]],
                     area=float(drawn.sum()),
                     bbox=[float(x1), float(y1), float(x2 - x1), float(y2 - y1)]))
  ok, jpeg = cv2.imencode('.jpg', image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
  assert ok, 'cv2.imencode failed'
  return jpeg.tobytes(), anns


def write_coco_like(manual_dir: str, *, num_train: int, num_validation: int, seed: int = 0,
                    height: int = 480, width: int = 640) -> dict[str, int]:
  """Writes the set into `manual_dir` (see the module docstring); returns JPEG bytes per split."""
  categories = [dict(id=i, name=n, supercategory='synthetic')
                for i, n in zip(COCO_CATEGORY_IDS, CLASS_NAMES[1:], strict=True)]
  os.makedirs(os.path.join(manual_dir, 'annotations'), exist_ok=True)
  sizes = {}
  for split, num in (('train', num_train), ('validation', num_validation)):
    folder = _FOLDERS[split]
    os.makedirs(os.path.join(manual_dir, folder), exist_ok=True)
    images, annotations, sizes[split] = [], [], 0
    for index in range(num):
      image_id = index + 1
      jpeg, anns = make_image(seed, split, index, height=height, width=width)
      name = f'{image_id:012d}.jpg'
      with open(os.path.join(manual_dir, folder, name), 'wb') as f:
        f.write(jpeg)
      sizes[split] += len(jpeg)
      images.append(dict(id=image_id, file_name=name, height=height, width=width))
      annotations += [dict(ann, id=len(annotations) + k + 1, image_id=image_id)
                      for k, ann in enumerate(anns)]
    with open(os.path.join(manual_dir, 'annotations', f'instances_{folder}.json'), 'w') as f:
      json.dump(dict(images=images, annotations=annotations, categories=categories), f)
  return sizes
