"""Semantic segmentation: FCN / DeconvNet / sliding-window models, pixel CE, mIoU, overlays."""
import jax.numpy as jnp
import numpy as np

from losses.segmentation import segmentation_loss
from metrics.segmentation import confusion_matrix, segmentation_metrics
from tasks import drawing
from tasks.base import Task

IGNORE_LABEL = 255


class SegmentationTask(Task):
  name = 'segmentation'
  pixel_targets = ('mask',)

  def setup(self):
    weights = self.config.loss.get('class_weights')
    if weights and len(weights) != self.num_classes:
      raise ValueError(f'config.loss.class_weights has {len(weights)} entries but the dataset has '
                       f'{self.num_classes} classes ({", ".join(self.info["class_names"])}).')
    self.class_weights = tuple(weights) if weights else None

  def model_kwargs(self):
    return {'num_classes': self.num_classes}

  def loss(self, outputs, batch):
    return segmentation_loss(outputs, batch, ignore_label=IGNORE_LABEL,
                             class_weights=self.class_weights,
                             aux_weight=self.config.loss.get('aux_weight', 0.5))

  def postprocess(self, outputs, batch):
    prediction = jnp.argmax(outputs, -1).astype(jnp.int32)
    return {'prediction': prediction,
            'confusion': confusion_matrix(batch['mask'], prediction, self.num_classes,
                                          ignore_label=IGNORE_LABEL,
                                          example_valid=batch.get('example_valid'))}

  def make_evaluator(self):
    return SegmentationEvaluator(self.num_classes, self.info['class_names'])

  def draw_example(self, batch, predictions, i, path):
    """image | ground truth | prediction | prediction over the image."""
    image = drawing.to_uint8(batch['image'][i])
    gt = drawing.colorize(batch['mask'][i], self.num_classes)
    pred = drawing.colorize(predictions['prediction'][i], self.num_classes)
    drawing.save_panel(
        [image, gt, pred, drawing.blend(image, pred)],
        ['image', 'ground truth', 'prediction', 'prediction over image'], path,
        legend=self.info['class_names'])


class SegmentationEvaluator:
  """Sums confusion matrices over the eval set; metrics at the end."""

  def __init__(self, num_classes: int, class_names):
    self.class_names = list(class_names)
    self.confusion = np.zeros((num_classes, num_classes), np.float64)

  def add(self, batch, predictions):
    self.confusion += np.asarray(predictions['confusion'])

  def result(self) -> dict:
    return segmentation_metrics(self.confusion, self.class_names)
