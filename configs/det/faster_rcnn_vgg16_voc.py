r"""Faster R-CNN with VGG16 on Pascal VOC 2007: the paper's setting (Ren et al., NeurIPS 2015).

Paper (Table 3, test on VOC 2007 test): 69.9 mAP trained on VOC 2007 trainval, 73.2 mAP on
VOC 2007 + 2012 trainval; 0.2 s per image (198 ms) on a K40 (Table 5). Their recipe: ImageNet
VGG16, images rescaled to a 600 px shorter side, stride-16 conv5_3, 3 scales (128, 256, 512) x
3 ratios, RPN minibatches of 256 anchors, 2000 RPN proposals in training and 300 at test time,
128 RoIs per image, 7x7 RoI max pooling, two 4096-d FC layers, SGD momentum 0.9, weight decay
5e-4, learning rate 1e-3 for 60k minibatches then 1e-4 for 20k.

  python -m tools.import_weights ...   # an ImageNet VGG16-BN backbone as safetensors
  python train.py --config configs/det/faster_rcnn_vgg16_voc.py --workdir runs/frcnn_voc \
      --config.init.checkpoint=vgg16_bn.safetensors

Our differences: VGG16 with BatchNorm (torchvision's vgg16_bn layout), square 608x608 padded
inputs (static shapes) instead of 600 x up to 1000, VOC 2007 trainval only (compare with 69.9).
Arguments: `runlocal` (a tiny model on 112x112 inputs, for tests).
"""
from configs import common
from configs.det import defaults


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  c = defaults.option_groups(defaults.base_detection_config(), 'rpn', 'roi')
  c.model.name = 'faster_rcnn'
  c.model.backbone = 'vgg16'
  c.model.feature_stride = 16
  c.model.rpn.anchor_sizes = (128.0, 256.0, 512.0)
  c.model.rpn.anchor_ratios = (0.5, 1.0, 2.0)
  c.model.rpn.width = 512
  c.model.rpn.batch_size = 256
  c.model.rpn.pre_nms_topk_train = 12000
  c.model.rpn.post_nms_topk_train = 2000
  c.model.rpn.pre_nms_topk_test = 6000
  c.model.rpn.post_nms_topk_test = 300
  c.model.roi.batch_size = 128
  c.model.roi.positive_fraction = 0.25
  c.model.roi.pooling = 'pool'
  c.model.roi.size = 7
  c.model.roi.head_hidden = 4096
  c.detect.nms_iou_threshold = 0.3  # The released code's test NMS.

  c.data.name = 'voc_detection'
  c.data.variant = '2007'
  c.data.train_split = 'train+validation'
  c.data.eval_split = 'test'
  c.data.image_size = 608
  c.data.max_boxes = 56  # More than the most objects in any VOC image.
  c.data.augment.flip = True  # The paper's only augmentation.

  c.batch_size = 2
  c.total_steps = 80_000
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 1e-3
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = 'step'
  c.optimizer.step_boundaries = (0.75,)  # 60k of 80k.
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5000
  c.eval_every_steps = 20_000
  c.eval_batch_size = 4
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = '2007'  # VOC has no small variant; runlocal only shrinks the model.
    c.model.backbone = 'vgg_small'
    c.model.rpn.anchor_sizes = (16.0, 32.0, 64.0)
    c.model.rpn.width = 32
    c.model.rpn.pre_nms_topk_train = c.model.rpn.pre_nms_topk_test = 200
    c.model.rpn.post_nms_topk_train = c.model.rpn.post_nms_topk_test = 32
    c.model.roi.batch_size = 16
    c.model.roi.head_hidden = 32
    c.data.image_size = 112
  return c
