"""The DenseCap metric (Johnson, Karpathy, Fei-Fei, CVPR 2016, sec. 4.1): mean AP over box-overlap
and caption-similarity thresholds, following the authors' evaluation code (densecap/eval_utils).

A detection is a true positive at (IoU t, METEOR m) if the ground-truth region it overlaps most
has IoU >= t with it and no higher-scoring detection took that region, and if its caption's
METEOR against that region's reference phrases is >= m (m = -1: boxes only). AP is the 101-point
max-interpolated area under precision/recall over all images; mAP averages t in {0.3, ..., 0.7}
and m in {-1, 0, 0.05, ..., 0.25}. As in the authors' code, ground-truth boxes of one image that
overlap with IoU > 0.7 are merged into one region (their mean box) with all their phrases.

Caption similarity: METEOR from nltk (`nltk.translate.meteor_score`) with exact and Porter-stem
matching; its WordNet synonym stage is off because the WordNet data is a separate download (no
downloads at run time), so scores can only be lower than full METEOR's on vocabularies with
synonyms (Shapes phrases have none).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nltk.stem.porter import PorterStemmer
from nltk.translate.meteor_score import meteor_score

from ops.boxes import iou as box_iou

IOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
METEOR_THRESHOLDS = (-1.0, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25)
# The paper's thresholds suit Visual Genome's long, varied phrases; on a small closed vocabulary
# shared function words alone score above them ('a small red circle' vs 'a small green star':
# 0.47), so small vocabularies also report mAP over these.
STRICT_METEOR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
MERGE_IOU = 0.7


class _NoWordNet:
  """Stands in for nltk's WordNet corpus reader: no synonyms (the corpus is not installed)."""

  def synsets(self, *args, **kwargs):
    del args, kwargs
    return []


_STEMMER = PorterStemmer()
_NO_WORDNET = _NoWordNet()


def meteor(references: Sequence[str], hypothesis: str) -> float:
  """METEOR (exact + stem matches) of one caption against its reference phrases."""
  refs = [r.split() for r in references if r.split()]
  hyp = hypothesis.split()
  if not refs or not hyp:
    return 0.0
  return float(meteor_score(refs, hyp, stemmer=_STEMMER, wordnet=_NO_WORDNET))


def merge_regions(boxes: np.ndarray, phrases: Sequence[str]) -> tuple[np.ndarray, list]:
  """Greedily groups boxes [K, 4] with IoU > 0.7 to the group's first: (mean boxes, phrases)."""
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  overlap = np.asarray(box_iou(boxes, boxes)) if len(boxes) else np.zeros((0, 0))
  left = np.ones(len(boxes), bool)
  merged, refs = [], []
  for k in range(len(boxes)):
    if not left[k]:
      continue
    group = np.flatnonzero(left & (overlap[k] > MERGE_IOU))
    group = group if k in group else np.append(group, k)
    left[group] = False
    merged.append(boxes[group].mean(axis=0))
    refs.append([phrases[j] for j in group])
  return np.asarray(merged, np.float32).reshape(-1, 4), refs


def interpolated_ap(tp: np.ndarray, scores: np.ndarray, num_positives: int) -> float:
  """101-point max-interpolated AP of detections (tp flags, scores) over all images."""
  if num_positives == 0:
    return float('nan')
  order = np.argsort(-scores, kind='stable')
  tp = tp[order].astype(np.float64)
  hits, total = np.cumsum(tp), np.arange(1, len(tp) + 1)
  recall, precision = hits / num_positives, hits / total
  points = [precision[recall >= t].max() if np.any(recall >= t) else 0.0
            for t in np.linspace(0, 1, 101)]
  return float(np.mean(points))


class DenseCapMetric:
  """Accumulates images, then `result()` -> {'densecap_map', 'densecap_map_strict',
  'detection_map', 'meteor_matched', 'ap_table'}; the strict mAP uses STRICT_METEOR_THRESHOLDS."""

  def __init__(self, iou_thresholds=IOU_THRESHOLDS, meteor_thresholds=METEOR_THRESHOLDS):
    self.iou_thresholds = tuple(iou_thresholds)
    self.meteor_thresholds = tuple(meteor_thresholds)
    self.matches, self.meteor, self.scores = [], [], []  # Per image, detections by score.
    self.num_regions = 0

  def add(self, gt_boxes, gt_phrases: Sequence[str], det_boxes, det_scores,
          det_captions: Sequence[str]) -> None:
    """One image: its ground-truth regions and its detections with their captions."""
    boxes, refs = merge_regions(gt_boxes, gt_phrases)
    det_boxes = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    self.num_regions += len(boxes)
    if not len(det_boxes):
      return
    order = np.argsort(-det_scores, kind='stable')
    overlap = (np.asarray(box_iou(det_boxes[order], boxes)) if len(boxes)
               else np.zeros((len(order), 0)))
    best = overlap.argmax(axis=1) if len(boxes) else np.full(len(order), -1)
    best_iou = overlap.max(axis=1) if len(boxes) else np.zeros(len(order))
    self.matches.append((best_iou, best))
    self.meteor.append(np.asarray([meteor(refs[j], det_captions[d]) if j >= 0 else 0.0
                                   for d, j in zip(order, best, strict=True)]))
    self.scores.append(det_scores[order])

  def _true_positives(self, iou_threshold: float) -> np.ndarray:
    flags = []
    for overlap, region in self.matches:
      # A region goes to the first detection (by score) whose best region it is and that
      # overlaps it enough; later ones with the same best region are false positives.
      taken = set()
      tp = np.zeros(len(region), bool)
      for d in np.flatnonzero(overlap >= iou_threshold):
        if region[d] not in taken:
          taken.add(region[d])
          tp[d] = True
      flags.append(tp)
    return np.concatenate(flags) if flags else np.zeros((0,), bool)

  def ap_table(self, meteor_thresholds) -> np.ndarray:
    """AP [IoU thresholds, METEOR thresholds]."""
    scores = np.concatenate(self.scores) if self.scores else np.zeros((0,))
    meteors = np.concatenate(self.meteor) if self.meteor else np.zeros((0,))
    table = np.zeros((len(self.iou_thresholds), len(meteor_thresholds)))
    for i, t in enumerate(self.iou_thresholds):
      box_tp = self._true_positives(t)
      for j, m in enumerate(meteor_thresholds):
        table[i, j] = interpolated_ap(box_tp & (meteors >= m), scores, self.num_regions)
    return table

  def result(self) -> dict:
    meteors = np.concatenate(self.meteor) if self.meteor else np.zeros((0,))
    table = self.ap_table(self.meteor_thresholds)
    boxes_only = self.meteor_thresholds.index(-1.0) if -1.0 in self.meteor_thresholds else None
    matched = meteors[self._true_positives(0.5)]
    out = {'densecap_map': float(np.mean(table)),
           'densecap_map_strict': float(np.mean(self.ap_table(STRICT_METEOR_THRESHOLDS))),
           # How well the captions of correctly placed boxes read (IoU >= 0.5).
           'meteor_matched': float(np.mean(matched)) if len(matched) else 0.0,
           'ap_table': table.tolist()}
    if boxes_only is not None:
      out['detection_map'] = float(np.mean(table[:, boxes_only]))
    return out
