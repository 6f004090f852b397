"""SSD: default boxes, matching, 3:1 hard negative mining, the loss, decoding, one train + eval."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from configs import loader
from losses import ssd as ssd_losses
from models import ssd
from ops.box_coding import SSD_BOX_WEIGHTS
from ops.boxes import encode
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained

# Jitted: the eager op-by-op versions are several times slower on a busy CPU.
ssd_loss, ssd_targets = jax.jit(ssd_losses.ssd_loss), jax.jit(ssd_losses.ssd_targets)
hard_negatives = jax.jit(ssd_losses.hard_negatives, static_argnums=2)


def test_default_boxes_scales_ratios_and_count():
  anchors = ssd.default_boxes((64, 64), [8, 4, 2, 1], 0.2, 0.8, ((2.0,), (2.0, 3.0), (2.0, 3.0),
                                                                (2.0,)))
  assert anchors.shape == (8 * 8 * 4 + 4 * 4 * 6 + 2 * 2 * 6 + 1 * 4, 4)
  h, w = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
  # Cell (0, 0) of the 8x8 map: centred at (4, 4); ratio 1 at s=0.2, the extra sqrt(0.2 * 0.4),
  # then w/h = 2 and 1/2 with the same area.
  np.testing.assert_allclose((anchors[:4, :2] + anchors[:4, 2:]) / 2, 4.0, atol=1e-4)
  np.testing.assert_allclose(w[:4] * h[:4], 64**2 * np.array([0.04, 0.08, 0.04, 0.04]), rtol=1e-4)
  np.testing.assert_allclose(w[2] / h[2], 2.0, rtol=1e-4)
  np.testing.assert_allclose(w[3] / h[3], 0.5, rtol=1e-4)
  np.testing.assert_allclose([h[-4], w[-4]], [0.8 * 64, 0.8 * 64], rtol=1e-4)  # Last map, s_max.


ANCHORS = jnp.asarray([[0, 0, 10, 10], [0, 0, 20, 20], [30, 30, 50, 50], [32, 30, 52, 50],
                       [60, 60, 64, 64], [0, 40, 8, 48]], jnp.float32)


def test_matching_threshold_and_best_default_box():
  boxes = jnp.asarray([[31, 30, 51, 50], [0, 0, 30, 30], [0, 0, 0, 0]], jnp.float32)
  labels, valid = jnp.asarray([2, 4, 0]), jnp.asarray([True, True, False])
  classes, deltas, positive = ssd_targets(ANCHORS, boxes, labels, valid)
  # Anchors 2 and 3 overlap box 0 with IoU 0.9; box 1 has no anchor at 0.5 (best: anchor 1 with
  # IoU 0.44) and still gets its best one.
  np.testing.assert_array_equal(positive, [False, True, True, True, False, False])
  np.testing.assert_array_equal(classes, [0, 4, 2, 2, 0, 0])
  np.testing.assert_allclose(deltas[2], encode(boxes[0], ANCHORS[2], SSD_BOX_WEIGHTS), atol=1e-5)


def test_hard_negatives_three_per_positive():
  losses = jnp.arange(20, dtype=jnp.float32)
  positive = jnp.zeros(20, bool).at[jnp.asarray([19, 3])].set(True)
  negative = hard_negatives(losses, positive, 3)
  # 2 positives -> the 6 highest-loss negatives (18..13), never a positive.
  np.testing.assert_array_equal(np.flatnonzero(negative), [13, 14, 15, 16, 17, 18])
  many = jnp.arange(20) < 8  # 8 positives: only 12 negatives exist.
  assert int(jnp.sum(hard_negatives(losses, many, 3))) == 12
  assert int(jnp.sum(hard_negatives(losses, jnp.zeros(20, bool), 3))) == 0


def test_loss_counts_positives_and_mined_negatives():
  boxes = jnp.asarray([[[31, 30, 51, 50]]], jnp.float32)
  batch = {'boxes': boxes, 'labels': jnp.asarray([[2]]), 'valid': jnp.asarray([[True]])}
  classes, deltas, positive = ssd_targets(ANCHORS, boxes[0], batch['labels'][0],
                                          batch['valid'][0])
  perfect = {'anchors': ANCHORS, 'box_deltas': deltas[None],
             'class_logits': 30.0 * jax.nn.one_hot(classes, 5)[None]}
  loss, aux = ssd_loss(perfect, batch)
  assert float(loss) < 1e-6 and float(aux['positive_accuracy']) == 1.0
  wrong = {**perfect, 'box_deltas': perfect['box_deltas'] + 1.0}
  # Smooth L1 of an error of 1 in 4 coordinates is 4 * 0.5, per positive.
  np.testing.assert_allclose(ssd_loss(wrong, batch)[1]['loc_loss'], 2.0, rtol=1e-5)
  assert int(jnp.sum(positive)) == 2


def test_decode_inverts_encode():
  rng = np.random.default_rng(0)
  yx = rng.uniform(0, 40, (6, 2))
  boxes = jnp.asarray(np.concatenate([yx, yx + rng.uniform(4, 24, (6, 2))], -1), jnp.float32)
  outputs = {'anchors': ANCHORS, 'box_deltas': encode(boxes, ANCHORS, SSD_BOX_WEIGHTS)[None],
             'class_logits': jnp.zeros((1, 6, 5))}
  decoded, scores = ssd.decode(outputs, (64, 64))
  np.testing.assert_allclose(decoded[0], boxes, atol=1e-3)
  np.testing.assert_allclose(scores, 0.2, atol=1e-6)  # Softmax over 5, background dropped.
  assert scores.shape == (1, 6, 4)


def test_model_heads_match_default_boxes():
  config = loader.load('configs/det/ssd_shapes.py:runlocal')
  model = ssd.SSD(num_classes=5, **{k: v for k, v in config.model.items() if k != 'name'})
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x,
                                                        train=False)[0],
                       jnp.zeros((2, 64, 64, 3)))
  assert out['class_logits'].shape == (2, 380, 5) and out['box_deltas'].shape == (2, 380, 4)
  assert out['anchors'].shape == (380, 4)
  with pytest.raises(ValueError, match='aspect-ratio lists'):
    ssd.SSD(num_classes=5, aspect_ratios=((2.0,),)).init(jax.random.PRNGKey(0),
                                                        jnp.zeros((1, 64, 64, 3)), train=False)


def test_train_and_evaluate_writes_ap_and_overlays(tfds_dir, tmp_path):
  config = loader.load('configs/det/ssd_shapes.py:runlocal')
  config.data.data_dir, config.data.eval_split = tfds_dir, EVAL_SPLIT
  train.train_and_evaluate(config, str(tmp_path))
  assert_first_step_trained(str(tmp_path))
  saved = json.load(open(tmp_path / 'eval' / 'metrics.json'))
  assert {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'voc_AP50'} <= set(saved)
  assert os.path.exists(tmp_path / 'eval' / 'overlay_000.png')
