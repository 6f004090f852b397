"""Selective search region proposals (Uijlings et al. 2013), computed once per split and cached.

R-CNN and Fast R-CNN (Girshick et al.) classify external proposals instead of learning them.
Selective search costs ~15 ms (fast) to ~50 ms (quality) per 64x64 image and far more on VOC-sized
ones, too slow to run inside the input pipeline every epoch, so each split is computed once and
stored next to the dataset, in `<builder.data_dir>/proposals/<mode>_<max>_<split>.npz`: deleting
or regenerating the prepared dataset also drops its proposals, so they can never go stale.

OpenCV ranks regions by `rand() * hierarchy level`, using the C library's global `rand()`, which
neither `cv2.setRNGSeed` nor Python can see; `selective_search` seeds it with `srand(0)` right
before each call (under a lock), so that an image always gets the same boxes in the same order.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
import threading
import time

import cv2
import numpy as np
import tqdm

from data import source as data_source
from ops.boxes import iou

MODES = ('fast', 'quality')
# config.data.proposals.method -> selective search mode.
METHODS = {'selective_search_fast': 'fast', 'selective_search_quality': 'quality'}
# Proposals thinner than this are single rows/columns of pixels: never an object.
MIN_SIDE = 2

_LIBC = ctypes.CDLL(ctypes.util.find_library('c'))
# srand() and OpenCV's rand() calls must not interleave with another thread's.
_RAND_LOCK = threading.Lock()


def mode_of(method: str) -> str:
  """'selective_search_fast' -> 'fast'; unknown names fail with the valid ones."""
  if method not in METHODS:
    raise ValueError(f'Unknown proposal method {method!r}; set config.data.proposals.method to '
                     f'one of {sorted(METHODS)} (or None for no proposals).')
  return METHODS[method]


def selective_search(image: np.ndarray, mode: str = 'fast',
                     max_proposals: int = 2000) -> np.ndarray:
  """Proposals float32 [K <= max_proposals, 4] (y1, x1, y2, x2) of an RGB uint8 [H, W, 3] image.

  In OpenCV's order (coarse to fine, randomised within a level); duplicates and boxes with a side
  under MIN_SIDE pixels are dropped.
  """
  if mode not in MODES:
    raise ValueError(f'Unknown selective search mode {mode!r}; valid modes: {MODES}')
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise ValueError(f'selective_search needs an RGB uint8 [H, W, 3] image, got {image.dtype} '
                     f'{image.shape}')
  # One image is too small a job for OpenCV's thread pool, and the input pipeline's threads
  # already keep the cores busy.
  cv2.setNumThreads(1)
  search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
  search.setBaseImage(np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR.
  if mode == 'fast':
    search.switchToSelectiveSearchFast()
  else:
    search.switchToSelectiveSearchQuality()
  with _RAND_LOCK:
    _LIBC.srand(0)
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)
  x, y, w, h = rects.T
  boxes = np.stack([y, x, y + h, x + w], axis=1)
  boxes = boxes[(h >= MIN_SIDE) & (w >= MIN_SIDE)]
  _, first = np.unique(boxes, axis=0, return_index=True)
  return boxes[np.sort(first)][:max_proposals]


def cache_path(cfg, split: str) -> str:
  """Where the proposals of `split` of the dataset of `cfg` (a config.data) are cached."""
  mode = mode_of(cfg.proposals.method)
  builder = data_source.ensure_prepared(cfg)
  name = f'{mode}_{int(cfg.proposals.max_proposals)}_{split}.npz'
  return os.path.join(builder.data_dir, 'proposals', name)


def _save_atomically(path: str, **arrays) -> None:
  """Writes an .npz that is either complete or absent, even if the process is killed meanwhile."""
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path), suffix='.tmp')
  try:
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users of the dataset.
    with os.fdopen(fd, 'wb') as f:
      np.savez_compressed(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    os.remove(tmp)
    raise


def compute(cfg, split: str) -> dict:
  """Runs selective search over every example of `split`, in source order (no caching)."""
  mode, max_proposals = mode_of(cfg.proposals.method), int(cfg.proposals.max_proposals)
  source = data_source.DecodedSource(cfg, split)
  boxes = np.zeros((len(source), max_proposals, 4), np.float32)
  count = np.zeros((len(source),), np.int32)
  start = time.perf_counter()
  for i in tqdm.trange(len(source), desc=f'selective search ({mode}) {split}'):
    found = selective_search(source[i]['image'], mode, max_proposals)
    boxes[i, :len(found)], count[i] = found, len(found)
  seconds = (time.perf_counter() - start) / max(len(source), 1)
  return dict(boxes=boxes, count=count, seconds_per_image=np.float64(seconds))


def load_or_compute(cfg, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(boxes float32 [N, max_proposals, 4], count int32 [N]) of `split`, from the cache if there.

  `cfg` is a config.data whose `proposals.method` is set. The first call computes and caches them
  (with a progress bar); later calls, in any process, read the file.
  """
  path = cache_path(cfg, split)
  if not os.path.exists(path):
    print(f'Computing {cfg.proposals.method} proposals of split {split!r} into {path} (first use; '
          'later runs reuse it).', flush=True)
    _save_atomically(path, **compute(cfg, split))
  with np.load(path) as cached:
    return cached['boxes'], cached['count']


def cached_seconds_per_image(cfg, split: str) -> float:
  """How long selective search took per image when the cache of `split` was computed."""
  with np.load(cache_path(cfg, split)) as cached:
    return float(cached['seconds_per_image'])


def recall(proposal_boxes: np.ndarray, count: np.ndarray, gt_boxes_list,
           thresholds=(0.5, 0.7)) -> dict:
  """Fraction of ground-truth boxes that some proposal overlaps with IoU >= t, for each t.

  proposal_boxes [N, P, 4] (the first count[i] of row i are real), gt_boxes_list N arrays [K_i, 4].
  Returns {'recall@0.5': ..., 'recall@0.7': ..., 'num_gt': total K}.
  """
  best = []  # Per ground-truth box: its highest IoU with any proposal.
  for props, n, gt in zip(proposal_boxes, count, gt_boxes_list, strict=True):
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    if len(gt):
      ious = np.asarray(iou(gt, props[:n])) if n else np.zeros((len(gt), 1), np.float32)
      best.append(ious.max(axis=1))
  best = np.concatenate(best) if best else np.zeros((0,), np.float32)
  out = {f'recall@{t:g}': float(np.mean(best >= t)) if len(best) else float('nan')
         for t in thresholds}
  out['num_gt'] = len(best)
  return out

