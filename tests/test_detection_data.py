"""COCO 2017 and VOC detection builders on tiny fake copies of the official files (no TensorFlow).

Each test writes the raw files (COCO: annotation JSON in the official zip + extracted image
folders; VOC: the official trainval tar), prepares the builder into a tmp data_dir through the
pipeline and checks the batches: box conversion, labels, difficult flags and masks.
"""
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

import data
from data import augment
from tests.coco_files import compressed_rle, data_config, rect, uncompressed_rle, write_coco

# Image 1 (40 x 50, RGB): a person polygon (x 10..30, y 5..25) over part of a crowd of dogs
# (uncompressed RLE, x 25..50, y 0..20). Image 2 (30 x 40, grayscale): a bicycle (compressed RLE)
# and a zero-area car box, which the builder drops.
_CROWD = rect(40, 50, 0, 25, 20, 50)
_BIKE = rect(30, 40, 3, 4, 13, 24)


def _coco_json(folder):
  return {
      'images': [{'id': 7, 'file_name': f'{7:012d}.jpg', 'height': 40, 'width': 50},
                 {'id': 3, 'file_name': f'{3:012d}.jpg', 'height': 30, 'width': 40}],
      'categories': [{'id': 1, 'name': 'person'}, {'id': 2, 'name': 'bicycle'},
                     {'id': 3, 'name': 'car'}, {'id': 18, 'name': 'dog'}],
      'annotations': [
          {'id': 1, 'image_id': 7, 'category_id': 1, 'iscrowd': 0, 'area': 400.0,
           'bbox': [10, 5, 20, 20], 'segmentation': [[10, 5, 30, 5, 30, 25, 10, 25]]},
          {'id': 2, 'image_id': 7, 'category_id': 18, 'iscrowd': 1, 'area': 500.0,
           'bbox': [25, 0, 25, 20], 'segmentation': uncompressed_rle(_CROWD)},
          {'id': 3, 'image_id': 3, 'category_id': 2, 'iscrowd': 0, 'area': 200.0,
           'bbox': [4, 3, 20, 10], 'segmentation': compressed_rle(_BIKE)},
          {'id': 4, 'image_id': 3, 'category_id': 3, 'iscrowd': 0, 'area': 0.0,
           'bbox': [5, 5, 0, 4], 'segmentation': []},
      ],
      'info': {'folder': folder},
  }


def test_coco2017_batches(tmp_path):
  write_coco(tmp_path / 'manual', 'instances', _coco_json, gray_ids=(3,))
  cfg = data_config(tmp_path, 'coco2017', 'default')
  batch = next(iter(data.make_eval_batches(cfg, batch_size=3)))
  info = data.dataset_info(cfg)
  assert info['num_classes'] == 81 and info['class_names'][17] == 'dog'
  assert info['category_ids'][17 - 1] == 18 and info['category_ids'][-1] == 90  # dog; toothbrush.
  # The official evaluation reads the annotation file, extracted once from the zip.
  with open(info['eval_annotations']) as f:
    assert json.load(f)['info'] == {'folder': 'val2017'}
  np.testing.assert_array_equal(batch['image_id'], [3, 7, -1])
  np.testing.assert_array_equal(batch['orig_hw'][:2], [[30, 40], [40, 50]])
  assert (info['num_train'], info['num_eval']) == (2, 2)
  # Records are in image id order: the bicycle image (id 3) first. Images are padded into 64 x 64.
  np.testing.assert_array_equal(batch['example_valid'], [True, True, False])
  np.testing.assert_allclose(batch['boxes'][0, :1], [[3, 4, 13, 24]])  # (x, y, w, h) -> yxyx.
  np.testing.assert_array_equal(batch['labels'][0], [2, 0, 0, 0])  # The zero-area car is gone.
  np.testing.assert_allclose(batch['boxes'][1, :2], [[5, 10, 25, 30], [0, 25, 20, 50]])
  np.testing.assert_array_equal(batch['labels'][1], [1, 17, 0, 0])  # Contiguous ids 1..80.
  np.testing.assert_array_equal(batch['difficult'][:2], [[False] * 4, [False, True, False, False]])
  masks = np.stack([augment.ids_to_masks(ids, 4) for ids in batch['instance_ids']])
  np.testing.assert_array_equal(masks[0, 0, :30, :40], _BIKE)  # RLE, exactly.
  person, crowd = masks[1, 0, :40, :50].astype(bool), masks[1, 1, :40, :50].astype(bool)
  assert person[5:25, 10:30].all() and not person[:, 31:].any() and not person[26:].any()
  np.testing.assert_array_equal(crowd, _CROWD.astype(bool) & ~person)  # The smaller one wins.
  semantic = batch['mask'][1, :40, :50]
  assert np.all(semantic[person] == 1) and np.all(semantic[crowd] == 255)
  assert np.all(semantic[~person & ~crowd] == 0) and np.all(batch['mask'][0, :30, :40][_BIKE > 0]
                                                            == 2)
  train = next(data.make_train_iterator(cfg, global_batch_size=2, seed=0))
  assert train['difficult'].shape == (2, 4) and sorted(train['valid'].sum(1)) == [1, 2]


