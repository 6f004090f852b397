"""tools/bench.py at real sizes: the synthetic batch follows --image-size (no model is built)."""
import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from configs import loader
from tools import bench, bench_profile


def test_synthetic_batch_at_a_non_square_size():
  task = tasks.get_task(loader.load('configs/inst/mask_rcnn_shapes.py'))
  batch = bench.synthetic_batch(task, 2, hw=(48, 80))
  assert batch['image'].shape == (2, 48, 80, 3) and batch['instance_ids'].shape == (2, 48, 80)
  assert (batch['image_hw'] == (48, 80)).all()
  boxes = batch['boxes'][batch['valid']]
  assert len(boxes) == 6 and (boxes[:, 2] <= 48).all() and (boxes[:, 3] <= 80).all()
  assert boxes[:, 3].max() > 48  # Widths scale with the width, not the height.
  # Instance k's pixels lie inside box k.
  y, x = np.nonzero(batch['instance_ids'][0] == 1)
  y1, x1, y2, x2 = batch['boxes'][0, 0]
  assert len(y) and y.min() >= y1 - 1 and y.max() <= y2 and x.min() >= x1 - 1 and x.max() <= x2


def test_image_size_argument():
  assert bench.image_size('800x1344') == (800, 1344) and bench.image_size('520') == (520, 520)
  with pytest.raises(argparse.ArgumentTypeError, match='as HxW'):
    bench.image_size('800by1344')


def test_detections_note_needs_both_sides_counts():
  ours = {'detections_per_image': 100.0, 'detection_slots': 100}
  theirs = {'detections_per_image': 12.5, 'model': 'keypointrcnn_resnet50_fpn'}
  assert bench.detections_note('kp', ours, theirs) == (
      '# kp: inference kept 100.0 detections per image (of 100 slots) here, 12.5 in '
      'keypointrcnn_resnet50_fpn')
  assert bench.detections_note('kp', ours, {'model': 'twin (fcn8s)'}) is None


def test_live_at_peak_lists_the_values_the_heap_holds(tmp_path):
  # A sort needs its [512, 512] input and output materialised: 1 MiB each, alive together.
  step = jax.jit(lambda x: jnp.sort(jnp.sin(jnp.outer(x, x)), axis=1)[:, :3])
  peak, alive = bench_profile.live_at_peak(
      *bench_profile.dumped_module(step, (jnp.ones(512),), str(tmp_path)), top=5)
  assert peak >= 2 * 2**20
  assert [size for size, *_ in alive[:2]] == [2**20, 2**20]
  assert all('f32[512,512]' in shape for *_, shape, _ in alive[:2])
  assert 'sin' in alive[0][-1] + alive[1][-1]  # The op that made one of them.
  assert '| MiB |' in bench_profile.live_report('step', peak, alive)


def test_compile_phases_counts_equal_fusions_once(tmp_path):
  # Two equal fusions (same shape and ops) compile as one kernel; a third of another shape adds
  # one. The compiler's phases and per-kernel events come from the profiler's trace.
  step = jax.jit(lambda a, b, c: (jnp.tanh(a) * 2 + 1, jnp.tanh(b) * 2 + 1, jnp.tanh(c) * 2 + 1))
  r = bench_profile.compile_phases(step, (jnp.ones(64), jnp.zeros(64), jnp.ones(65)),
                                   str(tmp_path))
  assert sum(r['parts'].values()) == 2
  assert r['wall_s'] > 0 and any(name.startswith('HLO passes') for name in r['phases'])
  assert sum(len(times) for times in r['kernels'].values()) >= 2
  report = bench_profile.compile_report('step', r)
  assert '| model part |' in report and 'compiled kernels (of 2)' in report


def test_profile_modes_exclude_each_other(capsys):
  with pytest.raises(SystemExit):
    bench_profile.main(['--config', 'configs/seg/fcn8s_shapes.py', '--compile-phases',
                        '--live-at-peak', '5'])
  assert 'not allowed with argument' in capsys.readouterr().err


def test_profile_times_async_ops_to_their_end(tmp_path):
  # Among other ops, XLA:CPU runs a convolution of <= 16 channels asynchronously on Eigen's
  # thread pool: its trace event ends when the work is handed out (~0.04 ms). Its time runs to
  # its 'end:' event: 0.6 GFLOP take more than 0.6 ms even at 1 TFLOP/s.
  conv = functools.partial(jax.lax.conv_general_dilated, window_strides=(1, 1), padding='SAME',
                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  step = jax.jit(lambda x, k: jnp.sum(conv(jnp.sin(x), k)) + jnp.sum(conv(conv(x, k), k)))
  r = bench_profile.profile(step, (jnp.ones((4, 128, 128, 16)), jnp.ones((3, 3, 16, 16))), 3,
                            str(tmp_path))
  convolutions = [seconds for _, opcode, *_, seconds, _ in r['top'] if opcode == 'convolution']
  assert len(convolutions) == 3
  assert min(convolutions) > 2 * 4 * 128 * 128 * 9 * 16 * 16 / 1e12
