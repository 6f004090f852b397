r"""Faster R-CNN (Ren, He, Girshick, Sun, NeurIPS 2015) on the procedural Shapes dataset (64x64).

  python train.py --config configs/det/faster_rcnn_shapes.py --workdir runs/frcnn_shapes
  python train.py --config configs/det/faster_rcnn_shapes.py:runlocal --workdir /tmp/frcnn

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (a few minutes),
`backbone=NAME` (vgg_small, vgg16, resnet18, resnet50), `roi=align|pool`,
`classifier=softmax|svm`, `fpn` (a Feature Pyramid on the stride-4 and stride-8 maps, plus a
stride-16 level for the RPN: one anchor size per level, 12, 20 and 32 px; at these object sizes
FPN's level rule pools every RoI from the finest level, P2).

Scaled to Shapes: the stride-8 map (8x8 cells) instead of the paper's stride 16, anchors of 3
scales x 3 ratios (the paper's 128, 256, 512 px on ~600 px images are ~1/5 to 5/6 of the image;
here 12, 20, 32 px for objects of 12-30 px), 64 training RoIs per image, 50 proposals at test
time. Everything else is the paper's: IoU 0.7 / 0.3 anchor labels, 256 anchors per image, RPN
NMS at 0.7, RoI foreground at IoU >= 0.5 with 25% foreground, 7x7 RoI pooling.
"""
from configs import common
from configs.det import defaults

ARGS = dict(runlocal=False, demo=False, backbone='vgg_small', roi='align', classifier='softmax',
            fpn=False)


def get_config(arg=None):
  arg = common.parse_arg(arg, **ARGS)
  c = defaults.option_groups(defaults.shapes_region_detector('faster_rcnn', arg), 'rpn')
  c.model.feature_stride = 8
  c.model.rpn.anchor_sizes = (12.0, 20.0, 32.0)
  c.model.rpn.anchor_ratios = (0.5, 1.0, 2.0)  # Height / width.
  c.model.rpn.width = 128
  c.model.rpn.batch_size = 256
  c.model.rpn.pre_nms_topk_train = 300
  c.model.rpn.post_nms_topk_train = 64
  c.model.rpn.pre_nms_topk_test = 300
  c.model.rpn.post_nms_topk_test = 50
  c.model.rpn.nms_iou = 0.7
  c.model.roi.pooling = arg.roi
  c.model.roi.size = 7
  if arg.fpn:
    add_fpn(c, 16 if arg.runlocal else 128)
  if arg.runlocal:
    c.model.rpn.width = 32
  return c


def add_fpn(c, width: int = 128):
  """The `fpn` argument: P2 and P3 from the stride-4 and stride-8 maps, plus P4 for the RPN."""
  c.model.fpn_strides = (4, 8)
  c.model.fpn_width = width
  return c
