"""The trainer end to end on tiny Shapes: workdir contents, parallel parity, resume, NaN, errors."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from configs import loader
from configs.common import CPU_XLA_OPTIONS
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained
from training import loop
from training.checkpoint import INTEGRITY_FILE, Checkpointer, CorruptCheckpointError
from training.errors import UserError
from training.evaluate import evaluate_workdir
from training.parallel import DataParallel
from training.recompiles import RecompileError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = 'configs/seg/fcn8s_shapes.py:runlocal'


# The reference run's length, shared by the tests that need no other: the schedule's step count is
# part of the compiled train step, so equal lengths reuse one compilation (persistent cache).
STEPS = 6


def _config(tfds_dir):
  c = loader.load(os.path.join(REPO, SPEC))
  c.data.data_dir, c.data.eval_split = tfds_dir, EVAL_SPLIT
  c.model.dropout_rate = 0.0  # Parity tests compare runs whose dropout masks differ per device.
  return c


@pytest.fixture
def config(tfds_dir):
  return _config(tfds_dir)


@pytest.fixture(scope='module')
def reference(tfds_dir, tmp_path_factory):
  """One uninterrupted STEPS-step run, checkpointing every 2 steps: (config, workdir, state,
  eval metrics). Its workdir is checked once and the resumed run is compared against it."""
  c = _config(tfds_dir)
  c.total_steps = STEPS
  c.checkpoint_every_steps = 2
  c.eval_batch_size = 8
  workdir = str(tmp_path_factory.mktemp('reference'))
  state, metrics = train.train_and_evaluate(c, workdir)
  return c, workdir, state, metrics


def _params(state):
  return jax.tree.leaves(jax.device_get(state.params))


def test_train_writes_checkpoint_metrics_events_and_overlays(reference):
  config, workdir, state, metrics = reference
  assert int(state.step) == config.total_steps
  assert 0.0 <= metrics['mean_iou'] <= 1.0 and 0.0 <= metrics['pixel_accuracy'] <= 1.0
  assert Checkpointer(os.path.join(workdir, 'checkpoints')).latest_step() == config.total_steps
  lines = [json.loads(x) for x in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert any('train/loss' in x and np.isfinite(x['train/loss']) for x in lines)
  assert_first_step_trained(workdir)
  # Step 1 compiles: it has a compile time and no speed; the steps after it have speeds.
  logged = {x['step']: x for x in lines if 'train/loss' in x}
  assert 'train/steps_per_s' not in logged[1] and 'train/steps_per_s' in logged[2]
  assert any('eval/mean_iou' in x for x in lines)
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  saved = json.load(open(os.path.join(workdir, 'eval', 'metrics.json')))
  assert saved['step'] == config.total_steps and set(saved['per_class_iou']) >= {'background'}
  assert os.path.exists(os.path.join(workdir, 'eval', 'overlay_000.png'))
  assert json.load(open(os.path.join(workdir, 'config.json')))['model']['name'] == 'fcn8s'


def test_jit_sharded_and_pmap_match_one_device(config, tmp_path):
  assert jax.device_count() == 4, 'conftest must simulate 4 CPU devices'
  config.total_steps = 3
  config.eval_batch_size = 8
  config.model.dropout_rate = 0.5  # Every mode must drop the same units (models.layers.Dropout).
  # SGD: its update is linear in the gradient, so summation-order noise stays at float
  # tolerance. (Adam divides by sqrt(v) and turns the ~0 gradients of biases feeding batch norm
  # into full-size steps of random sign, which no tolerance can compare.)
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.05
  one, _ = train.train_and_evaluate(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  for mode in ('jit', 'pmap'):
    config.parallel = mode
    four, _ = train.train_and_evaluate(config, str(tmp_path / mode))
    for a, b in zip(_params(one), _params(four), strict=True):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=mode)
    stats = zip(jax.tree.leaves(one.batch_stats), jax.tree.leaves(four.batch_stats), strict=True)
    for a, b in stats:
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=f'{mode} batch_stats')


def test_killed_run_resumes_to_identical_parameters(reference, tmp_path, tfds_dir):
  config, _, reference_state, _ = reference
  steps = config.total_steps
  workdir = str(tmp_path / 'killed')
  cmd = [sys.executable, os.path.join(REPO, 'train.py'), f'--config={os.path.join(REPO, SPEC)}',
         f'--workdir={workdir}', f'--config.data.data_dir={tfds_dir}',
         f'--config.data.eval_split={EVAL_SPLIT}',
         '--config.model.dropout_rate=0',
         f'--config.total_steps={steps}', '--config.checkpoint_every_steps=2',
         '--config.eval_batch_size=8', '--noprogress']
  log = open(tmp_path / 'killed.log', 'w+')
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  checkpoints = os.path.join(workdir, 'checkpoints')
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(os.path.join(checkpoints, '2')):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = Checkpointer(checkpoints).latest_step()
  log.seek(0)
  assert killed_at is not None and killed_at < steps, (
      f'killed at checkpoint {killed_at}; train.py output:\n{log.read()[-3000:]}')

  resumed, _ = train.train_and_evaluate(config, workdir)
  for a, b in zip(_params(reference_state), _params(resumed), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _change_batches(monkeypatch, change):
  """Makes `data.make_train_iterator` pass each batch through `change(number, batch)`."""
  import data
  make_iterator = data.make_train_iterator

  def changing_iterator(*args, **kwargs):
    it = make_iterator(*args, **kwargs)

    class Changing:
      calls = 0

      def __next__(self):
        batch = next(it)
        Changing.calls += 1
        return change(Changing.calls, batch)

      def get_state(self):
        return it.get_state()

      def set_state(self, s):
        it.set_state(s)

    return Changing()

  monkeypatch.setattr(data, 'make_train_iterator', changing_iterator)


@pytest.mark.parametrize('every,expected', [
    (2, r'The last checkpoint is step 2 in .* adding --allow_config_change'),
    (4, r'No checkpoint was saved yet \(fresh run\)')])
def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(config, tmp_path, monkeypatch,
                                                               every, expected):
  config.total_steps = STEPS  # The reference run's train step: no compilation of its own.
  config.checkpoint_every_steps = every
  # Pipeline images are uint8, which holds no NaN: every batch's image as float [0, 1] (model
  # inputs take either), the third one NaN.
  _change_batches(monkeypatch, lambda n, b: {**b, 'image': np.full(
      b['image'].shape, np.nan if n == 3 else 0.5, np.float32)})
  with pytest.raises(loop.NonFiniteLossError, match=expected):
    train.train_and_evaluate(config, str(tmp_path))
  assert Checkpointer(os.path.join(str(tmp_path), 'checkpoints')).latest_step() == (
      2 if every == 2 else None)


def test_garbled_checkpoint_is_refused_by_eval_and_resume_uses_the_previous(
    reference, tmp_path, caplog):
  config, reference_workdir, reference_state, _ = reference
  workdir = str(tmp_path / 'garbled')
  shutil.copytree(reference_workdir, workdir)
  step_dir = os.path.join(workdir, 'checkpoints', str(STEPS))
  data_file = max((os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs
                   if f != INTEGRITY_FILE), key=os.path.getsize)
  with open(data_file, 'r+b') as f:
    f.write(np.random.default_rng(0).bytes(4096))

  with pytest.raises(CorruptCheckpointError, match=rf'checkpoints/{STEPS} is corrupt: .*; not '
                     r'evaluating it. Other steps \(--step\): 2, 4'):
    evaluate_workdir(workdir)
  out_dir = str(tmp_path / 'elsewhere')
  metrics = evaluate_workdir(workdir, 4, 0, out_dir=out_dir)  # --out_dir: not the workdir.
  assert json.load(open(os.path.join(out_dir, 'metrics.json')))['step'] == 4
  assert metrics['mean_iou'] >= 0

  with caplog.at_level(logging.WARNING, logger='detseg'):
    resumed, _ = train.train_and_evaluate(config, workdir)
  assert any(f'checkpoints/{STEPS} is corrupt' in r.message for r in caplog.records)
  assert any('Resuming from step 4' in r.message for r in caplog.records)
  assert os.path.isdir(step_dir + '.corrupt')  # Kept, not deleted.
  for a, b in zip(_params(reference_state), _params(resumed), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # Steps 5 and 6 were logged by the reference run and again after the resume: once each now.
  records = [json.loads(x) for x in open(os.path.join(workdir, 'metrics.jsonl'))]
  steps = [x['step'] for x in records if 'train/loss' in x]
  assert steps == sorted(set(steps)) == list(range(1, STEPS + 1))


def test_resume_with_a_changed_config_is_refused_before_writing(reference, tmp_path):
  config, reference_workdir, _, _ = reference
  workdir = str(tmp_path / 'changed')
  shutil.copytree(reference_workdir, workdir)
  saved = open(os.path.join(workdir, 'config.json')).read()
  changed = loader.override(config.copy_and_resolve_references(),
                            ['optimizer.learning_rate=0.5', 'total_steps=8'])
  with pytest.raises(UserError, match=r'changed: optimizer.learning_rate: 0.003 -> 0.5\. Use a '
                     'new --workdir'):
    train.train_and_evaluate(changed, workdir)
  assert open(os.path.join(workdir, 'config.json')).read() == saved


def test_a_step_that_recompiles_stops_with_the_batch_shapes(config, tmp_path, monkeypatch):
  config.total_steps = STEPS
  _change_batches(monkeypatch, lambda n, b: {k: v[:4] for k, v in b.items()} if n == 3 else b)
  with pytest.raises(RecompileError, match=r'at step 3: .*image uint8\[4, 64, 64, 3\]'):
    train.train_and_evaluate(config, str(tmp_path))


def test_xla_options_reach_the_compiler(config, tmp_path):
  step = DataParallel('jit').compile_train_step(
      lambda s, b: (s + b.sum(), b.mean()),
      {'xla_cpu_scheduler_type': 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'})
  assert float(step(jnp.zeros(()), jnp.ones((4,)))[0]) == 4.0
  config.xla_options = {'xla_cpu_scheduler_type': 'NOT_A_SCHEDULER'}
  with pytest.raises(UserError, match="config.xla_options .*'NOT_A_SCHEDULER' is not a valid enum"):
    train.train_and_evaluate(config, str(tmp_path))


def test_pmap_train_step_compiles_with_the_options():
  """jax.pmap takes no compiler options: `PmapWithOptions` compiles its executables with them
  (by default convolutions stay off YNNPACK, as under jit)."""
  conv = lambda s, b: (s, jax.lax.conv_general_dilated(b, s, (1, 1), 'SAME',
                                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  images = jnp.ones((1, 2, 8, 8, 32))
  kernel = lambda: jnp.ones((1, 3, 3, 32, 32))  # The step donates it.
  for options, on_ynnpack in ((None, True), (CPU_XLA_OPTIONS, False)):
    step = DataParallel('pmap', jax.devices()[:1]).compile_train_step(conv, options)
    out = step(kernel(), images)[1]
    assert out.shape == images.shape and float(out[0, 0, 3, 3, 0]) == 9 * 32
    (executable,) = step._executables.values()
    assert ('ynn' in executable.as_text()) == on_ynnpack
    assert ('ynn' in step.lower(kernel(), images).compile().as_text()) == on_ynnpack


def test_eval_xla_options_reach_the_compiler(config, tmp_path):
  config.eval_xla_options = {'xla_cpu_scheduler_type': 'NOT_A_SCHEDULER'}
  with pytest.raises(UserError, match="config.eval_xla_options .*'NOT_A_SCHEDULER' is not a valid"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize('field,value,valid', [
    ('task', 'segmentaton', 'segmentation'),
    ('model.name', 'fcn9s', 'fcn8s'),
    ('data.name', 'shape', 'shapes'),
    ('parallel', 'pmapp', 'pmap'),
    ('optimizer.name', 'adamm', 'adamw'),
    ('model.dtype', 'bf16', 'bfloat16'),
])
def test_unknown_names_fail_listing_valid_ones(config, tmp_path, field, value, valid):
  loader.override(config, [f'{field}={value}'])
  with pytest.raises(ValueError, match=valid):
    train.train_and_evaluate(config, str(tmp_path))


def test_bad_overrides_fail_listing_fields(config):
  with pytest.raises(KeyError, match='learning_rate'):
    loader.override(config, ['optimizer.learning_rat=0.1'])
  with pytest.raises(ValueError, match='upsample'):
    loader.load(os.path.join(REPO, 'configs/seg/fcn8s_shapes.py:upsampel=nearest'))
  result = subprocess.run(
      [sys.executable, 'train.py', f'--config={SPEC}', '--workdir=/tmp/unused',
       '--config.optimizer.learning_rat=0.1'], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2 and result.stderr.startswith(
      "error: unknown config field 'optimizer.learning_rat': did you mean 'learning_rate'?")
  assert result.stderr.count('\n') == 1


def test_eval_of_a_missing_step_lists_the_steps(reference):
  result = subprocess.run([sys.executable, 'eval.py', f'--workdir={reference[1]}', '--step=7'],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'error: no checkpoint step 7 in {reference[1]}/checkpoints; steps there: 2, 4, 6')
