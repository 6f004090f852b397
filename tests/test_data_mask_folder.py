"""The `mask_folder` builder: segmentation folders with named classes, VOC layouts, bad input."""
import os

import numpy as np
import pytest
from PIL import Image

from configs import common, loader
from data import pipeline, source
from tests import own_data_files


def _config(overrides, root):
  cfg = loader.override(common.data_config(), [o[len('data.'):] for o in overrides])
  cfg.data_dir = str(root / 'tfds')
  return cfg


def test_masks_and_class_names_from_the_folder(tmp_path):
  cfg = _config(own_data_files.write_mask_folder(str(tmp_path)), tmp_path)
  info = pipeline.dataset_info(cfg)
  assert info['class_names'] == list(own_data_files.SEG_CLASSES)
  source = pipeline.DecodedSource(cfg, 'validation')
  for i in range(len(source)):  # Palette and label PNGs alike: indices, 255 kept.
    ex = source[i]
    saved = np.asarray(Image.open(tmp_path / 'val' / 'masks' / f'val_{i}.png'))
    np.testing.assert_array_equal(ex['mask'], saved)
    assert set(np.unique(ex['mask'])) == {0, 1, 2, 255}
  cfg.class_names = ('bg', 'a', 'b')  # A config list wins over classes.txt.
  assert pipeline.dataset_info(cfg)['class_names'] == ['bg', 'a', 'b']


def test_voc_layout_folders_take_the_classes_they_contain(tmp_path):
  train = own_data_files.write_voc_folder(str(tmp_path / 'train'), ('teapot', 'cat'))
  val = own_data_files.write_voc_folder(str(tmp_path / 'val'), ('cat',))
  cfg = _config(['data.name=mask_folder', f'data.train_dir={train}', f'data.eval_dir={val}'],
                tmp_path)
  assert pipeline.dataset_info(cfg)['class_names'] == ['background', 'cat', 'teapot']
  ex = pipeline.DecodedSource(cfg, 'train')[0]
  assert ex['labels'].tolist() == [2]
  np.testing.assert_allclose(ex['boxes'], [[4, 2, 25, 20]])  # 1-based inclusive -> ours.


def _break(root, what):
  masks = os.path.join(root, 'val', 'masks')
  if what == 'size':
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(os.path.join(masks, 'val_0.png'))
  elif what == 'class':
    mask = np.asarray(Image.open(os.path.join(masks, 'val_1.png'))).copy()
    mask[5, 5] = 7
    Image.fromarray(mask).save(os.path.join(masks, 'val_1.png'))
  elif what == 'missing':
    os.remove(os.path.join(masks, 'val_2.png'))
  elif what == 'empty':
    for f in os.listdir(os.path.join(root, 'val', 'images')):
      os.remove(os.path.join(root, 'val', 'images', f))


@pytest.mark.parametrize('what, message', [
    ('size', r'val_0.png is 10x10 but its image is 64x48; masks must have their image\'s size'),
    ('class', r'val_1.png has class indices \[7\] but there are only 3 classes .*add their names'),
    ('missing', r'val_2.jpg has no .*val_2.png; add it or remove the image'),
    ('empty', r'val/images \(data.eval_dir\) has no image files, so the split would be empty'),
])
def test_bad_masks_name_the_file_and_the_fix(tmp_path, what, message):
  cfg = _config(own_data_files.write_mask_folder(str(tmp_path)), tmp_path)
  _break(str(tmp_path), what)
  with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
    source.ensure_prepared(cfg)
  assert '\n' not in str(error.value)
