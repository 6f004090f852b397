r"""Mask R-CNN's keypoint head ("Mask R-CNN: also does pose") on Shapes-people: 14 LSP joints.

  python train.py --config configs/inst/keypoint_rcnn_shapes.py --workdir runs/keypoint_rcnn_shapes

One stick figure (36-60 px tall) per 64x64 image, class 'person'. The box part is
configs/det/faster_rcnn_shapes.py's Faster R-CNN with anchors for upright figures; the keypoint
head is the paper's (sec. 5: 14x14 RoIAlign, 3x3 convs, a 4x4 stride-2 transpose conv and 2x
bilinear upsampling to one 56x56 heatmap per joint, softmax cross-entropy over the positions of
each visible joint) with four 32-channel convs instead of eight 512-channel ones. Arguments as in
that config (`runlocal`, `demo`, `backbone=`, `classifier=`).
"""
from configs import common
from configs.det import faster_rcnn_shapes
from configs.inst import defaults


def get_config(arg=None):
  args = common.parse_arg(arg, **faster_rcnn_shapes.ARGS)
  c = defaults.mask_rcnn(faster_rcnn_shapes.get_config(arg), masks=False, num_keypoints=14,
                         head_convs=1 if args.runlocal else 4,
                         head_width=8 if args.runlocal else 32,
                         head_chunk=0)  # Small heads on 16 slots: one go.
  c.model.rpn.anchor_sizes = (28.0, 40.0, 56.0)
  c.model.rpn.anchor_ratios = (1.0, 2.0, 3.0)  # Height / width: the figures stand upright.
  c.detect.max_detections = 5  # One person per image.

  c.data.variant = 'people_small' if args.runlocal else 'people'
  c.data.max_boxes = 1
  c.data.augment.flip = True  # Swaps the left and right joints too.
  c.data.augment.scale_min = 0.8
  c.data.augment.scale_max = 1.1
  return c
