"""A vectorised population equals separate runs; PBT copies the best members and logs lineage."""
import copy
import json
import os

import jax
import numpy as np
import pytest

import train
from configs import loader
from training.population import PBT, exploit_and_explore, non_vectorizable, train_population

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = 'configs/seg/fcn8s_shapes.py:runlocal'
LEARNING_RATES = (1e-4, 1e-3, 3e-3, 1e-2)


@pytest.fixture
def config(tfds_dir):
  c = loader.load(os.path.join(REPO, SPEC))
  c.data.data_dir = tfds_dir
  c.total_steps = 5
  c.checkpoint_every_steps = 5
  c.eval_batch_size = 8
  c.num_overlays = 0
  c.optimizer.warmup_steps = 2  # Exercise the schedule: lr = member peak x multiplier(step).
  return c


def _member(params, i):
  return jax.tree.map(lambda x: np.asarray(x[i]), params)


def _assert_trees_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, **tol)


def _configs(config, overrides):
  return [loader.override(copy.deepcopy(config), o) for o in overrides]


def test_population_of_four_learning_rates_matches_four_separate_runs(config, tmp_path):
  assert jax.device_count() == 4  # The population axis is sharded one member per device.
  configs = _configs(config, [[f'optimizer.learning_rate={lr}'] for lr in LEARNING_RATES])
  dirs = [str(tmp_path / f'member{i}') for i in range(4)]
  state, results = train_population(configs, dirs, str(tmp_path / 'pop'))
  assert [r['status'] for r in results] == ['done'] * 4
  for i, member_config in enumerate(configs):
    single, _ = train.train_and_evaluate(member_config, str(tmp_path / f'single{i}'),
                                         devices=jax.devices()[:1])
    _assert_trees_close(_member(state.params, i), jax.device_get(single.params),
                        rtol=2e-4, atol=2e-6, err_msg=f'lr={LEARNING_RATES[i]}')
    _assert_trees_close(_member(state.batch_stats, i), jax.device_get(single.batch_stats),
                        rtol=2e-4, atol=2e-6)
    eval_metrics = json.load(open(os.path.join(dirs[i], 'eval', 'metrics.json')))
    assert eval_metrics['step'] == config.total_steps
    logged = [json.loads(x) for x in open(os.path.join(dirs[i], 'metrics.jsonl'))]
    lrs = [x['train/learning_rate'] for x in logged if 'train/learning_rate' in x]
    assert lrs[-1] == pytest.approx(LEARNING_RATES[i] * float(np.cos(np.pi * 2 / 3) + 1) / 2)
