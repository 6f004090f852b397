"""Every experiment config loads, its names resolve, and one train step runs on its shapes."""
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


@pytest.mark.parametrize('path', CONFIGS)
def test_one_train_step(path):
  config = loader.load(f'{path}:runlocal')
  task = tasks.get_task(config)
  batch = synthetic_batch(task, 2)
  tx = make_optimizer(config.optimizer, config.total_steps)
  state = init_state(task, task.model, tx, jax.random.PRNGKey(0), batch)
  state, metrics = jax.jit(make_train_step(task))(state, batch)
  assert int(state.step) == 1
  assert np.isfinite(float(metrics['loss'])) and float(metrics['grad_norm']) > 0
