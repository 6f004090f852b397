r"""The lecture's R-CNN -> SPP-net -> Fast R-CNN -> Faster R-CNN speed chart, measured here.

  python -m tools.reproduce_rcnn_speed --out docs/rcnn_speed.png

Same data (64x64 Shapes), same backbone, same batch size for every model. Per image:
- train: one jitted train step / batch size (median of --steps after a warm-up; compile
  excluded);
- test without proposals: the jitted inference (model + decode + NMS) / batch size;
- test with proposals: plus selective search (fast mode, OpenCV, one image at a time on one
  thread) for R-CNN, SPP-net and Fast R-CNN, timed on --images validation images. The sliding
  window and Faster R-CNN need no external proposals.
Prints a Markdown table with our ratios beside the papers' and writes a bar chart.
"""
import argparse
import statistics
import time

import matplotlib

matplotlib.use('Agg')
import jax
import matplotlib.pyplot as plt

from configs import loader
from data import pipeline, proposals
from tools.bench import bench_config

MODELS = ('sliding_window', 'rcnn', 'spp_net', 'fast_rcnn', 'faster_rcnn')
LABELS = {'sliding_window': 'Sliding window', 'rcnn': 'R-CNN', 'spp_net': 'SPP-net',
          'fast_rcnn': 'Fast R-CNN', 'faster_rcnn': 'Faster R-CNN'}
# The lecture's chart (Girshick, ICCV 2015, Table 4; Ren et al. 2015): VGG16 on VOC 2007, one
# K40 GPU. Training hours; test seconds per image with and without (selective search) proposals.
# SPP-net: Fast R-CNN's Table 4 (25 h, 2.3 s) plus the ~2 s of proposals the chart adds.
PAPER = {'rcnn': {'train_h': 84.0, 'test_s': 47.0, 'test_with_s': 49.0},
         'spp_net': {'train_h': 25.0, 'test_s': 2.3, 'test_with_s': 4.3},
         'fast_rcnn': {'train_h': 8.75, 'test_s': 0.32, 'test_with_s': 2.3},
         'faster_rcnn': {'test_with_s': 0.2}}


def selective_search_seconds(config, num_images: int) -> float:
  """Mean seconds of selective search (the config's mode) per validation image."""
  source = pipeline.decoded_source(config.data, config.data.eval_split)
  mode = proposals.mode_of(config.data.proposals.method)
  times = []
  for i in range(min(num_images, len(source))):
    image = source[i]['image']
    start = time.perf_counter()
    proposals.selective_search(image, mode, config.data.proposals.max_proposals)
    times.append(time.perf_counter() - start)
  return statistics.mean(times)


def measure(batch_size: int, steps: int, num_images: int) -> dict:
  rows = {}
  for name in MODELS:
    config = loader.load(f'configs/det/{name}_shapes.py')
    config.batch_size = batch_size
    r = bench_config(config, steps)
    row = {'train_ms': r['train_step_ms'] / batch_size, 'test_ms': r['infer_step_ms'] / batch_size}
    row['proposal_ms'] = (1e3 * selective_search_seconds(config, num_images)
                          if config.data.proposals.method else 0.0)
    row['test_with_ms'] = row['test_ms'] + row['proposal_ms']
    rows[name] = row
    print(f'{name}: {row}', flush=True)
  return rows


def ratio(a, b):
  return f'{a / b:.1f}x'


def table(rows: dict) -> str:
  r, sp, f, fr = rows['rcnn'], rows['spp_net'], rows['fast_rcnn'], rows['faster_rcnn']
  p = PAPER
  lines = ['| model | train ms/img | test ms/img (no proposals) | selective search ms/img | '
           'test ms/img (with proposals) |', '|---|---|---|---|---|']
  for name in MODELS:
    x = rows[name]
    lines.append(f"| {LABELS[name]} | {x['train_ms']:.2f} | {x['test_ms']:.2f} | "
                 f"{x['proposal_ms']:.2f} | {x['test_with_ms']:.2f} |")
  lines += ['', '| speed-up | ours | paper |', '|---|---|---|',
            f"| training, R-CNN / SPP-net | {ratio(r['train_ms'], sp['train_ms'])} | "
            f"{ratio(p['rcnn']['train_h'], p['spp_net']['train_h'])} |",
            f"| test with proposals, R-CNN / SPP-net | "
            f"{ratio(r['test_with_ms'], sp['test_with_ms'])} | "
            f"{ratio(p['rcnn']['test_with_s'], p['spp_net']['test_with_s'])} |",
            f"| training, R-CNN / Fast R-CNN | {ratio(r['train_ms'], f['train_ms'])} | "
            f"{ratio(p['rcnn']['train_h'], p['fast_rcnn']['train_h'])} |",
            f"| test without proposals, R-CNN / Fast R-CNN | {ratio(r['test_ms'], f['test_ms'])} "
            f"| {ratio(p['rcnn']['test_s'], p['fast_rcnn']['test_s'])} |",
            f"| test with proposals, R-CNN / Fast R-CNN | "
            f"{ratio(r['test_with_ms'], f['test_with_ms'])} | "
            f"{ratio(p['rcnn']['test_with_s'], p['fast_rcnn']['test_with_s'])} |",
            f"| test with proposals, Fast R-CNN / Faster R-CNN | "
            f"{ratio(f['test_with_ms'], fr['test_with_ms'])} | "
            f"{ratio(p['fast_rcnn']['test_with_s'], p['faster_rcnn']['test_with_s'])} |",
            f"| test, sliding window / Faster R-CNN | "
            f"{ratio(rows['sliding_window']['test_ms'], fr['test_with_ms'])} | - |"]
  return '\n'.join(lines)


def chart(rows: dict, path: str):
  names = [LABELS[n] for n in MODELS]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  ax1.bar(names, [rows[n]['train_ms'] for n in MODELS], color='tab:red')
  ax1.set_title('Training time per image (ms)')
  x = range(len(MODELS))
  ax2.bar([i - 0.2 for i in x], [rows[n]['test_with_ms'] for n in MODELS], 0.4,
          label='with proposals', color='tab:blue')
  ax2.bar([i + 0.2 for i in x], [rows[n]['test_ms'] for n in MODELS], 0.4,
          label='without proposals', color='tab:cyan')
  ax2.set_xticks(list(x), names)
  ax2.set_title('Test time per image (ms)')
  ax2.legend()
  for ax in (ax1, ax2):
    ax.set_yscale('log')
    ax.tick_params(axis='x', labelsize=8)
    for patch in ax.patches:
      ax.annotate(f'{patch.get_height():.3g}', (patch.get_x() + patch.get_width() / 2,
                                                 patch.get_height()), ha='center', va='bottom',
                  fontsize=7)
  fig.suptitle(f'64x64 Shapes, vgg_small, {jax.devices()[0].platform} (log scale)')
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--steps', type=int, default=5, help='timed steps per measurement')
  parser.add_argument('--images', type=int, default=100, help='images for selective search')
  parser.add_argument('--out', default='docs/rcnn_speed.png')
  args = parser.parse_args()
  rows = measure(args.batch_size, args.steps, args.images)
  print(table(rows))
  chart(rows, args.out)
  print(f'chart: {args.out}')


if __name__ == '__main__':
  main()
