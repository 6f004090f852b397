r"""FCN-8s (Long, Shelhamer, Darrell, CVPR 2015) on the procedural Shapes dataset.

  python train.py --config configs/seg/fcn8s_shapes.py --workdir runs/fcn8s_shapes
  python train.py --config configs/seg/fcn8s_shapes.py:runlocal --workdir /tmp/fcn8s \
      --config.model.upsample=max_unpool

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (the few-minute run
of `make demo`), `upsample=KIND` (nearest, bed_of_nails, max_unpool, transpose_conv, resize_conv),
`backbone=NAME` (vgg_small, vgg16, resnet18, resnet50).
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, upsample='transpose_conv',
                         backbone='vgg_small')
  c = common.base_config()
  c.task = 'segmentation'
  c.model.name = 'fcn8s'
  c.model.backbone = arg.backbone
  c.model.upsample = arg.upsample
  c.model.dropout_rate = 0.1  # FCN keeps VGG's fc6/fc7 dropout (0.5 there; our nets are small).
  # 128x128 Shapes: at 64x64 the stride-8 score maps alone cap mean IoU near 0.73.
  c.data.variant = 'large'
  c.data.image_size = 128

  c.batch_size = 16
  c.total_steps = 3000
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 1e-4
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.data.augment.flip = True

  if arg.demo:  # `make demo`: ~5 minutes of training on a 2-core CPU; mean IoU 0.81 measured.
    c.batch_size = 8
    c.total_steps = 1500
    c.optimizer.learning_rate = 2e-3
    c.checkpoint_every_steps = 500
  if arg.runlocal:
    common.runlocal(c)
  return c
