"""Classification + localization: one object per image, its class (softmax) and box (L2).

Uses the first object of each image (the `single` Shapes variant has exactly one). Metrics: top-1
and CorLoc (`metrics/localization.py`); overlays show the true and the predicted box and label.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import data
import models
from losses.localization import localization_loss
from metrics.localization import localization_metrics
from ops.boxes import clip, xywh_to_yxyx
from tasks import drawing


def frozen_backbone(config) -> bool:
  """Whether `config.init.freeze_backbone` asks for a fixed backbone (configs before it: no)."""
  return bool(config.get('init', {}).get('freeze_backbone', False))


class LocalizationTask:
  name = 'localization'

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.info = data.dataset_info(config.data)
    self.num_classes = self.info['num_classes']  # Including background, as in the batches.
    self.class_names = self.info['class_names']
    self.model = self.build_model()

  def build_model(self, bn_axis_name=None):
    kwargs = {k: v for k, v in self.config.model.items() if k != 'name'}
    return models.get_model(self.config.model.name, num_classes=self.num_classes - 1,
                            frozen_backbone=frozen_backbone(self.config),
                            bn_axis_name=bn_axis_name, **kwargs)

  def model_inputs(self, batch):
    return (batch['image'],), {}

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

  def visualize(self, batch, predictions, out_dir: str, *, max_images: int, start: int = 0):
    """Writes true box and label | predicted box, label and score; returns how many."""
    count = min(max_images, int(np.sum(batch['example_valid'])))
    for i in range(count):
      image = drawing.to_uint8(batch['image'][i])
      gt = drawing.draw_boxes(image, batch['boxes'][i, :1], batch['labels'][i, :1],
                              self.class_names)
      pred = drawing.draw_boxes(image, predictions['box'][i:i + 1],
                                predictions['label'][i:i + 1], self.class_names,
                                scores=predictions['score'][i:i + 1])
      drawing.save_panel([gt, pred], ['ground truth', 'prediction'],
                         os.path.join(out_dir, f'overlay_{start + i:03d}.png'), scale=1)
    return count


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
