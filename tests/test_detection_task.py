"""The detection task: post-processing to fixed-size detections, the evaluator, the overlays."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from configs import loader
from ops.nms import select_detections
from tasks.detection import DetectionEvaluator

NAMES = ['background', 'circle', 'square', 'triangle', 'star']
_KEYS = {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'voc_AP50'}


def _batch():
  boxes = np.zeros((3, 4, 4), np.float32)
  boxes[:, :3] = [[4, 4, 20, 24], [30, 10, 60, 40], [10, 40, 30, 62]]
  boxes[1, :3] += 2.0
  labels = np.tile(np.asarray([[1, 3, 4, 0]], np.int32), (3, 1))
  valid = np.tile(np.asarray([[True, True, True, False]]), (3, 1))
  return {'image': np.random.default_rng(0).random((3, 64, 64, 3), np.float32), 'boxes': boxes,
          'labels': labels, 'valid': valid, 'example_valid': np.asarray([True, True, False])}


def _perfect(batch):
  return {'boxes': batch['boxes'], 'labels': batch['labels'], 'valid': batch['valid'],
          'scores': np.where(batch['valid'], 0.9, 0.0).astype(np.float32)}


def test_evaluator_gives_ap_one_for_ground_truth():
  ev = DetectionEvaluator(NAMES)
  batch = _batch()
  ev.add(batch, _perfect(batch))
  result = ev.result()
  assert _KEYS <= set(result) and ev.count == 2  # The padding example is skipped.
  for key in ('AP', 'AP50', 'AP75', 'voc_AP50'):
    assert result[key] == pytest.approx(1.0), key
  assert result['voc_AP50_per_class'] == {'circle': 1.0, 'triangle': 1.0, 'star': 1.0}


def test_evaluator_ignores_difficult_boxes():
  ev = DetectionEvaluator(NAMES)
  batch = _batch()
  batch['difficult'] = np.zeros((3, 4), bool)
  batch['difficult'][:, 2] = True
  predictions = _perfect(batch)
  predictions['valid'] = predictions['valid'].copy()
  predictions['valid'][:, 2] = False  # Missing a difficult box is no miss.
  result = ev.add(batch, predictions) or ev.result()
  assert result['AP50'] == pytest.approx(1.0) and result['voc_AP50'] == pytest.approx(1.0)


def test_select_detections_thresholds_nms_and_fixed_size():
  boxes = jnp.asarray([[0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40], [50, 50, 60, 60]],
                      jnp.float32)
  # Box 1 duplicates box 0 (class 1); box 2 is class 2 and also class 1 at a low score; box 3
  # scores below the threshold.
  scores = jnp.asarray([[0.9, 0.0], [0.8, 0.1], [0.3, 0.7], [0.005, 0.0]])
  out = select_detections(boxes, scores, score_threshold=0.01, iou_threshold=0.5,
                          pre_nms_topk=6, max_detections=5)
  assert out['boxes'].shape == (5, 4) and out['valid'].shape == (5,)
  kept = [(int(lab), round(float(s), 3)) for lab, s, v in
          zip(out['labels'], out['scores'], out['valid'], strict=True) if v]
  # Box 1 / class 2 (0.1) overlaps box 0 only across classes, so it stays.
  assert kept == [(1, 0.9), (2, 0.7), (1, 0.3), (2, 0.1)]


def test_visualize_writes_panels(tfds_dir, tmp_path):
  config = loader.load('configs/det/ssd_shapes.py:runlocal')
  config.data.data_dir = tfds_dir
  task = tasks.get_task(config)
  batch = _batch()
  assert task.visualize(batch, _perfect(batch), str(tmp_path), max_images=5, start=3) == 2
  assert sorted(os.listdir(tmp_path)) == ['overlay_003.png', 'overlay_004.png']
