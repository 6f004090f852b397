r"""DeconvNet (Noh, Hong, Han, ICCV 2015) on Shapes: a mirrored decoder that max-unpools with the
encoder's per-channel pooling switches, each unpooling followed by deconvolution layers.

  python train.py --config configs/seg/deconvnet_shapes.py --workdir runs/deconvnet_shapes

Arguments after ':': `runlocal`, `demo` (as configs/seg/fcn8s_shapes.py).
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False)
  c = common.base_config()
  c.task = 'segmentation'
  c.model.name = 'deconvnet'
  c.model.backbone = 'vgg_small'  # DeconvNet mirrors a VGG encoder (VGG16 in the paper).
  c.model.head_features = 256

  c.data.variant = 'large'  # The same 128x128 data as the FCN configs, for comparison.
  c.data.image_size = 128
  c.batch_size = 16
  c.total_steps = 3000
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 100
  if arg.demo:
    c.total_steps = 1200
    c.checkpoint_every_steps = 400
  if arg.runlocal:
    common.runlocal(c)
  return c
