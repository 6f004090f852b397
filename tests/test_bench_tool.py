"""tools/bench.py at real sizes: the synthetic batch follows --image-size (no model is built)."""
import argparse

import numpy as np
import pytest

import tasks
from configs import loader
from tools import bench


def test_synthetic_batch_at_a_non_square_size():
  task = tasks.get_task(loader.load('configs/inst/mask_rcnn_shapes.py'))
  batch = bench.synthetic_batch(task, 2, hw=(48, 80))
  assert batch['image'].shape == (2, 48, 80, 3) and batch['instance_ids'].shape == (2, 48, 80)
  assert (batch['image_hw'] == (48, 80)).all()
  boxes = batch['boxes'][batch['valid']]
  assert len(boxes) == 6 and (boxes[:, 2] <= 48).all() and (boxes[:, 3] <= 80).all()
  assert boxes[:, 3].max() > 48  # Widths scale with the width, not the height.
  # Instance k's pixels lie inside box k.
  y, x = np.nonzero(batch['instance_ids'][0] == 1)
  y1, x1, y2, x2 = batch['boxes'][0, 0]
  assert len(y) and y.min() >= y1 - 1 and y.max() <= y2 and x.min() >= x1 - 1 and x.max() <= x2


def test_image_size_argument():
  assert bench.image_size('800x1344') == (800, 1344) and bench.image_size('520') == (520, 520)
  with pytest.raises(argparse.ArgumentTypeError, match='as HxW'):
    bench.image_size('800by1344')
