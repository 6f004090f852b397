r"""YOLO v1 (Redmon et al., CVPR 2016) on the procedural Shapes dataset (64x64, CPU-sized).

  python train.py --config configs/det/yolo_shapes.py --workdir runs/yolo_shapes
  python train.py --config configs/det/yolo_shapes.py:runlocal --workdir /tmp/yolo

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (a few minutes),
`backbone=NAME` (vgg_small, vgg16, resnet18, resnet50).

An 8 x 8 grid (8-pixel cells: the objects are 12-30 pixels, so two centres rarely share a cell),
B = 2 boxes per cell, a conv head on the stride-8 features instead of the paper's FC layers.
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small')
  c = defaults.base_detection_config()
  c.model.name = 'yolo'
  c.model.backbone = arg.backbone
  c.model.feature_stride = 8  # 64 / 8 = the 8 x 8 grid.
  c.model.grid_size = 8  # S.
  c.model.boxes_per_cell = 2  # B, as in the paper.
  c.model.head_width = 128
  c.model.head_convs = 2
  c.model.fc_width = 0  # Conv head: 64x64 images need no 4096-wide FC layer.
  c.loss.lambda_coord = 5.0  # The paper's values.
  c.loss.lambda_noobj = 0.5

  c.batch_size = 32
  c.total_steps = 1500
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 200
  c.optimizer.weight_decay = 1e-4
  c.log_every_steps = 100
  c.checkpoint_every_steps = 500
  c.eval_every_steps = 500
  c.data.augment.flip = True

  if arg.demo:
    c.total_steps = 1000
  if arg.runlocal:
    common.runlocal(c)
  return c
