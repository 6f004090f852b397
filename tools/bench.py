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
  """A random batch of the task's shapes: every loss (pixels, boxes, joints) gets gradients."""
  batch = example_batch(task.info, batch_size)
  rng = np.random.default_rng(seed)
  batch['image'] = rng.random(batch['image'].shape, np.float32)
  batch['mask'] = rng.integers(0, task.num_classes, batch['mask'].shape).astype(np.int32)
  size, num = task.info['image_size'], min(3, batch['boxes'].shape[1])
  yx = rng.uniform(0, size * 0.6, (batch_size, num, 2))
  hw = rng.uniform(size * 0.15, size * 0.4, (batch_size, num, 2))
  batch['boxes'][:, :num] = np.concatenate([yx, yx + hw], -1)
  batch['labels'][:, :num] = rng.integers(1, task.num_classes, (batch_size, num))
  batch['valid'][:, :num] = True
  rows = np.arange(size)[None, None, :, None]
  cols = np.arange(size)[None, None, None, :]
  b = batch['boxes'][:, :num, :, None, None]
  batch['instance_masks'][:, :num] = ((rows >= b[:, :, 0]) & (rows < b[:, :, 2]) &
                                      (cols >= b[:, :, 1]) & (cols < b[:, :, 3]))
  # Labelled joints inside each image's first box.
  joints = batch['keypoints'].shape[2]
  box = batch['boxes'][:, :1, None]
  batch['keypoints'][:, :1, :, :2] = rng.uniform(box[..., :2], box[..., 2:],
                                                 (batch_size, 1, joints, 2))
  batch['keypoints'][:, :1, :, 2] = 2
  if 'proposals' in batch:  # Random boxes; with static shapes their number sets the cost.
    p = batch['proposals'].shape[1]
    yx = rng.uniform(0, size * 0.7, (batch_size, p, 2))
    batch['proposals'] = np.concatenate(
        [yx, yx + rng.uniform(size * 0.1, size * 0.3, (batch_size, p, 2))], -1).astype(np.float32)
    batch['proposal_valid'][:] = True
  batch['example_valid'] = np.ones((batch_size,), bool)
  return batch


def _time_calls(jitted, args, steps: int, *, rebind=None):
  """(compile seconds, median seconds per call). `rebind(out)` -> next args (donated inputs)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - start
  out = jax.block_until_ready(compiled(*args))  # Warm-up.
  times = []
  for _ in range(steps):
    args = rebind(out) if rebind else args
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return compile_s, statistics.median(times), out


def bench_config(config, steps: int) -> dict:
  task = tasks.get_task(config)
  parallel = DataParallel(config.parallel)
  model = task.build_model(bn_axis_name=parallel.axis_name)
  tx = make_optimizer(config.optimizer, config.total_steps)
  batch = synthetic_batch(task, config.batch_size)
  state = init_state(task, model, tx, jax.random.PRNGKey(0), batch)
  train_step = parallel.compile_train_step(make_train_step(task, parallel.axis_name))
  args = (parallel.put_state(state), parallel.put_batch(batch))
  # The train step donates its input state: each call gets the state the previous one returned.
  train_compile, train_s, (state, _) = _time_calls(
      train_step, args, steps, rebind=lambda out: (out[0], args[1]))
  eval_step = jax.jit(make_eval_step(task))
  infer_compile, infer_s, _ = _time_calls(
      eval_step, (parallel.get_state(state).variables, batch), steps)
  n = config.batch_size
  return {
      'train_compile_s': train_compile, 'train_step_ms': 1e3 * train_s,
      'train_images_per_s': n / train_s, 'infer_compile_s': infer_compile,
      'infer_step_ms': 1e3 * infer_s, 'infer_images_per_s': n / infer_s,
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
