r"""Classification + localization on Shapes `single`: one object, its class and its box.

  python train.py --config configs/loc/localizer_shapes.py --workdir runs/loc_shapes
  python train.py --config configs/loc/localizer_shapes.py:runlocal --workdir /tmp/loc

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (a few minutes),
`backbone=NAME` (vgg_small, vgg16, resnet18, resnet50), `box_weight=W` (the weight of the L2 box
loss against the class cross-entropy). Transfer learning: `--config.init.checkpoint=runs/x` (one of
our workdirs) or `=resnet18.safetensors` (tools/import_weights.py), `--config.init.freeze_backbone`.
Metrics: top-1, CorLoc (right class and IoU >= 0.5); numbers in BENCHMARKS.md.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small', box_weight=5.0)
  c = common.base_config()
  c.task = 'localization'
  c.model.name = 'localizer'
  c.model.backbone = arg.backbone
  c.model.feature_stride = 16  # The box head flattens the 4x4 map of a 64x64 image.
  c.model.hidden = 256
  c.model.dropout_rate = 0.0
  c.loss.box_weight = arg.box_weight  # Box targets are fractions of the image: errors are small.

  c.data.variant = 'single'
  c.data.max_boxes = 1  # One object per image.
  c.data.augment.flip = True

  c.batch_size = 32
  c.total_steps = 2000
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 1e-4
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000

  if arg.demo:
    c.total_steps = 600
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = 'single_small'
  return c
