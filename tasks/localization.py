"""Classification + localization: one object per image, its class (softmax) and box (L2).

Uses the first object of each image (the `single` Shapes variant has exactly one). Metrics: top-1
and CorLoc (`metrics/localization.py`); overlays show the true and the predicted box and label.
"""
import jax
import jax.numpy as jnp
import numpy as np

from losses.localization import localization_loss
from metrics.localization import localization_metrics
from ops.boxes import clip, xywh_to_yxyx
from tasks import drawing
from tasks.base import Task, freeze_backbone


class LocalizationTask(Task):
  name = 'localization'

  def setup(self):
    self.class_names = self.info['class_names']

  def model_kwargs(self):
    return {'num_classes': self.num_classes - 1,
            'frozen_backbone': freeze_backbone(self.config)}

  def loss(self, outputs, batch):
    return localization_loss(outputs, batch, box_weight=self.config.loss.box_weight)

  def postprocess(self, outputs, batch):
    h, w = batch['image'].shape[1:3]
    probs = jax.nn.softmax(outputs['logits'])
    box = xywh_to_yxyx(outputs['box'] * jnp.asarray([w, h, w, h], jnp.float32))
    return {'label': jnp.argmax(probs, -1).astype(jnp.int32) + 1, 'score': jnp.max(probs, -1),
            'box': clip(box, (h, w))}

  def make_evaluator(self):
    return LocalizationEvaluator()

  def draw_example(self, batch, predictions, i, path):
    """True box and label | predicted box, label and score."""
    image = drawing.to_uint8(batch['image'][i])
    gt = drawing.draw_boxes(image, batch['boxes'][i, :1], batch['labels'][i, :1],
                            self.class_names)
    pred = drawing.draw_boxes(image, predictions['box'][i:i + 1],
                              predictions['label'][i:i + 1], self.class_names,
                              scores=predictions['score'][i:i + 1])
    drawing.save_panel([gt, pred], ['ground truth', 'prediction'], path, scale=1)


class LocalizationEvaluator:
  """Collects one prediction per image with an object; metrics at the end."""

  def __init__(self):
    self.rows = {k: [] for k in ('pred_labels', 'pred_boxes', 'gt_labels', 'gt_boxes')}

  def add(self, batch, predictions):
    keep = np.asarray(batch['example_valid']) & np.asarray(batch['valid'][:, 0])
    for key, value in (('pred_labels', predictions['label']), ('pred_boxes', predictions['box']),
                       ('gt_labels', batch['labels'][:, 0]), ('gt_boxes', batch['boxes'][:, 0])):
      self.rows[key].append(np.asarray(value)[keep])

  def result(self) -> dict:
    return localization_metrics(**{k: np.concatenate(v) for k, v in self.rows.items()})
