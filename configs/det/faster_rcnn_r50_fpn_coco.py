r"""Faster R-CNN, ResNet-50 FPN, COCO 2017 (Lin et al., "Feature Pyramid Networks", CVPR 2017).

Paper (Table 3): 33.9 AP / 56.9 AP50 on COCO test-dev with ResNet-50 FPN; detectron2's
R50-FPN 1x schedule reaches 37.9 box AP on val2017. Recipe (detectron2 1x): ImageNet ResNet-50,
P2-P6 of width 256, one anchor size per level (32, 64, 128, 256, 512) x 3 ratios, RPN 2000
proposals per image in training and 1000 at test time, 512 RoIs per image with 25% foreground,
7x7 RoIAlign, two 1024-d FC layers, batch 16, SGD momentum 0.9, weight decay 1e-4, learning rate
0.02 for 90k iterations (x0.1 at 60k and 80k), 1000 warmup iterations, flips, shorter side 800.

  python train.py --config configs/det/faster_rcnn_r50_fpn_coco.py --workdir runs/frcnn_coco \
      --config.init.checkpoint=resnet50.safetensors   # tools/import_weights.py

Recipe details as detectron2 / torchvision: frozen batch norm in the backbone with the stem and
res2 fixed (FREEZE_AT=2, torchvision's trainable_backbone_layers=3), ImageNet mean/std on [0, 1]
inputs (the torchvision ResNet-50 that --config.init.checkpoint loads), proposals selected per
FPN level (top-k and NMS at 0.7 per level, then the best 1000 per image), clipped to each
image's own size, evaluation at shorter side 800 / longer at most 1333 (data.eval_min_size,
padded to fixed canvases). Where we differ, and why: training inputs are square 800x800 padded
canvases (static shapes; the pipeline's train-time resize decides the image scale), anchors are
exact and centred on the cells (rpn.anchor_placement='centred'; torchvision rounds them and
detectron2 puts them at the cell corners: both only matter for their own trained weights,
configs/det/faster_rcnn_r50_fpn_torchvision.py uses torchvision's). Reads `coco2017`
(data/coco.py) from the official zips in the manual dir.
Arguments: `runlocal` (a tiny model on 64x64 inputs, for tests).
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  c = defaults.option_groups(defaults.base_detection_config(), 'rpn', 'roi')
  c.model.name = 'faster_rcnn'
  c.model.backbone = 'resnet50'
  c.model.fpn_strides = (4, 8, 16, 32)  # P2-P5 (+ P6 for the RPN).
  c.model.fpn_width = 256
  c.model.rpn.anchor_sizes = (32.0, 64.0, 128.0, 256.0, 512.0)  # One per level, P2..P6.
  c.model.rpn.anchor_ratios = (0.5, 1.0, 2.0)
  c.model.rpn.width = 256
  c.model.rpn.batch_size = 256
  c.model.rpn.pre_nms_topk_train = c.model.rpn.post_nms_topk_train = 2000
  c.model.rpn.pre_nms_topk_test = c.model.rpn.post_nms_topk_test = 1000
  c.model.rpn.per_level = True
  c.model.pixel_mean = (0.485, 0.456, 0.406)  # torchvision's ImageNet ResNet-50.
  c.model.pixel_std = (0.229, 0.224, 0.225)
  c.model.frozen_bn = True
  c.model.trainable_layers = 3
  c.model.roi.batch_size = 512
  c.model.roi.positive_fraction = 0.25
  c.model.roi.pooling = 'align'
  c.model.roi.size = 7
  c.model.roi.head_hidden = 1024

  c.data.name = 'coco2017'
  c.data.train_split = 'train'
  c.data.eval_split = 'validation'
  c.data.image_size = 800
  c.data.eval_min_size = 800  # The eval-time resize (data/eval_resize.py).
  c.data.eval_max_size = 1333
  c.data.eval_size_divisor = 32
  c.data.max_boxes = 100
  c.data.augment.flip = True

  c.batch_size = 16
  c.total_steps = 90_000
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 0.02
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = 'step'
  c.optimizer.warmup_steps = 1000
  c.optimizer.step_boundaries = (59 / 89, 79 / 89)  # Steps 60k and 80k (89k after warmup).
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5000
  c.eval_every_steps = 30_000
  c.eval_batch_size = 8
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = 'default'  # COCO has no small variant; runlocal only shrinks the model.
    c.model.backbone = 'resnet18'
    c.model.fpn_width = 16
    c.model.rpn.anchor_sizes = (8.0, 16.0, 32.0, 64.0, 128.0)
    c.model.rpn.width = 16
    c.model.rpn.pre_nms_topk_train = c.model.rpn.pre_nms_topk_test = 200
    c.model.rpn.post_nms_topk_train = c.model.rpn.post_nms_topk_test = 32
    c.model.roi.batch_size = 16
    c.model.roi.head_hidden = 32
  else:  # Real size (the torchvision and Mask / Keypoint R-CNN configs build on this one).
    c = defaults.real_size_xla_options(c)
  return c
