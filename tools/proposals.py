r"""Computes (or loads) the cached region proposals of a split and reports their recall.

  python -m tools.proposals --config configs/det/faster_rcnn_shapes.py \
      --method selective_search_fast [--split validation] [--max_proposals 200]

R-CNN can only detect what its proposals cover, so their recall at IoU 0.5 (the VOC match
threshold) bounds its recall, and recall at 0.7 shows how much the box regressor must fix. The
first run for a (method, max_proposals, split) computes the cache that training then reuses;
seconds per image are those measured when the cache was computed.
"""
import argparse

import numpy as np

from configs import loader
from data import proposals
from data import source as data_source


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='path/to/config.py[:args]')
  parser.add_argument('--method', required=True, choices=sorted(proposals.METHODS))
  parser.add_argument('--split', help="default: the config's data.eval_split")
  parser.add_argument('--max_proposals', type=int,
                      help="default: the config's data.proposals.max_proposals")
  args = parser.parse_args()
  cfg = loader.load(args.config).data
  cfg.proposals.method = args.method
  if args.max_proposals is not None:
    cfg.proposals.max_proposals = args.max_proposals
  split = args.split or cfg.eval_split

  boxes, count = proposals.load_or_compute(cfg, split)
  source = data_source.DecodedSource(cfg, split)
  gt = []
  for i in range(len(source)):
    ex = source[i]
    # Evaluation ignores difficult boxes (VOC), so recall does too.
    gt.append(ex['boxes'][~ex['difficult']] if 'difficult' in ex else ex['boxes'])
  result = proposals.recall(boxes, count, gt)
  seconds = proposals.cached_seconds_per_image(cfg, split)
  print(f'{cfg.name}/{cfg.variant} {split} ({len(count)} images, {result["num_gt"]} boxes), '
        f'{args.method}, max {cfg.proposals.max_proposals}: '
        f'recall@0.5 {result["recall@0.5"]:.3f}, recall@0.7 {result["recall@0.7"]:.3f}, '
        f'{np.mean(count):.1f} proposals/image, {seconds:.4f} s/image '
        f'(cache: {proposals.cache_path(cfg, split)})')


if __name__ == '__main__':
  main()
