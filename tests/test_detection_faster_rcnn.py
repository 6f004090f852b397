"""Faster R-CNN: anchors, RPN targets, RoI sampling, the four losses, decoding, training."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
import train
from configs import loader
from losses.rcnn import rcnn_loss
from models import faster_rcnn, fpn, roi_heads, rpn
from ops.boxes import encode
from ops.nms import select_detections
from tests.toy_data import toy_detection_batch
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained
from training.optim import make_optimizer
from training.state import init_state
from training.step import make_train_step

rpn_targets = jax.jit(rpn.rpn_targets, static_argnames=('batch_size',))
label_and_sample = jax.jit(roi_heads.label_and_sample,
                           static_argnames=('batch_size', 'positive_fraction'))

# Hand-made anchors and the IoUs that label them (ground truth below).
ANCHORS = jnp.asarray([[0, 0, 10, 10], [0, 0, 20, 20], [30, 30, 50, 50], [32, 30, 52, 50],
                       [60, 60, 64, 64], [0, 40, 8, 48]], jnp.float32)
GT_BOXES = jnp.asarray([[31, 30, 51, 50], [0, 0, 14, 14], [0, 0, 0, 0]], jnp.float32)
GT_LABELS, GT_VALID = jnp.asarray([2, 4, 0]), jnp.asarray([True, True, False])


def test_anchors_are_centred_on_the_cells():
  model = faster_rcnn.FasterRCNN(num_classes=3, feature_stride=16,
                                 rpn=dict(anchor_sizes=(16.0,), anchor_ratios=(1.0, 2.0)))
  anchors = np.asarray(model.anchors({16: (2, 2)}))
  # Cell (0, 1) is centred at (8, 24); ratio 2 (height / width) of area 16**2: h = 16 sqrt 2.
  h = 16 * np.sqrt(2.0)
  np.testing.assert_allclose(anchors[2], [0, 16, 16, 32], atol=1e-5)
  np.testing.assert_allclose(anchors[3], [8 - h / 2, 24 - h / 4, 8 + h / 2, 24 + h / 4],
                             atol=1e-4)
  assert anchors.shape == (2 * 2 * 2, 4)


@pytest.mark.parametrize('hw, out', [((3, 4), (6, 8)), ((3, 4), (5, 7)), ((1, 2), (1, 3))])
def test_fpn_upsample_is_nearest_resize_and_its_adjoint(hw, out):
  x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
  want = jax.image.resize(x, (2, 2 * hw[0], 2 * hw[1], 3), 'nearest')[:, :out[0], :out[1]]
  np.testing.assert_array_equal(fpn.upsample_2x(x, out), want)
  g = jax.random.normal(jax.random.key(1), want.shape)
  grad = jax.grad(lambda x: jnp.sum(fpn.upsample_2x(x, out) * g))(x)
  np.testing.assert_allclose(jnp.vdot(grad, x), jnp.vdot(g, want), rtol=1e-5)


def test_fpn_levels_anchor_sizes_and_roi_assignment():
  features = {s: jnp.zeros((1, 64 // s, 64 // s, 8)) for s in (4, 8, 16, 32)}
  module = fpn.FPN(strides=(4, 8, 16, 32), width=16)
  pyramid = jax.eval_shape(lambda f: module.init_with_output(jax.random.PRNGKey(0), f)[0],
                           features)
  assert {s: p.shape for s, p in pyramid.items()} == {
      4: (1, 16, 16, 16), 8: (1, 8, 8, 16), 16: (1, 4, 4, 16), 32: (1, 2, 2, 16),
      64: (1, 1, 1, 16)}
  # FPN eq. 1 with k0 = 4 (stride 16) at 224 px: 224 -> P4, 112 -> P3, 448 -> P5, 20 -> P2 (the
  # finest given), 2000 -> P5 (the coarsest given).
  sides = jnp.asarray([224.0, 112.0, 448.0, 20.0, 2000.0])
  rois = jnp.stack([jnp.zeros(5), jnp.zeros(5), sides, sides], axis=-1)
  np.testing.assert_array_equal(fpn.assign_levels(rois, (4, 8, 16, 32)), [2, 1, 3, 0, 3])
  model = faster_rcnn.FasterRCNN(num_classes=3, fpn_strides=(4, 8),
                                 rpn=dict(anchor_sizes=(8.0, 16.0, 32.0), anchor_ratios=(1.0,)))
  anchors = np.asarray(model.anchors({4: (2, 2), 8: (1, 1), 16: (1, 1)}))
  np.testing.assert_allclose(anchors[:, 2] - anchors[:, 0], [8, 8, 8, 8, 16, 32])
  with pytest.raises(ValueError, match='one anchor size per pyramid level'):
    model.anchors({4: (2, 2), 8: (1, 1)})


def test_rpn_targets_match_hand_computed_labels():
  t = rpn_targets(ANCHORS, GT_BOXES, GT_VALID, jax.random.PRNGKey(0), batch_size=256)
  # Anchors 2 and 3: IoU 380 / 420 = 0.90 with box 0, positive. Anchor 0: IoU 100 / 196 = 0.51
  # with box 1 (between 0.3 and 0.7) but box 1's best anchor, so positive; anchor 1: 196 / 400 =
  # 0.49, ignored. Anchors 4 and 5 overlap nothing: negative. The padded box matches nothing.
  np.testing.assert_array_equal(t['positive'], [True, False, True, True, False, False])
  np.testing.assert_array_equal(t['negative'], [False, False, False, False, True, True])
  np.testing.assert_allclose(t['deltas'][2], encode(GT_BOXES[0], ANCHORS[2]), atol=1e-5)
  np.testing.assert_allclose(t['deltas'][0], encode(GT_BOXES[1], ANCHORS[0]), atol=1e-5)
  few = rpn_targets(ANCHORS, GT_BOXES, GT_VALID, jax.random.PRNGKey(1), batch_size=2)
  assert int(few['positive'].sum()) == 1 and int(few['negative'].sum()) == 1  # Half positive.


def test_roi_sampling_adds_ground_truth_and_labels_classes():
  proposals = jnp.asarray([[30, 30, 50, 50], [0, 40, 8, 48], [0, 0, 0, 0]], jnp.float32)
  valid = jnp.asarray([True, True, False])
  out = label_and_sample(proposals, valid, GT_BOXES, GT_LABELS, GT_VALID, jax.random.PRNGKey(0),
                         batch_size=8, positive_fraction=0.5)
  # Candidates: proposal 0 (IoU 0.90 with box 0, class 2), proposal 1 (background), and the two
  # real ground-truth boxes (classes 2 and 4); padding is never sampled.
  fg = np.asarray(out['valid'] & (out['classes'] > 0))
  assert int(out['valid'].sum()) == 4 and fg.sum() == 3
  assert sorted(np.asarray(out['classes'])[fg].tolist()) == [2, 2, 4]
  for box, cls, delta in zip(out['boxes'][fg], out['classes'][fg], out['deltas'][fg], strict=True):
    target = GT_BOXES[0] if cls == 2 else GT_BOXES[1]
    np.testing.assert_allclose(delta, encode(target, box, roi_heads.ROI_BOX_WEIGHTS), atol=1e-4)


def _outputs(rpn_t, roi_t, num_classes=3):
  """Train outputs whose predictions equal the targets."""
  logits = jnp.where(rpn_t['positive'], 20.0, -20.0)
  deltas = jnp.broadcast_to(roi_t['deltas'][..., None, :],
                            roi_t['deltas'].shape[:-1] + (num_classes - 1, 4))
  return {'rpn_logits': logits, 'rpn_deltas': rpn_t['deltas'], 'rpn_targets': rpn_t,
          'roi_logits': 20.0 * jax.nn.one_hot(roi_t['classes'], num_classes),
          'roi_deltas': deltas, 'roi_targets': roi_t}


def test_loss_is_zero_for_perfect_predictions_and_counts_each_term():
  rpn_t = jax.tree.map(lambda x: x[None], {
      'positive': jnp.asarray([True, False, False, False]),
      'negative': jnp.asarray([False, True, True, False]),
      'deltas': jnp.ones((4, 4))})
  roi_t = jax.tree.map(lambda x: x[None], {
      'valid': jnp.asarray([True, True, False]), 'classes': jnp.asarray([2, 0, 1]),
      'deltas': jnp.full((3, 4), 0.5)})
  perfect = _outputs(rpn_t, roi_t)
  loss, aux = rcnn_loss(perfect, None)
  assert float(loss) < 1e-6 and float(aux['roi_accuracy']) == 1.0
  # An error of 2 in 4 coordinates of the one positive anchor: smooth L1 with beta 1/9 is
  # 4 * (2 - 1/18), over 3 sampled anchors.
  off = {**perfect, 'rpn_deltas': perfect['rpn_deltas'] + 2.0}
  np.testing.assert_allclose(rcnn_loss(off, None)[1]['rpn_box_loss'],
                             4 * (2 - 1 / 18) / 3, rtol=1e-5)
  # The box loss uses the true class's deltas only: changing the other class's costs nothing,
  # and the background RoI has no box loss.
  other = perfect['roi_deltas'].at[:, :, 0].add(5.0)  # Class 1's deltas (index 0).
  assert float(rcnn_loss({**perfect, 'roi_deltas': other}, None)[0]) < 1e-6
  own = perfect['roi_deltas'].at[:, 0, 1].add(1.0)  # RoI 0 is class 2 (index 1).
  np.testing.assert_allclose(rcnn_loss({**perfect, 'roi_deltas': own}, None)[1][
      'roi_box_loss'], 4 * 0.5 / 2, rtol=1e-5)


def test_decode_gives_class_specific_boxes_and_select_picks_them():
  proposals = jnp.asarray([[[10, 10, 30, 30], [0, 0, 0, 0]]], jnp.float32)
  target = jnp.asarray([[12, 8, 34, 30], [10, 10, 30, 30]], jnp.float32)  # Class 1, class 2.
  deltas = encode(target, proposals[0, 0], roi_heads.ROI_BOX_WEIGHTS)  # [2, 4]
  outputs = {'proposals': proposals, 'proposal_valid': jnp.asarray([[True, False]]),
             'roi_deltas': jnp.stack([deltas, deltas])[None],
             'roi_scores': jnp.asarray([[[0.1, 0.6, 0.3], [0.0, 0.9, 0.1]]])}
  boxes, scores = roi_heads.decode(outputs, (64, 64))
  assert boxes.shape == (1, 2, 2, 4) and scores.shape == (1, 2, 2)
  np.testing.assert_allclose(boxes[0, 0], target, atol=1e-3)
  assert float(scores[0, 1].max()) == 0.0  # The padded proposal scores nothing.
  out = select_detections(boxes[0], scores[0], score_threshold=0.01, iou_threshold=0.5,
                          pre_nms_topk=4, max_detections=3)
  np.testing.assert_array_equal(out['labels'][:2], [1, 2])
  np.testing.assert_allclose(out['boxes'][0], target[0], atol=1e-3)  # Class 1's own box.
  np.testing.assert_allclose(out['boxes'][1], target[1], atol=1e-3)


@pytest.fixture(scope='module')
def runlocal_config():
  return loader.load('configs/det/faster_rcnn_shapes.py:runlocal')


def test_losses_fall_on_a_tiny_overfit_batch(runlocal_config):
  config = runlocal_config.copy_and_resolve_references()
  config.optimizer.learning_rate, config.optimizer.warmup_steps = 3e-3, 0
  task = tasks.get_task(config)
  batch = jax.tree.map(jnp.asarray, toy_detection_batch())
  state = init_state(task, task.model, make_optimizer(config.optimizer, 40),
                     jax.random.PRNGKey(0), jax.tree.map(np.asarray, batch))
  step = jax.jit(make_train_step(task))
  history = []
  for _ in range(40):
    state, metrics = step(state, batch)
    history.append({k: float(v) for k, v in metrics.items()})
  first, last = history[0], np.mean([h['loss'] for h in history[-5:]])
  assert np.isfinite(last) and last < 0.5 * first['loss'], (first['loss'], last)
  for term in ('rpn_cls_loss', 'roi_cls_loss'):
    assert np.mean([h[term] for h in history[-5:]]) < first[term], term


def test_train_and_evaluate_writes_ap_and_overlays(runlocal_config, tfds_dir, tmp_path):
  config = runlocal_config.copy_and_resolve_references()
  config.data.data_dir, config.data.eval_split = tfds_dir, EVAL_SPLIT
  train.train_and_evaluate(config, str(tmp_path))
  assert_first_step_trained(str(tmp_path))
  saved = json.load(open(tmp_path / 'eval' / 'metrics.json'))
  assert {'AP', 'AP50', 'voc_AP50'} <= set(saved)
  assert os.path.exists(tmp_path / 'eval' / 'overlay_000.png')


def test_roi_pool_option_and_missing_ground_truth_error(runlocal_config):
  model = tasks.get_task(runlocal_config).model
  model = model.clone(roi=dataclasses.replace(model.roi, pooling='pool'))
  images = jnp.asarray(toy_detection_batch(1)['image'])
  # One compilation gives the variables and their inference outputs (init runs the forward pass).
  out, variables = jax.jit(lambda x: model.init_with_output(jax.random.PRNGKey(0), x,
                                                            train=False))(images)
  assert out['roi_scores'].shape == (1, runlocal_config.model.rpn.post_nms_topk_test, 5)
  with pytest.raises(ValueError, match='needs gt_boxes'):
    model.apply(variables, images, train=True, rngs={'sample': jax.random.PRNGKey(0)},
                mutable=['batch_stats'])
