"""Mask R-CNN: its targets and outputs, losses, mask / keypoint AP, and training end to end."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
import train
from configs import loader
from data import augment
from losses.mask_rcnn import keypoint_loss, mask_loss
from ops.joints import LSP_14
from ops.masks import crop_targets
from ops.roi import roi_align
from tasks.instance import InstanceEvaluator
from tests.toy_data import toy_detection_batch
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained
from tools.bench import synthetic_batch
from training.optim import make_optimizer
from training.state import init_state
from training.step import make_eval_step, make_train_step

CLASS_NAMES = ('background', 'square', 'disc')


def _disc_and_square(size: int = 48):
  """Two instances: a square (class 1) and a disc (class 2), their masks, tight boxes, labels,
  valid flags and id map."""
  yy, xx = np.mgrid[:size, :size] + 0.5
  masks = np.zeros((3, size, size), np.uint8)  # One padding slot.
  masks[0, 4:20, 6:30] = 1
  masks[1] = (yy - 32) ** 2 + (xx - 28) ** 2 <= 11 ** 2
  boxes = np.array([[4, 6, 20, 30], [21, 17, 43, 39], [0, 0, 0, 0]], np.float32)
  ids = (masks[0] + 2 * masks[1]).astype(np.uint8)  # The two do not overlap.
  return masks, boxes, np.array([1, 2, 0], np.int32), np.array([True, True, False]), ids


def _instance_batch():
  masks, boxes, labels, valid, ids = _disc_and_square()
  return {'image': np.zeros((1, *masks.shape[1:], 3), np.uint8), 'boxes': boxes[None],
          'labels': labels[None], 'valid': valid[None], 'instance_ids': ids[None],
          'example_valid': np.ones(1, bool)}


def test_crop_targets_match_roi_align_of_the_full_masks():
  """Targets from the 56x56 box crops are RoIAlign of each instance's full binary mask, up to
  the crops' sampling (tools/mask_crop_fidelity.py measures it on whole datasets)."""
  masks, boxes, _, _, ids = _disc_and_square()
  rng = np.random.default_rng(0)
  jittered = (boxes[None, :2] + rng.normal(0, 3, (6, 2, 4))).reshape(-1, 4)
  rois = np.concatenate([boxes[:2], jittered, [[-5, -5, 60, 60], [40, 40, 47.5, 47.9]]])
  rois = rois.astype(np.float32)
  matched = np.array([0, 1] * 7 + [1, 0], np.int32)
  rows = np.concatenate([matched[:, None].astype(np.float32), rois], -1)
  want = roi_align(jnp.asarray(masks[..., None]), jnp.asarray(rows), (28, 28), 1.0, 2, True)
  crops = augment.instance_crops(ids, boxes[:2], 56)
  got = np.asarray(crop_targets(jnp.asarray(crops), jnp.asarray(boxes[:2]), jnp.asarray(rois),
                                jnp.asarray(matched), 28))
  want = (np.asarray(want)[..., 0] >= 0.5).astype(np.float32)
  assert np.mean(got != want) < 0.005 and 0 < got.mean() < 1


def test_mask_ap_is_one_for_perfect_predictions():
  batch = _instance_batch()
  perfect = {'boxes': batch['boxes'], 'labels': batch['labels'], 'valid': batch['valid'],
             'scores': np.array([[0.9, 0.8, 0.0]], np.float32),
             'masks': _disc_and_square()[0][None].astype(bool)}
  evaluator = InstanceEvaluator(CLASS_NAMES, masks=True)
  evaluator.add(batch, perfect)
  result = evaluator.result()
  assert result['mask_AP'] == pytest.approx(1.0) and result['AP'] == pytest.approx(1.0)

  swapped = dict(perfect, masks=perfect['masks'][:, [1, 0, 2]])  # Right boxes, wrong masks.
  evaluator = InstanceEvaluator(CLASS_NAMES, masks=True)
  evaluator.add(batch, swapped)
  assert evaluator.result()['mask_AP'] == pytest.approx(0.0)


def test_postprocess_pastes_28x28_masks_back_at_their_boxes():
  """The model's 28x28 crops of the true masks, pasted back, score mask AP50 1."""
  config = loader.load('configs/inst/mask_rcnn_shapes.py:runlocal')
  task = tasks.get_task(config)
  batch = _instance_batch()
  boxes = batch['boxes'][0]
  crops = crop_targets(augment.instance_crops(batch['instance_ids'][0], boxes, 56), boxes, boxes,
                       jnp.arange(3), 28)
  outputs = {'detections': {'boxes': batch['boxes'], 'labels': batch['labels'],
                            'valid': batch['valid'], 'scores': jnp.array([[0.9, 0.8, 0.0]]),
                            'masks': crops[None]}}
  predictions = jax.device_get(task.postprocess(outputs, batch))
  assert predictions['masks'].shape == (1, 3, 48, 48) and predictions['masks'].dtype == bool
  assert not predictions['masks'][0, 2].any()  # Padding detections paste nothing.
  np.testing.assert_array_equal(predictions['masks'][0, 0], _disc_and_square()[0][0])
  evaluator = task.make_evaluator()
  evaluator.add(batch, predictions)
  assert evaluator.result()['mask_AP50'] == pytest.approx(1.0)


