"""Shapes: determinism, masks/boxes/labels consistency, contrast, the tfds builder."""
import hashlib
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data import builder, shapes

CFG = next(c for c in shapes.Shapes.BUILDER_CONFIGS if c.name == 'small')


def test_render_is_a_pure_function_of_split_and_index():
  a = shapes.render(CFG, 'train', 7)
  b = shapes.render(CFG, 'train', 7)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert builder.encode_png(a['image']) == builder.encode_png(b['image'])
  c = shapes.render(CFG, 'train', 8)
  d = shapes.render(CFG, 'validation', 7)
  assert not np.array_equal(a['image'], c['image'])
  assert not np.array_equal(a['image'], d['image'])


@pytest.mark.parametrize('split', ['train', 'validation'])
def test_masks_boxes_labels_are_consistent(split):
  counts = []
  for i in range(150):
    ex = shapes.render(CFG, split, i)
    img, mask, ids = ex['image'], ex['mask'], ex['instance_ids']
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert mask.shape == ids.shape == (64, 64) and mask.dtype == ids.dtype == np.uint8
    k = len(ex['labels'])
    counts.append(k)
    assert 1 <= k <= CFG.max_objects
    assert set(np.unique(ids)) <= set(range(k + 1))
    assert np.all((ex['labels'] >= 1) & (ex['labels'] <= 4))
    # Semantic mask is exactly the instances' labels; background where no instance.
    lut = np.concatenate([[0], ex['labels']])
    np.testing.assert_array_equal(mask, lut[ids])
    for j in range(k):
      ys, xs = np.nonzero(ids == j + 1)
      assert len(ys) > 0, 'fully occluded objects must be dropped'
      tight = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
      np.testing.assert_array_equal(ex['boxes'][j], tight)
  assert max(counts) >= 4 and min(counts) == 1  # Scenes vary in how many objects they hold.


def test_objects_contrast_with_their_surroundings():
  diffs = []
  for i in range(100):
    ex = shapes.render(CFG, 'train', i)
    img = ex['image'].astype(np.float32)
    for j in range(len(ex['labels'])):
      inside = ex['instance_ids'] == j + 1
      ring = shapes._dilate(shapes._dilate(inside)) & ~inside
      diffs.append(np.linalg.norm(img[inside].mean(0) - img[ring].mean(0)))
  diffs = np.asarray(diffs)
  assert np.median(diffs) > 80 and np.mean(diffs > 30) > 0.97, np.percentile(diffs, [1, 5, 50])


def test_all_classes_and_background_textures_occur():
  labels = np.concatenate([shapes.render(CFG, 'train', i)['labels'] for i in range(60)])
  assert set(labels.tolist()) == {1, 2, 3, 4}


def test_builder_prepares_deterministic_array_records(tmp_path):
  digests = []
  for run in range(2):
    data_dir = str(tmp_path / f'run{run}')
    builder = shapes.Shapes(config='small', data_dir=data_dir)
    builder.download_and_prepare()
    assert builder.info.splits['train'].num_examples == 256
    assert builder.info.splits['validation'].num_examples == 64
    files = sorted(f for f in os.listdir(builder.data_dir) if 'array_record' in f)
    assert files, os.listdir(builder.data_dir)
    digests.append({f: hashlib.sha256(open(os.path.join(builder.data_dir, f), 'rb').read())
                    .hexdigest() for f in files})
  assert digests[0] == digests[1]
  source = tfds.data_source('shapes/small', split='train', data_dir=str(tmp_path / 'run0'),
                            download=False)
  ex = source[11]
  ref = shapes.render(CFG, 'train', 11)
  np.testing.assert_array_equal(ex['image'], ref['image'])
  np.testing.assert_array_equal(ex['mask'][..., 0], ref['mask'])
  np.testing.assert_array_equal(ex['instance_ids'][..., 0], ref['instance_ids'])
  np.testing.assert_array_equal(np.asarray(ex['objects']['box']), ref['boxes'])
  assert ex['id'] == b'train_000011'


def test_save_examples_grid(tmp_path):
  from PIL import Image

  from tools import shapes_grid
  path = str(tmp_path / 'grid.png')
  shapes_grid.main(['--out', path, '--num', '4', '--config', 'small'])
  assert Image.open(path).size == (4 * (2 * 64 * 3 + 3 * 4), (64 * 3 + 4) + 4)  # 1 row of 4.
