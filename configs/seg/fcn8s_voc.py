r"""FCN-8s with a VGG16 backbone on Pascal VOC 2012 segmentation (Long, Shelhamer, Darrell).

Paper: 62.2 mean IU on VOC2012 test (62.7 on VOC2011 test), Table 3 of "Fully Convolutional
Networks for Semantic Segmentation" (CVPR 2015), trained from ImageNet VGG16 weights with SGD,
momentum 0.99, lr 1e-4 (unnormalised loss, batch 1), weight decay 5e-4, ~175 epochs for FCN-32s
then FCN-16s/8s fine-tuning. Needs the VOC tar in ~/tensorflow_datasets/downloads/manual/.

  python train.py --config configs/seg/fcn8s_voc.py --workdir runs/fcn8s_voc

Our recipe differs: a per-pixel mean loss (so the usual lr scale), batch 16 of 320x320 crops,
and no ImageNet init unless a backbone checkpoint is imported.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, upsample='transpose_conv')
  c = common.base_config()
  c.task = 'segmentation'
  c.model.name = 'fcn8s'
  c.model.backbone = 'vgg16'
  c.model.upsample = arg.upsample
  c.model.dropout_rate = 0.5  # VGG16's fc6/fc7 dropout, kept by the paper.

  c.data.name = 'voc2012_segmentation'
  c.data.variant = 'default'
  c.data.train_split = 'train'
  c.data.eval_split = 'validation'
  c.data.image_size = 512  # Eval images are padded (ignore label) to 512x512.
  c.data.max_boxes = 32
  c.data.augment.scale_min = 0.5
  c.data.augment.scale_max = 2.0
  c.data.augment.crop_size = 320

  c.batch_size = 16
  c.total_steps = 30_000
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4  # The paper's value.
  c.optimizer.warmup_steps = 500
  c.checkpoint_every_steps = 2000
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.eval_batch_size = 8
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = 'default'  # VOC has no small variant; runlocal only shrinks the model.
    c.model.backbone = 'vgg_small'
    c.data.image_size = 64
    c.data.augment.crop_size = 64
  return c
