"""Tiny fake copies of the official COCO 2017 files for the `coco2017` builder tests.

`write_coco` writes the annotation JSON into the official zip and random JPEGs into the extracted
image folders, so one test covers both ways the builder reads the manual dir.
"""
import itertools
import json
import os
import zipfile

import numpy as np
from PIL import Image
from pycocotools import mask as mask_api

from configs import common


def data_config(tmp_path, name, variant):
  """A `config.data` block reading `tmp_path`/manual into `tmp_path`/data, 64 x 64, M = 4."""
  cfg = common.data_config()
  cfg.name, cfg.variant = name, variant
  cfg.data_dir, cfg.manual_dir = str(tmp_path / 'data'), str(tmp_path / 'manual')
  cfg.image_size, cfg.max_boxes, cfg.worker_count = 64, 4, 0
  return cfg


def _save_image(path, h, w, seed, mode='RGB'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  shape = (h, w, 3) if mode == 'RGB' else (h, w)
  pixels = np.random.default_rng(seed).integers(0, 255, shape, np.uint8)
  Image.fromarray(pixels, mode).save(path, format='JPEG')


def rect(h, w, y1, x1, y2, x2):
  m = np.zeros((h, w), np.uint8)
  m[y1:y2, x1:x2] = 1
  return m


def uncompressed_rle(m):
  """COCO's crowd format: run lengths over the column-major pixels, starting with zeros."""
  flat = m.ravel(order='F')
  counts = [len(list(run)) for _, run in itertools.groupby(flat)]
  return {'counts': ([0] if flat[0] else []) + counts, 'size': list(m.shape)}


def compressed_rle(m):
  """COCO's compressed RLE (a JSON string of counts), as pycocotools encodes masks."""
  rle = mask_api.encode(np.asfortranarray(m))
  return dict(rle, counts=rle['counts'].decode())


def write_coco(manual, annotations, coco_json, gray_ids=()):
  """annotations/<annotations>_{train,val}2017.json = coco_json(folder) in the official zip, and a
  random JPEG (grayscale for `gray_ids`) per image of the JSON in the extracted folders."""
  os.makedirs(manual)
  with zipfile.ZipFile(manual / 'annotations_trainval2017.zip', 'w') as z:
    for folder in ('train2017', 'val2017'):
      content = coco_json(folder)
      z.writestr(f'annotations/{annotations}_{folder}.json', json.dumps(content))
      for image in content['images']:
        _save_image(str(manual / folder / image['file_name']), image['height'], image['width'],
                   seed=image['id'], mode='L' if image['id'] in gray_ids else 'RGB')