def _voc_xml(objects):
  parts = []
  for name, (xmin, ymin, xmax, ymax), difficult in objects:
    flag = '' if difficult is None else f'<difficult>{difficult}</difficult>'
    parts.append(f'<object><name>{name}</name><pose>Left</pose>{flag}<bndbox><xmin>{xmin}</xmin>'
                 f'<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>')
  return f'<annotation><folder>VOC2007</folder>{"".join(parts)}</annotation>'


def _tar_add(tar, name, payload):
  info = tarfile.TarInfo(name)
  info.size = len(payload)
  tar.addfile(info, io.BytesIO(payload))


def test_voc_detection_batches(tmp_path):
  manual = tmp_path / 'manual'
  os.makedirs(manual)
  base = 'VOCdevkit/VOC2007'
  annotations = {  # VOC boxes: 1-based inclusive (xmin, ymin, xmax, ymax).
      '000005': [('chair', (2, 3, 20, 30), None)],  # No <difficult> tag: not difficult.
      '000007': [('dog', (11, 6, 30, 25), 0), ('person', (1, 1, 50, 40), 1)],
  }
  with tarfile.open(manual / 'VOCtrainval_06-Nov-2007.tar', 'w') as tar:
    for seed, (image_id, objects) in enumerate(annotations.items()):
      _tar_add(tar, f'{base}/Annotations/{image_id}.xml', _voc_xml(objects).encode())
      buf = io.BytesIO()
      Image.fromarray(np.full((40, 50, 3), 40 * seed, np.uint8)).save(buf, format='JPEG')
      _tar_add(tar, f'{base}/JPEGImages/{image_id}.jpg', buf.getvalue())
    for split, ids in (('train', '000005\n000007\n'), ('val', '000007\n')):
      _tar_add(tar, f'{base}/ImageSets/Main/{split}.txt', ids.encode())
    _tar_add(tar, f'{base}/SegmentationClass/000007.png', b'not extracted for detection')
  cfg = data_config(tmp_path, 'voc_detection', '2007')
  batch = next(iter(data.make_eval_batches(cfg, batch_size=2)))
  assert data.dataset_info(cfg)['num_classes'] == 21
  np.testing.assert_array_equal(batch['example_valid'], [True, False])
  np.testing.assert_allclose(batch['boxes'][0, :2], [[5, 10, 25, 30], [0, 0, 40, 50]])
  np.testing.assert_array_equal(batch['labels'][0], [12, 15, 0, 0])  # dog, person.
  np.testing.assert_array_equal(batch['difficult'], [[False, True, False, False], [False] * 4])
  assert np.all(batch['mask'] == 255) and not batch['instance_ids'].any()  # No masks in VOC.
  train = next(data.make_train_iterator(cfg, global_batch_size=2, seed=0))
  assert train['difficult'].shape == (2, 4) and sorted(train['valid'].sum(1)) == [1, 2]
  assert sorted(train['difficult'].sum(1)) == [0, 1]
