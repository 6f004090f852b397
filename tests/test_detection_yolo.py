"""YOLO v1: target assignment, the responsible predictor, the loss, decoding, one train + eval."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from configs import loader
from losses.yolo import responsible_predictor, yolo_targets
from losses.yolo import yolo_loss as _yolo_loss
from models import yolo
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained

S, C, HW = 8, 4, (64, 64)
yolo_loss = jax.jit(_yolo_loss)
# Centre (20.5, 29): cell (2, 3), offsets (20.5 / 8 - 2, 29 / 8 - 3); 21 x 18 pixels.
BOX = [10.0, 20.0, 31.0, 38.0]


def _batch(boxes, labels):
  m = 4
  b = np.zeros((1, m, 4), np.float32)
  b[0, :len(boxes)] = boxes
  lab = np.zeros((1, m), np.int32)
  lab[0, :len(labels)] = labels
  return {'image': np.zeros((1,) + HW + (3,), np.float32), 'boxes': b, 'labels': lab,
          'valid': np.arange(m)[None] < len(boxes)}


def _targets(batch):
  # Jitted: the eager op-by-op version is several times slower on a busy CPU.
  targets = jax.jit(functools.partial(yolo_targets, image_hw=HW, grid_size=S, num_classes=C))
  return targets(batch['boxes'][0], batch['labels'][0], batch['valid'][0])


def test_target_cell_offsets_and_sqrt_size():
  # A second object centred in the same cell loses to the first listed one.
  t = _targets(_batch([BOX, [16.0, 24.0, 24.0, 32.0]], [3, 1]))
  assert np.argwhere(np.asarray(t['has_object'])).tolist() == [[2, 3]]
  np.testing.assert_allclose(t['offset'][2, 3], [20.5 / 8 - 2, 29 / 8 - 3], atol=1e-6)
  np.testing.assert_allclose(t['sqrt_size'][2, 3], np.sqrt([21 / 64, 18 / 64]), atol=1e-6)
  np.testing.assert_allclose(t['box'][2, 3], np.asarray(BOX) / 64, atol=1e-6)
  np.testing.assert_array_equal(t['class'][2, 3], [0, 0, 1, 0])
  assert float(jnp.sum(t['class'])) == 1.0


def test_responsible_predictor_is_the_best_iou():
  target = jnp.asarray([0.2, 0.2, 0.6, 0.6])
  preds = jnp.asarray([[0.0, 0.0, 0.3, 0.3], [0.25, 0.2, 0.6, 0.65]])
  resp, ious = responsible_predictor(preds, target, jnp.asarray(True))
  np.testing.assert_array_equal(resp, [0.0, 1.0])
  assert float(ious[1]) > 0.75 and float(ious[0]) < 0.1
  resp, _ = responsible_predictor(preds, target, jnp.asarray(False))
  np.testing.assert_array_equal(resp, [0.0, 0.0])


def _perfect_outputs(t, b=2, predictor=1):
  """Raw outputs whose `predictor` reproduces every target exactly, all else confidently empty."""
  logit = lambda p: np.log(p / (1 - p))
  boxes = np.full((1, S, S, b, 4), -10.0, np.float32)  # Empty boxes: IoU 0 with anything.
  conf = np.full((1, S, S, b), -20.0, np.float32)
  obj = np.asarray(t['has_object'])
  raw_box = np.concatenate([logit(np.clip(np.asarray(t['offset']), 1e-6, 1 - 1e-6)),
                            logit(np.clip(np.asarray(t['sqrt_size']), 1e-6, 1 - 1e-6))], -1)
  boxes[0, obj, predictor] = raw_box[obj]
  conf[0, obj, predictor] = 20.0
  return {'boxes': jnp.asarray(boxes), 'confidence': jnp.asarray(conf),
          'class_logits': jnp.asarray(20.0 * np.asarray(t['class'])[None])}


def test_loss_is_zero_for_a_perfect_prediction_and_positive_otherwise():
  batch = _batch([BOX, [40.0, 40.0, 60.0, 52.0]], [3, 2])
  outputs = _perfect_outputs(_targets(batch))
  loss, aux = yolo_loss(outputs, batch)
  assert float(loss) < 1e-6 and float(aux['num_objects']) == 2.0
  for key, change in (('coord_loss', lambda o: {**o, 'boxes': o['boxes'] + 0.5}),
                      ('class_loss', lambda o: {**o, 'class_logits': -o['class_logits']}),
                      ('noobject_loss', lambda o: {**o, 'confidence': o['confidence'] * 0})):
    loss, aux = yolo_loss(change(outputs), batch)
    assert float(aux[key]) > 0.01 and float(loss) > 0.01, key
  # The sqrt: the same 4-pixel width error costs more on a small box than on a large one.
  small, large = [[10.0, 10.0, 18.0, 18.0]], [[10.0, 10.0, 50.0, 50.0]]
  costs = []
  for box in (small, large):
    b = _batch(box, [1])
    out = _perfect_outputs(_targets(b))
    wider = _batch([[10.0, 8.0, box[0][2], box[0][3] + 2]], [1])  # Same centre, 4 px wider.
    costs.append(float(yolo_loss(out, wider)[1]['coord_loss']))
  assert costs[0] > 2 * costs[1]


def test_decode_recovers_the_boxes():
  batch = _batch([BOX], [3])
  boxes, scores = yolo.decode(_perfect_outputs(_targets(batch)), HW)
  best = int(jnp.argmax(scores.max(-1)[0]))
  np.testing.assert_allclose(boxes[0, best], BOX, atol=1e-3)
  assert int(jnp.argmax(scores[0, best])) + 1 == 3 and float(scores[0, best].max()) > 0.99
  assert boxes.shape == (1, S * S * 2, 4) and scores.shape == (1, S * S * 2, C)


@pytest.mark.parametrize('fc_width', [0, 32])
def test_output_shape_is_s_s_5b_plus_c(fc_width):
  model = yolo.YOLOv1(num_classes=C + 1, grid_size=4, boxes_per_cell=3, feature_stride=16,
                      head_width=16, head_convs=1, fc_width=fc_width)
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x,
                                                        train=False)[0],
                       jnp.zeros((2, 128, 128, 3)))
  assert out['boxes'].shape == (2, 4, 4, 3, 4) and out['confidence'].shape == (2, 4, 4, 3)
  assert out['class_logits'].shape == (2, 4, 4, C)


def test_train_and_evaluate_writes_ap_and_overlays(tfds_dir, tmp_path):
  config = loader.load('configs/det/yolo_shapes.py:runlocal')
  config.data.data_dir, config.data.eval_split = tfds_dir, EVAL_SPLIT
  train.train_and_evaluate(config, str(tmp_path))
  assert_first_step_trained(str(tmp_path))
  saved = json.load(open(tmp_path / 'eval' / 'metrics.json'))
  assert {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'voc_AP50'} <= set(saved)
  assert os.path.exists(tmp_path / 'eval' / 'overlay_000.png')
