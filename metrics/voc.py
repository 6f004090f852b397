"""PASCAL VOC AP (VOC2010+ all-point interpolation) per class and its mean.

Follows the devkit's greedy matching: detections of a class in descending score order each take
the unmatched ground-truth box they overlap most when IoU > threshold (a second hit on a matched
box is a false positive); 'difficult' boxes neither count as positives nor penalise detections.
"""
import numpy as np


def voc_ap(recall, precision) -> float:
  """Area under the precision envelope (VOC2010+: every recall point, not 11)."""
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.concatenate([[0.0], precision, [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: max to the right
  i = np.flatnonzero(mrec[1:] != mrec[:-1])
  return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _iou_one_to_many(box, boxes, plus_one):
  # The devkit measures boxes in inclusive pixel indices (+1); continuous boxes use plus_one=0.
  iy = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + plus_one, 0)
  ix = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + plus_one, 0)
  inter = iy * ix
  area = lambda b: (b[..., 2] - b[..., 0] + plus_one) * (b[..., 3] - b[..., 1] + plus_one)
  union = area(box) + area(boxes) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class VocEvaluator:
  """Accumulates images; compute() -> {'AP50': mean over classes with (non-difficult) ground
  truth, 'per_class': {class_id: AP}}.

  Same `add` arguments as metrics.coco.CocoEvaluator (boxes (y1, x1, y2, x2), padded arrays with
  valid masks), plus optional gt_difficult.
  """

  def __init__(self, iou_threshold: float = 0.5, *, pixel_inclusive: bool = False):
    """pixel_inclusive=True reproduces the devkit's +1 box sizes (integer VOC annotations)."""
    self.iou_threshold = iou_threshold
    self.plus_one = 1.0 if pixel_inclusive else 0.0
    self.reset()

  def reset(self):
    self._gt = {}  # image_id -> (boxes, labels, difficult)
    self._dets = []  # (image_id, label, score, box)

  def add(self, image_id, *, gt_boxes, gt_labels, gt_valid=None, det_boxes, det_scores,
          det_labels, det_valid=None, gt_difficult=None, **unused):
    """Adds one image (extra keyword arguments of CocoEvaluator.add are ignored)."""
    del unused
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gv = np.ones(len(gt_boxes), bool) if gt_valid is None else np.asarray(gt_valid, bool)
    diff = np.zeros(len(gt_boxes), bool) if gt_difficult is None else np.asarray(gt_difficult,
                                                                                   bool)
    self._gt[image_id] = (gt_boxes[gv], np.asarray(gt_labels)[gv], diff[gv])
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    dv = np.ones(len(det_boxes), bool) if det_valid is None else np.asarray(det_valid, bool)
    for j in np.flatnonzero(dv):
      self._dets.append((image_id, int(det_labels[j]), float(det_scores[j]), det_boxes[j]))

  def compute(self) -> dict:
    classes = sorted({int(c) for _, labels, _ in self._gt.values() for c in labels})
    per_class = {c: self._class_ap(c) for c in classes}
    aps = [v for v in per_class.values() if not np.isnan(v)]
    ap = float(np.mean(aps)) if aps else 0.0
    return {"AP50": ap, "per_class": per_class}

  def _class_ap(self, cls) -> float:
    gts, matched, npos = {}, {}, 0
    for image_id, (boxes, labels, diff) in self._gt.items():
      sel = labels == cls
      gts[image_id] = (boxes[sel], diff[sel])
      matched[image_id] = np.zeros(int(sel.sum()), bool)
      npos += int(np.sum(~diff[sel]))
    dets = [d for d in self._dets if d[1] == cls and d[0] in gts]
    # Stable sort on -score: equal scores keep insertion order, as the devkit's argsort does not
    # promise anything better.
    dets.sort(key=lambda d: -d[2])
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    for i, (image_id, _, _, box) in enumerate(dets):
      boxes, diff = gts[image_id]
      if len(boxes) == 0:
        fp[i] = 1
        continue
      ious = _iou_one_to_many(box, boxes, self.plus_one)
      j = int(np.argmax(ious))
      if ious[j] > self.iou_threshold:
        if diff[j]:
          continue
        if not matched[image_id][j]:
          tp[i] = 1
          matched[image_id][j] = True
        else:
          fp[i] = 1
      else:
        fp[i] = 1
    if npos == 0:  # only 'difficult' boxes: undefined, left out of the mean like the devkit's NaN.
      return float("nan")
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision)
