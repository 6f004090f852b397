"""Anchor-to-ground-truth matching and balanced sampling, with static shapes (jit and vmap safe)."""
import jax
import jax.numpy as jnp
from jax import lax

from ops import boxes as box_ops

POSITIVE = 1
NEGATIVE = 0
IGNORE = -1


def match(iou_matrix, gt_valid, pos_thresh: float, neg_thresh: float,
          allow_low_quality: bool = False):
  """Match each anchor to its best ground-truth box, as detectron2's Matcher.

  Args:
    iou_matrix: [N, M] IoU between N anchors (or proposals) and M padded ground-truth boxes.
    gt_valid: [M] bool, False for padding; padded boxes never match.
    pos_thresh: IoU >= pos_thresh is positive.
    neg_thresh: IoU < neg_thresh is negative; in between is ignored (neg_thresh == pos_thresh
      gives no ignore band, as in the RoI heads).
    allow_low_quality: also make positive, for every ground-truth box, the anchors with its highest
      IoU (ties included), even below pos_thresh (RPN). Unlike detectron2, a ground-truth box that
      overlaps no anchor at all (highest IoU 0) does not turn every anchor positive.

  Returns:
    matched_gt_index [N] int32 (argmax over valid ground truth; 0 when there is none) and
    label [N] int32 in {1 positive, 0 negative, -1 ignore}.
  """
  _check_thresholds(pos_thresh, neg_thresh)
  n, m = iou_matrix.shape
  if m == 0:
    return jnp.zeros((n,), jnp.int32), jnp.zeros((n,), jnp.int32)
  quality = _quality(iou_matrix, gt_valid)
  is_best = None
  if allow_low_quality:
    is_best = _attains(quality, jnp.max(quality, axis=0), gt_valid)
  return _labels(jnp.max(quality, axis=1), jnp.argmax(quality, axis=1), is_best, gt_valid,
                 pos_thresh, neg_thresh)


def match_boxes(boxes, gt_boxes, gt_valid, pos_thresh: float, neg_thresh: float,
                allow_low_quality: bool = False, *, chunk_size: int = 16384):
  """`match(ops.boxes.iou(boxes, gt_boxes), ...)` without the [N, M] IoU matrix: for N > chunk_size
  the IoU is computed `chunk_size` boxes at a time (twice with allow_low_quality: once for each
  box's and each ground truth's best, once for the boxes attaining the latter). The same result.

  The RPN's anchors at 800x1344 (268,569 x 100 padded boxes per image) made a 205 MiB matrix per
  image plus a copy, live at the batch-2 train step's peak memory (BENCHMARKS.md, ninth session).
  """
  _check_thresholds(pos_thresh, neg_thresh)
  n = boxes.shape[0]
  if n <= chunk_size or gt_boxes.shape[0] == 0:
    return match(box_ops.iou(boxes, gt_boxes), gt_valid, pos_thresh, neg_thresh,
                 allow_low_quality)
  # Zero boxes pad the last chunk: IoU 0, which neither raises a ground truth's best (>= 0 over
  # the real boxes) nor attains a best that counts (> 0); they are cut off below.
  chunks = jnp.pad(boxes, ((0, -n % chunk_size), (0, 0))).reshape(-1, chunk_size, 4)
  quality = lambda b: _quality(box_ops.iou(b, gt_boxes), gt_valid)

  def bests(b):
    q = quality(b)
    return jnp.max(q, axis=1), jnp.argmax(q, axis=1), jnp.max(q, axis=0)

  matched_vals, matches, best_per_gt = lax.map(bests, chunks)
  best_per_gt = jnp.max(best_per_gt, axis=0)
  is_best = None
  if allow_low_quality:
    is_best = lax.map(lambda b: _attains(quality(b), best_per_gt, gt_valid), chunks)
    is_best = is_best.reshape(-1)[:n]
  return _labels(matched_vals.reshape(-1)[:n], matches.reshape(-1)[:n], is_best, gt_valid,
                 pos_thresh, neg_thresh)


