"""Own data end to end: a COCO-format set on disk -> train Mask R-CNN by config.data overrides
only -> evaluate by the official protocol -> predict on the eval folder (mixed PNG / JPEG, two
sizes); eval's 12 COCO numbers equal pycocotools run directly on predictions.json."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

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


@pytest.fixture(scope='module')
def coco_run(tmp_path_factory):
  """Mask R-CNN :runlocal trained on a COCO-format set (categories 'blob' 7, 'box' 42)."""
  root = tmp_path_factory.mktemp('own_coco')
  overrides = own_data_files.write_coco_set(str(root)) + RESIZE + [
      f'data.data_dir={root}/tfds']
  config = loader.override(loader.load(os.path.join(REPO, 'configs/inst/mask_rcnn_shapes.py:'
                                                    'runlocal')), overrides)
  config.total_steps = 4  # Enough for detections that score above the threshold.
  workdir = str(root / 'run')
  _, metrics = train.train_and_evaluate(config, workdir)
  return root, config, workdir, metrics


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
  # numbers are pycocotools' on predict.py's file.
  evaluated = evaluate_checkpoint(config, workdir, str(root / 'eval'))
  box = _pycocotools(str(root / 'val.json'), results, 'bbox')
  mask = _pycocotools(str(root / 'val.json'), results, 'segm')
  keys = coco_protocol.BOX_STATS  # The 12 numbers of COCOeval's summary.
  np.testing.assert_allclose([evaluated[k] for k in keys], box, atol=1e-12)
  np.testing.assert_allclose([evaluated['mask_' + k] for k in keys], mask, atol=1e-12)
  assert evaluated['AP50'] > 0 or evaluated['mask_AP50'] > 0, 'a comparison of zeros only'
