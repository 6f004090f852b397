"""Classification + localization: softmax cross-entropy plus a weighted L2 box regression."""
import jax.numpy as jnp
import optax

from ops.boxes import yxyx_to_xywh


def box_target(boxes, image_hw):
  """(y1, x1, y2, x2) pixel boxes [..., 4] -> the regression target (x, y, w, h) / image size."""
  h, w = image_hw
  return yxyx_to_xywh(boxes) / jnp.asarray([w, h, w, h], jnp.float32)


def localization_loss(outputs, batch, *, box_weight: float = 1.0):
  """`loss(outputs, batch) -> (scalar, aux)` on each image's first object.

  loss = cross-entropy + box_weight * |box - target|^2 (summed over x, y, w, h), both averaged
  over the images that have an object. Labels are 1..C (0 is background), logits [B, C].
  """
  valid = batch['valid'][:, 0].astype(jnp.float32)
  count = jnp.maximum(jnp.sum(valid), 1.0)
  labels = jnp.maximum(batch['labels'][:, 0] - 1, 0)
  logits = outputs['logits']
  class_loss = jnp.sum(
      optax.softmax_cross_entropy_with_integer_labels(logits, labels) * valid) / count
  target = box_target(batch['boxes'][:, 0], batch['image'].shape[1:3])
  box_loss = jnp.sum(jnp.sum(jnp.square(outputs['box'] - target), -1) * valid) / count
  accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * valid) / count
  return class_loss + box_weight * box_loss, {
      'class_loss': class_loss, 'box_loss': box_loss, 'accuracy': accuracy}
