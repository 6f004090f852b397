r"""R-CNN (Girshick, Donahue, Darrell, Malik, CVPR 2014) on Shapes (64x64), selective search.

  python train.py --config configs/det/rcnn_shapes.py --workdir runs/rcnn_shapes
  python train.py --config configs/det/rcnn_shapes.py:classifier=svm --workdir runs/rcnn_svm

Arguments after ':' (comma-separated): `runlocal`, `demo`, `backbone=NAME`,
`classifier=softmax|svm` (the paper's per-class linear SVMs, here trained jointly by hinge loss).

Each proposal (up to 100 per image, selective search fast mode, cached) is warped with 16/195 of
context to 32x32 (the paper: 227x227 from images of ~500 px) and runs through its own CNN pass;
the stride-8 map of the crop (4x4) feeds the class and box head. Batches of 8 images x 32 RoIs
(the paper: 128 windows per minibatch, 32 of them foreground).
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small',
                         classifier='softmax')
  c = defaults.selective_search(defaults.shapes_region_detector('rcnn', arg))
  c = defaults.per_crop_cnn(c, arg)
  c.model.context = 227.0 / 195.0  # 16 pixels of context around 195 of the object, at 227.
  return c
