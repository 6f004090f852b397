r"""Training and inference speed of configs: compile time, step time, images/s.

  python -m tools.bench --config configs/seg/fcn8s_shapes.py \
      --config configs/seg/fcn8s_shapes.py:upsample=nearest --set batch_size=16 --steps 10

Runs on synthetic batches of the config's shapes (no dataset needed), so it measures the model
and the step, not the input pipeline. Prints one Markdown table row per config.

  python -m tools.bench --compare-torch  # FCN-8s, ResNet-18, SSD, Faster R-CNN vs PyTorch

`--compare-torch` (needs `pip install -r requirements-bench.txt`) also times the same architecture
in PyTorch (`tools/bench_torch.py`) on the same batch, with as many threads as XLA's CPU pool, and
prints ours / PyTorch images/s. Inference there is the model's forward pass in both frameworks
(no task post-processing), the train step is the whole step (loss, gradients, optimizer).
"""
import argparse
import os
import statistics
import sys
import time

import jax
import numpy as np

import tasks
from configs import loader
from data import augment, captions
from training import compile_cache, errors
from training.optim import make_optimizer
from training.parallel import DataParallel
from training.state import example_batch, init_state
from training.step import make_eval_step, make_train_step


def synthetic_batch(task, batch_size: int, seed: int = 0) -> dict:
  """A random batch of the task's shapes: every loss (pixels, boxes, joints) gets gradients."""
  batch = example_batch(task.info, batch_size)
  rng = np.random.default_rng(seed)
  batch['image'] = rng.random(batch['image'].shape, np.float32)
  batch['mask'] = rng.integers(0, task.num_classes, batch['mask'].shape).astype(np.uint8)
  size, num = task.info['image_size'], min(3, batch['boxes'].shape[1])
  yx = rng.uniform(0, size * 0.6, (batch_size, num, 2))
  hw = rng.uniform(size * 0.15, size * 0.4, (batch_size, num, 2))
  batch['boxes'][:, :num] = np.concatenate([yx, yx + hw], -1)
  batch['labels'][:, :num] = rng.integers(1, task.num_classes, (batch_size, num))
  batch['valid'][:, :num] = True
  rows = np.arange(size)[None, None, :, None]
  cols = np.arange(size)[None, None, None, :]
  ids = np.zeros((batch_size, size, size), np.uint8)
  for k in range(num):  # Each box's pixels are its instance's (later boxes in front).
    b = batch['boxes'][:, k, :, None, None]
    inside = (rows[:, 0] >= b[:, 0]) & (rows[:, 0] < b[:, 2]) & (cols[:, 0] >= b[:, 1]) & (
        cols[:, 0] < b[:, 3])
    ids[inside] = k + 1
  crop = batch['instance_crops'].shape[-1]
  batch['instance_crops'] = np.stack([augment.instance_crops(ids[i], batch['boxes'][i], crop)
                                      for i in range(batch_size)])
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
  if 'captions' in batch:  # Random phrases of random lengths (words from id 4, then END).
    vocab, t = len(task.info['vocab']), batch['captions'].shape[-1]
    words = rng.integers(4, vocab, batch['captions'].shape)
    length = rng.integers(1, t, batch['captions'].shape[:-1])[..., None]
    steps = np.arange(t)
    ends = np.where(steps == length, captions.END, captions.PAD)
    batch['captions'] = np.where(steps < length, words, ends).astype(np.int32)
    batch['caption'] = batch['captions'][:, 0]
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


COMPARE_CONFIGS = ('configs/seg/fcn8s_shapes.py',
                   'configs/loc/localizer_shapes.py:backbone=resnet18',
                   'configs/det/ssd_shapes.py', 'configs/det/faster_rcnn_shapes.py')


def bench_config(config, steps: int, *, with_state: bool = False) -> dict:
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
  result = {
      'train_compile_s': train_compile, 'train_step_ms': 1e3 * train_s,
      'train_images_per_s': n / train_s, 'infer_compile_s': infer_compile,
      'infer_step_ms': 1e3 * infer_s, 'infer_images_per_s': n / infer_s,
  }
  if with_state:
    result.update(task=task, batch=batch, variables=parallel.get_state(state).variables)
  return result


