"""Faster R-CNN's four losses (Ren et al. 2015, eq. 1, and Fast R-CNN's multitask loss).

RPN: binary cross-entropy on the sampled anchors and smooth L1 on the positives' deltas, both
divided by the number of sampled anchors (the paper's N_cls; its lambda = 10 with N_reg ~ 2400
anchor locations is about the same balance). RoI heads: softmax cross-entropy over C classes and
smooth L1 on the deltas of the true class, both divided by the number of sampled RoIs, as
detectron2. `rpn_beta` 1/9 and `roi_beta` 1 are the smooth L1 transition points of the original
code (sigma 3 and 1).
"""
import jax.numpy as jnp
import optax


def smooth_l1(x, beta: float):
  """Elementwise: 0.5 x**2 / beta where |x| < beta, |x| - 0.5 beta elsewhere."""
  return optax.huber_loss(x, delta=beta) / beta


def faster_rcnn_loss(outputs, batch, *, rpn_beta: float = 1.0 / 9.0, roi_beta: float = 1.0,
                     rpn_weight: float = 1.0, roi_weight: float = 1.0):
  """`loss(outputs, batch) -> (scalar, aux)` for `models.faster_rcnn.FasterRCNN` train outputs."""
  del batch  # The model assigned the targets.
  rpn = outputs['rpn_targets']
  sampled = rpn['positive'] | rpn['negative']
  num_anchors = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(outputs['rpn_logits'],
                                           rpn['positive'].astype(jnp.float32))
  rpn_cls = jnp.sum(bce * sampled) / num_anchors
  rpn_box = jnp.sum(smooth_l1(outputs['rpn_deltas'] - rpn['deltas'], rpn_beta).sum(-1)
                    * rpn['positive']) / num_anchors

  roi = outputs['roi_targets']
  num_rois = jnp.maximum(jnp.sum(roi['valid']), 1).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(outputs['roi_logits'], roi['classes'])
  roi_cls = jnp.sum(ce * roi['valid']) / num_rois
  foreground = roi['valid'] & (roi['classes'] > 0)
  own = jnp.take_along_axis(outputs['roi_deltas'],
                            jnp.maximum(roi['classes'] - 1, 0)[..., None, None], axis=-2)[..., 0, :]
  roi_box = jnp.sum(smooth_l1(own - roi['deltas'], roi_beta).sum(-1) * foreground) / num_rois

  correct = (jnp.argmax(outputs['roi_logits'], -1) == roi['classes']) & roi['valid']
  total = rpn_weight * (rpn_cls + rpn_box) + roi_weight * (roi_cls + roi_box)
  return total, {'rpn_cls_loss': rpn_cls, 'rpn_box_loss': rpn_box, 'roi_cls_loss': roi_cls,
                 'roi_box_loss': roi_box, 'roi_accuracy': jnp.sum(correct) / num_rois,
                 'roi_foreground_fraction': jnp.sum(foreground) / num_rois,
                 'rpn_positives_per_image': jnp.sum(rpn['positive']) / len(sampled)}
