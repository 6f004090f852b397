"""What the Mask R-CNN configs share: a Faster R-CNN config plus the paper's heads."""
import ml_collections

from configs.det.defaults import option_groups


def mask_rcnn(c: ml_collections.ConfigDict, *, masks: bool, num_keypoints: int = 0,
              head_convs: int, head_width: int) -> ml_collections.ConfigDict:
  """Turns Faster R-CNN config `c` into Mask R-CNN with a mask and/or a keypoint head.

  Both heads read 14x14 RoIAlign features (He et al. 2017: RoIAlign is what makes masks and
  joints line up, their Table 2c / Table 6); the paper's test-time boxes are those scoring above
  0.05 after per-class NMS at 0.5 (detectron2's values), on which the heads then run.
  """
  c = option_groups(c, 'mask', 'keypoint')
  c.task = 'instance_segmentation'
  c.model.name = 'mask_rcnn'
  c.model.roi.pooling = 'align'
  c.model.mask.enabled = masks
  if masks:
    c.model.mask.pool_size = 14
    c.model.mask.convs = head_convs
    c.model.mask.width = head_width
    c.loss.mask_weight = 1.0
  c.model.keypoint.num_keypoints = num_keypoints
  if num_keypoints:
    c.model.keypoint.pool_size = 14
    c.model.keypoint.convs = head_convs
    c.model.keypoint.width = head_width
    c.loss.keypoint_weight = 1.0
  c.detect.score_threshold = 0.05
  c.detect.nms_iou_threshold = 0.5
  return c
