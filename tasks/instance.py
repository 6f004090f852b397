"""Instance segmentation and human keypoints with Mask R-CNN: boxes plus a mask and/or joints each.

The model selects its detections itself (the heads run on them); `postprocess` pastes each 28x28
mask back into the image at its box and thresholds it at 0.5 (He et al. 2017, sec. 3). Evaluation
is COCO box AP plus mask AP ('segm', masks as RLE) and keypoint AP (OKS with the dataset's
per-joint sigmas), all with pycocotools; the box part is the detection task's.
"""
import functools

import jax
import numpy as np

from data.augment import ids_to_masks
from losses.mask_rcnn import mask_rcnn_loss
from metrics import CocoEvaluator
from metrics.pose import pose_metrics
from ops.boxes import iou
from ops.joints import LSP_14
from ops.masks import paste_masks, paste_masks_torchvision
from tasks import drawing
from tasks.detection import DetectionEvaluator, DetectionTask, image_boxes

PASTE = {'ours': paste_masks, 'torchvision': paste_masks_torchvision}  # config.model.mask.paste
MASK_THRESHOLD = 0.5  # The paper's binarisation of the pasted mask probabilities.


def instance_masks(batch, i: int) -> np.ndarray:
  """uint8 [M, H, W]: image i's instance masks, from an eval batch's exact id map."""
  return ids_to_masks(batch['instance_ids'][i], batch['valid'].shape[1])


class InstanceTask(DetectionTask):
  name = 'instance_segmentation'
  losses = {'mask_rcnn': mask_rcnn_loss}

  def model_kwargs(self):
    # The detections the heads see are the ones evaluated; the keypoint head predicts the
    # dataset's joints, however many the config assumed.
    return {**super().model_kwargs(), **self.selection_kwargs(), **self._joint_count()}

  def _joint_count(self) -> dict:
    """The `model.keypoint` block with the keypoint head's joint count set to the dataset's J."""
    joints = self.info['joints'] if self.has_keypoints else None
    if joints is None:
      return {}
    return {'keypoint': {**self.config.model.keypoint, 'num_keypoints': joints.num_joints}}

  @property
  def has_masks(self) -> bool:
    return self.config.model.get('mask', {}).get('enabled', True)

  @property
  def pixel_targets(self) -> tuple[str, ...]:
    return ('instances',) if self.has_masks else ()

  @property
  def has_keypoints(self) -> bool:
    return self.config.model.get('keypoint', {}).get('num_keypoints', 0) > 0

  @property
  def mask_paste(self):
    """How masks [D, s, s] go into an image at boxes [D, 4]: the batch canvas here, the original
    image for COCO results (metrics/coco_protocol.py): config.model.mask.paste."""
    method = self.config.model.get('mask', {}).get('paste', 'ours')
    if method not in PASTE:
      raise ValueError(f'unknown model.mask.paste {method!r}; valid: {", ".join(PASTE)}')
    return PASTE[method]

  def postprocess(self, outputs, batch):
    detections = dict(outputs['detections'])
    if 'masks' in detections:
      # The per-box probabilities too: COCO results paste them into the original image.
      detections['mask_probs'] = detections['masks']
      paste = functools.partial(self.mask_paste, image_hw=batch['image'].shape[1:3])
      pasted = jax.vmap(paste)(detections['masks'], detections['boxes'])
      detections['masks'] = (pasted >= MASK_THRESHOLD) & detections['valid'][..., None, None]
    return detections

  def make_evaluator(self):
    joints = self.info['joints'] if self.has_keypoints else None
    sigmas = joints.oks_sigmas if joints else None
    iou_types = ('bbox',) + ('segm',) * self.has_masks + ('keypoints',) * (joints is not None)
    return InstanceEvaluator(self.info['class_names'], masks=self.has_masks,
                             keypoint_sigmas=sigmas, lsp_pose=joints == LSP_14,
                             protocol=self.protocol_evaluator(
                                 iou_types, kpt_oks_sigmas=sigmas, paste=self.mask_paste))

  def draw_example(self, batch, predictions, i, path):
    """ground truth | prediction: masks, boxes, skeletons."""
    names, joints = self.info['class_names'], self.info['joints']
    image = drawing.to_uint8(batch['image'][i])
    gt = batch['valid'][i]
    shown = predictions['valid'][i] & (predictions['scores'][i] >= self.config.detect.show_score)
    skeleton = dict(edges=joints.skeleton, joint_names=joints.names) if joints else {}
    truth = drawing.draw_instances(
        image, batch['boxes'][i][gt], batch['labels'][i][gt], names,
        masks=instance_masks(batch, i)[gt] if self.has_masks else None,
        keypoints=batch['keypoints'][i][gt][..., :2] if self.has_keypoints else None,
        keypoint_labelled=batch['keypoints'][i][gt][..., 2] > 0, **skeleton)
    predicted = drawing.draw_instances(
        image, predictions['boxes'][i][shown], predictions['labels'][i][shown], names,
        scores=predictions['scores'][i][shown],
        masks=predictions['masks'][i][shown] if self.has_masks else None,
        keypoints=predictions['keypoints'][i][shown][..., :2] if self.has_keypoints else None,
        **skeleton)
    title = drawing.prediction_title(int(shown.sum()), self.config.detect.show_score)
    drawing.save_panel([truth, predicted], ['ground truth', title], path, scale=1, legend=names)


