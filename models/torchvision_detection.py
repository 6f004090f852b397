"""torchvision's COCO R-CNN state dicts -> our variables, whole models, no torch needed.

`convert(state_dict, arch)` maps every tensor of torchvision's `fasterrcnn_resnet50_fpn`,
`maskrcnn_resnet50_fpn` or `keypointrcnn_resnet50_fpn` (numpy arrays, e.g. read from
safetensors) onto the parameter tree of our `faster_rcnn` / `mask_rcnn` built with `MODELS[arch]`
(the options that make it torchvision's model; configs/*/..._torchvision.py set the same).
A key without a rule, or a shape our model does not have, fails with the full list.

Layout differences handled here: NCHW/OIHW -> NHWC/HWIO; (x, y) box coordinates and deltas ->
our (y, x) order (the RPN's and the box predictor's delta outputs are permuted); the box head's
first FC layer reads a [C, 7, 7] flattening in torchvision and [7, 7, C] here; our box deltas and
masks have no background slot (torchvision's class 0 outputs are dropped); transpose convolutions
are flipped (`models.upsample.ConvTranspose`).
"""
import re

import numpy as np

from models.torchvision_weights import check_shapes, map_state_dict

# What makes our models torchvision's, as keywords of `models.get_model` (the configs set the
# same values as config fields).
TORCHVISION_COMMON = dict(
    backbone='resnet50', fpn_strides=(4, 8, 16, 32), fpn_width=256,
    pixel_mean=(0.485, 0.456, 0.406), pixel_std=(0.229, 0.224, 0.225), pixel_scale=1.0,
    frozen_bn=True, bn_epsilon=0.0, trainable_layers=3, per_image_canvas=True,
    rpn=dict(anchor_sizes=(32.0, 64.0, 128.0, 256.0, 512.0), anchor_ratios=(0.5, 1.0, 2.0),
             anchor_placement='torchvision', anchor_canvas='image', width=256, per_level=True,
             min_size=1e-3, nms_iou=0.7, pre_nms_topk_train=2000, post_nms_topk_train=2000,
             pre_nms_topk_test=1000, post_nms_topk_test=1000),
    roi=dict(batch_size=512, positive_fraction=0.25, head_hidden=1024, pooling='align', size=7,
             aligned=False, sampling_ratio=2),
)
MODELS = {
    'fasterrcnn_resnet50_fpn': ('faster_rcnn', dict(num_classes=91)),
    'maskrcnn_resnet50_fpn': ('mask_rcnn', dict(
        num_classes=91, mask=dict(enabled=True, pool_size=14, convs=4, width=256,
                                  paste='torchvision'))),
    'keypointrcnn_resnet50_fpn': ('mask_rcnn', dict(
        num_classes=2, mask=dict(enabled=False), keypoint=dict(
            num_keypoints=17, pool_size=14, convs=8, width=512, decode='torchvision'))),
}
# torchvision's roi_heads.postprocess_detections and RPN values (`FasterRCNNWithHeads` fields;
# config.detect for the Faster R-CNN task). Every (box, class) pair above 0.05 enters NMS there:
# a softmax row has at most 19 of them, so 19 x 1000 proposals is every candidate.
DETECT = dict(score_threshold=0.05, nms_iou_threshold=0.5, pre_nms_topk=19_000,
              max_detections=100, min_size=1e-2)

_BOX_ORDER = [1, 0, 3, 2]  # (dx, dy, dw, dh) -> (dy, dx, dh, dw).
_BN = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}


def model_kwargs(arch: str) -> tuple[str, dict]:
  """(our model name, keywords) of torchvision's `arch`, detection keywords included."""
  if arch not in MODELS:
    raise ValueError(f'unknown arch {arch!r}; valid: {", ".join(sorted(MODELS))}')
  name, extra = MODELS[arch]
  kwargs = {**TORCHVISION_COMMON, **extra}
  return name, {**kwargs, **DETECT} if name == 'mask_rcnn' else kwargs


def _conv(w):
  return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO.


def _conv_transpose(w):
  return w.transpose(2, 3, 0, 1)[::-1, ::-1]  # IOHW -> HWIO, spatially flipped.


def _box_outputs(w, drop_background: bool):
  """Rows [K * 4, ...] of (dx, dy, dw, dh) per anchor/class -> (dy, dx, dh, dw), K-1 if asked."""
  rows = w.reshape(-1, 4, *w.shape[1:])[1 if drop_background else 0:, _BOX_ORDER]
  return rows.reshape(-1, *w.shape[1:])


