"""config.microbatches: the train step runs its batch in slices and sums their gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from training.parallel import DataParallel
from training.state import TrainState
from training.step import make_train_step, split_microbatches

BATCH = 8


class _Regressor(nn.Module):
  """A small MLP, after a batch norm of the input with `normalize` (its statistics are the
  slice's, so then the gradient is not the whole batch's)."""
  normalize: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    if self.normalize:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


class _Task:
  """Mean squared error: a mean over equal-sized examples, so the batch's loss is the mean of
  its slices' losses and the microbatched gradient must equal the whole batch's."""
  def __init__(self, normalize=False):
    self.model = _Regressor(normalize)

  def model_inputs(self, batch):
    return (batch['image'],), {}

  def loss(self, outputs, batch):
    error = outputs - batch['target']
    return jnp.mean(error**2), {'abs_error': jnp.mean(jnp.abs(error))}


def _state_and_batch(task):
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(2.0, 1.0, (BATCH, 5)).astype(np.float32),
           'target': rng.normal(size=(BATCH, 3)).astype(np.float32)}
  variables = task.model.init(jax.random.PRNGKey(0), batch['image'], train=False)
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
  state = TrainState.create(apply_fn=task.model.apply, variables=variables, tx=tx,
                            rng=jax.random.PRNGKey(1))
  return state, batch


def _run(parallel, microbatches, steps=2, task=None):
  task = task or _Task()
  state, batch = _state_and_batch(task)
  step = parallel.compile_train_step(make_train_step(task, parallel.axis_name, microbatches))
  state, batch = parallel.put_state(state), parallel.put_batch(batch)
  for _ in range(steps):
    state, metrics = step(state, batch)
  return parallel.get_state(state), parallel.metrics_to_host(metrics)


def _assert_close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_slices_of_a_sharded_or_pmapped_batch_give_the_whole_batch_gradient():
  """The parameters, loss and metrics of one device with the whole batch, also with the batch
  sharded over 4 devices (jit) or pmapped, each device's part in 2 slices."""
  one_device = DataParallel('jit', jax.devices()[:1])
  whole, whole_metrics = _run(one_device, 1)
  for parallel, microbatches in [(one_device, 4), (DataParallel('jit'), 2),
                                 (DataParallel('pmap'), 2)]:
    sliced, metrics = _run(parallel, microbatches)
    _assert_close(whole.params, sliced.params)
    for name in ('loss', 'abs_error', 'grad_norm'):
      np.testing.assert_allclose(whole_metrics[name], metrics[name], rtol=1e-5)


def test_batch_norm_updates_its_running_mean_once_per_slice():
  task = _Task(normalize=True)
  state, _ = _run(DataParallel('jit', jax.devices()[:1]), 2, steps=1, task=task)
  batch = _state_and_batch(task)[1]
  slices = split_microbatches(batch, 2)['image']  # Slice i: rows i, i + 2, ...
  np.testing.assert_array_equal(slices[1], batch['image'][1::2])
  expected = 0.0
  for part in slices:
    expected = 0.9 * expected + 0.1 * part.mean(0)
  np.testing.assert_allclose(state.batch_stats['BatchNorm_0']['mean'], expected, rtol=1e-5)


def test_a_count_that_does_not_divide_each_devices_batch_is_refused():
  # train.py checks the config before anything is built (one line naming the field and the fix).
  with pytest.raises(ValueError, match='config.microbatches=3 does not divide the 2 examples each '
                                       'of the 4 devices gets per step; pick a divisor of 2'):
    DataParallel('jit').check_batch_size(8, microbatches=3)
  DataParallel('jit').check_batch_size(8, microbatches=2)
  with pytest.raises(ValueError, match='3 microbatches do not divide a batch of 8'):
    _run(DataParallel('jit', jax.devices()[:1]), 3)
  for check in (lambda: DataParallel('jit').check_batch_size(8, microbatches=0),
                lambda: make_train_step(_Task(), microbatches=0)):
    with pytest.raises(ValueError, match=r'config.microbatches must be at least 1 \(got 0\)'):
      check()
