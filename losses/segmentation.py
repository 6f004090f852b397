"""Per-pixel softmax cross-entropy with an ignore label and optional class weights."""
import jax.numpy as jnp
import optax


def pixel_cross_entropy(logits, labels, *, ignore_label: int = 255, class_weights=None):
  """Mean cross-entropy over non-ignored pixels, weighted like PyTorch's `CrossEntropyLoss`.

  logits [..., C], labels [...] int. With class weights the mean is normalised by the summed
  weights of the counted pixels, so the loss scale does not depend on the class mix.
  Returns (loss, pixel_accuracy).
  """
  labels = labels.astype(jnp.int32)  # The batch's masks are uint8.
  valid = labels != ignore_label
  safe_labels = jnp.where(valid, labels, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe_labels)
  weights = valid.astype(jnp.float32)
  if class_weights is not None:
    weights = weights * jnp.asarray(class_weights, jnp.float32)[safe_labels]
  loss = jnp.sum(ce * weights) / jnp.maximum(jnp.sum(weights), 1e-6)
  correct = (jnp.argmax(logits, -1) == labels) & valid
  accuracy = jnp.sum(correct) / jnp.maximum(jnp.sum(valid), 1)
  return loss, accuracy


def segmentation_loss(outputs, batch, *, ignore_label: int = 255, class_weights=None,
                      aux_weight: float = 0.5):
  """`loss(outputs, batch) -> (scalar, aux)` for dense logits or sampled-pixel logits.

  Dense models return logits [B, H, W, C]. The sliding-window patch classifier classifies sampled
  pixels while training and returns {'logits': [B, P, C], 'pixels': [B, P, 2] (y, x)}.
  torchvision's FCN-ResNet (`models.fcn_resnet`) trains with an auxiliary head:
  {'logits', 'aux_logits'}, both [B, H, W, C]; its loss is added with `aux_weight` (torchvision's
  reference: 0.5).
  """
  labels = batch['mask']
  metrics = {}
  if isinstance(outputs, dict) and 'aux_logits' in outputs:
    metrics['aux_loss'], _ = pixel_cross_entropy(
        outputs['aux_logits'], labels, ignore_label=ignore_label, class_weights=class_weights)
    outputs = outputs['logits']
  if isinstance(outputs, dict):
    ys, xs = outputs['pixels'][..., 0], outputs['pixels'][..., 1]
    labels = jnp.take_along_axis(labels.reshape(labels.shape[0], -1),
                                 ys * labels.shape[2] + xs, axis=1)
    outputs = outputs['logits']
  loss, accuracy = pixel_cross_entropy(outputs, labels, ignore_label=ignore_label,
                                       class_weights=class_weights)
  if 'aux_loss' in metrics:
    metrics['main_loss'] = loss
    loss = loss + aux_weight * metrics['aux_loss']
  return loss, {'pixel_accuracy': accuracy, **metrics}
