"""Eight log-spaced peak learning rates (vectorisable: one population of K=8 models).

  python -m tools.sweep --config configs/seg/fcn8s_shapes.py --sweep sweeps/lr.py \
      --workdir runs/sweep_lr --vectorize --set total_steps=150
"""
from sweeps import hyper


def get_sweep():
  return hyper.sweep('optimizer.learning_rate', hyper.logspace(1e-4, 3e-2, 8))
