r"""SSD300 on Pascal VOC: the paper's setting (Liu et al., "SSD: Single Shot MultiBox Detector").

Paper: 74.3 mAP on VOC 2007 test for SSD300 trained on VOC 2007 + 2012 trainval (Table 4 of the
ECCV 2016 version): VGG16 (ImageNet) with conv4_3 (38x38), fc7 (19x19) and extra maps 10, 5, 3,
1; scales 0.2..0.9 (conv4_3: 0.1), aspect ratios {1, 2, 1/2} on conv4_3, conv10_2 and conv11_2
and {1, 2, 1/2, 3, 1/3} elsewhere; batch 32, SGD momentum 0.9, weight decay 5e-4, lr 1e-3 for
40k iterations then 1e-4 and 1e-5 for 10k each; photometric distortions, zoom-out and random
crops.

  python train.py --config configs/det/ssd300_voc.py --workdir runs/ssd300_voc

Our recipe differs: VGG16-BN levels at strides 8, 16, 32 (37, 18, 9 for 300x300) plus three
extra maps (5, 3, 2 with 'SAME' padding), conv4_3 at scale 0.2 with the rest, no ImageNet init
unless a backbone checkpoint is imported, flips + scale/crop only, and VOC 2007 trainval only
(07+12 needs two sources in the pipeline). Reads `voc_detection/2007` (data/voc.py), prepared
from the VOC 2007 tars in the manual dir on first use. Arguments: `runlocal` (a tiny model on
64x64 inputs, for tests).
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  c = defaults.base_detection_config()
  c.model.name = 'ssd'
  c.model.backbone = 'vgg16'
  c.model.feature_strides = (8, 16, 32)
  c.model.extra_widths = (512, 256, 256)
  c.model.min_scale = 0.2
  c.model.max_scale = 0.9
  c.model.aspect_ratios = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
  c.loss.iou_threshold = 0.5
  c.loss.neg_pos_ratio = 3
  c.loss.alpha = 1.0

  c.data.name = 'voc_detection'
  c.data.variant = '2007'
  c.data.train_split = 'train+validation'
  c.data.eval_split = 'test'
  c.data.image_size = 300
  c.data.max_boxes = 56  # More than the most objects in any VOC image.
  c.data.augment.scale_min = 0.5
  c.data.augment.scale_max = 1.5
  c.data.augment.crop_size = 300

  c.batch_size = 32
  c.total_steps = 60_000
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 1e-3  # The paper's.
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 1000
  c.optimizer.schedule = 'step'
  c.optimizer.step_boundaries = (0.67, 0.83)  # 40k / 10k / 10k iterations.
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  c.eval_every_steps = 10_000
  c.eval_batch_size = 16
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = '2007'  # VOC has no small variant; runlocal only shrinks the model.
    c.model.backbone = 'vgg_small'
    c.model.extra_widths = (64, 64, 64)
    c.data.image_size = 64
    c.data.augment.crop_size = 64
  return c
