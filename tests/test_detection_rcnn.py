"""Sliding window, R-CNN and Fast R-CNN: windows, the SVM loss, a toy overfit, training."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
import train
from configs import loader
from data import proposals
from losses.rcnn import rcnn_loss, svm_hinge
from models.rcnn import SlidingWindow
from tests.toy_data import toy_detection_batch
from training.optim import make_optimizer
from training.state import init_state
from training.step import make_train_step


def test_sliding_window_grid_covers_the_image():
  model = SlidingWindow(num_classes=5, window_stride=8, window_sizes=(16.0, 24.0, 32.0),
                        window_ratios=(0.5, 1.0, 2.0))
  windows = np.asarray(model.windows((64, 64)))
  assert windows.shape == (8 * 8 * 9, 4)  # 576 windows for 64x64.
  assert windows.min() >= 0 and windows.max() <= 64
  # Cell (0, 0), size 16, ratio 1: centred at (4, 4), clipped at the image border.
  np.testing.assert_allclose(windows[1], [0, 0, 12, 12], atol=1e-5)


def test_svm_hinge_matches_hand_computed_margins():
  logits = jnp.asarray([[2.0, -0.5, 0.3]])
  # True class 0: max(0, 1 - 2) + max(0, 1 - 0.5) + max(0, 1 + 0.3) = 0 + 0.5 + 1.3.
  np.testing.assert_allclose(svm_hinge(logits, jnp.asarray([0])), [1.8], rtol=1e-6)
  roi = {'valid': jnp.asarray([[True, False]]), 'classes': jnp.asarray([[0, 1]]),
         'deltas': jnp.zeros((1, 2, 4))}
  outputs = {'roi_logits': jnp.concatenate([logits, logits])[None],
             'roi_deltas': jnp.zeros((1, 2, 2, 4)), 'roi_targets': roi}
  np.testing.assert_allclose(rcnn_loss(outputs, None, classifier='svm')[1]['roi_cls_loss'], 1.8,
                             rtol=1e-6)
  with pytest.raises(ValueError, match="valid: 'softmax', 'svm'"):
    rcnn_loss(outputs, None, classifier='hinge')


# Their last five RoI losses average 0.14x (sliding window, R-CNN) and 0.03x (Fast R-CNN) of
# the first at 15 steps (measured); the test asks for 0.5x.
OVERFIT_STEPS = 15


@pytest.mark.parametrize('name', ['sliding_window', 'rcnn', 'fast_rcnn'])
def test_losses_fall_on_a_tiny_overfit_batch_then_inference(name):
  config = loader.load(f'configs/det/{name}_shapes.py:runlocal')
  config.optimizer.learning_rate, config.optimizer.warmup_steps = 3e-3, 0
  if name == 'rcnn':
    # One CNN pass per sampled RoI, padding included: 16 RoIs still hold all 12 candidates of an
    # image (10 valid proposals and 2 ground-truth boxes) at half the cost of the config's 32.
    config.model.roi.batch_size = 16
  task = tasks.get_task(config)
  batch = toy_detection_batch(num_proposals=12)
  state = init_state(task, task.model, make_optimizer(config.optimizer, OVERFIT_STEPS),
                     jax.random.PRNGKey(0), batch)
  step = jax.jit(make_train_step(task))
  losses = []
  for _ in range(OVERFIT_STEPS):
    state, metrics = step(state, jax.tree.map(jnp.asarray, batch))
    losses.append(float(metrics['roi_cls_loss']))
  assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 0.5 * losses[0], losses
  args, kwargs = task.model_inputs(batch)
  predictions = jax.jit(lambda v, b: task.postprocess(
      task.model.apply(v, *args, train=False, **kwargs), b))(state.variables, batch)
  assert predictions['boxes'].shape == (2, config.detect.max_detections, 4)
  if name != 'sliding_window':
    with pytest.raises(ValueError, match='needs batch keys'):
      task.model_inputs({k: v for k, v in batch.items() if k != 'proposals'})


def test_fast_rcnn_trains_and_evaluates_on_cached_selective_search(tfds_dir, tmp_path):
  config = loader.load('configs/det/fast_rcnn_shapes.py:runlocal')
  config.data.data_dir = tfds_dir
  # Selective search (numpy) runs over whole splits: parts of them keep it short.
  config.data.train_split, config.data.eval_split = 'train[:32]', 'validation[:16]'
  train.train_and_evaluate(config, str(tmp_path))
  saved = json.load(open(tmp_path / 'eval' / 'metrics.json'))
  assert {'AP', 'AP50', 'voc_AP50'} <= set(saved)
  for split in ('train[:32]', 'validation[:16]'):  # Next to the dataset.
    assert os.path.exists(proposals.cache_path(config.data, split))
