"""Small user datasets on disk for the `coco_json` / `mask_folder` tests: real JPEG / PNG files.

`write_coco_set` draws a few rectangles and triangles per image (categories 'blob' id 7 and
'box' id 42, or one 'walker' category with 5 named joints), overlapping, so segment areas differ
from box areas; polygons everywhere but one RLE mask, one crowd region, two image sizes.
"""
import json
import os

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_api

SIZES = ((48, 64), (64, 40))  # (h, w) of the images, alternating.
JOINTS = ('head', 'left_hand', 'right_hand', 'left_foot', 'right_foot')
CATEGORIES = [{'id': 42, 'name': 'box'}, {'id': 7, 'name': 'blob'}]
WALKER = [{'id': 3, 'name': 'walker', 'keypoints': list(JOINTS),
           'skeleton': [[1, 2], [1, 3], [1, 4], [1, 5]]}]


def _polygon(rng, h, w):
  """A triangle (segment area about half its box) inside the image."""
  y, x = rng.uniform(2, h - 20), rng.uniform(2, w - 20)
  s = rng.uniform(12, 18)
  return [x, y, x + s, y + s, x, y + s]


def _objects(rng, h, w, k, keypoints):
  anns = []
  for j in range(k):
    poly = _polygon(rng, h, w)
    xs, ys = poly[0::2], poly[1::2]
    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    ann = {'bbox': bbox, 'segmentation': [poly], 'iscrowd': 0}
    if keypoints:
      ann['category_id'] = 3
      pts = [(xs[0], ys[0]), (xs[1], ys[1]), (xs[2], ys[2]), (xs[0] + 2, ys[2] - 1),
             (xs[1] - 2, ys[2] - 1)]
      ann['keypoints'] = [v for x, y in pts for v in (int(x), int(y), 2)]
      ann['num_keypoints'] = 5
    else:
      ann['category_id'] = (7, 42)[j % 2]
    anns.append(ann)
  return anns


def _draw(anns, h, w, seed):
  img = Image.new('RGB', (w, h), tuple(int(v) for v in np.random.default_rng(seed).integers(
      0, 60, 3)))
  draw = ImageDraw.Draw(img)
  for a in anns:
    color = (230, 80, 40) if a['category_id'] == 7 else (40, 200, 90)
    if isinstance(a['segmentation'], list):
      draw.polygon(a['segmentation'][0], fill=color)
    else:
      m = mask_api.decode(dict(a['segmentation'], counts=a['segmentation']['counts'].encode()))
      pixels = np.asarray(img).copy()
      pixels[m > 0] = color
      img = Image.fromarray(pixels)
      draw = ImageDraw.Draw(img)
  return img


def write_coco_set(root, num_train=8, num_eval=4, keypoints=False, sizes=SIZES):
  """train.json / val.json and images/ under `root` (image sizes alternate through `sizes`);
  returns the config.data overrides."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, 'images'), exist_ok=True)
  ann_id = 1
  splits = {}
  for split, count, first_id in (('train', num_train, 100), ('val', num_eval, 500)):
    images, annotations = [], []
    for n in range(count):
      h, w = sizes[n % len(sizes)]
      image_id = first_id + 3 * n  # Not contiguous, not from 0.
      anns = _objects(rng, h, w, 3, keypoints)
      if n == 0 and not keypoints:  # One RLE mask and one crowd region.
        rle = mask_api.frPyObjects([anns[0]['segmentation'][0]], h, w)[0]
        anns[0]['segmentation'] = dict(rle, counts=rle['counts'].decode())
        anns[1]['iscrowd'] = 1
      for a in anns:
        seg = a['segmentation']
        rle = (mask_api.merge(mask_api.frPyObjects(seg, h, w)) if isinstance(seg, list)
               else dict(seg, counts=seg['counts'].encode()))
        a['area'] = float(mask_api.area(rle))
        a.update(id=ann_id, image_id=image_id)
        ann_id += 1
      # Train images are JPEGs; eval images alternate JPEG / PNG (predict reads that folder).
      name = f'{split}_{n}.' + ('png' if split == 'val' and n % 2 else 'jpg')
      _draw(anns, h, w, image_id).save(os.path.join(root, 'images', name))
      images.append({'id': image_id, 'file_name': name, 'height': h, 'width': w})
      annotations += anns
    splits[split] = {'images': images, 'annotations': annotations,
                     'categories': WALKER if keypoints else CATEGORIES}
    with open(os.path.join(root, f'{split}.json'), 'w') as f:
      json.dump(splits[split], f)
  images = os.path.join(root, 'images')
  return ['data.name=coco_json', f'data.train_json={root}/train.json',
          f'data.train_images={images}', f'data.eval_json={root}/val.json',
          f'data.eval_images={images}']


SEG_CLASSES = ('background', 'leaf', 'stone')


def write_mask_folder(root, num_train=8, num_eval=3):
  """train/ and val/ with images/ (JPEG and PNG) + masks/ (label and palette PNGs, 255 borders),
  and classes.txt; returns the config.data overrides."""
  rng = np.random.default_rng(1)
  for split, count in (('train', num_train), ('val', num_eval)):
    os.makedirs(os.path.join(root, split, 'images'), exist_ok=True)
    os.makedirs(os.path.join(root, split, 'masks'), exist_ok=True)
    for n in range(count):
      h, w = SIZES[n % 2]
      mask = np.zeros((h, w), np.uint8)
      for label in (1, 2):
        y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
        mask[y:y + 14, x:x + 14] = label
      mask[0, :] = 255  # An ignored border row.
      colors = np.array([[30, 30, 30], [40, 200, 60], [150, 150, 160]], np.uint8)
      image = Image.fromarray(colors[np.minimum(mask, 2)])
      image.save(os.path.join(root, split, 'images', f'{split}_{n}.' + ('png' if n % 2 else 'jpg')))
      png = Image.fromarray(mask, 'L' if n % 2 else 'P')
      if n % 2 == 0:
        png.putpalette([0, 0, 0, 0, 255, 0, 128, 128, 128] + [255] * (3 * 253))
      png.save(os.path.join(root, split, 'masks', f'{split}_{n}.png'))
  with open(os.path.join(root, 'train', 'classes.txt'), 'w') as f:
    f.write('\n'.join(SEG_CLASSES) + '\n')
  return ['data.name=mask_folder', f'data.train_dir={root}/train', f'data.eval_dir={root}/val']


def write_voc_folder(root, names=('cat', 'teapot')):
  """Annotations/ + JPEGImages/ with objects of `names`; returns the folder."""
  os.makedirs(os.path.join(root, 'Annotations'))
  os.makedirs(os.path.join(root, 'JPEGImages'))
  for n, name in enumerate(names):
    Image.new('RGB', (40, 30), (90, 90, 90)).save(os.path.join(root, 'JPEGImages', f'{n}.jpg'))
    xml = (f'<annotation><object><name>{name}</name><difficult>0</difficult><bndbox><xmin>3'
           '</xmin><ymin>5</ymin><xmax>20</xmax><ymax>25</ymax></bndbox></object></annotation>')
    with open(os.path.join(root, 'Annotations', f'{n}.xml'), 'w') as f:
      f.write(xml)
  return root
