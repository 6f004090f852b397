"""Classification + localization: the Shapes `single` variant, the weighted multitask loss,
top-1 / CorLoc against hand-computed cases, and one train + eval run."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from configs import loader
from data import shapes
from losses.localization import box_target, localization_loss
from metrics.localization import localization_metrics, paired_iou
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained


def test_single_variant_has_one_object_per_image():
  cfg = next(c for c in shapes.Shapes.BUILDER_CONFIGS if c.name == 'single_small')
  for i in range(8):
    ex = shapes.render(cfg, 'train', i)
    assert ex['labels'].shape == (1,) and 1 <= ex['labels'][0] <= 4
    y1, x1, y2, x2 = ex['boxes'][0]
    assert y2 - y1 >= 8 and x2 - x1 >= 8


def _batch():
  return {'image': jnp.zeros((2, 64, 32, 3)), 'valid': jnp.array([[True], [False]]),
          'labels': jnp.array([[2], [0]]),
          'boxes': jnp.array([[[16.0, 8.0, 48.0, 24.0]], [[0.0, 0.0, 0.0, 0.0]]])}


def test_box_target_is_xywh_over_image_size():
  np.testing.assert_allclose(box_target(_batch()['boxes'][:1, 0], (64, 32)),
                             [[0.25, 0.25, 0.5, 0.5]])


@pytest.mark.parametrize('weight', [0.0, 1.0, 7.5])
def test_loss_is_class_plus_weighted_box(weight):
  batch = _batch()
  outputs = {'logits': jnp.array([[0.0, 2.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]]),
             'box': jnp.array([[0.5, 0.25, 0.5, 0.5], [9.0, 9.0, 9.0, 9.0]])}
  loss, aux = localization_loss(outputs, batch, box_weight=weight)
  # Only image 0 has an object: its class 2 is logit 1, the box is off by 0.25 in x.
  expected_ce = -jax.nn.log_softmax(outputs['logits'][0])[1]
  np.testing.assert_allclose(aux['class_loss'], expected_ce, rtol=1e-6)
  np.testing.assert_allclose(aux['box_loss'], 0.25**2, rtol=1e-6)
  np.testing.assert_allclose(loss, expected_ce + weight * 0.25**2, rtol=1e-6)
  grad = jax.grad(lambda box: localization_loss({**outputs, 'box': box}, batch,
                                                box_weight=weight)[0])(outputs['box'])
  np.testing.assert_allclose(grad[0], [2 * weight * 0.25, 0, 0, 0], rtol=1e-6, atol=1e-7)
  assert float(jnp.abs(grad[1]).max()) == 0  # No object, no box gradient.


def test_metrics_hand_computed():
  gt = np.array([[0, 0, 10, 10]] * 4, np.float32)
  pred = np.array([[0, 0, 10, 10],  # Right class, IoU 1: CorLoc.
                   [0, 0, 10, 5],  # Right class, IoU 0.5: still CorLoc (>= 0.5).
                   [0, 5, 10, 15],  # Right class, IoU 50 / 150: localised wrongly.
                   [0, 0, 10, 10]], np.float32)  # Wrong class, IoU 1.
  np.testing.assert_allclose(paired_iou(pred, gt), [1, 0.5, 1 / 3, 1])
  m = localization_metrics([1, 2, 3, 4], pred, [1, 2, 3, 1], gt)
  assert m['top1'] == 0.75 and m['corloc'] == 0.5 and m['box_accuracy'] == 0.75
  np.testing.assert_allclose(m['mean_iou'], (1 + 0.5 + 1 / 3 + 1) / 4)


def test_train_and_evaluate(tfds_dir, tmp_path):
  config = loader.load('configs/loc/localizer_shapes.py:runlocal')
  config.data.data_dir, config.data.eval_split = tfds_dir, EVAL_SPLIT
  state, metrics = train.train_and_evaluate(config, str(tmp_path))
  assert_first_step_trained(str(tmp_path))
  assert int(state.step) == config.total_steps
  assert metrics['num_images'] == 16
  assert 0 <= metrics['corloc'] <= metrics['top1'] <= 1
  assert os.path.exists(tmp_path / 'eval' / 'overlay_001.png')
