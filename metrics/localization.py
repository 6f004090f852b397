"""Classification + localization metrics: top-1 accuracy and CorLoc (numpy, on the host)."""
import numpy as np


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of a[i] with b[i] for (y1, x1, y2, x2) boxes [N, 4] -> [N] (0 for empty unions)."""
  hw = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None)
  inter = hw[:, 0] * hw[:, 1]
  area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)
  union = area(a) + area(b) - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def localization_metrics(pred_labels, pred_boxes, gt_labels, gt_boxes,
                         iou_threshold: float = 0.5) -> dict:
  """One predicted (label, box) per image against its one true object.

  top1: the label is right. CorLoc: the label is right *and* IoU >= iou_threshold (the
  classification + localization criterion of ILSVRC's localization task with one guess).
  box_accuracy: IoU >= iou_threshold whatever the label.
  """
  ious = paired_iou(np.asarray(pred_boxes, np.float64), np.asarray(gt_boxes, np.float64))
  right = np.asarray(pred_labels) == np.asarray(gt_labels)
  located = ious >= iou_threshold
  mean = lambda x: float(np.mean(x)) if len(x) else 0.0
  return {'top1': mean(right), 'corloc': mean(right & located), 'box_accuracy': mean(located),
          'mean_iou': mean(ious), 'num_images': len(ious)}
