"""Object detection: YOLO, SSD and the R-CNN family; losses, decode + NMS, COCO and VOC AP.

A detector's class names its loss family (`loss_family`: the loss is
`loss(outputs, batch, **config.loss) -> (scalar, aux)`, the R-CNN family's also gets the model's
`classifier`), the batch keys it takes (`batch_inputs`) and its decoder
`decode_outputs(outputs, image_hw) -> (boxes, scores [N, K, C - 1])`, with boxes [N, K, 4] pixels
(one class-agnostic box per candidate: YOLO, SSD) or [N, K, C - 1, 4] (one box per candidate and
class: the R-CNN family). Region-based families assign their targets inside the model, so in
training they also take the ground truth, and some take external proposals from the batch.
Everything after decoding is shared: clipping, the top candidates over (box, class) pairs, a
score threshold and per-class NMS to a fixed number of detections per image.
"""
import functools

import numpy as np

import models
from losses.rcnn import rcnn_loss
from losses.ssd import ssd_loss
from losses.yolo import yolo_loss
from metrics import CocoEvaluator, VocEvaluator
from metrics.coco_protocol import ProtocolEvaluator
from ops.nms import select_batch_detections
from tasks import drawing
from tasks.base import Task


class DetectionTask(Task):
  name = 'detection'
  # The model class's `loss_family` -> its loss; models of other families are not this task's.
  losses = {'yolo': yolo_loss, 'ssd': ssd_loss, 'rcnn': rcnn_loss}

  def setup(self):
    config = self.config
    self.num_classes = len(self.class_names)
    ours = sorted(n for n in models.MODELS if self._loss_family(n) in self.losses)
    if config.model.name not in ours:
      raise ValueError(f'config.model.name {config.model.name!r} is not a {self.name} model; '
                       f'valid: {", ".join(ours)}')
    self.model_class = models.model_class(config.model.name)

  @staticmethod
  def _loss_family(name: str) -> str | None:
    return getattr(models.model_class(name), 'loss_family', None)

  @functools.cached_property
  def _loss(self):
    # The classifier kind (softmax / SVM) is the model's field; its loss follows it.
    classifier = getattr(self.model, 'classifier', None)
    kwargs = {**self.config.loss.to_dict(), **({'classifier': classifier} if classifier else {})}
    return functools.partial(self.losses[self.model_class.loss_family], **kwargs)

  def model_kwargs(self):
    kwargs = {'num_classes': self.num_classes}
    # A head whose classes are the dataset's category ids (torchvision's 91-id COCO heads on
    # coco2017 or on a COCO-format file with COCO's ids): label k -> category_ids[k - 1].
    if self.config.model.get('head_classes') == 'category_ids':
      kwargs['head_classes'] = (0, *self.info['category_ids'])
    return kwargs

  @property
  def class_names(self) -> list[str]:
    """What the model detects, background first: the dataset's classes."""
    return self.info['class_names']

  def selection_kwargs(self) -> dict:
    """config.detect as the keywords of models that select their detections themselves."""
    d = self.config.detect
    return dict(score_threshold=d.score_threshold, nms_iou_threshold=d.nms_iou_threshold,
                pre_nms_topk=d.pre_nms_topk, max_detections=d.max_detections,
                min_size=d.get('min_size', 0.0))

  def model_inputs(self, batch):
    inputs = self.model_class.batch_inputs
    missing = sorted(set(inputs.values()) - set(batch))
    if missing:
      raise ValueError(f'{self.config.model.name} needs batch keys {missing}; for external '
                       'proposals set --config.data.proposals.method (see data/proposals.py).')
    optional = getattr(self.model_class, 'optional_inputs', {})
    present = {k: batch[v] for k, v in optional.items() if v in batch}
    return (batch['image'],), {**{k: batch[v] for k, v in inputs.items()}, **present}

  def loss(self, outputs, batch):
    return self._loss(outputs, batch)

  def postprocess(self, outputs, batch):
    # Models that take each image's size (the R-CNN family) clip to it; the others' decoders
    # (YOLO, SSD) place their boxes on the canvas.
    takes_sizes = 'image_hw' in getattr(self.model_class, 'optional_inputs', {})
    sized = takes_sizes and 'image_hw' in batch
    image_hw = batch['image_hw'] if sized else batch['image'].shape[1:3]
    d = self.config.detect
    # A reference post-processing that differs from the shared one (torchvision's SSD).
    own = getattr(self.model_class, 'postprocess_detections', None)
    if own is not None:
      return own(outputs, image_hw, d)
    boxes, scores = self.model_class.decode_outputs(outputs, image_hw)
    return select_batch_detections(
        boxes, scores, image_hw, score_threshold=d.score_threshold,
        iou_threshold=d.nms_iou_threshold, pre_nms_topk=d.pre_nms_topk,
        max_detections=d.max_detections, min_size=d.get('min_size', 0.0))

  def protocol_evaluator(self, iou_types=('bbox',), **kwargs):
    """COCO evaluation against the dataset's own annotation file (metrics/coco_protocol.py), for
    datasets that have one (COCO-format data); None for the others. `kwargs`: ProtocolEvaluator's
    (kpt_oks_sigmas, paste)."""
    path = self.info.get('eval_annotations')
    return path and ProtocolEvaluator(path, self.info['category_ids'], iou_types, **kwargs)

  def make_evaluator(self):
    return DetectionEvaluator(self.class_names, protocol=self.protocol_evaluator())

  def draw_example(self, batch, predictions, i, path):
    """image | ground truth | prediction (class, score)."""
    names = self.class_names
    image = drawing.to_uint8(batch['image'][i])
    gt = batch['valid'][i]
    shown = predictions['valid'][i] & (predictions['scores'][i] >= self.config.detect.show_score)
    drawing.save_panel(
        [drawing.upscale(image, 4),
         drawing.draw_boxes(image, batch['boxes'][i][gt], batch['labels'][i][gt], names),
         drawing.draw_boxes(image, predictions['boxes'][i][shown],
                            predictions['labels'][i][shown], names,
                            scores=predictions['scores'][i][shown])],
        ['image', 'ground truth',
         drawing.prediction_title(int(shown.sum()), self.config.detect.show_score)],
        path, scale=1, legend=names)


