"""Object detection: YOLO, SSD and the R-CNN family; losses, decode + NMS, COCO and VOC AP.

A model family supplies its loss `loss(outputs, batch, **config.loss) -> (scalar, aux)` and its
decoder `decode(outputs, image_hw) -> (boxes, scores [N, K, C - 1])`, with boxes [N, K, 4] pixels
(one class-agnostic box per candidate: YOLO, SSD) or [N, K, C - 1, 4] (one box per candidate and
class: the R-CNN family). Region-based families assign their targets inside the model, so in
training they also take the ground truth, and some take external proposals from the batch.
Everything after decoding is shared: clipping, the top candidates over (box, class) pairs, a
score threshold and per-class NMS to a fixed number of detections per image.
"""
import functools
import os
from collections.abc import Callable
from typing import NamedTuple

import ml_collections
import numpy as np

import data
from losses.rcnn import rcnn_loss
from losses.ssd import ssd_loss
from losses.yolo import yolo_loss
from metrics import CocoEvaluator, VocEvaluator
from metrics.coco_protocol import ProtocolEvaluator
from models import roi_heads, ssd, yolo
from ops.nms import select_batch_detections
from tasks import drawing
from tasks.segmentation import SegmentationTask


class Family(NamedTuple):
  loss: Callable
  decode: Callable
  inputs: dict = {}  # Model keyword -> batch key, besides the image.


GROUND_TRUTH = {'gt_boxes': 'boxes', 'gt_labels': 'labels', 'gt_valid': 'valid'}  # Training only.
PROPOSALS = {'proposals': 'proposals', 'proposal_valid': 'proposal_valid'}

FAMILIES = {  # config.model.name -> Family.
    'yolo': Family(yolo_loss, yolo.decode),
    'ssd': Family(ssd_loss, ssd.decode),
    'sliding_window': Family(rcnn_loss, roi_heads.decode, GROUND_TRUTH),
    'rcnn': Family(rcnn_loss, roi_heads.decode, {**PROPOSALS, **GROUND_TRUTH}),
    'spp_net': Family(rcnn_loss, roi_heads.decode, {**PROPOSALS, **GROUND_TRUTH}),
    'fast_rcnn': Family(rcnn_loss, roi_heads.decode, {**PROPOSALS, **GROUND_TRUTH}),
    'faster_rcnn': Family(rcnn_loss, roi_heads.decode, GROUND_TRUTH),
    'rfcn': Family(rcnn_loss, roi_heads.decode, GROUND_TRUTH),
}


class DetectionTask:
  name = 'detection'
  families = FAMILIES

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.info = data.dataset_info(config.data)
    self.num_classes = len(self.class_names)
    if config.model.name not in self.families:
      raise ValueError(f'config.model.name {config.model.name!r} is not a {self.name} model; '
                       f'valid: {", ".join(sorted(self.families))}')
    self.family = self.families[config.model.name]
    self._loss = functools.partial(self.family.loss, **config.loss.to_dict())
    self.model = self.build_model()

  build_model = SegmentationTask.build_model  # The same config.model -> models.get_model call.

  @property
  def class_names(self) -> list[str]:
    """What the model detects, background first: the dataset's classes."""
    return self.info['class_names']

  def selection_kwargs(self) -> dict:
    """config.detect as the keywords of models that select their detections themselves."""
    d = self.config.detect
    return dict(score_threshold=d.score_threshold, nms_iou_threshold=d.nms_iou_threshold,
                pre_nms_topk=d.pre_nms_topk, max_detections=d.max_detections)

  def model_inputs(self, batch):
    missing = sorted(set(self.family.inputs.values()) - set(batch))
    if missing:
      raise ValueError(f'{self.config.model.name} needs batch keys {missing}; for external '
                       'proposals set --config.data.proposals.method (see data/proposals.py).')
    return (batch['image'],), {k: batch[v] for k, v in self.family.inputs.items()}

  def loss(self, outputs, batch):
    return self._loss(outputs, batch)

  def postprocess(self, outputs, batch):
    image_hw = batch['image'].shape[1:3]
    d = self.config.detect
    return select_batch_detections(
        *self.family.decode(outputs, image_hw), image_hw, score_threshold=d.score_threshold,
        iou_threshold=d.nms_iou_threshold, pre_nms_topk=d.pre_nms_topk,
        max_detections=d.max_detections)

  def protocol_evaluator(self, iou_types=('bbox',), **kwargs):
    """COCO evaluation against the dataset's own annotation file (metrics/coco_protocol.py), for
    datasets that have one (COCO-format data); None for the others. `kwargs`: ProtocolEvaluator's
    (kpt_oks_sigmas, paste)."""
    path = self.info.get('eval_annotations')
    return path and ProtocolEvaluator(path, self.info['category_ids'], iou_types, **kwargs)

  def make_evaluator(self):
    return DetectionEvaluator(self.class_names, protocol=self.protocol_evaluator())

  def visualize(self, batch, predictions, out_dir: str, *, max_images: int, start: int = 0):
    """Writes image | ground truth | prediction (class, score) panels; returns how many."""
    names = self.class_names
    count = min(max_images, int(np.sum(batch['example_valid'])))
    for i in range(count):
      image = drawing.to_uint8(batch['image'][i])
      gt = batch['valid'][i]
      shown = predictions['valid'][i] & (predictions['scores'][i] >= self.config.detect.show_score)
      drawing.save_panel(
          [drawing.upscale(image, 4),
           drawing.draw_boxes(image, batch['boxes'][i][gt], batch['labels'][i][gt], names),
           drawing.draw_boxes(image, predictions['boxes'][i][shown],
                              predictions['labels'][i][shown], names,
                              scores=predictions['scores'][i][shown])],
          ['image', 'ground truth', 'prediction'],
          os.path.join(out_dir, f'overlay_{start + i:03d}.png'), scale=1, legend=names)
    return count


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
