r"""Training and inference speed of configs: compile time, step time, images/s.

  python tools/bench.py --config configs/seg/fcn8s_shapes.py \
      --config configs/seg/fcn8s_shapes.py:upsample=nearest --set batch_size=16 --steps 10

Runs on synthetic batches of the config's shapes (no dataset needed), so it measures the model
and the step, not the input pipeline. Prints one Markdown table row per config.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import tasks  # noqa: E402
from configs import loader  # noqa: E402
from training import compile_cache  # noqa: E402
from training.optim import make_optimizer  # noqa: E402
from training.parallel import DataParallel  # noqa: E402
from training.state import example_batch, init_state  # noqa: E402
from training.step import make_eval_step, make_train_step  # noqa: E402


def synthetic_batch(task, batch_size: int, seed: int = 0) -> dict:
  batch = example_batch(task.info, batch_size)
  rng = np.random.default_rng(seed)
  batch['image'] = rng.random(batch['image'].shape, np.float32)
  batch['mask'] = rng.integers(0, task.num_classes, batch['mask'].shape).astype(np.int32)
  # One object per image with a box and labelled joints, so box and pose losses have gradients.
  size = batch['image'].shape[1]
  batch['boxes'][:, 0] = (size / 4, size / 4, 3 * size / 4, 3 * size / 4)
  batch['labels'][:, 0], batch['valid'][:, 0] = 1, True
  batch['keypoints'][:, 0, :, :2] = rng.uniform(size / 4, 3 * size / 4,
                                                batch['keypoints'].shape[2:3] + (2,))
  batch['keypoints'][:, 0, :, 2] = 2
  batch['example_valid'] = np.ones((batch_size,), bool)
  # A few random valid boxes per image so that detection losses have something to match.
  size, num = task.info['image_size'], min(3, batch['boxes'].shape[1])
  yx = rng.uniform(0, size * 0.6, (batch_size, num, 2))
  hw = rng.uniform(size * 0.15, size * 0.4, (batch_size, num, 2))
  batch['boxes'][:, :num] = np.concatenate([yx, yx + hw], -1)
  batch['labels'][:, :num] = rng.integers(1, task.num_classes, (batch_size, num))
  batch['valid'][:, :num] = True
  return batch


def _time_calls(fn, steps: int):
  """(first-call seconds incl. compile, median seconds of the following calls)."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def bench_config(config, steps: int) -> dict:
  task = tasks.get_task(config)
  parallel = DataParallel(config.parallel)
  model = task.build_model(bn_axis_name=parallel.axis_name)
  tx = make_optimizer(config.optimizer, config.total_steps)
  batch = synthetic_batch(task, config.batch_size)
  state = init_state(task, model, tx, jax.random.PRNGKey(0), batch)
  train_step = parallel.compile_train_step(make_train_step(task, parallel.axis_name))
  holder = {'state': parallel.put_state(state)}
  device_batch = parallel.put_batch(batch)

  def one_train_step():
    holder['state'], metrics = train_step(holder['state'], device_batch)
    return metrics

  train_first, train_step_s = _time_calls(one_train_step, steps)
  # The train step donates its input state, so evaluate the state it returned last.
  variables = parallel.get_state(holder['state']).variables
  eval_step = jax.jit(make_eval_step(task))
  eval_first, eval_step_s = _time_calls(lambda: eval_step(variables, batch), steps)
  n = config.batch_size
  return {
      'train_compile_s': train_first - train_step_s, 'train_step_ms': 1e3 * train_step_s,
      'train_images_per_s': n / train_step_s, 'infer_compile_s': eval_first - eval_step_s,
      'infer_step_ms': 1e3 * eval_step_s, 'infer_images_per_s': n / eval_step_s,
  }


HEADER = ('| config | batch | train img/s | train step ms | train compile s | infer img/s | '
          'infer step ms | infer compile s |\n|---|---|---|---|---|---|---|---|')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', action='append', required=True, help='path.py[:args]; repeat')
  parser.add_argument('--set', action='append', default=[], help='override key=value; repeat')
  parser.add_argument('--steps', type=int, default=10, help='timed steps after the first')
  parser.add_argument('--compile_cache', action='store_true',
                      help='use the persistent compilation cache (compile times then measure '
                      'cache loads, not compiles)')
  args = parser.parse_args()
  if args.compile_cache:
    compile_cache.enable()
  print(f'# {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}')
  print(HEADER)
  for spec in args.config:
    config = loader.override(loader.load(spec), args.set)
    r = bench_config(config, args.steps)
    print(f'| {spec} {" ".join(args.set)} | {config.batch_size} | {r["train_images_per_s"]:.1f} | '
          f'{r["train_step_ms"]:.1f} | {r["train_compile_s"]:.1f} | '
          f'{r["infer_images_per_s"]:.1f} | {r["infer_step_ms"]:.1f} | '
          f'{r["infer_compile_s"]:.1f} |', flush=True)


if __name__ == '__main__':
  main()