def compare_torch(config, steps: int) -> dict:
  """Ours and the PyTorch twin on one batch: train images/s, forward images/s, parameters."""
  import bench_torch  # noqa: PLC0415 (torch is a bench-only dependency)
  import torch  # noqa: PLC0415
  # XLA:CPU runs one intra-op thread per core; PyTorch gets the same number.
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  ours = bench_config(config, steps, with_state=True)
  task, batch, variables = ours['task'], ours['batch'], ours['variables']
  args, kwargs = task.model_inputs(batch)
  forward = jax.jit(lambda v, a, k: task.model.apply(v, *a, train=False, **k))
  _, forward_s, _ = _time_calls(forward, (variables, args, kwargs), steps)
  params = variables['params']
  module, inputs, loss_fn = bench_torch.twin(config.model.name, params, batch, config)
  ours_params = sum(x.size for x in jax.tree.leaves(params))
  torch_params = bench_torch.num_params(module)
  if ours_params != torch_params:
    raise AssertionError(f'{config.model.name}: {ours_params} parameters here, {torch_params} in '
                         'the PyTorch twin; the architectures differ.')
  theirs = bench_torch.bench(module, inputs, loss_fn, config, steps)
  n = config.batch_size
  return {**ours, 'params': ours_params, 'forward_images_per_s': n / forward_s,
          'torch_train_images_per_s': n / theirs['train_s'],
          'torch_infer_images_per_s': n / theirs['infer_s']}


HEADER = ('| config | batch | train img/s | train step ms | train compile s | infer img/s | '
          'infer step ms | infer compile s |\n|---|---|---|---|---|---|---|---|')

COMPARE_HEADER = ('| config | batch | params | train img/s | torch train img/s | '
                  'train ours/torch | infer img/s | torch infer img/s | infer ours/torch | '
                  'train compile s |\n'
                  '|---|---|---|---|---|---|---|---|---|---|')


def _load(spec: str, assignments):
  with errors.user_input():  # A missing file or a misspelt field: one line, exit code 2.
    config = loader.override(loader.load(spec), assignments)
    tasks.get_task(config)  # Unknown names fail here, listing the valid ones.
  return config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', action='append', help='path.py[:args]; repeat (default with '
                      '--compare-torch: ' + ', '.join(COMPARE_CONFIGS) + ')')
  parser.add_argument('--set', action='append', default=[], help='override key=value; repeat')
  parser.add_argument('--steps', type=int, default=10, help='timed steps after the first')
  parser.add_argument('--compile_cache', action='store_true',
                      help='use the persistent compilation cache (compile times then measure '
                      'cache loads, not compiles)')
  parser.add_argument('--compare-torch', action='store_true',
                      help='also time the same architecture in PyTorch (requirements-bench.txt)')
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if not args.config and not args.compare_torch:
    parser.error('give --config (or --compare-torch for the default comparison)')
  if args.compile_cache:
    compile_cache.enable()
  # Every config loads before the first table line: a typo fails at once, not after a benchmark.
  configs = [(spec, _load(spec, args.set)) for spec in args.config or COMPARE_CONFIGS]
  print(f'# {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}')
  if args.compare_torch:
    import torch  # noqa: PLC0415
    print(f'# torch {torch.__version__}, {os.cpu_count()} threads each')
    print(COMPARE_HEADER)
    for spec, config in configs:
      r = compare_torch(config, args.steps)
      print(f'| {spec} {" ".join(args.set)} | {config.batch_size} | {r["params"]} | '
            f'{r["train_images_per_s"]:.1f} | {r["torch_train_images_per_s"]:.1f} | '
            f'{r["train_images_per_s"] / r["torch_train_images_per_s"]:.2f} | '
            f'{r["forward_images_per_s"]:.1f} | {r["torch_infer_images_per_s"]:.1f} | '
            f'{r["forward_images_per_s"] / r["torch_infer_images_per_s"]:.2f} | '
            f'{r["train_compile_s"]:.1f} |', flush=True)
    return
  print(HEADER)
  for spec, config in configs:
    r = bench_config(config, args.steps)
    print(f'| {spec} {" ".join(args.set)} | {config.batch_size} | {r["train_images_per_s"]:.1f} | '
          f'{r["train_step_ms"]:.1f} | {r["train_compile_s"]:.1f} | '
          f'{r["infer_images_per_s"]:.1f} | {r["infer_step_ms"]:.1f} | '
          f'{r["infer_compile_s"]:.1f} |', flush=True)


if __name__ == '__main__':
  sys.exit(errors.guard(main)())
