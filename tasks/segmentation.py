"""Semantic segmentation: FCN / DeconvNet / sliding-window models, pixel CE, mIoU, overlays."""
import os

import jax.numpy as jnp
import ml_collections
import numpy as np

import data
import models
from losses.segmentation import segmentation_loss
from metrics.segmentation import confusion_matrix, segmentation_metrics
from tasks import drawing

IGNORE_LABEL = 255


class SegmentationTask:
  name = 'segmentation'

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.info = data.dataset_info(config.data)
    self.num_classes = self.info['num_classes']
    weights = config.loss.get('class_weights')
    if weights and len(weights) != self.num_classes:
      raise ValueError(f'config.loss.class_weights has {len(weights)} entries but the dataset has '
                       f'{self.num_classes} classes ({", ".join(self.info["class_names"])}).')
    self.class_weights = tuple(weights) if weights else None
    self.model = self.build_model()

  def build_model(self, bn_axis_name=None, **extra):
    """config.model.name built with the rest of config.model (`extra` overriding) as keywords."""
    kwargs = {k: v for k, v in self.config.model.items() if k != 'name'}
    return models.get_model(self.config.model.name, num_classes=self.num_classes,
                            bn_axis_name=bn_axis_name, **{**kwargs, **extra})

  def model_inputs(self, batch):
    return (batch['image'],), {}

  def loss(self, outputs, batch):
    return segmentation_loss(outputs, batch, ignore_label=IGNORE_LABEL,
                             class_weights=self.class_weights)

  def postprocess(self, outputs, batch):
    prediction = jnp.argmax(outputs, -1).astype(jnp.int32)
    return {'prediction': prediction,
            'confusion': confusion_matrix(batch['mask'], prediction, self.num_classes,
                                          ignore_label=IGNORE_LABEL,
                                          example_valid=batch.get('example_valid'))}

  def make_evaluator(self):
    return SegmentationEvaluator(self.num_classes, self.info['class_names'])

  def visualize(self, batch, predictions, out_dir: str, *, max_images: int, start: int = 0):
    """Writes image | ground truth | prediction panels; returns how many were written."""
    count = min(max_images, int(np.sum(batch['example_valid'])))
    for i in range(count):
      image = drawing.to_uint8(batch['image'][i])
      gt = drawing.colorize(batch['mask'][i], self.num_classes)
      pred = drawing.colorize(predictions['prediction'][i], self.num_classes)
      drawing.save_panel(
          [image, gt, pred, drawing.blend(image, pred)],
          ['image', 'ground truth', 'prediction', 'prediction over image'],
          os.path.join(out_dir, f'overlay_{start + i:03d}.png'), legend=self.info['class_names'])
    return count


class SegmentationEvaluator:
  """Sums confusion matrices over the eval set; metrics at the end."""

  def __init__(self, num_classes: int, class_names):
    self.class_names = list(class_names)
    self.confusion = np.zeros((num_classes, num_classes), np.float64)

  def add(self, batch, predictions):
    self.confusion += np.asarray(predictions['confusion'])

  def result(self) -> dict:
    return segmentation_metrics(self.confusion, self.class_names)
