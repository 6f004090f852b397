"""COCO evaluation by the official protocol: detections as COCO results in each original image's
pixel frame with the file's category ids, scored by pycocotools against the dataset's own JSON.

This is what detectron2's COCOEvaluator and torchvision's references do, unlike
`metrics.coco.CocoEvaluator`, which rebuilds the ground truth from (resized) batches: here the
annotation file's own segment areas set the small / medium / large ranges, overlapping masks stay
whole, crowd regions are the file's, and boxes are where the file has them. `image_results`
makes the result dicts that both evaluation and `tools/predict.py`'s predictions.json hold, so
pycocotools run on predictions.json gives eval.py's numbers.

Result dicts carry every geometry the model gives (bbox, segmentation, keypoints). loadRes takes
the area of a result from its bbox when it has one; for mask AP the bbox is dropped so that masks
are ranged by their own area (as detectron2 does). Keypoint results keep their bbox.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ops.boxes import yxyx_to_xywh
from ops.masks import paste_masks

# COCOeval.stats in order: the 12 numbers of its summary (10 for keypoints, which have no 'small').
BOX_STATS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')
KEYPOINT_STATS = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
MASK_THRESHOLD = 0.5  # He et al. 2017: pasted mask probabilities binarised at 0.5.


def to_original(boxes, image_hw, orig_hw) -> np.ndarray:
  """(y1, x1, y2, x2) boxes [D, 4] of the resized frame -> the original image's, clipped."""
  ry, rx = (np.asarray(orig_hw, np.float64) / np.maximum(np.asarray(image_hw, np.float64), 1))
  out = np.asarray(boxes, np.float64) * np.array([ry, rx, ry, rx])
  h, w = (float(v) for v in orig_hw)
  return out.clip(0, np.array([h, w, h, w]))


def encode(masks: np.ndarray) -> list[dict]:
  """Binary masks [D, H, W] -> compressed RLE with str counts (JSON-ready)."""
  if not len(masks):
    return []
  rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
  return [dict(r, counts=r['counts'].decode()) for r in rles]


def image_results(pred: dict, *, image_hw, orig_hw, image_id, category_ids,
                  score_threshold: float = -np.inf, extra: dict | None = None,
                  paste=paste_masks) -> list[dict]:
  """One image's detections as COCO result dicts in the original frame.

  `pred`: numpy arrays of one image: boxes [D, 4] (y1, x1, y2, x2) in the resized frame, scores,
  labels (1..K), valid; optionally mask_probs [D, s, s] (per-box mask probabilities) and
  keypoints [D, J, 3] (y, x, score) in the resized frame. `category_ids[k - 1]` is label k's id
  in the dataset's file. `extra`: keys copied into every dict (e.g. file_name). `paste`: how
  masks [D, s, s] go into an image of static size at boxes [D, 4] (the model's own method).
  """
  keep = np.flatnonzero(np.asarray(pred['valid']) & (np.asarray(pred['scores']) >= score_threshold))
  boxes = to_original(np.asarray(pred['boxes'])[keep], image_hw, orig_hw)
  out = [{'image_id': int(image_id), 'category_id': int(category_ids[int(pred['labels'][j]) - 1]),
          'bbox': [round(float(v), 3) for v in xywh], 'score': float(pred['scores'][j]),
          **(extra or {})} for j, xywh in zip(keep, yxyx_to_xywh(boxes), strict=True)]
  if 'mask_probs' in pred and len(keep):
    probs = np.asarray(pred['mask_probs'])[keep]
    pasted = np.asarray(paste(probs, boxes.astype(np.float32), tuple(int(v) for v in orig_hw)))
    for result, rle in zip(out, encode(pasted >= MASK_THRESHOLD), strict=True):
      result['segmentation'] = rle
  if 'keypoints' in pred and len(keep):
    ry, rx = np.asarray(orig_hw, np.float64) / np.maximum(np.asarray(image_hw, np.float64), 1)
    kp = np.asarray(pred['keypoints'], np.float64)[keep]
    # Our pixel i spans [i, i + 1); COCO's keypoint x = i is that pixel's index (data/coco.py).
    xyv = np.stack([kp[..., 1] * rx - 0.5, kp[..., 0] * ry - 0.5, np.ones(kp.shape[:2])], -1)
    for result, points in zip(out, xyv.round(2), strict=True):
      result['keypoints'] = points.reshape(-1).tolist()
  return out


def load_annotations(path_or_coco) -> COCO:
  """A pycocotools index of an annotation file (or the COCO object itself), quietly."""
  if isinstance(path_or_coco, COCO):
    return path_or_coco
  with contextlib.redirect_stdout(io.StringIO()):
    return COCO(path_or_coco)


def results_for(results: list[dict], iou_type: str) -> list[dict]:
  """The result dicts loadRes should see for `iou_type` (see the module docstring)."""
  if iou_type == 'bbox':
    return [{k: v for k, v in r.items() if k not in ('segmentation', 'keypoints')}
            for r in results]
  if iou_type == 'segm':
    return [{k: v for k, v in r.items() if k not in ('bbox', 'keypoints')} for r in results]
  return [{k: v for k, v in r.items() if k != 'segmentation'} for r in results]


def evaluate(annotations, results: list[dict], iou_type: str, *, image_ids=None,
             kpt_oks_sigmas=None) -> dict:
  """COCOeval of `results` on the annotation file (a path or a COCO): its summary numbers named
  as BOX_STATS / KEYPOINT_STATS.

  `image_ids`: the images evaluated (default: all of the file's). -1 where a range has no
  ground truth, 0 when there are no results (pycocotools' loadRes cannot take none).
  """
  keys = KEYPOINT_STATS if iou_type == 'keypoints' else BOX_STATS
  gt = load_annotations(annotations)
  if not results:
    return {k: 0.0 for k in keys}
  with contextlib.redirect_stdout(io.StringIO()):
    dt = gt.loadRes(results_for(results, iou_type))
    ev = COCOeval(gt, dt, iouType=iou_type)
    if image_ids is not None:
      ev.params.imgIds = sorted(int(i) for i in image_ids)
    if iou_type == 'keypoints' and kpt_oks_sigmas is not None:
      ev.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas, float)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return {k: float(v) for k, v in zip(keys, ev.stats, strict=False)}


class ProtocolEvaluator:
  """Collects `image_results` over an eval pass; `compute()` scores them per iou type.

  Metric names: box 'AP', 'AP50', ...; masks 'mask_AP', ...; keypoints 'keypoint_AP', ...
  """

  PREFIX = {'bbox': '', 'segm': 'mask_', 'keypoints': 'keypoint_'}

  def __init__(self, annotations, category_ids, iou_types=('bbox',), kpt_oks_sigmas=None,
               paste=paste_masks):
    self.paste = paste
    self.annotations = load_annotations(annotations)
    self.category_ids = tuple(category_ids)
    self.iou_types = tuple(iou_types)
    self.kpt_oks_sigmas = kpt_oks_sigmas
    self.results, self.image_ids = [], []

  def add(self, pred: dict, *, image_hw, orig_hw, image_id):
    self.image_ids.append(int(image_id))
    self.results += image_results(pred, image_hw=image_hw, orig_hw=orig_hw, image_id=image_id,
                                  category_ids=self.category_ids, paste=self.paste)

  def compute(self) -> dict:
    out = {}
    for iou_type in self.iou_types:
      metrics = evaluate(self.annotations, self.results, iou_type, image_ids=self.image_ids,
                         kpt_oks_sigmas=self.kpt_oks_sigmas)
      out.update({self.PREFIX[iou_type] + k: v for k, v in metrics.items()})
    return out
