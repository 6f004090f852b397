"""VOC / COCO detection through tfds's own builders, mapped to our batch format.

`tfds.testing.mock_data` drives `tfds.data_source` without TensorFlow, but its random example
generator draws every field of a `Sequence({...})` with its own length (VOC's and COCO's
`objects`), which fails to encode. So the records come from `as_data_source_fn`: a few hand-made
records in the decoded form tfds returns (image bytes, objects with fractional boxes).

tfds 4.9.10's COCO builder needs TensorFlow even for its metadata (`_info` uses `tf.int64`), so
the COCO case only runs where TensorFlow is installed. (VOC reads without it; preparing VOC from
its tars needs TensorFlow's gfile in tfds' builder.)
"""
import importlib.util
import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import data
from data import pipeline

# Two objects per image: (ymin, xmin, ymax, xmax) fractions, label 0-based, difficult/crowd flag.
_OBJECTS = (np.asarray([[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 1.0, 0.9]], np.float32),
            np.asarray([4, 0]), np.asarray([False, True]))


def _jpeg(h, w, seed):
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)).save(
      buf, format='JPEG')
  return buf.getvalue()


def _records(flag_key):
  def as_data_source(builder, split, decoders=None, **kwargs):
    del builder, decoders, kwargs
    count = 3 if split == 'train' else 2
    boxes, labels, flags = _OBJECTS
    return [{'image': _jpeg(40, 50, i), 'image/filename': f'{split}_{i}.jpg',
             'objects': {'bbox': boxes, 'label': labels, flag_key: flags}} for i in range(count)]
  return as_data_source


@pytest.mark.parametrize('name,variant,flag_key,num_classes', [
    ('voc_detection', '2007', 'is_difficult', 21),
    pytest.param('coco_detection', '2017', 'is_crowd', 81, marks=pytest.mark.skipif(
        importlib.util.find_spec('tensorflow') is None,
        reason="tfds' COCO builder needs TensorFlow for its metadata")),
])
def test_tfds_detection_batches(tmp_path, name, variant, flag_key, num_classes):
  cfg = pipeline.default_config()
  cfg.name, cfg.variant, cfg.data_dir = name, variant, str(tmp_path)
  cfg.image_size, cfg.max_boxes = 64, 4
  with tfds.testing.mock_data(as_data_source_fn=_records(flag_key)):
    info = data.dataset_info(cfg)
    assert info['num_classes'] == num_classes and info['class_names'][0] == 'background'
    batch = next(iter(data.make_eval_batches(cfg, batch_size=4)))
    train = next(data.make_train_iterator(cfg, global_batch_size=2, seed=0))
  # 40 x 50 images are padded (not scaled) into 64 x 64: boxes are the fractions x (40, 50).
  np.testing.assert_allclose(batch['boxes'][0, :2], _OBJECTS[0] * [40, 50, 40, 50], atol=1e-4)
  np.testing.assert_array_equal(batch['labels'][0], [5, 1, 0, 0])  # +1: 0 is the background.
  np.testing.assert_array_equal(batch['valid'][0], [True, True, False, False])
  np.testing.assert_array_equal(batch['difficult'][0], [False, True, False, False])
  np.testing.assert_array_equal(batch['example_valid'], [True, True, False, False])
  assert batch['image'].shape == (4, 64, 64, 3) and np.all(batch['mask'] == 255)
  assert train['boxes'].shape == (2, 4, 4) and train['difficult'].shape == (2, 4)
  assert np.all(train['valid'].sum(1) == 2)  # Flips and crops keep both boxes here.
