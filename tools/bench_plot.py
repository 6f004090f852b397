r"""Cost of a detector as the work grows: time and peak memory vs image size and vs batch.

  python -m tools.bench_plot runs/bench.jsonl --out docs/rcnn_cost.png \
      --config configs/det/faster_rcnn_r50_fpn_coco.py

Reads the JSON lines `tools/bench.py --compare-torch --json FILE` appends (one per config run)
and draws, for ours and PyTorch's side, the train and inference seconds per image and the peak
RSS: against the image's pixels at batch 1 (square images), and against the batch at 800x800.
Prints the same numbers as a Markdown table.
"""
import argparse
import json

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def load(path: str, config: str) -> list[dict]:
  rows = []
  with open(path) as f:
    for line in f:
      r = json.loads(line)
      if r['config'] == config and r['torch']:
        h, w = map(int, r['ours']['image'].split('x'))
        rows.append({'h': h, 'w': w, 'batch': r['batch'], 'ours': r['ours'], 'torch': r['torch']})
  return rows


def metrics(r: dict) -> dict:
  """Seconds per image (train, inference) and peak RSS GB of each side."""
  n, ours, theirs = r['batch'], r['ours'], r['torch']
  return {'ours': (1 / ours['train_images_per_s'], 1 / ours['infer_images_per_s'],
                   ours['peak_rss_gb']),
          'torch': (theirs['train_s'] / n, theirs['infer_s'] / n, theirs['peak_rss_gb'])}


def table(rows: list[dict]) -> str:
  lines = ['| image | batch | train s/img ours / torch | infer s/img ours / torch | '
           'peak RSS GB ours / torch |', '|---|---|---|---|---|']
  for r in sorted(rows, key=lambda r: (r['batch'], r['h'] * r['w'])):
    m = metrics(r)
    lines.append(f'| {r["h"]}x{r["w"]} | {r["batch"]} | ' + ' | '.join(
        f'{m["ours"][k]:.2f} / {m["torch"][k]:.2f}' for k in range(3)) + ' |')
  return '\n'.join(lines)


def plot(rows: list[dict], out: str, title: str, batch_hw=(800, 800)):
  by_size = sorted((r for r in rows if r['batch'] == 1 and r['h'] == r['w']), key=lambda r: r['h'])
  by_batch = sorted((r for r in rows if (r['h'], r['w']) == batch_hw), key=lambda r: r['batch'])
  fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
  names = ('train s/image', 'inference s/image', 'peak RSS GB')
  for row, (series, x_of, xlabel) in enumerate((
      (by_size, lambda r: r['h'], 'image side (square, batch 1)'),
      (by_batch, lambda r: r['batch'], f'batch ({batch_hw[0]}x{batch_hw[1]})'))):
    for k, name in enumerate(names):
      ax = axes[row, k]
      for side, style in (('ours', 'o-'), ('torch', 's--')):
        ax.plot([x_of(r) for r in series], [metrics(r)[side][k] for r in series], style,
                label='ours (JAX)' if side == 'ours' else 'torchvision')
      ax.set_xlabel(xlabel)
      ax.set_ylabel(name)
      ax.grid(alpha=0.3)
      ax.legend()
  fig.suptitle(title)
  fig.savefig(out, dpi=90)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('results', help='JSON lines from tools/bench.py --json')
  parser.add_argument('--config', default='configs/det/faster_rcnn_r50_fpn_coco.py')
  parser.add_argument('--out', default='docs/rcnn_cost.png')
  parser.add_argument('--title', default='Faster R-CNN R50-FPN on CPU: ours vs torchvision')
  args = parser.parse_args(argv)
  rows = load(args.results, args.config)
  if not rows:
    parser.error(f'{args.results} has no --compare-torch results of {args.config}')
  print(table(rows))
  plot(rows, args.out, args.title)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
