"""Semantic segmentation metrics from a summed confusion matrix (as in scenic and the FCN paper)."""
import jax.numpy as jnp
import numpy as np


def confusion_matrix(labels, predictions, num_classes: int, *, ignore_label: int = 255,
                     example_valid=None):
  """[C, C] counts, rows = ground truth, columns = prediction; ignored pixels excluded."""
  labels = labels.astype(jnp.int32)  # The batch's uint8 would overflow in the index below.
  valid = labels != ignore_label
  if example_valid is not None:
    valid &= example_valid.reshape((-1,) + (1,) * (labels.ndim - 1))
  index = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.bincount(index.ravel(), weights=valid.ravel().astype(jnp.float32),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)


def segmentation_metrics(confusion: np.ndarray, class_names=None) -> dict:
  """Pixel accuracy, mean accuracy, mean IoU and per-class IoU (FCN paper, section 5).

  Classes absent from both ground truth and predictions (union 0) are left out of the means.
  """
  confusion = np.asarray(confusion, np.float64)
  true_pos = np.diag(confusion)
  gt_count = confusion.sum(1)
  union = gt_count + confusion.sum(0) - true_pos
  with np.errstate(invalid='ignore', divide='ignore'):
    iou = np.where(union > 0, true_pos / union, np.nan)
    class_acc = np.where(gt_count > 0, true_pos / gt_count, np.nan)
  names = class_names or [str(i) for i in range(len(iou))]
  per_class = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou, strict=True)}
  return {
      'pixel_accuracy': float(true_pos.sum() / max(confusion.sum(), 1)),
      'mean_accuracy': float(np.nanmean(class_acc)),
      'mean_iou': float(np.nanmean(iou)),
      'per_class_iou': per_class,
  }
