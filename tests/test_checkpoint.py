"""Checkpoint integrity on a tiny state: garbled, truncated and NaN checkpoints are refused by name
and the previous intact one is used; a 4-device checkpoint loads in a 1-device process."""
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from training.checkpoint import INTEGRITY_FILE, Checkpointer, CorruptCheckpointError
from training.optim import make_optimizer
from training.state import TrainState

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(value: float) -> TrainState:
  params = {'backbone': {'w': jnp.full((64, 32), value)}, 'head': {'b': jnp.full((8,), value)}}
  return TrainState.create(apply_fn=None, variables={'params': params}, tx=optax.adam(1e-3),
                           rng=jax.random.PRNGKey(0))


def _saved(tmp_path, values=(1.0, 2.0, 3.0)) -> Checkpointer:
  """Checkpoints at steps 2, 4, 6 whose parameters are all 1, 2, 3."""
  checkpointer = Checkpointer(str(tmp_path / 'checkpoints'))
  for i, value in enumerate(values):
    checkpointer.save(2 * (i + 1), _state(value), {'position': i})
  return checkpointer


def _data_file(step_dir: str) -> str:
  """The step's largest file: the array data (ocdbt chunks)."""
  files = [os.path.join(root, f) for root, _, names in os.walk(step_dir) for f in names
           if f != INTEGRITY_FILE]
  return max(files, key=os.path.getsize)


def _restored_value(restored) -> float:
  return float(restored[0].params['backbone']['w'][0, 0])


def test_garbled_checkpoint_is_reported_and_the_previous_one_used(tmp_path, caplog):
  checkpointer = _saved(tmp_path)
  path = _data_file(checkpointer.step_dir(6))
  with open(path, 'r+b') as f:  # 4 KB of random bytes over the data, as a bad disk would.
    f.write(np.random.default_rng(0).bytes(4096))
  with pytest.raises(CorruptCheckpointError, match=r'checkpoints/6 is corrupt: .* differs'):
    checkpointer.restore(_state(0.0), step=6)  # eval.py asks for a step: refused, no fallback.
  with caplog.at_level(logging.WARNING, logger='detseg'):
    restored = checkpointer.restore(_state(0.0))
  assert _restored_value(restored) == 2.0 and restored[1] == {'position': 1}
  assert any('checkpoints/6 is corrupt' in r.message for r in caplog.records)
  assert any('Resuming from step 4' in r.message for r in caplog.records)
  # Kept (never deleted), out of the way of the step that training saves again.
  assert os.path.exists(checkpointer.step_dir(6) + '.corrupt') and checkpointer.steps() == [2, 4]
  checkpointer.save(6, _state(5.0), None)
  assert _restored_value(checkpointer.restore(_state(0.0))) == 5.0


@pytest.mark.parametrize('record', [True, False], ids=['with_record', 'without_record'])
def test_truncated_checkpoint_falls_back_without_an_orbax_traceback(tmp_path, caplog, record):
  checkpointer = _saved(tmp_path)
  path = _data_file(checkpointer.step_dir(6))
  os.truncate(path, os.path.getsize(path) // 2)
  if not record:  # Saved before integrity records existed: orbax's failure is the sign.
    os.remove(os.path.join(checkpointer.step_dir(6), INTEGRITY_FILE))
  with caplog.at_level(logging.WARNING, logger='detseg'):
    assert _restored_value(checkpointer.restore(_state(0.0))) == 2.0
  lines = [r.message for r in caplog.records]
  assert any('checkpoints/6 is corrupt' in m or 'checkpoints/6 cannot be read' in m
             for m in lines)
  assert all('\n' not in m and 'Traceback' not in m for m in lines)


def test_nan_parameters_are_a_corrupt_checkpoint(tmp_path, caplog):
  checkpointer = _saved(tmp_path, values=(1.0, 2.0, float('nan')))
  with caplog.at_level(logging.WARNING, logger='detseg'):
    assert _restored_value(checkpointer.restore(_state(0.0))) == 2.0
  assert any("['params']['backbone']['w'] holds NaN" in r.message for r in caplog.records)


def test_no_intact_checkpoint_is_one_error(tmp_path):
  checkpointer = _saved(tmp_path, values=(1.0,))
  os.truncate(_data_file(checkpointer.step_dir(2)), 10)
  with pytest.raises(CorruptCheckpointError, match='no intact checkpoint .* new --workdir'):
    checkpointer.restore(_state(0.0))
  assert os.path.isdir(checkpointer.step_dir(2))  # Nothing found intact: nothing moved.


def test_missing_step_lists_the_steps(tmp_path):
  with pytest.raises(ValueError, match='no checkpoint step 7 .* steps there: 2, 4, 6'):
    _saved(tmp_path).restore(_state(0.0), step=7)


def test_gradient_clipping_keeps_the_optimizer_state_structure():
  """Resuming with clipping turned on (the NaN advice) must find the saved state's structure."""
  from configs import common
  opt = common.base_config().optimizer
  params = _state(0.0).params
  without = jax.tree.structure(make_optimizer(opt, 10).init(params))
  opt.grad_clip_norm = 1.0
  assert jax.tree.structure(make_optimizer(opt, 10).init(params)) == without


def test_checkpoint_saved_on_4_devices_loads_on_1(tmp_path):
  assert jax.device_count() == 4, 'conftest must simulate 4 CPU devices'
  replicated = NamedSharding(Mesh(np.asarray(jax.devices()), ('data',)), P())
  state = jax.device_put(_state(7.0), replicated)
  Checkpointer(str(tmp_path / 'run' / 'checkpoints')).save(2, state, None)
  code = ('import jax; from training import pretrained; '
          f'v = pretrained.backbone_variables({str(tmp_path / "run")!r}); '
          "print(jax.device_count(), float(v['params']['w'].sum()))")
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['1', str(7.0 * 64 * 32)]
