r"""Writes a synthetic COCO-like set (data/coco_like.py) into a manual dir for `coco2017`.

  python -m tools.make_coco_like --out /tmp/cocolike/manual --num_train 3000 --num_val 3000
  python -m tools.bench_input --config configs/det/faster_rcnn_r50_fpn_coco.py \
      --set data.manual_dir=/tmp/cocolike/manual --set data.data_dir=/tmp/cocolike/tfds

640x480 JPEGs of ~120 KB with 3-10 polygon objects each and COCO's category ids; the `coco2017`
builder prepares it like the official files (keep `data_dir` apart from a real COCO's).
"""
import argparse
import time

from data.coco_like import write_coco_like


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='The manual dir to write.')
  parser.add_argument('--num_train', type=int, default=300)
  parser.add_argument('--num_val', type=int, default=300)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  start = time.perf_counter()
  sizes = write_coco_like(args.out, num_train=args.num_train, num_validation=args.num_val,
                          seed=args.seed)
  for split, num in (('train', args.num_train), ('validation', args.num_val)):
    if num:
      print(f'{split}: {num} images, {sizes[split] / num / 1000:.0f} KB per JPEG')
  print(f'wrote {args.out} in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
  main()