def _fc6(w, channels: int = 256):
  size = int(round((w.shape[1] / channels) ** 0.5))
  return w.reshape(len(w), channels, size, size).transpose(2, 3, 1, 0).reshape(-1, len(w))


def _leaf(value, leaf: str, transform=None):
  """(our leaf name, array) of a torchvision weight or bias after `transform` of the weight."""
  if leaf == 'bias':
    return 'bias', value
  value = transform(value) if transform else value
  if value.ndim == 2 and transform is None:
    value = value.T
  return 'kernel', value


def _head_rule(path: tuple[str, ...], leaf: str, value, transform=None, bias_transform=None):
  if leaf == 'bias' and bias_transform is not None:
    return ('params', *path, 'bias'), bias_transform(value)
  name, array = _leaf(value, leaf, transform)
  return ('params', *path, name), array


def _map_key(key: str, value: np.ndarray):
  """One torchvision key -> (our path, array), or None if no rule applies."""
  module, _, leaf = key.rpartition('.')
  if leaf == 'num_batches_tracked':
    return ()
  if m := re.fullmatch(r'backbone\.body\.(.+)', module):
    path = ('backbone', *re.sub(r'\.(\d+)(?=\.|$)', r'_\1', m[1]).split('.'))
    if value.ndim == 4:
      return ('params', *path, 'kernel'), _conv(value)
    collection = 'batch_stats' if leaf.startswith('running_') else 'params'
    return (collection, *path, _BN[leaf]), value
  if m := re.fullmatch(r'backbone\.fpn\.(inner|layer)_blocks\.(\d)(\.0)?', module):
    name = f'{"lateral" if m[1] == "inner" else "output"}{4 * 2 ** int(m[2])}'
    return _head_rule(('fpn', name), leaf, value, _conv)
  if re.fullmatch(r'rpn\.head\.conv(\.0\.0)?', module):
    return _head_rule(('rpn', 'conv'), leaf, value, _conv)
  if module == 'rpn.head.cls_logits':
    return _head_rule(('rpn', 'objectness'), leaf, value, _conv)
  if module == 'rpn.head.bbox_pred':
    box = lambda w: _box_outputs(w, drop_background=False)
    return _head_rule(('rpn', 'deltas'), leaf, value, lambda w: _conv(box(w)), box)
  if module in ('roi_heads.box_head.fc6', 'roi_heads.box_head.fc7'):
    fc6 = module.endswith('fc6')
    return _head_rule(('box_head', module[-3:]), leaf, value, _fc6 if fc6 else None)
  if module == 'roi_heads.box_predictor.cls_score':
    return _head_rule(('box_head', 'class_logits'), leaf, value)
  if module == 'roi_heads.box_predictor.bbox_pred':
    box = lambda w: _box_outputs(w, drop_background=True)
    return _head_rule(('box_head', 'box_deltas'), leaf, value, lambda w: box(w).T, box)
  if m := re.fullmatch(r'roi_heads\.mask_head\.(?:(\d)\.0|mask_fcn(\d))', module):
    index = int(m[1]) + 1 if m[1] is not None else int(m[2])
    return _head_rule(('mask_head', f'mask_conv{index}'), leaf, value, _conv)
  if module == 'roi_heads.mask_predictor.conv5_mask':
    return _head_rule(('mask_head', 'upsample'), leaf, value, _conv_transpose)
  if module == 'roi_heads.mask_predictor.mask_fcn_logits':
    return _head_rule(('mask_head', 'masks'), leaf, value, lambda w: _conv(w[1:]), lambda b: b[1:])
  if m := re.fullmatch(r'roi_heads\.keypoint_head\.(\d+)', module):
    return _head_rule(('keypoint_head', f'keypoint_conv{int(m[1]) // 2 + 1}'), leaf, value, _conv)
  if module == 'roi_heads.keypoint_predictor.kps_score_lowres':
    return _head_rule(('keypoint_head', 'heatmaps'), leaf, value, _conv_transpose)
  return None


def convert(state_dict: dict) -> dict:
  """A torchvision detector's state dict (numpy arrays) -> {'params': ..., 'batch_stats': ...}.

  ValueError listing every key no rule maps; `check` then compares it with our model.
  """
  return map_state_dict(state_dict, _map_key, 'a torchvision R-CNN')


def check(variables: dict, arch: str) -> int:
  """The number of arrays; ValueError listing every missing, extra or misshapen one."""
  from models import get_model

  name, kwargs = model_kwargs(arch)
  return check_shapes(variables, get_model(name, **kwargs), arch)
