r"""Mask R-CNN (He, Gkioxari, Dollar, Girshick, ICCV 2017) on the procedural Shapes dataset (64x64).

  python train.py --config configs/inst/mask_rcnn_shapes.py --workdir runs/mask_rcnn_shapes
  python train.py --config configs/inst/mask_rcnn_shapes.py:runlocal --workdir /tmp/mrcnn

Arguments after ':' as in configs/det/faster_rcnn_shapes.py (`runlocal`, `demo`, `backbone=`,
`classifier=`, `fpn`), whose Faster R-CNN is the box part, here with its FPN by default as in the
paper (`fpn=false`: the single stride-8 map; mask AP 0.558 instead of 0.753, BENCHMARKS.md). The
paper's mask head (14x14 RoIAlign, four 3x3 convs, a 2x2 stride-2 transpose conv to 28x28, one
mask per class, per-pixel sigmoid cross-entropy on the ground-truth class's mask only) with 32
channels instead of 256.
"""
from configs import common
from configs.det import faster_rcnn_shapes
from configs.inst import defaults


def get_config(arg=None):
  args = common.parse_arg(arg, **{**faster_rcnn_shapes.ARGS, 'fpn': True})
  c = faster_rcnn_shapes.get_config(arg)
  if args.fpn:
    faster_rcnn_shapes.add_fpn(c, 16 if args.runlocal else 128)
  c = defaults.mask_rcnn(c, masks=True,
                         head_convs=1 if args.runlocal else 4,
                         head_width=8 if args.runlocal else 32,
                         head_chunk=0)  # Small heads on 16 slots: one go.
  c.detect.max_detections = 20  # The heads run on these; Shapes scenes have at most 6 objects.
  return c