def test_keypoint_ap_is_one_for_perfect_joints_with_lsp_sigmas():
  rng = np.random.default_rng(0)
  boxes = np.array([[[4, 6, 40, 30], [10, 30, 46, 46]]], np.float32)
  joints = rng.uniform(boxes[0, :, None, :2], boxes[0, :, None, 2:], (2, 14, 2))
  keypoints = np.concatenate([joints, np.full((2, 14, 1), 2.0)], -1)[None].astype(np.float32)
  batch = {'image': np.zeros((1, 48, 48, 3), np.float32), 'boxes': boxes,
           'labels': np.ones((1, 2), np.int32), 'valid': np.ones((1, 2), bool),
           'keypoints': keypoints, 'example_valid': np.ones(1, bool)}
  predictions = {'boxes': boxes, 'labels': batch['labels'], 'valid': batch['valid'],
                 'scores': np.array([[0.9, 0.8]], np.float32), 'keypoints': keypoints}
  evaluator = InstanceEvaluator(('background', 'person'), masks=False,
                                keypoint_sigmas=LSP_14.oks_sigmas, lsp_pose=True)
  evaluator.add(batch, predictions)
  result = evaluator.result()
  assert result['keypoint_AP'] == pytest.approx(1.0)
  assert result['keypoint_pck@0.2'] == 1.0 and result['keypoint_num_people'] == 2

  off = dict(predictions, keypoints=keypoints + np.array([6.0, 6.0, 0.0], np.float32))
  evaluator = InstanceEvaluator(('background', 'person'), masks=False,
                                keypoint_sigmas=LSP_14.oks_sigmas, lsp_pose=True)
  evaluator.add(batch, off)
  result = evaluator.result()
  assert result['keypoint_AP'] < 0.5 and result['keypoint_pck@0.2'] < 1.0


def test_mask_and_keypoint_losses_by_hand():
  logits = jnp.zeros((1, 2, 4, 4))  # p = 0.5 everywhere: BCE log(2) whatever the target.
  targets = {'masks': jnp.ones((1, 2, 4, 4)), 'valid': jnp.array([[True, False]])}
  loss, _ = mask_loss(logits, targets)
  assert float(loss) == pytest.approx(np.log(2.0), rel=1e-5)
  confident = jnp.stack([jnp.full((4, 4), 20.0), jnp.full((4, 4), -20.0)])[None]
  loss, accuracy = mask_loss(confident, targets)  # The invalid second RoI does not count.
  assert float(loss) < 1e-6 and float(accuracy) == 1.0

  uniform = jnp.zeros((1, 3, 2, 9))  # 9 positions: cross-entropy log(9) per valid joint.
  kp_targets = {'index': jnp.zeros((1, 3, 2), jnp.int32),
                'valid': jnp.array([[[True, False], [False, False], [True, True]]])}
  assert float(keypoint_loss(uniform, kp_targets)) == pytest.approx(np.log(9.0), rel=1e-5)


@pytest.fixture(scope='module')
def mask_task():
  config = loader.load('configs/inst/mask_rcnn_shapes.py:runlocal')
  config.model.head_chunk = 6  # The heads run on chunks of 6 of the 16 foreground slots.
  return tasks.get_task(config)


def test_training_targets_are_the_fg_rois_own_masks(mask_task):
  batch = synthetic_batch(mask_task, 2)
  args, kwargs = mask_task.model_inputs(batch)
  # One compilation gives the variables and the training outputs (init runs the forward pass).
  out, variables = jax.jit(lambda a, k: mask_task.model.init_with_output(
      {'params': jax.random.PRNGKey(0), 'sample': jax.random.PRNGKey(1)}, *a, train=True, **k))(
          args, kwargs)
  model = mask_task.model
  fg = int(model.roi.batch_size * model.roi.positive_fraction)
  targets = out['mask_targets']
  assert out['mask_logits'].shape == targets['masks'].shape == (2, fg, 28, 28)
  rois = jax.tree.map(lambda x: x[:, :fg], out['roi_targets'])
  np.testing.assert_array_equal(targets['valid'], rois['valid'] & (rois['classes'] > 0))
  assert np.all(np.asarray(targets['valid']).sum(1) >= 1)  # Ground truth is among the RoIs.
  for b in range(2):
    want = crop_targets(batch['instance_crops'][b], batch['boxes'][b], rois['boxes'][b],
                        rois['matched'][b], 28)
    valid = np.asarray(targets['valid'][b])
    np.testing.assert_array_equal(np.asarray(targets['masks'][b])[valid], np.asarray(want)[valid])

  # The heads skipped the chunks past every foreground RoI: the same outputs and mask head
  # gradients as on all slots at once.
  assert np.asarray(targets['valid']).sum(1).max() <= 6
  config = mask_task.config.copy_and_resolve_references()
  config.model.head_chunk = 0

  def head_grads(model):
    def masked_logits(head):
      params = {**variables['params'], 'mask_head': head}
      out = model.apply({**variables, 'params': params}, *args, train=True,
                        rngs={'sample': jax.random.PRNGKey(1)}, mutable=['batch_stats'],
                        **kwargs)[0]
      logits = jnp.where(out['mask_targets']['valid'][..., None, None], out['mask_logits'], 0)
      return jnp.sum(logits * out['mask_targets']['masks']), (out, logits)
    return jax.jit(jax.grad(masked_logits, has_aux=True))(variables['params']['mask_head'])

  on_all_grads, (on_all, on_all_logits) = head_grads(tasks.get_task(config).model)
  np.testing.assert_allclose(np.where(targets['valid'][..., None, None], out['mask_logits'], 0),
                             on_all_logits, atol=1e-6)
  np.testing.assert_array_equal(on_all['mask_targets']['valid'], targets['valid'])
  chunked_grads, _ = head_grads(model)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6),
               chunked_grads, on_all_grads)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(on_all_grads)) > 0

  config.model.head_chunk = -1
  with pytest.raises(ValueError, match=r'model.head_chunk=-1: give the slots per chunk'):
    tasks.get_task(config)

  predictions = jax.device_get(jax.jit(make_eval_step(mask_task))(variables, batch))
  d = mask_task.config.detect.max_detections
  assert predictions['masks'].shape == (2, d, 64, 64) and predictions['scores'].shape == (2, d)
  assert not predictions['masks'][~predictions['valid']].any()


