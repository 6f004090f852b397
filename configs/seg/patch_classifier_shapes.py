r"""The lecture's first idea for segmentation: slide a window over the image and classify the
centre pixel of every patch with a CNN. Correct but very slow at test time: no computation is
shared between overlapping patches (compare inference images/s with FCN in BENCHMARKS.md).

  python train.py --config configs/seg/patch_classifier_shapes.py --workdir runs/patches

Training classifies `train_pixels` random pixels per image; evaluation classifies all of them.
Arguments after ':': `runlocal`, `demo`.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False)
  c = common.base_config()
  c.task = 'segmentation'
  c.model.name = 'patch_classifier'
  c.model.patch_size = 16  # Context around each pixel; a 64x64 image yields 4096 patches.
  c.model.train_pixels = 64

  c.data.variant = 'large'  # The same 128x128 data as the FCN configs, for comparison.
  c.data.image_size = 128
  c.batch_size = 16
  c.total_steps = 3000
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 100
  c.eval_batch_size = 8  # Eval classifies every pixel's patch: 8 images = 32,768 patches.
  if arg.demo:
    c.total_steps = 1200
    c.checkpoint_every_steps = 400
  if arg.runlocal:
    common.runlocal(c)
    c.eval_batch_size = 4
  return c
