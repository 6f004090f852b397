"""Defaults shared by the detection configs: the task, the post-processing and the eval budget."""
import ml_collections

from configs import common


def base_detection_config() -> ml_collections.ConfigDict:
  c = common.base_config()
  c.task = 'detection'
  c.loss = ml_collections.ConfigDict()  # Keyword arguments of the model family's loss.
  c.detect = ml_collections.ConfigDict()
  c.detect.score_threshold = 0.01  # Candidates at or below it never enter NMS.
  c.detect.nms_iou_threshold = 0.45  # Per class; the SSD paper's value.
  c.detect.pre_nms_topk = 200  # Best (box, class) pairs that enter NMS, per image.
  c.detect.max_detections = 100  # Per image, COCO's maxDets.
  c.detect.show_score = 0.3  # Overlays draw detections scoring at least this.
  return c


def option_groups(c: ml_collections.ConfigDict, *names: str) -> ml_collections.ConfigDict:
  """Adds the R-CNN family's option groups to c.model: 'rpn' (anchors, RPN, proposals), 'roi'
  (RoI sampling, pooling, box head), 'mask', 'keypoint' (models/*: RPNOptions, RoIOptions,
  MaskOptions, KeypointOptions hold the fields and their defaults)."""
  for name in names:
    if name not in c.model:
      c.model[name] = ml_collections.ConfigDict()
  return c


def torchvision_rcnn(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """torchvision's R-CNN ResNet-50 FPN (v1) settings on a Faster R-CNN config `c`.

  As models/torchvision_detection.py's TORCHVISION_COMMON and DETECT, which the parity tests
  check: ImageNet mean/std on [0, 1] inputs; frozen batch norm with eps 0 (the COCO weights'),
  3 trainable ResNet stages; anchors 32..512 per level, rounded, at stride padded image size //
  cells; 1000
  proposals per level before and per image after NMS at 0.7 per level, min size 1e-3; RoIAlign
  aligned=False; detections above 0.05, sides >= 0.01, per-class NMS 0.5, top 100; inputs
  resized to a shorter side of 800 and a longer one of at most 1333.
  """
  c = option_groups(c, 'rpn', 'roi')
  c.model.backbone = 'resnet50'
  c.model.fpn_strides = (4, 8, 16, 32)
  c.model.fpn_width = 256
  c.model.pixel_mean = (0.485, 0.456, 0.406)
  c.model.pixel_std = (0.229, 0.224, 0.225)
  c.model.pixel_scale = 1.0
  c.model.frozen_bn = True
  c.model.bn_epsilon = 0.0
  c.model.trainable_layers = 3
  c.model.rpn.anchor_sizes = (32.0, 64.0, 128.0, 256.0, 512.0)
  c.model.rpn.anchor_ratios = (0.5, 1.0, 2.0)
  c.model.rpn.anchor_placement = 'torchvision'
  # Each image as alone at its own padded size, as torchvision's evaluation (one image a batch):
  # anchor strides from that size, and at test time features zeroed beyond it.
  c.model.rpn.anchor_canvas = 'image'
  c.model.per_image_canvas = True
  c.model.rpn.width = 256
  c.model.rpn.per_level = True
  c.model.rpn.min_size = 1e-3
  c.model.rpn.nms_iou = 0.7
  c.model.rpn.pre_nms_topk_train = c.model.rpn.post_nms_topk_train = 2000
  c.model.rpn.pre_nms_topk_test = c.model.rpn.post_nms_topk_test = 1000
  c.model.roi.batch_size = 512
  c.model.roi.positive_fraction = 0.25
  c.model.roi.head_hidden = 1024
  c.model.roi.pooling = 'align'
  c.model.roi.size = 7
  c.model.roi.aligned = False
  c.model.roi.sampling_ratio = 2
  c.detect.score_threshold = 0.05
  c.detect.nms_iou_threshold = 0.5
  # torchvision sends every (box, class) pair above 0.05 into NMS; a softmax row has at most 19.
  c.detect.pre_nms_topk = 19 * c.model.rpn.post_nms_topk_test
  c.detect.max_detections = 100
  c.detect.min_size = 1e-2
  c.data.eval_min_size = 800  # The eval-time resize (data/eval_resize.py).
  c.data.eval_max_size = 1333
  c.data.eval_size_divisor = 32
  return c


def real_size_xla_options(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """XLA:CPU options for the real-size R50-FPN steps (BENCHMARKS.md; not for `runlocal`: at 64 px
  there is nothing to save). The train step takes the memory-optimized scheduler: Faster R-CNN's
  temporaries at 800x1344 go 1.995 -> 1.888 GB, its step time unchanged (fifth 2026-12-06
  session). The eval step takes XLA's older loop emitters: its compile went 4.4 -> 3.8 s, the
  step unchanged (tenth session); for the train step they were slower to compile."""
  c.xla_options.xla_cpu_scheduler_type = 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'
  c.eval_xla_options.xla_cpu_use_fusion_emitters = False
  return c


def shapes_region_detector(name: str, arg) -> ml_collections.ConfigDict:
  """What R-CNN, Fast R-CNN, Faster R-CNN and the sliding window share on 64x64 Shapes.

  The papers' RoI sampling (IoU >= 0.5 foreground, 25% of the sampled RoIs at most; 64 per image
  here, 128 over 2 images in Fast R-CNN) and two-layer MLP head (256 wide here, 4096 there).
  `arg`: the parsed `runlocal`, `demo`, `backbone`, `classifier` arguments.
  """
  c = option_groups(base_detection_config(), 'roi')
  c.model.name = name
  c.model.backbone = arg.backbone
  c.model.roi.batch_size = 64
  c.model.roi.positive_fraction = 0.25
  c.model.roi.head_hidden = 256
  c.model.classifier = arg.classifier  # The head's scores; the task gives the loss the same kind.
  c.detect.nms_iou_threshold = 0.5  # Fast R-CNN's per-class NMS.

  c.batch_size = 16
  c.total_steps = 2000
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 200
  c.optimizer.weight_decay = 1e-4
  c.log_every_steps = 100
  c.checkpoint_every_steps = 500
  c.eval_every_steps = 1000
  c.data.augment.flip = True
  if arg.demo:
    c.total_steps = 800
  if arg.runlocal:
    common.runlocal(c)
    c.model.roi.head_hidden = 32
  return c


def selective_search(c: ml_collections.ConfigDict, max_proposals: int = 100):
  """External proposals from selective search's fast mode, cached next to the dataset."""
  c.data.proposals.method = 'selective_search_fast'
  c.data.proposals.max_proposals = max_proposals  # Augmentation moves them with the image.
  return c


def per_crop_cnn(c: ml_collections.ConfigDict, arg) -> ml_collections.ConfigDict:
  """R-CNN's per-region CNN pass (R-CNN and the sliding window): every region is warped to
  32x32 and the head flattens the crop's stride-8 map (4x4); 32 RoIs per image, 8 images."""
  c.model.crop_size = 32
  c.model.feature_stride = 8
  c.model.roi.batch_size = 32
  if not arg.runlocal:
    c.batch_size = 8
    c.eval_batch_size = 8  # Every region is a CNN pass: 8 images are hundreds of crops.
  return c
