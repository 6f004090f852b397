r"""A picture of Shapes examples: each image (boxes drawn) beside its colour-coded semantic mask.

  python -m tools.shapes_grid --out docs/shapes_examples.png [--num 16] [--config default]
"""
import argparse

import numpy as np
from PIL import Image, ImageDraw

from data import shapes


def save_examples_grid(path: str, num: int = 16, config: str = 'default', split: str = 'train',
                       cols: int = 4) -> None:
  """Writes a PNG grid: each example's image (boxes drawn) beside its colour-coded semantic mask."""
  cfg = next(c for c in shapes.Shapes.BUILDER_CONFIGS if c.name == config)
  palette = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 60], [70, 110, 240], [240, 220, 50]],
                     np.uint8)
  scale, pad = 3, 4
  size = cfg.image_size * scale
  rows = -(-num // cols)
  grid = Image.new('RGB', (cols * (2 * size + 3 * pad), rows * (size + pad) + pad), (255, 255, 255))
  for i in range(num):
    ex = shapes.render(cfg, split, i)
    img = Image.fromarray(ex['image']).resize((size, size), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for (y1, x1, y2, x2), lab in zip(ex['boxes'], ex['labels'], strict=True):
      draw.rectangle([x1 * scale, y1 * scale, x2 * scale - 1, y2 * scale - 1],
                     outline=tuple(int(c) for c in palette[lab]))
    seg = Image.fromarray(palette[ex['mask']]).resize((size, size), Image.NEAREST)
    r, c = divmod(i, cols)
    x0, y0 = c * (2 * size + 3 * pad) + pad, r * (size + pad) + pad
    grid.paste(img, (x0, y0))
    grid.paste(seg, (x0 + size + pad, y0))
  grid.save(path)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='docs/shapes_examples.png')
  parser.add_argument('--num', type=int, default=16)
  parser.add_argument('--config', default='default',
                      choices=[c.name for c in shapes.Shapes.BUILDER_CONFIGS])
  parser.add_argument('--split', default='train')
  args = parser.parse_args(argv)
  save_examples_grid(args.out, args.num, args.config, args.split)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
