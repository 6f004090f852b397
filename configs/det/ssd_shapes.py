r"""SSD (Liu et al., ECCV 2016) on the procedural Shapes dataset (64x64, CPU-sized).

  python train.py --config configs/det/ssd_shapes.py --workdir runs/ssd_shapes
  python train.py --config configs/det/ssd_shapes.py:runlocal --workdir /tmp/ssd

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (a few minutes),
`backbone=NAME` (vgg_small, vgg16, resnet18, resnet50).

Feature maps 8x8, 4x4, 2x2 (backbone strides 8, 16, 32) and one extra 1x1 map; scales 0.2..0.8 of
the image (13 to 51 pixels: the objects are 12-30) with the paper's aspect ratios.
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small')
  c = defaults.base_detection_config()
  c.model.name = 'ssd'
  c.model.backbone = arg.backbone
  c.model.feature_strides = (8, 16, 32)
  c.model.extra_widths = (128,)
  c.model.min_scale = 0.2  # s_min.
  c.model.max_scale = 0.8  # s_max.
  c.model.aspect_ratios = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0,))  # Per map, besides 1.
  c.loss.iou_threshold = 0.5  # The paper's matching threshold.
  c.loss.neg_pos_ratio = 3  # Hard negatives per positive.
  c.loss.alpha = 1.0  # Weight of the localisation loss.

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
