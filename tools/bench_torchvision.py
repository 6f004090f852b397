"""torchvision's own models as the PyTorch side of `tools/bench.py --compare-torch` (bench-only).

Faster / Mask / Keypoint R-CNN ResNet-50 FPN are built as torchvision's builders build them for
training from ImageNet weights (`fasterrcnn_resnet50_fpn(weights_backbone=...)`): FrozenBatchNorm2d
and the config's `trainable_layers`, here with random weights (the builders only freeze batch norm
when given weights). Their own transform normalises (ImageNet mean / std) and, with min_size and
max_size equal to the image's sides, does not resize; in train mode they compute their own
losses (anchor labels, proposals, RoI sampling, box / mask / keypoint targets) from our batch's
boxes, labels, masks and joints as their targets; in eval mode they decode, run NMS and paste
masks. FCN-ResNet and SSD300 are torchvision's fcn_resnet50/101 and ssd300_vgg16 networks.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def nchw(images: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


class _SSDNetwork(nn.Module):
  """torchvision's SSD without its transform and post-processing: images -> (logits, deltas)."""

  def __init__(self, ssd):
    super().__init__()
    self.backbone, self.head = ssd.backbone, ssd.head

  def forward(self, images):
    out = self.head(list(self.backbone(images).values()))
    return out['cls_logits'], out['bbox_regression']


class _Detector(nn.Module):
  """A torchvision R-CNN on fixed targets: train mode -> its loss dict, eval -> detections."""

  def __init__(self, model, targets):
    super().__init__()
    self.model, self.targets = model, targets

  def forward(self, images):
    return self.model(images, self.targets) if self.training else self.model(images)


def targets(batch: dict, masks: bool, keypoints: bool) -> list[dict]:
  """Our batch's instances as torchvision's targets: (x1, y1, x2, y2) boxes, (x, y, v) joints."""
  out = []
  for i, valid in enumerate(batch['valid']):
    target = {'boxes': torch.from_numpy(batch['boxes'][i][valid][:, [1, 0, 3, 2]].copy()),
              'labels': torch.from_numpy(batch['labels'][i][valid].astype(np.int64))}
    ids = np.flatnonzero(valid) + 1  # synthetic_batch: instance k has id k + 1.
    if masks:
      target['masks'] = torch.from_numpy(
          (batch['instance_ids'][i][None] == ids[:, None, None]).astype(np.uint8))
    if keypoints:
      target['keypoints'] = torch.from_numpy(batch['keypoints'][i][valid][..., [1, 0, 2]].copy())
    out.append(target)
  return out


def rcnn(name: str, params: dict, batch: dict, config):
  from torchvision.models import resnet50  # noqa: PLC0415
  from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN  # noqa: PLC0415
  from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor  # noqa: PLC0415
  from torchvision.ops import FrozenBatchNorm2d  # noqa: PLC0415
  m = config.model
  backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), m.trainable_layers)
  h, w = batch['image'].shape[1:3]
  options = dict(
      num_classes=params['box_head']['class_logits']['kernel'].shape[-1],
      min_size=min(h, w), max_size=max(h, w),
      rpn_pre_nms_top_n_train=m.rpn.pre_nms_topk_train,
      rpn_post_nms_top_n_train=m.rpn.post_nms_topk_train,
      rpn_pre_nms_top_n_test=m.rpn.pre_nms_topk_test,
      rpn_post_nms_top_n_test=m.rpn.post_nms_topk_test,
      rpn_batch_size_per_image=m.rpn.batch_size, box_batch_size_per_image=m.roi.batch_size,
      box_positive_fraction=m.roi.positive_fraction)
  keypoints, masks = name.startswith('keypoint'), name.startswith('mask')
  if keypoints:
    model = KeypointRCNN(backbone, num_keypoints=m.keypoint.num_keypoints, **options)
  else:
    model = (MaskRCNN if masks else FasterRCNN)(backbone, **options)
  images = list(nchw(batch['image']))
  return (_Detector(model, targets(batch, masks, keypoints)), (images,),
          lambda losses: sum(losses.values()))


def twin(name: str, params: dict, batch: dict, config):
  """-> (module, inputs, loss(outputs)) for torchvision's model `name` (bench.torchvision_model)."""
  from torchvision.models import detection, segmentation  # noqa: PLC0415
  if name.endswith('rcnn_resnet50_fpn'):
    return rcnn(name, params, batch, config)
  images = nchw(batch['image'])
  gen = torch.Generator().manual_seed(0)
  if name.startswith('fcn_'):
    classes = params['classifier_4']['kernel'].shape[-1]
    model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=classes,
                                        aux_loss=True)
    mask = torch.from_numpy(batch['mask'].astype(np.int64))
    ce = lambda logits: F.cross_entropy(logits, mask, ignore_index=255)
    return model, (images,), lambda out: ce(out['out']) + config.loss.aux_weight * ce(out['aux'])
  classes = params['class_head0']['kernel'].shape[-1] // 4  # 4 default boxes per conv4_3 cell.
  model = _SSDNetwork(detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                             num_classes=classes)).eval()
  with torch.no_grad():
    logits, _ = model(images[:1])
  labels = torch.randint(0, classes, (len(images), logits.shape[1]), generator=gen)
  box_targets = torch.randn(len(images), logits.shape[1], 4, generator=gen)
  return model, (images,), lambda out: (F.cross_entropy(out[0].flatten(0, 1), labels.flatten())
                                        + F.smooth_l1_loss(out[1], box_targets))
