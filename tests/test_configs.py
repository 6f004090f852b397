"""Every experiment config loads, its names resolve, and one train step runs on its shapes."""
import os

import jax
import numpy as np
import pytest

import tasks
from configs import loader
from tools.bench import synthetic_batch
from training.optim import make_optimizer
from training.state import init_state
from training.step import make_train_step

CONFIGS = loader.all_config_files()


def test_configs_found():
  assert 'configs/seg/fcn8s_shapes.py' in CONFIGS


def _initial_state_and_step(config):
  """(first state, synthetic batch, the un-jitted train step) for `config`, batch size 2."""
  task = tasks.get_task(config)
  batch = synthetic_batch(task, 2)
  tx = make_optimizer(config.optimizer, config.total_steps)
  state = init_state(task, task.model, tx, jax.random.PRNGKey(0), batch)
  return state, batch, make_train_step(task)


# Models whose train step another module compiles and runs on their Shapes config, asserting a
# finite loss and a nonzero gradient (workdir_checks.assert_first_step_trained, or a loss that
# falls): compiling them here again cost 137 s of the quiet suite and checked nothing more.
TRAINED_ELSEWHERE = {
    'image_captioner': 'test_captioning.py::test_train_and_evaluate',
    'fast_rcnn': 'test_detection_rcnn.py::test_losses_fall_on_a_tiny_overfit_batch_then_inference',
    'rcnn': 'test_detection_rcnn.py::test_losses_fall_on_a_tiny_overfit_batch_then_inference',
    'sliding_window':
        'test_detection_rcnn.py::test_losses_fall_on_a_tiny_overfit_batch_then_inference',
    'faster_rcnn': 'test_detection_faster_rcnn.py::test_train_and_evaluate_writes_ap_and_overlays',
    'ssd': 'test_detection_ssd.py::test_train_and_evaluate_writes_ap_and_overlays',
    'yolo': 'test_detection_yolo.py::test_train_and_evaluate_writes_ap_and_overlays',
    'mask_rcnn': 'test_mask_rcnn.py::test_train_and_evaluate_writes_ap_and_overlays',
    'localizer': 'test_localization.py::test_train_and_evaluate',
    'deeppose': 'test_pose.py::test_train_and_evaluate',
    'fcn8s': 'test_train.py::test_train_writes_checkpoint_metrics_events_and_overlays',
}


def _compiled_configs() -> set[str]:
  """One config per model name not in TRAINED_ELSEWHERE (its Shapes config where there is one):
  these run a compiled step.

  Compiling is most of this module's time, and configs of the same model differ in fields that
  tracing already checks (sizes, options, data).
  """
  by_model = {}
  for path in CONFIGS:
    name = loader.load(f'{path}:runlocal').model.name
    if name in TRAINED_ELSEWHERE:
      continue
    if name not in by_model or path.endswith('_shapes.py') > by_model[name].endswith('_shapes.py'):
      by_model[name] = path
  return set(by_model.values())


COMPILED = _compiled_configs()


@pytest.mark.parametrize('path', CONFIGS)
def test_one_train_step(path):
  config = loader.load(f'{path}:runlocal')
  if path in COMPILED:
    state, batch, step = _initial_state_and_step(config)
    state, metrics = jax.jit(step)(state, batch)
    assert int(state.step) == 1
    assert np.isfinite(float(metrics['loss'])) and float(metrics['grad_norm']) > 0
    return
  # Traced, not compiled: every name resolves and every shape fits through the loss's gradient.
  state, metrics = jax.eval_shape(lambda: (lambda s, b, f: f(s, b))(*_initial_state_and_step(
      config)))
  assert state.step.shape == () and metrics['loss'].shape == ()
  assert metrics['loss'].dtype == np.float32 and metrics['grad_norm'].shape == ()


def test_models_trained_elsewhere_are_trained_there():
  names = {loader.load(f'{path}:runlocal').model.name for path in CONFIGS}
  assert set(TRAINED_ELSEWHERE) <= names
  for test in TRAINED_ELSEWHERE.values():
    module, function = test.split('::')
    source = open(os.path.join(os.path.dirname(__file__), module)).read()
    assert f'def {function}(' in source, f'{test} is gone: compile its model in this module'


def test_bfloat16_compute_keeps_float32_parameters_and_loss():
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = loader.load('configs/seg/fcn8s_shapes.py:runlocal')
    config.model.dtype = dtype
    state, batch, step = _initial_state_and_step(config)
    assert ('bf16[' in str(jax.make_jaxpr(step)(state, batch))) == (dtype == 'bfloat16')
    state, metrics = jax.jit(step)(state, batch)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype('float32')}
    losses[dtype] = float(metrics['loss'])
  assert losses['bfloat16'] == pytest.approx(losses['float32'], rel=0.05)
