r"""Training and inference speed and memory of configs: compile time, step time, images/s, peak RSS.

  python -m tools.bench --config configs/seg/fcn8s_shapes.py \
      --config configs/seg/fcn8s_shapes.py:upsample=nearest --set batch_size=16 --steps 10
  python -m tools.bench --config configs/det/faster_rcnn_r50_fpn_coco.py --image-size 800x1344 \
      --batch 2 --steps 2 --compare-torch

Runs on synthetic batches of the config's shapes, or of `--image-size HxW` images (boxes, masks
and joints placed relative to the size; no dataset needed), so it measures the model and the
step, not the input pipeline. Each config runs in its own process, so its peak RSS (the
high-water mark, compilation included) is its own. Prints one Markdown table row per config.

  python -m tools.bench --compare-torch  # FCN-8s, ResNet-18, SSD, Faster R-CNN vs PyTorch

`--compare-torch` also times the PyTorch side, in a second process under `--torch-python` (a
Python with requirements-bench.txt: torch, torchvision, numpy; default: tools/torch_side.py
where it exists), on the same batch (the npz our side writes), optimizer and thread count (as many
as XLA's CPU pool, os.cpu_count()), and prints a row per side and ours / PyTorch. For the
torchvision architectures (Faster / Mask / Keypoint R-CNN ResNet-50 FPN, FCN-ResNet, SSD300;
tools/bench_torchvision.py) the PyTorch side is torchvision's own model; the R-CNNs are timed as
torchvision runs them: train mode computes its own losses from our boxes, labels, masks and joints
as targets, eval mode decodes and runs NMS, compared with our eval step (decoding included). For
the others it is a twin of our model (tools/bench_torch.py: same layers, same parameter count,
asserted) and inference is the model's forward pass on both sides.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

import tasks
from configs import loader
from data import augment, captions
from tools import torch_side
from training import compile_cache, errors
from training.host_memory import release_freed_memory
from training.optim import make_optimizer
from training.parallel import DataParallel
from training.state import example_batch, init_state
from training.step import compiled_train_step, config_xla_options, jitted_eval_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_batch(task, batch_size: int, seed: int = 0, hw=None) -> dict:
  """A random batch of the task's shapes, or of images `hw` = (height, width): every loss
  (pixels, boxes, masks, joints) gets gradients; boxes are placed relative to the image size."""
  batch = example_batch(task.info, batch_size)
  h, w = hw or batch['image'].shape[1:3]
  for key in ('image', 'mask'):
    batch[key] = np.zeros((batch_size, h, w, *batch[key].shape[3:]), batch[key].dtype)
  batch['instance_ids'] = np.zeros((batch_size, h, w), np.uint8)
  batch['image_hw'][:] = (h, w)
  rng = np.random.default_rng(seed)
  batch['image'] = rng.random(batch['image'].shape, np.float32)
  batch['mask'] = rng.integers(0, task.num_classes, batch['mask'].shape).astype(np.uint8)
  hw_scale, num = np.asarray([h, w], np.float32), min(3, batch['boxes'].shape[1])
  yx = rng.uniform(0, 0.6, (batch_size, num, 2)) * hw_scale
  box_hw = rng.uniform(0.15, 0.4, (batch_size, num, 2)) * hw_scale
  batch['boxes'][:, :num] = np.concatenate([yx, yx + box_hw], -1)
  batch['labels'][:, :num] = rng.integers(1, task.num_classes, (batch_size, num))
  batch['valid'][:, :num] = True
  rows = np.arange(h)[None, :, None]
  cols = np.arange(w)[None, None, :]
  for k in range(num):  # Each box's pixels are its instance's (later boxes in front).
    b = batch['boxes'][:, k, :, None, None]
    inside = (rows >= b[:, 0]) & (rows < b[:, 2]) & (cols >= b[:, 1]) & (cols < b[:, 3])
    batch['instance_ids'][inside] = k + 1
  # Our Mask R-CNN trains on the per-box crops; the id map stays for the torch side's masks.
  crop = batch['instance_crops'].shape[-1]
  batch['instance_crops'] = np.stack([augment.instance_crops(
      batch['instance_ids'][i], batch['boxes'][i], crop) for i in range(batch_size)])
  # Labelled joints inside each image's first box.
  joints = batch['keypoints'].shape[2]
  box = batch['boxes'][:, :1, None]
  batch['keypoints'][:, :1, :, :2] = rng.uniform(box[..., :2], box[..., 2:],
                                                 (batch_size, 1, joints, 2))
  batch['keypoints'][:, :1, :, 2] = 2
  if 'proposals' in batch:  # Random boxes; with static shapes their number sets the cost.
    p = batch['proposals'].shape[1]
    yx = rng.uniform(0, 0.7, (batch_size, p, 2)) * hw_scale
    batch['proposals'] = np.concatenate(
        [yx, yx + rng.uniform(0.1, 0.3, (batch_size, p, 2)) * hw_scale], -1).astype(np.float32)
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
  release_freed_memory()  # As train.py does before its first step (training/loop.py).
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


def prepare(config, hw=None) -> dict:
  """The config's model, state, synthetic batch and jitted steps, ready to time or profile.

  -> {task, batch, state, train: (jitted, args, rebind), infer: (jitted, args)}. The train step
  donates its input state: `rebind(out)` gives the next call's arguments from the last output.
  """
  task = tasks.get_task(config)
  parallel = DataParallel(config.parallel)
  model = task.build_model(bn_axis_name=parallel.axis_name)
  tx = make_optimizer(config.optimizer, config.total_steps)
  batch = synthetic_batch(task, config.batch_size, hw=hw)
  state = init_state(task, model, tx, jax.random.PRNGKey(0), batch)
  train_step = compiled_train_step(task, parallel, config)
  args = (parallel.put_state(state), parallel.put_batch(batch))
  return {'task': task, 'batch': batch, 'parallel': parallel,
          'train': (train_step, args, lambda out: (out[0], args[1])),
          'infer': (jitted_eval_step(task), batch)}


def bench_config(config, steps: int, *, with_state: bool = False, hw=None) -> dict:
  run = prepare(config, hw)
  jitted, args, rebind = run['train']
  train_compile, train_s, (state, _) = _time_calls(jitted, args, steps, rebind=rebind)
  variables = run['parallel'].get_state(state).variables
  eval_step, batch = run['infer']
  infer_compile, infer_s, predictions = _time_calls(eval_step, (variables, batch), steps)
  n = config.batch_size
  result = {
      'train_compile_s': train_compile, 'train_step_ms': 1e3 * train_s,
      'train_images_per_s': n / train_s, 'infer_compile_s': infer_compile,
      'infer_step_ms': 1e3 * infer_s, 'infer_images_per_s': n / infer_s,
  }
  valid = predictions.get('valid') if isinstance(predictions, dict) else None
  if valid is not None and valid.ndim == 2:  # Detections [B, D]: how many of the D are kept.
    result['detections_per_image'] = float(np.mean(np.sum(valid, axis=1)))
    result['detection_slots'] = valid.shape[1]
  if with_state:
    result.update(task=run['task'], batch=batch, variables=variables)
  return result


def torchvision_model(config) -> str | None:
  """torchvision's name for the config's architecture, where the PyTorch side is torchvision's
  own model (tools/bench_torchvision.py); None: a twin (tools/bench_torch.py)."""
  m = config.model
  if m.name in ('faster_rcnn', 'mask_rcnn') and m.get('backbone') == 'resnet50' and m.get(
      'fpn_strides'):
    if m.name == 'faster_rcnn':
      return 'fasterrcnn_resnet50_fpn'
    return 'keypointrcnn_resnet50_fpn' if m.keypoint.num_keypoints else 'maskrcnn_resnet50_fpn'
  return {'fcn_resnet': f'fcn_{m.get("backbone")}', 'ssd_vgg16': 'ssd300_vgg16'}.get(m.name)


def postprocesses(name: str | None) -> bool:
  """Whether that PyTorch model's inference decodes too (torchvision's detectors in eval mode)."""
  return bool(name) and name.endswith('rcnn_resnet50_fpn')


def worker(config, args) -> dict:
  """One side "ours" in this (fresh) process: times, and the files the torch side reads."""
  ours = bench_config(config, args.steps, with_state=True, hw=args.image_size)
  task, batch, variables = ours.pop('task'), ours.pop('batch'), ours.pop('variables')
  params = variables['params']
  ours['params'] = sum(x.size for x in jax.tree.leaves(params))
  if args.compare_torch and not postprocesses(torchvision_model(config)):
    # The model alone (no decoding, NMS): what the PyTorch side times.
    model_args, kwargs = task.model_inputs(batch)
    forward = jax.jit(lambda v, a, k: task.model.apply(v, *a, train=False, **k),
                      compiler_options=config_xla_options(config, 'eval_xla_options'))
    _, forward_s, _ = _time_calls(forward, (variables, model_args, kwargs), args.steps)
    ours['forward_images_per_s'] = config.batch_size / forward_s
  if args.compare_torch:
    np.savez(os.path.join(args.worker, 'batch.npz'),
             **{k: v for k, v in batch.items() if k in TORCH_KEYS})
    spec = {'config': config.to_dict(), 'steps': args.steps, 'threads': os.cpu_count(),
            'torchvision': torchvision_model(config),
            'param_shapes': jax.tree.map(lambda x: list(x.shape), params)}
    with open(os.path.join(args.worker, 'spec.json'), 'w') as f:
      json.dump(spec, f, default=list)
  return ours


# What the PyTorch side reads of the batch (tools/bench_torch.py).
TORCH_KEYS = ('image', 'mask', 'boxes', 'labels', 'valid', 'instance_ids', 'keypoints')


def _peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kilobytes.


def _run(command, what: str) -> dict:
  """Runs a side in its own process (its peak RSS is its own) -> the JSON it prints last."""
  done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
  if done.returncode:
    sys.stderr.write(done.stderr[-4000:])
    raise RuntimeError(f'the {what} side failed (exit {done.returncode}): {" ".join(command)}; '
                       'its error output is above')
  return json.loads(done.stdout.strip().splitlines()[-1])


def bench_spec(spec: str, args) -> tuple[dict, dict | None]:
  """-> (ours, torch's or None) for config `spec`, each side timed in a fresh process."""
  with tempfile.TemporaryDirectory() as tmp:
    command = [sys.executable, '-m', 'tools.bench', '--config', spec, '--worker', tmp,
               '--steps', str(args.steps)]
    for assignment in args.set:
      command += ['--set', assignment]
    if args.image_size:
      command += ['--image-size', 'x'.join(map(str, args.image_size))]
    command += ['--compile_cache'] * args.compile_cache + ['--compare-torch'] * args.compare_torch
    ours = _run(command, 'our')
    theirs = _run([args.torch_python, '-m', 'tools.bench_torch', tmp], 'PyTorch') if (
        args.compare_torch) else None
  return ours, theirs


HEADER = ('| config | batch | image | train img/s | train step ms | train compile s | '
          'infer img/s | infer step ms | infer compile s | peak RSS GB |\n'
          '|---|---|---|---|---|---|---|---|---|---|')

COMPARE_HEADER = ('| config | batch | image | side | params | train img/s | train s/step | '
                  'infer img/s | infer s/step | compile train / infer s | peak RSS GB |\n'
                  '|---|---|---|---|---|---|---|---|---|---|---|')


def compare_rows(name: str, config, ours: dict, theirs: dict) -> str:
  """Three rows: ours, PyTorch's, and ours / PyTorch (throughput, and peak memory)."""
  n = config.batch_size
  if theirs['model'].startswith('twin') and ours['params'] != theirs['params']:
    raise AssertionError(f'{name}: {ours["params"]} parameters here, {theirs["params"]} in the '
                         'PyTorch twin; the architectures differ.')
  # torchvision's detectors decode and run NMS in eval mode: compare with our eval step then.
  infer = ours['infer_images_per_s'] if postprocesses(theirs['model']) else ours[
      'forward_images_per_s']
  sides = (('ours', ours['params'], ours['train_images_per_s'], infer,
            f'{ours["train_compile_s"]:.1f} / {ours["infer_compile_s"]:.1f}', ours['peak_rss_gb']),
           (theirs['model'], theirs['params'], n / theirs['train_s'], n / theirs['infer_s'], '-',
            theirs['peak_rss_gb']))
  rows = [f'| {name} | {n} | {ours["image"]} | {side} | {params / 1e6:.2f}M | {train:.3f} | '
          f'{n / train:.2f} | {inf:.3f} | {n / inf:.2f} | {compile_s} | {rss:.2f} |'
          for side, params, train, inf, compile_s, rss in sides]
  (_, _, train0, infer0, _, rss0), (_, _, train1, infer1, _, rss1) = sides
  rows.append(f'| {name} | {n} | {ours["image"]} | ours / torch | | **{train0 / train1:.2f}** | '
              f'| **{infer0 / infer1:.2f}** | | | {rss0 / rss1:.2f}x |')
  return '\n'.join(rows)


def detections_note(name: str, ours: dict, theirs: dict) -> str | None:
  """A line on how many detections each side's inference kept per image, where both report it:
  ours always runs its heads (Mask / Keypoint R-CNN) on all D slots, torchvision's on the kept."""
  if 'detections_per_image' not in ours or 'detections_per_image' not in theirs:
    return None
  return (f'# {name}: inference kept {ours["detections_per_image"]:.1f} detections per image '
          f'(of {ours["detection_slots"]} slots) here, {theirs["detections_per_image"]:.1f} in '
          f'{theirs["model"]}')


def image_size(text: str) -> tuple[int, int]:
  """argparse type of --image-size: 'HxW' (e.g. 800x1344) or one number for a square."""
  try:
    h, _, w = text.lower().partition('x')
    size = (int(h), int(w or h))
  except ValueError:
    size = (0, 0)
  if min(size) <= 0:
    raise argparse.ArgumentTypeError(f'{text!r}: give the image size as HxW, e.g. 800x1344')
  return size


def load_config(spec: str, assignments):
  with errors.user_input():  # A missing file or a misspelt field: one line, exit code 2.
    config = loader.override(loader.load(spec), assignments)
    tasks.get_task(config)  # Unknown names fail here, listing the valid ones.
  return config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', action='append', help='path.py[:args]; repeat (default with '
                      '--compare-torch: ' + ', '.join(COMPARE_CONFIGS) + ')')
  parser.add_argument('--set', action='append', default=[], help='override key=value; repeat')
  parser.add_argument('--batch', type=int, help='batch size (as --set batch_size=N)')
  parser.add_argument('--image-size', type=image_size,
                      help="HxW of the synthetic images (default: the config's data.image_size)")
  parser.add_argument('--steps', type=int, default=10, help='timed steps after the first')
  parser.add_argument('--compile_cache', action='store_true',
                      help='use the persistent compilation cache (compile times then measure '
                      'cache loads, not compiles)')
  parser.add_argument('--compare-torch', action='store_true',
                      help='also time the same architecture in PyTorch (requirements-bench.txt)')
  parser.add_argument('--torch-python', default=torch_side.default_python(),
                      help='a Python with torch and torchvision, for the PyTorch side (default: '
                      '%(default)s)')
  parser.add_argument('--json', help='also append each config\'s results to this file, one JSON '
                      'object a line (tools/bench_plot.py reads it)')
  parser.add_argument('--worker', help=argparse.SUPPRESS)  # Internal: time one side here.
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if not args.config and not args.compare_torch:
    parser.error('give --config (or --compare-torch for the default comparison)')
  if args.compare_torch and not os.path.exists(args.torch_python):
    raise errors.UserError(f'--torch-python {args.torch_python} does not exist: give a Python '
                           'with torch and torchvision (requirements-bench.txt)')
  if args.batch:
    args.set.append(f'batch_size={args.batch}')
  if args.compile_cache:
    compile_cache.enable()
  # Every config loads before the first table line: a typo fails at once, not after a benchmark.
  configs = [(spec, load_config(spec, args.set)) for spec in args.config or COMPARE_CONFIGS]
  if args.worker:
    result = worker(configs[0][1], args)
    image = args.image_size or (configs[0][1].data.image_size,) * 2
    print(json.dumps({**result, 'image': 'x'.join(map(str, image)),
                      'peak_rss_gb': _peak_rss_gb()}))
    return
  print(f'# {jax.devices()[0].platform}, jax {jax.__version__}, {os.cpu_count()} threads each'
        f'{", torch under " + args.torch_python if args.compare_torch else ""}; each side in its '
        'own process', flush=True)
  print(COMPARE_HEADER if args.compare_torch else HEADER, flush=True)
  notes = []
  for spec, config in configs:
    name = f'{spec} {" ".join(args.set)}'.strip()
    r, theirs = bench_spec(spec, args)
    if args.json:
      with open(args.json, 'a') as f:
        f.write(json.dumps({'config': spec, 'set': args.set, 'batch': config.batch_size,
                            'ours': r, 'torch': theirs}) + '\n')
    if theirs:
      print(compare_rows(name, config, r, theirs), flush=True)
      notes.append(detections_note(name, r, theirs))
      continue
    print(f'| {name} | {config.batch_size} | {r["image"]} | {r["train_images_per_s"]:.2f} | '
          f'{r["train_step_ms"]:.1f} | {r["train_compile_s"]:.1f} | '
          f'{r["infer_images_per_s"]:.2f} | {r["infer_step_ms"]:.1f} | '
          f'{r["infer_compile_s"]:.1f} | {r["peak_rss_gb"]:.2f} |', flush=True)
  for note in filter(None, notes):
    print(note)


if __name__ == '__main__':
  sys.exit(errors.guard(main)())
