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


def shapes_region_detector(name: str, arg) -> ml_collections.ConfigDict:
  """What R-CNN, Fast R-CNN, Faster R-CNN and the sliding window share on 64x64 Shapes.

  The papers' RoI sampling (IoU >= 0.5 foreground, 25% of the sampled RoIs at most; 64 per image
  here, 128 over 2 images in Fast R-CNN) and two-layer MLP head (256 wide here, 4096 there).
  `arg`: the parsed `runlocal`, `demo`, `backbone`, `classifier` arguments.
  """
  c = base_detection_config()
  c.model.name = name
  c.model.backbone = arg.backbone
  c.model.roi_batch_size = 64
  c.model.roi_positive_fraction = 0.25
  c.model.head_hidden = 256
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
    c.model.head_hidden = 32
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
  c.model.roi_batch_size = 32
  if not arg.runlocal:
    c.batch_size = 8
    c.eval_batch_size = 8  # Every region is a CNN pass: 8 images are hundreds of crops.
  return c
