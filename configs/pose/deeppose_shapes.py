r"""DeepPose-style joint regression on Shapes `people`: 14 LSP joints of one stick figure.

  python train.py --config configs/pose/deeppose_shapes.py --workdir runs/pose_shapes
  python train.py --config configs/pose/deeppose_shapes.py:cascade --workdir runs/pose_cascade
  python train.py --config configs/pose/deeppose_shapes.py:runlocal --workdir /tmp/pose

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (a few minutes),
`cascade` (add DeepPose's refinement stage), `backbone=NAME` (vgg_small, vgg16, resnet18,
resnet50). Transfer learning: `--config.init.checkpoint=runs/loc_shapes` (a workdir of ours, e.g.
the localization run) or a torchvision `.safetensors`; `--config.init.freeze_backbone`.
Metrics: PCK@0.2 (torso and box references), PCP; numbers in BENCHMARKS.md.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, cascade=False, backbone='vgg_small')
  c = common.base_config()
  c.task = 'pose'
  c.model.name = 'deeppose'
  c.model.backbone = arg.backbone
  c.model.input_size = 64  # The person crop the backbone sees.
  c.model.feature_stride = 8  # Joints need finer positions than a box: flatten the 8x8 map.
  c.model.hidden = 256
  c.model.dropout_rate = 0.0
  c.model.margin = 1.2
  c.model.cascade = arg.cascade
  c.model.refine_size = 32
  c.model.refine_scale = 0.25

  c.data.variant = 'people'
  c.data.max_boxes = 1  # One person per image.
  c.data.augment.flip = True  # Swaps the left and right joints too.
  c.data.augment.scale_min = 0.8
  c.data.augment.scale_max = 1.1

  c.batch_size = 32
  c.total_steps = 4000  # Fine-tuned from runs/loc_shapes: torso PCK@0.2 0.77 at 2000, 0.82 at 4000.
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 1e-4
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000

  if arg.demo:
    c.total_steps = 600
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = 'people_small'
  return c
