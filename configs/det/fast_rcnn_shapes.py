r"""Fast R-CNN (Girshick, ICCV 2015) on Shapes (64x64), on cached selective-search proposals.

  python train.py --config configs/det/fast_rcnn_shapes.py --workdir runs/fast_rcnn_shapes

Arguments after ':' (comma-separated): `runlocal`, `demo`, `backbone=NAME`, `roi=pool|align`,
`classifier=softmax|svm`.

One backbone pass per image; up to 100 selective-search proposals (fast mode; computed once per
image on first use and cached next to the dataset) RoI-pooled 7x7 from the stride-8 map. The
paper: VGG16 conv5_3 (stride 16), ~2000 proposals per image, RoI max pooling.
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small', roi='pool',
                         classifier='softmax')
  c = defaults.selective_search(defaults.shapes_region_detector('fast_rcnn', arg))
  c.model.feature_stride = 8
  c.model.roi.pooling = arg.roi
  c.model.roi.size = 7
  return c
