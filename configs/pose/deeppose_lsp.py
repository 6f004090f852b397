r"""DeepPose (Toshev & Szegedy, "DeepPose: Human Pose Estimation via Deep Neural Networks", CVPR
2014) on Leeds Sports Pose, 1000 train / 1000 test images, 14 joints.

Paper: strict PCP@0.5 on LSP (person-centric), Table 1: mean 0.61 over upper/lower arms and legs
for the 3-stage cascade (per-part values in the paper), from an AlexNet-style 7-layer net on
220x220 crops. Our PCP also averages the torso and the head (10 parts), so it is not directly
comparable; `per_part_pcp` in eval/metrics.json has the arm and leg parts to compare.
Needs lsp_dataset.zip in ~/tensorflow_datasets/downloads/manual/ (data/lsp.py).

  python -m tools.import_weights resnet18.safetensors     # torchvision ImageNet weights
  python train.py --config configs/pose/deeppose_lsp.py:cascade --workdir runs/deeppose_lsp \
      --config.init.checkpoint=resnet18.safetensors

Arguments after ':': `runlocal` (seconds; shrinks the model, keeps the data), `cascade`.
Our recipe differs: a ResNet-18 backbone (ImageNet init when given), AdamW, the two stages trained
jointly, flips and scale jitter as augmentation.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, cascade=False)
  c = common.base_config()
  c.task = 'pose'
  c.model.name = 'deeppose'
  c.model.backbone = 'resnet18'
  c.model.input_size = 224  # The paper's 220, rounded to a multiple of 32.
  c.model.feature_stride = 32
  c.model.hidden = 1024
  c.model.dropout_rate = 0.5  # The paper's fully connected layers use dropout.
  c.model.margin = 1.2
  c.model.cascade = arg.cascade
  c.model.refine_size = 64
  c.model.refine_scale = 0.25
  c.model.refine_stride = 16

  c.data.name = 'lsp'
  c.data.variant = 'default'
  c.data.image_size = 256  # Eval images are fitted (downscaled, padded) into 256x256.
  c.data.max_boxes = 1
  c.data.augment.flip = True
  c.data.augment.scale_min = 0.8
  c.data.augment.scale_max = 1.2
  c.data.augment.crop_size = 256

  c.batch_size = 32
  c.total_steps = 20_000
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 5e-4
  c.optimizer.warmup_steps = 500
  c.optimizer.weight_decay = 1e-4
  c.checkpoint_every_steps = 2000
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.eval_batch_size = 16
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = 'default'  # LSP has no small variant; runlocal only shrinks the model.
    c.model.backbone = 'vgg_small'
    c.model.input_size = 64
    c.model.feature_stride = 16
    c.model.hidden = 64
    c.model.refine_size = 32
    c.model.refine_stride = 8
    c.data.image_size = 64
    c.data.augment.crop_size = 64
  return c
