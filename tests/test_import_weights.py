"""torchvision ResNet-18 weights through safetensors: every key maps, round trips keep the forward
pass, and backbones load into our models from safetensors or from one of our workdirs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs import loader
from models import torchvision_weights
from models.backbones import get_backbone
from training import pretrained
from training.checkpoint import Checkpointer
from training.optim import make_optimizer
from training.state import example_batch, init_state


def resnet18_state_dict(seed: int = 0) -> dict:
  """Random arrays under the real key names and shapes of torchvision's resnet18().state_dict()."""
  shapes = {'conv1.weight': (64, 3, 7, 7)}

  def bn(prefix, c):
    shapes.update({f'{prefix}.weight': (c,), f'{prefix}.bias': (c,),
                   f'{prefix}.running_mean': (c,), f'{prefix}.running_var': (c,),
                   f'{prefix}.num_batches_tracked': ()})

  bn('bn1', 64)
  cin = 64
  for stage, c in enumerate((64, 128, 256, 512), start=1):
    for block in (0, 1):
      p = f'layer{stage}.{block}'
      shapes[f'{p}.conv1.weight'] = (c, cin if block == 0 else c, 3, 3)
      bn(f'{p}.bn1', c)
      shapes[f'{p}.conv2.weight'] = (c, c, 3, 3)
      bn(f'{p}.bn2', c)
      if block == 0 and stage > 1:
        shapes[f'{p}.downsample.0.weight'] = (c, cin, 1, 1)
        bn(f'{p}.downsample.1', c)
    cin = c
  shapes.update({'fc.weight': (1000, 512), 'fc.bias': (1000,)})
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in shapes.items():
    if key.endswith('num_batches_tracked'):
      out[key] = np.asarray(100, np.int64)
    elif key.endswith('running_var'):
      out[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    else:
      out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
  return out


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('weights') / 'resnet18.safetensors')
  from safetensors.numpy import save_file
  save_file(resnet18_state_dict(), path)
  return path


def test_every_key_maps_and_round_trip_keeps_forward_pass(weights_file, tmp_path):
  state_dict = resnet18_state_dict()
  variables = torchvision_weights.load_safetensors(weights_file)
  mapped = traverse_util.flatten_dict(variables)
  assert len(state_dict) == 122  # torchvision's resnet18 state dict has 122 entries.
  assert len(mapped) == 122 - 20  # All but the 20 num_batches_tracked counters.
  assert torchvision_weights.check_against_model(variables, 'resnet18', 1000) == len(mapped)
  np.testing.assert_array_equal(variables['params']['layer2_0']['downsample_0']['kernel'],
                                state_dict['layer2.0.downsample.0.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['bn1']['var'],
                                state_dict['bn1.running_var'])

  model = get_backbone('resnet18', num_classes=1000)
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3))
  before = model.apply(variables, images, train=False)['logits']
  path = str(tmp_path / 'again.safetensors')
  torchvision_weights.save_safetensors(variables, path)
  after = model.apply(torchvision_weights.load_safetensors(path), images, train=False)['logits']
  np.testing.assert_array_equal(before, after)
  exported = torchvision_weights.flax_to_torchvision(variables)
  assert exported.keys() == state_dict.keys()
  for key, value in state_dict.items():
    if not key.endswith('num_batches_tracked'):
      np.testing.assert_array_equal(exported[key], value, err_msg=key)


def _state(spec, **model):
  config = loader.load(spec)
  config.model.update(model)
  import tasks
  task = tasks.get_task(config)
  tx = make_optimizer(config.optimizer, 10, frozen=pretrained.frozen_modules(config))
  return config, task, init_state(task, task.model, tx, jax.random.PRNGKey(1),
                                  example_batch(task.info))


def test_backbone_from_safetensors_then_frozen(weights_file):
  config, task, state = _state('configs/loc/localizer_shapes.py:runlocal', backbone='resnet18')
  state = pretrained.load_backbone(state, weights_file)
  imported = torchvision_weights.load_safetensors(weights_file)
  np.testing.assert_array_equal(state.params['backbone']['conv1']['kernel'],
                                imported['params']['conv1']['kernel'])
  assert 'fc' not in state.params['backbone']
  # Frozen: the optimizer leaves the backbone alone (weight decay included), the heads move.
  config.optimizer.warmup_steps = 0  # A first step with a nonzero learning rate.
  tx = make_optimizer(config.optimizer, 10, frozen=('backbone',))
  grads = jax.tree.map(jnp.ones_like, state.params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(state.params), state.params)
  assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(updates['backbone']))
  assert all(float(jnp.abs(u).max()) > 0 for u in jax.tree.leaves(updates['box_head']))


def test_backbone_from_our_workdir_into_another_task(tmp_path):
  _, _, loc = _state('configs/loc/localizer_shapes.py:runlocal')
  Checkpointer(str(tmp_path / 'checkpoints')).save(5, loc, None)
  _, _, pose = _state('configs/pose/deeppose_shapes.py:runlocal')
  loaded = pretrained.load_backbone(pose, str(tmp_path))
  for a, b in zip(jax.tree.leaves(loaded.variables['params']['backbone']),
                  jax.tree.leaves(loc.variables['params']['backbone']), strict=True):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(loaded.params['regressor']['out']['kernel'],
                                pose.params['regressor']['out']['kernel'])
  _, _, resnet_pose = _state('configs/pose/deeppose_shapes.py:runlocal', backbone='resnet18')
  with pytest.raises(ValueError, match='does not fit'):
    pretrained.load_backbone(resnet_pose, str(tmp_path))
