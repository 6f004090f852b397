r"""FCN-32s (Long et al., CVPR 2015) on Shapes: FCN-8s's recipe with fewer skip connections.

  python train.py --config configs/seg/fcn32s_shapes.py --workdir runs/fcn32s_shapes

Takes the same ':' arguments as configs/seg/fcn8s_shapes.py.
"""
from configs.seg import fcn8s_shapes


def get_config(arg=None):
  c = fcn8s_shapes.get_config(arg)
  c.model.name = 'fcn32s'
  return c
