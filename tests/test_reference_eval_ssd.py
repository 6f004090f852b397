"""SSD300's evaluation protocol as torchvision's: stretched to 300x300, boxes mapped back per axis.

The ground truth of a small COCO-format set (the `coco_json` dataset) is torchvision's own
ssd300_vgg16 detections (tests/fixtures/parity_ssd300_vgg16.npz, in each original frame) on the
two images tools/parity_fcn_ssd.py draws (120x160 and 150x100: one wider, one taller than the
square, so a wrong stretch or a wrong per-axis mapping moves the boxes). The same seeded weights,
saved as safetensors and converted by the README's `tools.import_weights FILE --arch ssd300_vgg16
--out DIR`, evaluated through the code `eval.py --checkpoint` runs with the
ssd300_vgg16_torchvision config, must give box AP 1.0. torchvision sorts its detections by score,
so its first K are what it returns with detections_per_img = K: the set keeps K per image (COCO
evaluation counts 100 detections per image at most). No torch involved.
"""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from configs import loader
from data import eval_resize, pipeline
from metrics import coco_protocol
from tools import import_weights, parity_fcn_ssd, parity_weights
from training.evaluate import evaluate_checkpoint

ARCH = 'ssd300_vgg16'
FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', f'parity_{ARCH}.npz')
KEEP = 40  # Detections per image kept as ground truth (and returned).


def _coco_file(root, fixture) -> str:
  """The fixture images as PNG (lossless) and torchvision's first KEEP detections of each."""
  sizes = [tuple(s) for s in fixture['sizes']]
  images, annotations = [], []
  for n, image in enumerate(parity_fcn_ssd.make_images(sizes, int(fixture['seed']))):
    Image.fromarray(image).save(root / f'image_{n}.png')
    images.append({'id': n + 1, 'file_name': f'image_{n}.png', 'height': image.shape[0],
                   'width': image.shape[1]})
    boxes, labels = fixture[f'boxes_{n}'][:KEEP], fixture[f'labels_{n}'][:KEEP]
    for (y1, x1, y2, x2), label in zip(boxes.tolist(), labels.tolist(), strict=True):
      annotations.append({'id': len(annotations) + 1, 'image_id': n + 1, 'category_id': label,
                          'bbox': [x1, y1, x2 - x1, y2 - y1], 'area': (x2 - x1) * (y2 - y1),
                          'iscrowd': 0})
  categories = [{'id': k, 'name': f'class_{k}'} for k in range(1, int(fixture['num_classes']))]
  path = str(root / 'torchvision_detections.json')
  with open(path, 'w') as f:
    json.dump({'images': images, 'annotations': annotations, 'categories': categories}, f)
  return path


def test_eval_on_torchvisions_ssd_detections_gives_box_ap_1(tmp_path, monkeypatch):
  fixture = dict(np.load(FIXTURE))
  path = _coco_file(tmp_path, fixture)
  config = loader.override(loader.load('configs/det/ssd300_vgg16_torchvision.py'), [
      'data.name=coco_json', f'data.train_json={path}', f'data.eval_json={path}',
      f'data.data_dir={tmp_path / "tfds"}', 'model.head_classes=()', 'eval_batch_size=2',
      f'detect.max_detections={KEEP}'])
  weights = str(tmp_path / f'{ARCH}.safetensors')
  save_file(parity_weights.seeded_state_dict(ARCH, int(fixture['seed']),
                                             int(fixture['num_classes'])), weights)
  monkeypatch.setattr(sys, 'argv', ['import_weights', weights, '--arch', ARCH, '--out',
                                    str(tmp_path / 'converted')])
  import_weights.main()
  metrics = evaluate_checkpoint(config, str(tmp_path / 'converted'), str(tmp_path / 'eval'))
  assert metrics['AP'] == pytest.approx(1.0, abs=1e-6), metrics


def test_fixed_size_is_one_stretch_and_one_canvas():
  rule = eval_resize.settings({'eval_fixed_size': (300, 200)})
  assert rule.out_hw(120, 160) == rule.out_hw(1000, 50) == (300, 200)
  assert rule.canvases() == [(300, 200)]
  # tools/predict.py's batches: stretched, and the frame keys map boxes back per axis.
  data = loader.load('configs/det/ssd300_vgg16_torchvision.py').data
  images = [np.zeros((120, 160, 3), np.uint8), np.zeros((150, 100, 3), np.uint8)]
  (_, batch), = pipeline.image_batches(images, data, batch_size=3)
  assert batch['image'].shape == (3, 300, 300, 3)
  np.testing.assert_array_equal(batch['image_hw'][:2], [[300, 300]] * 2)
  np.testing.assert_allclose(coco_protocol.to_original(np.asarray([[30., 60., 150., 300.]]),
                                                       batch['image_hw'][1], batch['orig_hw'][1]),
                             [[15., 20., 75., 100.]])
  with pytest.raises(ValueError, match=r'eval_fixed_size=\(300, 300\) and data.eval_min_size=800'):
    eval_resize.settings({'eval_fixed_size': (300, 300), 'eval_min_size': 800})
