"""Detection metrics: COCO AP via pycocotools (boxes, masks, keypoints) and VOC AP50."""
from metrics.coco import CocoEvaluator, encode_masks
from metrics.voc import VocEvaluator, voc_ap

__all__ = ["CocoEvaluator", "VocEvaluator", "encode_masks", "voc_ap"]
