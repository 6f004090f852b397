"""Mask R-CNN's losses: Faster R-CNN's four terms plus the mask and keypoint heads' (He et al.).

L = L_cls + L_box + L_mask (eq. 1), with L_mask the average per-pixel binary cross-entropy of
the ground-truth class's 28x28 mask over the foreground RoIs; the keypoint head adds softmax
cross-entropy over the 56x56 positions of each visible joint, averaged over the visible joints
of the batch (detectron2's normalisation).
"""
import jax.numpy as jnp
import optax

from losses.rcnn import rcnn_loss


def mask_loss(logits, targets) -> tuple[jnp.ndarray, jnp.ndarray]:
  """logits [..., S, S], targets masks [..., S, S] / valid [...] -> (loss, pixel accuracy)."""
  valid = targets['valid']
  count = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
  per_roi = optax.sigmoid_binary_cross_entropy(logits, targets['masks']).mean((-2, -1))
  correct = ((logits > 0) == (targets['masks'] > 0.5)).mean((-2, -1))
  return jnp.sum(per_roi * valid) / count, jnp.sum(correct * valid) / count


def keypoint_loss(logits, targets) -> jnp.ndarray:
  """logits [..., J, S * S], targets index / valid [..., J] -> mean cross-entropy."""
  valid = targets['valid']
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets['index'])
  return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)


def mask_rcnn_loss(outputs, batch, *, mask_weight: float = 1.0, keypoint_weight: float = 1.0,
                   **rcnn_kwargs):
  """`loss(outputs, batch) -> (scalar, aux)` for `models.mask_rcnn.MaskRCNN` train outputs."""
  total, aux = rcnn_loss(outputs, batch, **rcnn_kwargs)
  if 'mask_logits' in outputs:
    aux['mask_loss'], aux['mask_pixel_accuracy'] = mask_loss(outputs['mask_logits'],
                                                             outputs['mask_targets'])
    total = total + mask_weight * aux['mask_loss']
  if 'keypoint_logits' in outputs:
    aux['keypoint_loss'] = keypoint_loss(outputs['keypoint_logits'], outputs['keypoint_targets'])
    total = total + keypoint_weight * aux['keypoint_loss']
  return total, aux
