"""COCO-style AP (boxes, masks, keypoints) through pycocotools, from in-memory arrays.

Ground truth and detections are added one image at a time in the codebase's units (boxes
(y1, x1, y2, x2) in pixels, keypoints (y, x, v)); they are converted to COCO JSON dicts
(boxes (x, y, w, h), keypoints (x, y, v), masks as compressed RLE) and evaluated with COCOeval.
"""
import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ops.boxes import yxyx_to_xywh

_BOX_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_KEYPOINT_KEYS = ("AP", "AP50", "AP75", "APm", "APl")  # COCO has no 'small' range for keypoints.
IOU_TYPES = ("bbox", "segm", "keypoints")


def encode_masks(masks):
  """Binary masks [N, H, W] -> compressed RLE dicts (pycocotools wants Fortran-ordered uint8)."""
  masks = np.asarray(masks)
  if masks.ndim != 3:
    raise ValueError(f"Expected masks [N, H, W], got shape {masks.shape}.")
  rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
  return list(rles) if isinstance(rles, list) else [rles]


def _select(valid, n):
  return np.arange(n) if valid is None else np.flatnonzero(np.asarray(valid))


def _keypoints_to_coco(kpts):
  """[K, 3] (y, x, v) -> COCO's flat [x1, y1, v1, x2, ...]."""
  kpts = np.asarray(kpts, np.float64)
  return np.stack([kpts[:, 1], kpts[:, 0], kpts[:, 2]], 1).reshape(-1).tolist()