class InstanceEvaluator(DetectionEvaluator):
  """Box AP and VOC AP50 (the detection task's) plus 'mask_*' and 'keypoint_*' COCO AP.

  Keypoint OKS uses the box area as the object scale s^2 (COCO uses the segment area; the
  Shapes stick figures' masks are lines, whose pixel count says little about the person's size).
  With `lsp_pose`, also the pose task's PCK@0.2 and PCP (`metrics/pose.py`) of the joints of each
  true person's best-overlapping detection (none: every joint wrong), so the heatmap head and
  DeepPose's regression compare on one scale.
  """

  def __init__(self, class_names, *, masks: bool, keypoint_sigmas=None, lsp_pose: bool = False,
               protocol=None):
    super().__init__(class_names, protocol)
    self.people = [] if lsp_pose else None  # (predicted joints, true keypoints, true box).
    categories = range(1, len(self.class_names))
    self.extra = {}  # In-memory evaluators; the protocol evaluator scores masks and joints itself.
    if masks and not protocol:
      self.extra['mask'] = CocoEvaluator('segm', category_ids=categories)
    if keypoint_sigmas is not None and not protocol:
      self.extra['keypoint'] = CocoEvaluator('keypoints', category_ids=categories,
                                             kpt_oks_sigmas=keypoint_sigmas)

  def add_image(self, image_id: int, batch, predictions, i: int):
    super().add_image(image_id, batch, predictions, i)
    difficult = batch['difficult'][i] if 'difficult' in batch else None
    boxes = image_boxes(batch, predictions, i)
    if 'mask' in self.extra:
      self.extra['mask'].add(image_id, gt_iscrowd=difficult, gt_masks=instance_masks(batch, i),
                             det_masks=predictions['masks'][i], **boxes)
    if 'keypoint' in self.extra:
      self.extra['keypoint'].add(image_id, gt_iscrowd=difficult, image_hw=batch['image'].shape[1:3],
                                 gt_keypoints=batch['keypoints'][i],
                                 det_keypoints=predictions['keypoints'][i], **boxes)
    if self.people is not None:
      self._match_people(batch, predictions, i)

  def _match_people(self, batch, predictions, i: int):
    detected = predictions['valid'][i]
    overlap = np.where(detected[None], np.asarray(iou(batch['boxes'][i], predictions['boxes'][i])),
                       -1.0)
    for j in np.flatnonzero(batch['valid'][i]):
      best = int(np.argmax(overlap[j]))
      joints = (predictions['keypoints'][i][best, :, :2] if overlap[j, best] > 0
                else np.full((batch['keypoints'].shape[2], 2), np.inf))
      self.people.append((joints, batch['keypoints'][i][j], batch['boxes'][i][j]))

  def result(self) -> dict:
    out = super().result()
    for prefix, evaluator in self.extra.items():
      out.update({f'{prefix}_{k}': v for k, v in evaluator.compute().items()})
    if self.people:
      pred, keypoints, boxes = (np.stack(x) for x in zip(*self.people, strict=True))
      out.update({f'keypoint_{k}': v for k, v in pose_metrics(pred, keypoints, boxes).items()})
    return out
