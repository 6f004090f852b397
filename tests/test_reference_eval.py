"""eval.py and tools/predict.py with converted torchvision weights reproduce torchvision.

The ground truth of a small COCO-format set (read with the `coco_json` dataset) is torchvision's
own detections on tools/parity.py's three generated images (tests/fixtures/
parity_fasterrcnn_resnet50_fpn.npz, each image run alone as torchvision's COCO evaluation does,
in the original frames), so our evaluation of the converted checkpoint, through the code eval.py
runs, must give box AP 1.0; predict must write the same boxes and scores with torchvision's COCO
category ids, in its order (this is the Faster R-CNN output test; tests/test_parity_torchvision.py
has Mask and Keypoint R-CNN's). Weights are regenerated from the fixture's seed in torchvision's
layout and converted as in tests/test_parity_torchvision.py; no torch involved.

The three images (two orientations) share one eval batch, so they sit in the square canvas, larger
than each image's own padded size: `model.per_image_canvas` makes that exact.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

import tasks
from configs import loader
from models import torchvision_detection
from models.faster_rcnn import FasterRCNN
from tools import parity
from tools import predict as predict_tool
from training import model_init
from training.evaluate import evaluate_checkpoint, load_variables

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'parity_fasterrcnn_resnet50_fpn.npz')
ARCH = 'fasterrcnn_resnet50_fpn'
IMAGES = (0, 1, 2)


def _original_boxes(fixture, n, orig_hw, resized_hw):
  """torchvision's boxes (resized frame, yxyx) in the original frame, as its transform maps
  them back: times original / resized per axis."""
  ratio = np.asarray(orig_hw, np.float32) / np.asarray(resized_hw, np.float32)
  return fixture[f'boxes_{n}'] * np.tile(ratio, 2)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The COCO-format set, the converted checkpoint and the task of the torchvision config on it."""
  root = tmp_path_factory.mktemp('reference')
  fixture = dict(np.load(FIXTURE))
  run = parity.Settings(*(int(fixture[k]) for k in parity.Settings._fields))
  images, annotations, expected = [], [], {}
  generated = parity.make_images(run.seed)
  for n in IMAGES:
    image = generated[n]
    name = f'image_{n}.png'
    Image.fromarray(image).save(root / name)  # Lossless: the pixels torchvision saw.
    orig_hw = image.shape[:2]
    boxes = _original_boxes(fixture, n, orig_hw, parity.resized_size(orig_hw, run.min_size,
                                                                      run.max_size))
    expected[name] = (boxes, fixture[f'labels_{n}'], fixture[f'scores_{n}'])
    images.append({'id': n + 1, 'file_name': name, 'height': orig_hw[0], 'width': orig_hw[1]})
    for (y1, x1, y2, x2), label in zip(boxes.tolist(), fixture[f'labels_{n}'].tolist(),
                                       strict=True):
      annotations.append({'id': len(annotations) + 1, 'image_id': n + 1,
                          'category_id': int(label), 'bbox': [x1, y1, x2 - x1, y2 - y1],
                          'area': (x2 - x1) * (y2 - y1), 'iscrowd': 0})
  ids = sorted({a['category_id'] for a in annotations})
  path = str(root / 'torchvision_detections.json')
  with open(path, 'w') as f:
    json.dump({'images': images, 'annotations': annotations,
               'categories': [{'id': i, 'name': f'coco_{i}'} for i in ids]}, f)
  config = loader.override(loader.load('configs/det/faster_rcnn_r50_fpn_torchvision.py'), [
      'data.name=coco_json', f'data.train_json={path}', f'data.eval_json={path}',
      f'data.data_dir={root / "tfds"}', f'data.eval_min_size={run.min_size}',
      f'data.eval_max_size={run.max_size}', 'eval_batch_size=3',
      f'model.rpn.pre_nms_topk_test={run.proposals}',
      f'model.rpn.post_nms_topk_test={run.proposals}',
      f'detect.max_detections={run.detections}', f'detect.pre_nms_topk={19 * run.proposals}'])
  checkpoint = str(root / 'converted')
  variables = torchvision_detection.convert(parity.seeded_state_dict(ARCH, run.seed))
  model_init.write_checkpoint(variables, checkpoint)
  task = tasks.get_task(config)
  return dict(root=root, config=config, task=task, checkpoint=checkpoint, ids=ids,
              expected=expected, variables=load_variables(task, checkpoint))


def test_head_classes_follow_the_files_category_ids(reference):
  model = reference['task'].model
  assert reference['task'].info['category_ids'] == tuple(reference['ids'])
  assert model.head_classes == (0, *reference['ids']) and model.head_num_classes == 91
  assert len(reference['ids']) > 3 and max(reference['ids']) < 90  # head_size keeps the 91.


def test_head_size_needs_head_classes_below_it():
  with pytest.raises(ValueError, match=r'head_size 91 needs model.head_classes below it, got '
                                       r'\(0, 5, 95\); .*COCO\'s category ids'):
    FasterRCNN(num_classes=3, head_classes=(0, 5, 95), head_size=91)
  with pytest.raises(ValueError, match=r'got \(\)'):
    FasterRCNN(num_classes=3, head_size=91)


def test_eval_on_torchvisions_detections_gives_box_ap_1(reference):
  # What `eval.py --config CONFIG --checkpoint DIR` runs.
  metrics = evaluate_checkpoint(reference['config'], reference['checkpoint'],
                                str(reference['root'] / 'eval'))
  assert metrics['AP'] == pytest.approx(1.0, abs=1e-6), metrics
  assert metrics['AP50'] == pytest.approx(1.0, abs=1e-6), metrics


def test_predict_writes_torchvisions_boxes_and_category_ids(reference):
  out = str(reference['root'] / 'predictions')
  paths = sorted(str(reference['root'] / name) for name in reference['expected'])
  config = reference['config']
  assert predict_tool.predict(reference['task'], reference['variables'], paths, out,
                              score_threshold=config.detect.score_threshold, batch_size=3,
                              progress=False) == len(IMAGES)
  with open(os.path.join(out, 'predictions.json')) as f:
    results = json.load(f)
  for name, (boxes, labels, scores) in reference['expected'].items():
    mine = [r for r in results if r['file_name'] == name]
    assert [r['category_id'] for r in mine] == labels.tolist()  # torchvision's ids and order.
    x, y, w, h = np.asarray([r['bbox'] for r in mine]).T
    np.testing.assert_allclose(np.stack([y, x, y + h, x + w], -1), boxes, rtol=0, atol=0.05)
    np.testing.assert_allclose([r['score'] for r in mine], scores, rtol=0, atol=1e-4)
