"""The losses of the region-based detectors (R-CNN, Fast R-CNN, Faster R-CNN).

RoI heads (Fast R-CNN's multitask loss): softmax cross-entropy over C classes, or R-CNN's
one-vs-rest linear SVMs as a squared-free hinge loss on the same logits (`classifier='svm'`;
the paper trains them afterwards on cached fc7 features with hard negative mining, here jointly
on every sampled RoI), plus smooth L1 on the deltas of the true class; both divided by the
number of sampled RoIs, as detectron2. Faster R-CNN adds the RPN's two terms (eq. 1 of Ren et
al.): binary cross-entropy on the sampled anchors and smooth L1 on the positives' deltas, both
divided by the number of sampled anchors (the paper's N_cls; its lambda = 10 with N_reg ~ 2400
anchor locations is about the same balance). `rpn_beta` 1/9 and `roi_beta` 1 are the smooth L1
transition points of the original code (sigma 3 and 1).
"""
import jax
import jax.numpy as jnp
import optax


def smooth_l1(x, beta: float):
  """Elementwise: 0.5 x**2 / beta where |x| < beta, |x| - 0.5 beta elsewhere."""
  return optax.huber_loss(x, delta=beta) / beta


def svm_hinge(logits, classes):
  """Sum over classes of max(0, 1 - y_c s_c), y_c = +1 for the true class, -1 for the others."""
  y = 2.0 * jax.nn.one_hot(classes, logits.shape[-1]) - 1.0
  return jnp.sum(jnp.maximum(0.0, 1.0 - y * logits), axis=-1)


def rpn_loss(outputs, *, beta: float) -> dict:
  rpn = outputs['rpn_targets']
  sampled = rpn['positive'] | rpn['negative']
  num_anchors = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(outputs['rpn_logits'],
                                           rpn['positive'].astype(jnp.float32))
  box = smooth_l1(outputs['rpn_deltas'] - rpn['deltas'], beta).sum(-1)
  return {'rpn_cls_loss': jnp.sum(bce * sampled) / num_anchors,
          'rpn_box_loss': jnp.sum(box * rpn['positive']) / num_anchors,
          'rpn_positives_per_image': jnp.sum(rpn['positive']) / len(sampled)}


def rcnn_loss(outputs, batch, *, classifier: str = 'softmax', rpn_beta: float = 1.0 / 9.0,
              roi_beta: float = 1.0, rpn_weight: float = 1.0, roi_weight: float = 1.0,
              roi_box_weight: float = 1.0):
  """`loss(outputs, batch) -> (scalar, aux)` for `models.roi_heads.RoIDetector` train outputs."""
  del batch  # The model assigned the targets.
  roi = outputs['roi_targets']
  num_rois = jnp.maximum(jnp.sum(roi['valid']), 1).astype(jnp.float32)
  if classifier == 'softmax':
    per_roi = optax.softmax_cross_entropy_with_integer_labels(outputs['roi_logits'],
                                                              roi['classes'])
  elif classifier == 'svm':
    per_roi = svm_hinge(outputs['roi_logits'], roi['classes'])
  else:
    raise ValueError(f"Unknown classifier {classifier!r}; valid: 'softmax', 'svm'.")
  roi_cls = jnp.sum(per_roi * roi['valid']) / num_rois
  foreground = roi['valid'] & (roi['classes'] > 0)
  own = jnp.take_along_axis(outputs['roi_deltas'],
                            jnp.maximum(roi['classes'] - 1, 0)[..., None, None], axis=-2)[..., 0, :]
  roi_box = jnp.sum(smooth_l1(own - roi['deltas'], roi_beta).sum(-1) * foreground) / num_rois
  correct = (jnp.argmax(outputs['roi_logits'], -1) == roi['classes']) & roi['valid']
  aux = {'roi_cls_loss': roi_cls, 'roi_box_loss': roi_box,
         'roi_accuracy': jnp.sum(correct) / num_rois,
         'roi_foreground_fraction': jnp.sum(foreground) / num_rois}
  total = roi_weight * (roi_cls + roi_box_weight * roi_box)
  if 'rpn_targets' in outputs:  # Faster R-CNN.
    aux.update(rpn_loss(outputs, beta=rpn_beta))
    total = total + rpn_weight * (aux['rpn_cls_loss'] + aux['rpn_box_loss'])
  return total, aux
