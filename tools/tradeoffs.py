r"""Speed/accuracy trade-offs of detectors on Shapes, after Huang et al. (CVPR 2017).

  python -m tools.tradeoffs --workdir runs/tradeoffs [--steps 600] [--out docs/tradeoffs.png]

The paper's grid, scaled to this machine: meta-architecture (Faster R-CNN, R-FCN, SSD) x feature
extractor (`--backbones`) x input size (`--sizes`: the 64x64 images, or downscaled) x number of
test-time proposals (`--proposals`, the two-stage models only: one trained model, evaluated with
each), plus `ssd300`: torchvision's SSD300-VGG16 (widths / 4) on the same images stretched to
300x300, one point (`FIXED`: no extractor or size grid). Each (meta-architecture, extractor,
size) trains as a trial of `tools/sweep.py` in `W/<meta>/trial_<i>` (resume-safe: a rerun skips
finished trials and evaluations), for `--steps` steps. Then every variant is evaluated on the
validation split (COCO AP) and timed (`tools/bench.py`: jitted inference incl. decoding and
NMS, batch `--batch`, synthetic images).
Writes `W/results.csv`, prints a Markdown table, and draws the paper's Figure 2: test time per
image vs AP, a marker per meta-architecture and a colour per extractor, with the Pareto front.
"""
import argparse
import csv
import json
import logging
import os

import matplotlib

matplotlib.use('Agg')
import jax
import matplotlib.pyplot as plt

from configs import loader
from sweeps import hyper
from tools import sweep
from tools.bench import bench_config
from training import compile_cache
from training.evaluate import evaluate_workdir, load_config

CONFIGS = {'faster_rcnn': 'configs/det/faster_rcnn_shapes.py', 'rfcn': 'configs/det/rfcn_shapes.py',
           'ssd': 'configs/det/ssd_shapes.py',
           'ssd300': 'configs/det/ssd300_vgg16_torchvision.py:shapes'}
LABELS = {'faster_rcnn': 'Faster R-CNN', 'rfcn': 'R-FCN', 'ssd': 'SSD',
          'ssd300': 'SSD300 (torchvision\'s)'}
MARKERS = {'faster_rcnn': 'o', 'rfcn': 's', 'ssd': '^', 'ssd300': 'v'}
# Fixed architectures, one point each (their own extractor and input size, no grid): SSD300's
# VGG16 (widths / 4 on this CPU) sees the 64x64 images stretched to 300x300.
FIXED = {'ssd300': ('vgg16/4', 300)}
NATIVE_SIZE = 64  # Shapes `default`.


def size_overrides(meta: str, size: int) -> dict:
  """Trains and tests at `size` px: images rescaled by size / 64 and, for the anchor-based
  two-stage models, anchors too (SSD's default boxes are fractions of the image already)."""
  scale = size / NATIVE_SIZE
  out = {'data.image_size': size, 'data.augment.scale_min': scale,
         'data.augment.scale_max': scale}
  if meta != 'ssd':
    anchors = loader.load(CONFIGS[meta]).model.rpn.anchor_sizes
    out['model.rpn.anchor_sizes'] = tuple(round(a * scale, 2) for a in anchors)
  return out


def trials_of(meta: str, backbones, sizes) -> list[dict]:
  if meta in FIXED:
    return [{}]
  return hyper.product([hyper.sweep('model.backbone', backbones),
                        [size_overrides(meta, s) for s in sizes]])


def train_grid(args) -> dict[str, list[dict]]:
  grid = {}
  for meta in args.metas:
    namespace = argparse.Namespace(
        config=CONFIGS[meta], workdir=os.path.join(args.workdir, meta), parallel=1,
        set=[f'total_steps={args.steps}', f'batch_size={args.batch_train}',
             f'checkpoint_every_steps={args.steps}', 'eval_every_steps=0', 'num_overlays=0'],
        vectorize=False, pbt_every=0, population_mode=None)
    grid[meta] = sweep.run_sweep(namespace, trials_of(meta, args.backbones, args.sizes))
  return grid


def evaluate(trial_dir: str, proposals: int | None) -> dict:
  """COCO AP of the trial's model, with `proposals` test-time proposals (None: as trained)."""
  if proposals is None:
    with open(os.path.join(trial_dir, 'eval', 'metrics.json')) as f:
      return json.load(f)
  out_dir = os.path.join(trial_dir, f'eval_proposals_{proposals}')
  path = os.path.join(out_dir, 'metrics.json')
  if not os.path.exists(path):
    evaluate_workdir(trial_dir, num_overlays=0, out_dir=out_dir,
                              overrides=[f'model.rpn.post_nms_topk_test={proposals}'])
  with open(path) as f:
    return json.load(f)


