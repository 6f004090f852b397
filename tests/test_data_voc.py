"""VOC 2012 segmentation builder on a tiny fake VOCtrainval tree (JPEGs + palette PNGs + lists)."""
import os
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import common
from data import pipeline, voc
from data import source as data_source

_TRAIN, _VAL = ['2007_000032', '2007_000039', '2008_000123'], ['2009_000001', '2010_000002']


def _palette():
  pal = np.zeros((256, 3), np.uint8)
  pal[1:21] = np.random.default_rng(0).integers(0, 255, size=(20, 3))
  pal[255] = (224, 224, 192)
  return pal.ravel().tolist()


def _save_palette_png(path, indices):
  img = Image.fromarray(indices.astype(np.uint8), mode='P')
  img.putpalette(_palette())
  img.save(path)


def _fake_scene(rng, h, w):
  """Two rectangles of random VOC classes with 255 borders, like the official annotations."""
  cls = np.zeros((h, w), np.uint8)
  obj = np.zeros((h, w), np.uint8)
  labels = rng.choice(np.arange(1, 21), size=2, replace=False)
  for k, lab in enumerate(labels, start=1):
    y1, x1 = rng.integers(2, h // 2), rng.integers(2, w // 2)
    y2, x2 = y1 + rng.integers(8, h // 2), x1 + rng.integers(8, w // 2)
    cls[y1 - 1:y2 + 1, x1 - 1:x2 + 1] = 255
    obj[y1 - 1:y2 + 1, x1 - 1:x2 + 1] = 255
    cls[y1:y2, x1:x2] = lab
    obj[y1:y2, x1:x2] = k
  return cls, obj


def _write_voc(root, rng):
  base = os.path.join(root, 'VOCdevkit', 'VOC2012')
  for d in ('JPEGImages', 'SegmentationClass', 'SegmentationObject', 'ImageSets/Segmentation'):
    os.makedirs(os.path.join(base, d), exist_ok=True)
  truth = {}
  for split, ids in (('train', _TRAIN), ('val', _VAL)):
    with open(os.path.join(base, 'ImageSets/Segmentation', f'{split}.txt'), 'w') as f:
      f.write('\n'.join(ids) + '\n')
    for image_id in ids:
      h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
      image = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
      Image.fromarray(image).save(os.path.join(base, 'JPEGImages', f'{image_id}.jpg'))
      cls, obj = _fake_scene(rng, h, w)
      _save_palette_png(os.path.join(base, 'SegmentationClass', f'{image_id}.png'), cls)
      _save_palette_png(os.path.join(base, 'SegmentationObject', f'{image_id}.png'), obj)
      truth[image_id] = (cls, obj)
  return truth


@pytest.fixture(scope='module')
def voc_dirs(tmp_path_factory):
  """(data_dir, manual_dir, truth): the fake VOC as the official tar in the manual dir."""
  tmp = tmp_path_factory.mktemp('voc')
  tree = tmp / 'tree'
  truth = _write_voc(str(tree), np.random.default_rng(1))
  manual = tmp / 'manual'
  manual.mkdir()
  with tarfile.open(manual / voc.TAR_NAME, 'w') as tar:
    tar.add(tree / 'VOCdevkit', arcname='VOCdevkit')
  return str(tmp / 'tfds'), str(manual), truth, str(tree)


def _cfg(data_dir, manual_dir):
  c = common.data_config()
  c.name, c.data_dir, c.manual_dir = 'voc2012_segmentation', data_dir, manual_dir
  c.read_threads, c.worker_count = 0, 0
  return c


def test_builder_reads_official_tar_layout(voc_dirs):
  data_dir, manual_dir, truth, _ = voc_dirs
  data_source.ensure_prepared(_cfg(data_dir, manual_dir))
  source = tfds.data_source('voc2012_segmentation', split='train', data_dir=data_dir,
                            download=False)
  assert len(source) == 3
  for i, image_id in enumerate(_TRAIN):
    ex = source[i]
    cls, obj = truth[image_id]
    assert ex['id'].decode() == image_id
    assert ex['image'].shape[:2] == cls.shape
    np.testing.assert_array_equal(ex['mask'][..., 0], cls)  # 255 border kept as ignore.
    ids = ex['instance_ids'][..., 0]
    assert set(np.unique(ids)) == {0, 1, 2}
    boxes = np.asarray(ex['objects']['box'])
    labels = np.asarray(ex['objects']['label'])
    for k in (1, 2):
      ys, xs = np.nonzero(obj == k)
      np.testing.assert_array_equal(boxes[k - 1], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
      assert labels[k - 1] == cls[obj == k][0]
  info = pipeline.dataset_info(_cfg(data_dir, manual_dir))
  assert info['num_classes'] == 21 and info['class_names'][15] == 'person'
  assert (info['num_train'], info['num_eval']) == (3, 2)


def test_builder_reads_extracted_tree(voc_dirs, tmp_path):
  _, _, _, tree = voc_dirs
  builder = voc.Voc2012Segmentation(data_dir=str(tmp_path))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=tree))
  assert builder.info.splits['validation'].num_examples == 2


def test_missing_manual_data_is_a_clear_error(tmp_path):
  cfg = _cfg(str(tmp_path / 'tfds'), str(tmp_path))
  with pytest.raises(Exception, match='VOCtrainval_11-May-2012.tar'):
    data_source.ensure_prepared(cfg)


def test_pipeline_batches_from_voc(voc_dirs):
  data_dir, manual_dir, _, _ = voc_dirs
  cfg = _cfg(data_dir, manual_dir)
  cfg.image_size, cfg.max_boxes = 64, 4
  cfg.augment.scale_min, cfg.augment.scale_max, cfg.augment.crop_size = 0.5, 1.5, 48
  b = next(pipeline.make_train_iterator(cfg, global_batch_size=2, seed=0))
  assert b['image'].shape == (2, 48, 48, 3) and b['instance_crops'].shape == (2, 4, 56, 56)
  assert set(np.unique(b['mask'])) - set(range(21)) <= {255}
  batches = list(pipeline.make_eval_batches(cfg, batch_size=4))
  assert len(batches) == 1 and batches[0]['example_valid'].tolist() == [True, True, False, False]
  assert batches[0]['image'].shape == (4, 64, 64, 3)
  # Images larger than 64 were downscaled; everything past the image is ignore.
  assert np.all(batches[0]['mask'][2:] == 255)
