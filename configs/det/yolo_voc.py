r"""YOLO v1 on Pascal VOC: the paper's setting (Redmon, Divvala, Girshick, Farhadi, CVPR 2016).

Paper: 63.4 mAP on VOC 2007 test at 45 FPS (Table 1, "Real-Time Systems on PASCAL VOC 2007"),
trained on VOC 2007 + 2012 trainval: 448x448 input, 7 x 7 grid, B = 2, 24 ImageNet-pretrained
convs + 2 FC layers (4096, dropout 0.5), lambda_coord 5, lambda_noobj 0.5, batch 64, SGD momentum
0.9, weight decay 5e-4, 135 epochs (lr 1e-3 warming up to 1e-2, then 1e-3 and 1e-4), random
scaling/translation of up to 20%.

  python train.py --config configs/det/yolo_voc.py --workdir runs/yolo_voc

Our recipe differs: VGG16-BN (not the Darknet-24 backbone), no ImageNet init unless a backbone
checkpoint is imported, and VOC 2007 trainval only (the pipeline reads one tfds variant; 07+12
needs two sources). Reads `voc_detection/2007` (data/voc.py), prepared from the VOC 2007 tars
in the manual dir on first use.
Arguments: `runlocal` (a tiny model on 112x112 inputs, for tests).
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  c = defaults.base_detection_config()
  c.model.name = 'yolo'
  c.model.backbone = 'vgg16'
  c.model.feature_stride = 32  # 448 / 32 = 14, then the stride-2 conv to the 7 x 7 grid.
  c.model.grid_size = 7  # S.
  c.model.boxes_per_cell = 2  # B.
  c.model.head_width = 1024  # The paper's last convs.
  c.model.head_convs = 2
  c.model.fc_width = 4096  # The paper's FC layer.
  c.model.dropout_rate = 0.5
  c.loss.lambda_coord = 5.0
  c.loss.lambda_noobj = 0.5

  c.data.name = 'voc_detection'
  c.data.variant = '2007'
  c.data.train_split = 'train+validation'
  c.data.eval_split = 'test'
  c.data.image_size = 448
  c.data.max_boxes = 56  # More than the most objects in any VOC image.
  c.data.augment.scale_min = 0.8  # The paper: scaling and translation of up to 20%.
  c.data.augment.scale_max = 1.2
  c.data.augment.crop_size = 448

  c.batch_size = 64
  c.total_steps = 10_000  # ~135 epochs of the 5011 VOC 2007 trainval images.
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 1e-2
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 500  # The paper warms 1e-3 -> 1e-2 over its first epochs.
  c.optimizer.schedule = 'step'
  c.optimizer.step_boundaries = (0.55, 0.78)  # 75 / 30 / 30 of 135 epochs at 1e-2, 1e-3, 1e-4.
  c.optimizer.grad_clip_norm = 10.0  # The sum-squared loss spikes early without ImageNet init.
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000
  c.eval_every_steps = 2000
  c.eval_batch_size = 16
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = '2007'  # VOC has no small variant; runlocal only shrinks the model.
    c.model.backbone = 'vgg_small'
    c.model.feature_stride = 16
    c.model.head_width = 32
    c.model.fc_width = 64
    c.data.image_size = 112
    c.data.augment.crop_size = 112
  return c