class CocoEvaluator:
  """Accumulates images, then runs COCOeval.

  Usage: ev = CocoEvaluator('bbox'); ev.add(image_id, gt_boxes=..., gt_labels=..., ...) per
  image; ev.compute() -> {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'} (keypoints: no 'APs'), in
  [0, 1]; pycocotools reports -1 where a range has no ground truth.
  """

  def __init__(self, iou_type: str = "bbox", *, category_ids=None, kpt_oks_sigmas=None,
               debug: bool = False):
    """
    Args:
      iou_type: 'bbox', 'segm' or 'keypoints'.
      category_ids: the class ids to evaluate (e.g. range(1, num_classes)); default: every label
        seen in the ground truth.
      kpt_oks_sigmas: per-keypoint OKS sigmas for 'keypoints' (COCO's 17 person keypoints by
        default, which only fits 17-keypoint data).
      debug: let pycocotools print its progress and summary table.
    """
    if iou_type not in IOU_TYPES:
      raise ValueError(f"Unknown iou_type {iou_type!r}; use one of {IOU_TYPES}.")
    self.iou_type = iou_type
    self.category_ids = None if category_ids is None else [int(c) for c in category_ids]
    self.kpt_oks_sigmas = None if kpt_oks_sigmas is None else np.asarray(kpt_oks_sigmas, float)
    self.debug = debug
    self.reset()

  def reset(self):
    self._images, self._gts, self._dets = [], [], []
    self._image_ids = set()

  def add(self, image_id, *, gt_boxes, gt_labels, gt_valid=None, det_boxes, det_scores,
          det_labels, det_valid=None, gt_masks=None, det_masks=None, gt_keypoints=None,
          det_keypoints=None, gt_iscrowd=None, gt_area=None, image_hw=None):
    """Adds one image.

    Boxes are [M, 4] / [N, 4] (y1, x1, y2, x2); labels int class ids; *_valid bool masks select
    the real entries of padded arrays. For 'segm': gt_masks / det_masks are binary [M, H, W] /
    [N, H, W] arrays or lists of RLE dicts. For 'keypoints': [M, K, 3] (y, x, visibility) and
    [N, K, 3] (y, x, score). gt_area defaults to the box area (mask area for 'segm').
    """
    image_id = int(image_id)
    if image_id in self._image_ids:
      raise ValueError(f"Image id {image_id} was added twice.")
    self._image_ids.add(image_id)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gi = _select(gt_valid, len(gt_boxes))
    di = _select(det_valid, len(det_boxes))
    gt_labels, det_labels = np.asarray(gt_labels), np.asarray(det_labels)
    det_scores = np.asarray(det_scores, np.float64)

    gt_rles = det_rles = None
    if self.iou_type == "segm":
      if gt_masks is None or det_masks is None:
        raise ValueError("iou_type='segm' needs gt_masks and det_masks.")
      gt_rles = self._rles(gt_masks, gi)
      det_rles = self._rles(det_masks, di)
      if image_hw is None and gt_rles:
        image_hw = tuple(gt_rles[0]["size"])
    if self.iou_type == "keypoints" and (gt_keypoints is None or det_keypoints is None):
      raise ValueError("iou_type='keypoints' needs gt_keypoints and det_keypoints.")
    h, w = image_hw if image_hw is not None else (0, 0)
    self._images.append({"id": image_id, "height": int(h), "width": int(w)})

    xywh = yxyx_to_xywh(gt_boxes)
    for n, j in enumerate(gi):
      ann = {"image_id": image_id, "category_id": int(gt_labels[j]), "bbox": xywh[j].tolist(),
             "iscrowd": int(gt_iscrowd[j]) if gt_iscrowd is not None else 0}
      if gt_rles is not None:
        ann["segmentation"] = gt_rles[n]
        area = float(mask_utils.area(gt_rles[n]))
      else:
        area = float(xywh[j, 2] * xywh[j, 3])
      ann["area"] = float(gt_area[j]) if gt_area is not None else area
      if self.iou_type == "keypoints":
        kp = np.asarray(gt_keypoints[j])
        ann["keypoints"] = _keypoints_to_coco(kp)
        ann["num_keypoints"] = int(np.sum(kp[:, 2] > 0))
      self._gts.append(ann)

    det_xywh = yxyx_to_xywh(det_boxes)
    for n, j in enumerate(di):
      det = {"image_id": image_id, "category_id": int(det_labels[j]),
             "score": float(det_scores[j])}
      # loadRes picks the result type by key, so each type carries only its own geometry.
      if self.iou_type == "bbox":
        det["bbox"] = det_xywh[j].tolist()
      elif self.iou_type == "segm":
        det["segmentation"] = det_rles[n]
      else:
        det["keypoints"] = _keypoints_to_coco(det_keypoints[j])
      self._dets.append(det)

  @staticmethod
  def _rles(masks, idx):
    if isinstance(masks, list | tuple) and (not masks or isinstance(masks[0], dict)):
      return [masks[i] for i in idx]
    masks = np.asarray(masks)
    return encode_masks(masks[idx]) if len(idx) else []

  def compute(self) -> dict:
    """Runs COCOeval over everything added; returns the summary metrics as floats."""
    keys = _KEYPOINT_KEYS if self.iou_type == "keypoints" else _BOX_KEYS
    if not self._gts:
      return {k: -1.0 for k in keys}  # pycocotools' "undefined".
    if not self._dets:
      return {k: 0.0 for k in keys}  # loadRes cannot take an empty list.
    cats = self.category_ids or sorted({a["category_id"] for a in self._gts})
    dataset = {"images": self._images, "categories": [{"id": c, "name": str(c)} for c in cats],
               "annotations": [dict(a, id=i + 1) for i, a in enumerate(self._gts)]}
    quiet = contextlib.nullcontext() if self.debug else contextlib.redirect_stdout(io.StringIO())
    with quiet:
      gt = COCO()
      gt.dataset = dataset
      gt.createIndex()
      # loadRes adds ids/areas to the dicts it gets; copies keep compute() repeatable.
      dt = gt.loadRes([dict(d) for d in self._dets])
      ev = COCOeval(gt, dt, iouType=self.iou_type)
      if self.iou_type == "keypoints" and self.kpt_oks_sigmas is not None:
        ev.params.kpt_oks_sigmas = self.kpt_oks_sigmas
      ev.params.imgIds = sorted(self._image_ids)
      ev.evaluate()
      ev.accumulate()
      ev.summarize()
    return {k: float(v) for k, v in zip(keys, ev.stats, strict=False)}
