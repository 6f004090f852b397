"""What the Mask R-CNN configs share: a Faster R-CNN config plus the paper's heads."""
import ml_collections

from configs.det.defaults import option_groups


def mask_rcnn(c: ml_collections.ConfigDict, *, masks: bool, num_keypoints: int = 0,
              head_convs: int, head_width: int, head_chunk: int = 16) -> ml_collections.ConfigDict:
  """Turns Faster R-CNN config `c` into Mask R-CNN with a mask and/or a keypoint head.

  Both heads read 14x14 RoIAlign features (He et al. 2017: RoIAlign is what makes masks and
  joints line up, their Table 2c / Table 6); the paper's test-time boxes are those scoring above
  0.05 after per-class NMS at 0.5 (detectron2's values), on which the heads then run.
  In training the heads run over the F foreground slots in chunks of `head_chunk` slots and skip
  those past every image's positives, as torchvision and detectron2 run them on the positives
  only: COCO averages ~7 objects per image, so most steps need far fewer than R50-FPN's F = 128
  slots (8 chunks of 16).
  """
  c = option_groups(c, 'mask', 'keypoint')
  c.task = 'instance_segmentation'
  c.model.name = 'mask_rcnn'
  c.model.roi.pooling = 'align'
  c.model.mask.enabled = masks
  c.model.head_chunk = head_chunk
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