def measure(args, grid) -> list[dict]:
  rows = []
  for meta, trials in grid.items():
    for i, trial in enumerate(trials):
      trial_dir = os.path.join(args.workdir, meta, sweep.trial_name(i))
      if sweep.read_status(trial_dir)['status'] != 'done':
        logging.warning('%s did not finish; left out', trial_dir)
        continue
      for proposals in (args.proposals if meta in ('faster_rcnn', 'rfcn') else [None]):
        metrics = evaluate(trial_dir, proposals)
        config = loader.override(load_config(trial_dir), [f'batch_size={args.batch}'] + (
            [f'model.rpn.post_nms_topk_test={proposals}'] if proposals else []))
        speed = bench_config(config, args.timing_steps)
        backbone, size = FIXED.get(meta) or (trial['model.backbone'], trial['data.image_size'])
        rows.append({'meta': meta, 'backbone': backbone, 'size': size, 'proposals': proposals or '',
                     'AP': metrics['AP'], 'AP50': metrics['AP50'],
                     'test_ms_per_image': speed['infer_step_ms'] / args.batch,
                     'train_ms_per_image': speed['train_step_ms'] / args.batch})
        logging.info('%s', rows[-1])
  return rows


def pareto(rows) -> list[dict]:
  """The rows no faster row beats on AP, fastest first."""
  front, best = [], -1.0
  for row in sorted(rows, key=lambda r: (r['test_ms_per_image'], -r['AP'])):
    if row['AP'] > best:
      front.append(row)
      best = row['AP']
  return front


def plot(rows, path: str, steps: int):
  backbones = sorted({r['backbone'] for r in rows})
  colours = dict(zip(backbones, plt.rcParams['axes.prop_cycle'].by_key()['color'], strict=False))
  fig, ax = plt.subplots(figsize=(8, 5.5))
  for r in rows:
    ax.scatter(r['test_ms_per_image'], r['AP'], marker=MARKERS[r['meta']], s=60,
               color=colours[r['backbone']], edgecolor='black', linewidth=0.5)
    tag = f"{r['size']}px" + (f", {r['proposals']}p" if r['proposals'] else '')
    ax.annotate(tag, (r['test_ms_per_image'], r['AP']), fontsize=7, xytext=(4, 3),
                textcoords='offset points')
  front = pareto(rows)
  ax.plot([r['test_ms_per_image'] for r in front], [r['AP'] for r in front], '--', color='gray',
          label='Pareto front')
  for meta, marker in MARKERS.items():
    ax.scatter([], [], marker=marker, color='white', edgecolor='black', label=LABELS[meta])
  for b in backbones:
    ax.scatter([], [], marker='o', color=colours[b], label=b)
  ax.set_xscale('log')
  ax.set_xlabel(f'test time per image (ms, {jax.devices()[0].platform}, log scale)')
  ax.set_ylabel('COCO AP@[.5:.95], Shapes validation')
  ax.set_title(f'Speed/accuracy on 64x64 Shapes ({steps} training steps each)')
  ax.legend(fontsize=8, loc='lower right')
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def table(rows) -> str:
  front = {id(r) for r in pareto(rows)}
  lines = ['| meta-architecture | extractor | input | proposals | AP | AP50 | test ms/img | '
           'train ms/img | Pareto |', '|---|---|---|---|---|---|---|---|---|']
  for r in sorted(rows, key=lambda r: r['test_ms_per_image']):
    lines.append(f"| {LABELS[r['meta']]} | {r['backbone']} | {r['size']} | {r['proposals']} | "
                 f"{r['AP']:.3f} | {r['AP50']:.3f} | {r['test_ms_per_image']:.2f} | "
                 f"{r['train_ms_per_image']:.2f} | {'yes' if id(r) in front else ''} |")
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--metas', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
  parser.add_argument('--backbones', nargs='+', default=['vgg_small', 'resnet18'])
  parser.add_argument('--sizes', nargs='+', type=int, default=[64, 48])
  parser.add_argument('--proposals', nargs='+', type=int, default=[50, 10])
  parser.add_argument('--steps', type=int, default=600, help='training steps per model')
  parser.add_argument('--batch_train', type=int, default=16)
  parser.add_argument('--batch', type=int, default=8, help='batch of the timed inference')
  parser.add_argument('--timing_steps', type=int, default=5)
  parser.add_argument('--out', default='docs/tradeoffs.png')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
  compile_cache.enable()
  rows = measure(args, train_grid(args))
  with open(os.path.join(args.workdir, 'results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  print(table(rows))
  plot(rows, args.out, args.steps)
  print(f'plot: {args.out}; table: {args.workdir}/results.csv')


if __name__ == '__main__':
  main()