def image_boxes(batch, predictions, i: int) -> dict:
  """The ground-truth and detected boxes of example i, as `CocoEvaluator.add` keywords."""
  return dict(gt_boxes=batch['boxes'][i], gt_labels=batch['labels'][i],
              gt_valid=batch['valid'][i], det_boxes=predictions['boxes'][i],
              det_scores=predictions['scores'][i], det_labels=predictions['labels'][i],
              det_valid=predictions['valid'][i])


class DetectionEvaluator:
  """COCO AP (pycocotools) and VOC AP50 over the eval set, from the fixed-size detections.

  VOC 'difficult' boxes (batch key 'difficult', when the dataset has it) are ignored by both:
  VOC's own rule, and COCO's crowd regions, which likewise neither count as misses nor make
  detections false positives. With `protocol` (a `ProtocolEvaluator`, datasets with a COCO
  annotation file) the COCO numbers are the official protocol's, in the original image frame.
  """

  def __init__(self, class_names, protocol=None):
    self.class_names = list(class_names)
    self.coco = CocoEvaluator('bbox', category_ids=range(1, len(self.class_names)))
    self.voc = VocEvaluator()
    self.protocol = protocol
    self.count = 0

  def add(self, batch, predictions):
    for i in np.flatnonzero(batch['example_valid']):
      self.add_image(self.count, batch, predictions, i)
      self.count += 1

  def add_image(self, image_id: int, batch, predictions, i: int):
    """Adds example i of the batch; subclasses add their own evaluators' share."""
    difficult = batch['difficult'][i] if 'difficult' in batch else None
    boxes = image_boxes(batch, predictions, i)
    self.voc.add(image_id, gt_difficult=difficult, **boxes)
    if self.protocol:
      self.protocol.add({k: v[i] for k, v in predictions.items()}, image_hw=batch['image_hw'][i],
                        orig_hw=batch['orig_hw'][i], image_id=batch['image_id'][i])
    else:
      self.coco.add(image_id, gt_iscrowd=difficult, image_hw=batch['image'].shape[1:3], **boxes)

  def result(self) -> dict:
    voc = self.voc.compute()
    per_class = {self.class_names[c]: (None if np.isnan(ap) else ap)
                 for c, ap in voc['per_class'].items()}
    coco = self.protocol.compute() if self.protocol else self.coco.compute()
    return {**coco, 'voc_AP50': voc['AP50'], 'voc_AP50_per_class': per_class}
