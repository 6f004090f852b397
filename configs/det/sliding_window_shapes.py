r"""The sliding-window baseline on Shapes (64x64): a CNN classifies every window, then NMS.

  python train.py --config configs/det/sliding_window_shapes.py --workdir runs/sliding_shapes

Arguments after ':' (comma-separated): `runlocal`, `demo`, `backbone=NAME`.

Windows every 8 pixels of 3 sizes (16, 24, 32) x 3 aspect ratios: 576 per 64x64 image, each
warped to 32x32 and classified by the same per-crop CNN as R-CNN, with no box regression (the
window is the detection). Training samples 32 windows per image like R-CNN's RoIs; testing
classifies all of them, which is the cost the lecture's later models remove.
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small')
  arg.classifier = 'softmax'
  c = defaults.per_crop_cnn(defaults.shapes_region_detector('sliding_window', arg), arg)
  c.model.window_stride = 8  # 8 x 8 cells x 9 windows = 576 per image (4608 crops per batch).
  c.model.window_sizes = (16.0, 24.0, 32.0)
  c.model.window_ratios = (0.5, 1.0, 2.0)
  c.loss.roi_box_weight = 0.0  # No box regression.
  c.detect.pre_nms_topk = 300
  if arg.runlocal:
    c.model.window_stride = 16
  return c