def _check_thresholds(pos_thresh, neg_thresh):
  if neg_thresh > pos_thresh:
    raise ValueError(f"neg_thresh={neg_thresh} must be <= pos_thresh={pos_thresh}.")


def _quality(iou_matrix, gt_valid):
  # -1 is below every real IoU, so padding never wins the argmax and never reaches a threshold.
  return jnp.where(gt_valid[None, :], iou_matrix, -1.0)


def _attains(quality, best_per_gt, gt_valid):
  """[N] bool: the box has some valid ground truth's highest IoU (ties included; IoU 0 never)."""
  best = best_per_gt[None, :]
  return jnp.any((quality == best) & gt_valid[None, :] & (best > 0), axis=1)


def _labels(matched_vals, matches, is_best, gt_valid, pos_thresh, neg_thresh):
  label = jnp.where(matched_vals >= pos_thresh, POSITIVE,
                    jnp.where(matched_vals >= neg_thresh, IGNORE, NEGATIVE)).astype(jnp.int32)
  if is_best is not None:
    label = jnp.where(is_best, POSITIVE, label)
  any_valid = jnp.any(gt_valid)
  return jnp.where(any_valid, matches.astype(jnp.int32), 0), jnp.where(any_valid, label, NEGATIVE)


def sample_balanced(labels, num_samples: int, positive_fraction: float, rng):
  """Pick a fixed-size random minibatch of anchors, as detectron2's subsample_labels.

  At most int(num_samples * positive_fraction) positives (label 1), filled up with negatives
  (label 0); ignored anchors (-1) are never picked. Random within each group: every anchor gets a
  uniform key and top_k picks the largest keys of each group.

  Args:
    labels: [N] int in {1, 0, -1}.
    num_samples: static size of the minibatch.
    positive_fraction: the largest share of positives.
    rng: a jax.random key.

  Returns:
    indices [num_samples] int32 (positives first, then negatives; 0 where not valid) and
    valid [num_samples] bool (False when there are too few positives plus negatives).
  """
  n = labels.shape[0]
  max_pos = int(num_samples * positive_fraction)
  if n < num_samples:  # top_k needs k <= N; padding with "ignore" changes nothing.
    labels = jnp.concatenate([labels, jnp.full((num_samples - n,), IGNORE, labels.dtype)])
  keys = jax.random.uniform(rng, labels.shape)
  is_pos = labels == POSITIVE
  is_neg = labels == NEGATIVE
  num_pos = jnp.minimum(jnp.sum(is_pos), max_pos)
  num_neg = jnp.minimum(jnp.sum(is_neg), num_samples - num_pos)
  # Keys live in [0, 1); -1 marks the other groups so they sort last.
  _, neg_idx = jax.lax.top_k(jnp.where(is_neg, keys, -1.0), num_samples)
  slot = jnp.arange(num_samples)
  if max_pos > 0:
    _, pos_idx = jax.lax.top_k(jnp.where(is_pos, keys, -1.0), max_pos)
    from_pos = pos_idx[jnp.minimum(slot, max_pos - 1)]
  else:
    from_pos = jnp.zeros((num_samples,), jnp.int32)
  from_neg = neg_idx[jnp.clip(slot - num_pos, 0, num_samples - 1)]
  valid = slot < num_pos + num_neg
  indices = jnp.where(slot < num_pos, from_pos, from_neg)
  return jnp.where(valid, indices, 0).astype(jnp.int32), valid


def sample_balanced_mask(labels, num_samples: int, positive_fraction: float, rng):
  """`sample_balanced` as masks over all anchors: (positive [N] bool, negative [N] bool).

  Convenient for dense losses (the RPN) that weight every anchor instead of gathering a minibatch.
  """
  n = labels.shape[0]
  indices, valid = sample_balanced(labels, num_samples, positive_fraction, rng)
  picked = jnp.zeros((n,), bool).at[jnp.where(valid, indices, n)].set(True, mode="drop")
  return picked & (labels == POSITIVE), picked & (labels == NEGATIVE)
