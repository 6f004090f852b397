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
