"""Random search: 8 joint log-uniform draws of learning rate and weight decay (vectorisable).

  python -m tools.sweep --config configs/seg/fcn8s_shapes.py --sweep sweeps/lr_wd_random.py \
      --workdir runs/sweep_lr_wd --vectorize --pbt_every 50
"""
from sweeps import hyper


def get_sweep():
  return hyper.zipit([
      hyper.sweep('optimizer.learning_rate', hyper.loguniform(3e-4, 3e-2, 8, seed=1)),
      hyper.sweep('optimizer.weight_decay', hyper.loguniform(1e-6, 1e-2, 8, seed=2)),
  ])
