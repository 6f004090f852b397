"""Own data end to end: a dataset on disk -> train by config.data overrides only -> evaluate ->
predict on the eval folder (mixed PNG / JPEG, two sizes).

COCO-format sets (Mask R-CNN; keypoint R-CNN with 5 named joints) are evaluated by the official
protocol, and eval's COCO numbers (12 per box / mask, 10 for keypoints) equal pycocotools run
directly on predict.py's predictions.json and the annotation file; the mask-folder set (3 named
classes) trains FCN-8s and predict writes a label PNG per image in its original size.
"""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import data
import train
from configs import loader
from metrics import coco_protocol
from tests import own_data_files
from tools import predict
from training.evaluate import evaluate_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The reference eval resize at toy scale (shorter side 48, longer <= 80, canvases multiple of 16).
RESIZE = ['data.eval_min_size=48', 'data.eval_max_size=80', 'data.eval_size_divisor=16']


def _pycocotools(annotation_file, results, iou_type, sigmas=None):
  """COCOeval run directly on result dicts (mask AP without the bbox field, as detectron2)."""
  drop = {'bbox': ('segmentation', 'keypoints'), 'segm': ('bbox', 'keypoints'),
          'keypoints': ('segmentation',)}[iou_type]
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(annotation_file)
    dt = gt.loadRes([{k: v for k, v in r.items() if k not in drop} for r in results])
    ev = COCOeval(gt, dt, iou_type)
    if sigmas is not None:
      ev.params.kpt_oks_sigmas = np.asarray(sigmas)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return ev.stats


def _train(root, spec, overrides, steps=4):
  """Trains config `spec` with `overrides` (config.data ones only) in root/run."""
  config = loader.override(loader.load(os.path.join(REPO, spec)),
                           overrides + [f'data.data_dir={root}/tfds'])
  config.total_steps = steps  # Enough for detections that score above the threshold.
  workdir = str(root / 'run')
  _, metrics = train.train_and_evaluate(config, workdir)
  return root, config, workdir, metrics


@pytest.fixture(scope='module')
def coco_run(tmp_path_factory):
  """Mask R-CNN :runlocal trained on a COCO-format set (categories 'blob' 7, 'box' 42)."""
  root = tmp_path_factory.mktemp('own_coco')
  return _train(root, 'configs/inst/mask_rcnn_shapes.py:runlocal',
                own_data_files.write_coco_set(str(root)) + RESIZE)


def test_coco_json_trains_evaluates_and_predicts(coco_run):
  root, config, workdir, metrics = coco_run
  info = json.load(open(os.path.join(workdir, 'config.json')))['data']
  assert info['name'] == 'coco_json'
  for prefix in ('', 'mask_'):
    assert -1.0 <= metrics[prefix + 'AP'] <= 1.0

  out = root / 'predicted'
  predict.main(['--checkpoint', workdir, '--images', str(root / 'images' / 'val_*'),
                '--out', str(out), '--no-progress'])
  results = json.load(open(out / 'predictions.json'))
  val = json.load(open(root / 'val.json'))
  assert {r['category_id'] for r in results} <= {7, 42}
  assert {r['file_name'] for r in results} <= {im['file_name'] for im in val['images']}
  assert sorted(os.listdir(out / 'overlays')) == sorted(
      os.path.splitext(im['file_name'])[0] + '.png' for im in val['images'])
  with contextlib.redirect_stdout(io.StringIO()):
    loaded = COCO(str(root / 'val.json')).loadRes(results)  # Valid COCO results.
  assert len(loaded.anns) == len(results)

  # eval of the same checkpoint without the workdir's training state: the official protocol's
  # numbers are pycocotools' on predict.py's file, on a set where rebuilding the ground truth from
  # batches would differ: instances overlap and segment areas are about half the box areas.
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(str(root / 'val.json'))
  assert all(a['area'] < 0.6 * a['bbox'][2] * a['bbox'][3] for a in val['annotations'])
  assert any((gt.annToMask(a) & gt.annToMask(b)).any() for i in gt.imgs
             for a in gt.imgToAnns[i] for b in gt.imgToAnns[i] if a['id'] < b['id'])
  evaluated = evaluate_checkpoint(config, workdir, str(root / 'eval'))
  box = _pycocotools(str(root / 'val.json'), results, 'bbox')
  mask = _pycocotools(str(root / 'val.json'), results, 'segm')
  keys = coco_protocol.BOX_STATS  # The 12 numbers of COCOeval's summary.
  np.testing.assert_allclose([evaluated[k] for k in keys], box, atol=1e-12)
  np.testing.assert_allclose([evaluated['mask_' + k] for k in keys], mask, atol=1e-12)
  assert evaluated['AP50'] > 0 or evaluated['mask_AP50'] > 0, 'a comparison of zeros only'


def test_keypoint_coco_set_with_five_named_joints(tmp_path):
  root, config, workdir, metrics = _train(
      tmp_path, 'configs/inst/keypoint_rcnn_shapes.py:runlocal',
      own_data_files.write_coco_set(str(tmp_path), keypoints=True) + RESIZE)
  out = tmp_path / 'predicted'
  predict.main(['--checkpoint', workdir, '--images', str(tmp_path / 'images' / 'val_*'),
                '--out', str(out), '--no-progress'])
  results = json.load(open(out / 'predictions.json'))
  assert results and all(len(r['keypoints']) == 3 * 5 and r['category_id'] == 3
                         for r in results)
  sigmas = data.dataset_info(config.data)['joints'].oks_sigmas  # Those eval used.
  box = _pycocotools(str(tmp_path / 'val.json'), results, 'bbox')
  keypoints = _pycocotools(str(tmp_path / 'val.json'), results, 'keypoints', sigmas)
  np.testing.assert_allclose([metrics[k] for k in coco_protocol.BOX_STATS], box, atol=1e-12)
  np.testing.assert_allclose([metrics['keypoint_' + k] for k in coco_protocol.KEYPOINT_STATS],
                             keypoints, atol=1e-12)
  # 4 steps give keypoint AP 0 here; test_protocol_scores_perfect_predictions_one covers the
  # keypoint frame mapping with AP 1.


def test_mask_folder_segmentation_trains_and_predicts_label_pngs(tmp_path):
  root, config, workdir, metrics = _train(
      tmp_path, 'configs/seg/fcn8s_shapes.py:runlocal',
      own_data_files.write_mask_folder(str(tmp_path)), steps=2)
  assert [k for k in metrics if k.startswith('iou_')] or 'mean_iou' in metrics
  out = tmp_path / 'predicted'
  predict.main(['--checkpoint', workdir, '--images', str(tmp_path / 'val' / 'images'),
                '--out', str(out), '--no-progress'])
  listing = json.load(open(out / 'predictions.json'))
  assert listing['class_names'] == list(own_data_files.SEG_CLASSES)
  for name, label_png in listing['labels'].items():
    image = Image.open(tmp_path / 'val' / 'images' / name)
    label = np.asarray(Image.open(out / label_png))
    assert label.shape == (image.height, image.width) and label.max() < 3
  assert len(os.listdir(out / 'overlays')) == len(listing['labels']) == 3
