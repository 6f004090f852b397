r"""R-FCN (Dai, Li, He, Sun, NeurIPS 2016) on the procedural Shapes dataset (64x64).

  python train.py --config configs/det/rfcn_shapes.py --workdir runs/rfcn_shapes

Arguments after ':' as in configs/det/faster_rcnn_shapes.py (`runlocal`, `demo`, `backbone=`,
`classifier=`), whose RPN, anchors and RoI sampling it shares. The RoI head is R-FCN's: a 1x1
conv to 128 channels (the paper's 1024), 3 x 3 position-sensitive score maps per class and 3 x 3
x 4 class-agnostic box maps (the paper's k = 7 on a stride-16 map; objects here span 2-4 cells
of the stride-8 map), position-sensitive average pooling and a vote.
"""
from configs import common
from configs.det import faster_rcnn_shapes


def get_config(arg=None):
  args = common.parse_arg(arg, **faster_rcnn_shapes.ARGS)
  if args.fpn:
    raise ValueError('R-FCN reads one feature map: drop the `fpn` argument.')
  c = faster_rcnn_shapes.get_config(arg)
  c.model.name = 'rfcn'
  c.model.roi.size = 3
  c.model.rfcn_width = 32 if args.runlocal else 128
  return c
