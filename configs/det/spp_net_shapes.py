r"""SPP-net (He, Zhang, Ren, Sun, ECCV 2014) on Shapes (64x64), on selective-search proposals.

  python train.py --config configs/det/spp_net_shapes.py --workdir runs/spp_net_shapes

Arguments after ':' (comma-separated): `runlocal`, `demo`, `backbone=NAME`,
`classifier=softmax|svm`.

configs/det/fast_rcnn_shapes.py with the paper's 4-level pyramid (1x1, 2x2, 3x3, 6x6 bins, 50
per channel) in place of the 7x7 RoI pooling, on the same stride-8 map and proposals.
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small',
                         classifier='softmax')
  c = defaults.selective_search(defaults.shapes_region_detector('spp_net', arg))
  c.model.feature_stride = 8
  c.model.spp_levels = (1, 2, 3, 6)
  return c
