"""Grid: every FCN upsampling layer x two seeds (changes the model, so trials run one by one).

  python -m tools.sweep --config configs/seg/fcn8s_shapes.py --sweep sweeps/upsample_seeds.py \
      --workdir runs/sweep_upsample --parallel 2
"""
from sweeps import hyper

UPSAMPLE = ['nearest', 'bed_of_nails', 'max_unpool', 'transpose_conv', 'resize_conv']


def get_sweep():
  return hyper.product([hyper.sweep('model.upsample', UPSAMPLE), hyper.sweep('seed', [0, 1])])