def test_without_heads_it_trains_as_faster_rcnn():
  # No mask and no keypoint head: nothing for the heads is pooled, the box outputs remain.
  config = loader.load('configs/inst/mask_rcnn_shapes.py:runlocal')
  config.model.mask.enabled = False
  task = tasks.get_task(config)
  args, kwargs = task.model_inputs(synthetic_batch(task, 2))
  out, _ = jax.jit(lambda a, k: task.model.init_with_output(
      {'params': jax.random.PRNGKey(0), 'sample': jax.random.PRNGKey(1)}, *a, train=True, **k))(
          args, kwargs)
  assert sorted(out) == ['roi_deltas', 'roi_logits', 'roi_targets', 'rpn_deltas', 'rpn_logits',
                         'rpn_targets']


def test_mask_loss_falls_on_a_tiny_overfit_batch(mask_task):
  config = mask_task.config.copy_and_resolve_references()
  config.optimizer.learning_rate, config.optimizer.warmup_steps = 1e-2, 0
  config.optimizer.schedule = 'constant'
  task = tasks.get_task(config)
  batch = toy_detection_batch()
  rows, cols = np.mgrid[:64, :64]
  batch['instance_crops'] = np.zeros((2, 4, 56, 56), np.uint8)
  # The squares fill their boxes; each crop keeps its whole square where two overlap.
  for k in range(batch['boxes'].shape[1]):
    b = batch['boxes'][:, k, :, None, None]
    inside = (rows >= b[:, 0]) & (rows < b[:, 2]) & (cols >= b[:, 1]) & (cols < b[:, 3])
    for i in np.flatnonzero(batch['valid'][:, k]):
      batch['instance_crops'][i, k] = augment.instance_crops(
          inside[i].astype(np.uint8), batch['boxes'][i, k:k + 1], 56)[0]
  batch['keypoints'] = np.zeros((2, 4, 14, 3), np.float32)
  state = init_state(task, task.model, make_optimizer(config.optimizer, 40),
                     jax.random.PRNGKey(0), batch)
  step = jax.jit(make_train_step(task))
  batch = jax.tree.map(jnp.asarray, batch)
  history = []
  for _ in range(40):
    state, metrics = step(state, batch)
    history.append(float(metrics['mask_loss']))
  assert np.mean(history[-5:]) < 0.5 * history[0], history


@pytest.mark.parametrize('name, metric', [('mask_rcnn', 'mask_AP50'),
                                          ('keypoint_rcnn', 'keypoint_AP50')])
def test_train_and_evaluate_writes_ap_and_overlays(name, metric, tfds_dir, tmp_path):
  config = loader.load(f'configs/inst/{name}_shapes.py:runlocal')
  config.data.data_dir, config.data.eval_split = tfds_dir, EVAL_SPLIT
  train.train_and_evaluate(config, str(tmp_path))
  assert_first_step_trained(str(tmp_path))
  saved = json.load(open(tmp_path / 'eval' / 'metrics.json'))
  assert {'AP50', metric} <= set(saved) and 0.0 <= saved[metric] <= 1.0
  assert os.path.exists(tmp_path / 'eval' / 'overlay_000.png')


def test_pose_task_refuses_other_joint_sets():
  config = loader.load('configs/pose/deeppose_shapes.py:runlocal')
  config.data.name, config.data.variant = 'coco2017', 'person_keypoints'
  with pytest.raises(ValueError, match='14 LSP joints.*17'):
    tasks.get_task(config)
