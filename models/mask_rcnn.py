"""Mask R-CNN (He, Gkioxari, Dollar, Girshick, ICCV 2017): Faster R-CNN plus per-RoI mask and
keypoint heads.

The heads read RoIAlign features (14x14) pooled like the box head's, from the RoI's FPN level:
- Mask head (the paper's FPN head, Fig. 4 right): four 3x3 convs, a 2x2 stride-2 transpose conv
  to 28x28 and a 1x1 conv with one mask per foreground class; trained with per-pixel sigmoid
  cross-entropy on the mask of the RoI's ground-truth class only (sec. 3: masks and classes are
  decoupled, no competition between classes).
- Keypoint head (sec. 5, "Mask R-CNN for human pose"): eight 3x3 convs, a 4x4 stride-2 transpose
  conv and a 2x bilinear upsampling to one 56x56 heatmap per joint; each visible joint is a
  one-hot target over the 56x56 positions, trained with softmax cross-entropy.

Training runs both heads on the foreground RoIs of the box head's minibatch
(`FasterRCNNWithHeads.head_rois`). Targets (`ops.masks.crop_targets`,
`ops.keypoints.heatmap_targets`) are made inside jit from the padded ground truth, the masks'
from the batch's per-box mask crops. At test time the heads run on the final detections (selected
inside the model, as in detectron2), and the task pastes each 28x28 mask back into the image
(`ops.masks.paste_masks`).
"""
import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.faster_rcnn import FasterRCNNWithHeads
from models.layers import Conv, in_loop_body
from models.options import resolve_fields
from models.roi_heads import GROUND_TRUTH
from models.upsample import ConvTranspose
from ops.keypoints import heatmap_targets, heatmaps_to_keypoints, torchvision_keypoints
from ops.masks import crop_targets

_MSRA_FILL = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')  # detectron2's heads.


def _conv_stack(x, num_convs: int, width: int, dtype, prefix: str):
  for i in range(num_convs):
    x = nn.relu(Conv(width, (3, 3), kernel_init=_MSRA_FILL, dtype=dtype,
                     name=f'{prefix}{i + 1}')(x))
  return x


def _per_roi(head):
  """Runs a head on pooled RoIs [..., s, s, C] as one [N, s, s, C] batch."""
  @functools.wraps(head)
  def wrapped(self, pooled):
    lead = pooled.shape[:-3]
    out = head(self, pooled.reshape(-1, *pooled.shape[-3:]))
    return out.reshape(*lead, *out.shape[1:]).astype(jnp.float32)
  return wrapped


class MaskHead(nn.Module):
  """pooled RoIs [..., 14, 14, C] -> mask logits [..., 28, 28, num_masks]."""
  num_masks: int  # One per foreground class.
  num_convs: int = 4
  width: int = 256
  dtype: jnp.dtype | None = None

  @nn.compact
  @_per_roi
  def __call__(self, x):
    x = _conv_stack(x, self.num_convs, self.width, self.dtype, 'mask_conv')
    x = nn.relu(ConvTranspose(self.width, 2, strides=2, kernel_init=_MSRA_FILL, dtype=self.dtype,
                              name='upsample')(x))
    return Conv(self.num_masks, (1, 1), kernel_init=nn.initializers.normal(0.001),
                dtype=self.dtype, name='masks')(x)


class KeypointHead(nn.Module):
  """pooled RoIs [..., 14, 14, C] -> heatmap logits [..., 56, 56, num_keypoints]."""
  num_keypoints: int
  num_convs: int = 8
  width: int = 512
  dtype: jnp.dtype | None = None

  @nn.compact
  @_per_roi
  def __call__(self, x):
    x = _conv_stack(x, self.num_convs, self.width, self.dtype, 'keypoint_conv')
    # padding=1: 14 -> 28 exactly (PyTorch's ConvTranspose2d(k=4, s=2, p=1), as detectron2).
    x = ConvTranspose(self.num_keypoints, 4, strides=2, padding=1, kernel_init=_MSRA_FILL,
                      dtype=self.dtype, name='heatmaps')(x)
    n, h, w, j = x.shape
    return jax.image.resize(x, (n, 2 * h, 2 * w, j), 'bilinear')  # align_corners=False.


@dataclasses.dataclass(frozen=True)
class MaskOptions:
  """`config.model.mask`: the mask head."""
  enabled: bool = True
  pool_size: int = 14
  convs: int = 4
  width: int = 256
  # How the task pastes the 28x28 masks into the image: 'ours' (`ops.masks.paste_masks`) or
  # 'torchvision' (its paste_masks_in_image: 1-cell padding, integer box, bilinear resize).
  paste: str = 'ours'


@dataclasses.dataclass(frozen=True)
class KeypointOptions:
  """`config.model.keypoint`: the keypoint head (num_keypoints 0: none)."""
  num_keypoints: int = 0
  pool_size: int = 14
  convs: int = 8
  width: int = 512
  # 'ours': the argmax cell of the 56x56 heatmap, score its logit. 'torchvision': the heatmap
  # resized (bicubic) to the box's integer size first, score the resized logit there
  # (`ops.keypoints.torchvision_keypoints`; its cost grows with the box, up to `decode_size`).
  decode: str = 'ours'
  decode_size: int = 0  # 'torchvision': the largest box side decoded exactly (0: the canvas's).


def head_slot_sizes(slots: int, buckets: int) -> tuple[int, ...]:
  """The slot counts the training heads may run on: slots, slots / 2, ... (`buckets` of them,
  at least 1 slot each), smallest first."""
  return tuple(sorted({max(slots >> k, 1) for k in range(buckets)}))


def _pad_slots(tree, slots: int):
  """Zero-pads axis 1 (the RoI slots) of every array in `tree` to `slots` (bools pad False)."""
  return jax.tree.map(
      lambda x: jnp.pad(x, [(0, 0), (0, slots - x.shape[1])] + [(0, 0)] * (x.ndim - 2)), tree)


def _train_heads(mdl, *, size: int, pool, rois, gt_boxes, gt_instance_crops, gt_keypoints):
  """The heads' training outputs on the first `size` foreground slots, zero-padded back to all F.

  The foreground RoIs come first (`label_and_sample`), so when at most `size` are foreground
  per image the slots cut off hold only background, which the heads' losses ignore."""
  slots = rois['boxes'].shape[1]
  rois = jax.tree.map(lambda x: x[:, :size], rois)
  boxes, classes = rois['boxes'], rois['classes']
  foreground = rois['valid'] & (classes > 0)
  out = {}
  if mdl.mask.enabled:
    logits = _mask_logits(mdl, pool, boxes)
    out['mask_logits'] = _own_class(logits, classes)
    targets = jax.vmap(functools.partial(crop_targets, size=logits.shape[-2]))(
        gt_instance_crops, gt_boxes, boxes, rois['matched'])
    out['mask_targets'] = {'masks': targets, 'valid': foreground}
  if mdl.keypoint.num_keypoints:
    heatmaps = _heatmaps(mdl, pool, boxes)
    keypoints = jnp.take_along_axis(gt_keypoints, rois['matched'][..., None, None], axis=1)
    index, valid = jax.vmap(functools.partial(heatmap_targets, size=heatmaps.shape[-1]))(
        keypoints, boxes)
    out['keypoint_logits'] = heatmaps.reshape(*heatmaps.shape[:3], -1)
    out['keypoint_targets'] = {'index': index, 'valid': valid & foreground[..., None]}
  return _pad_slots(out, slots)


def _mask_logits(mdl, pool, boxes):
  """The mask head of Mask R-CNN `mdl` on `boxes` [B, N, 4] -> [B, N, 28, 28, classes]."""
  mask = mdl.mask
  return MaskHead(mdl.head_num_classes - 1, mask.convs, mask.width, mdl.dtype,
                  name='mask_head')(pool(boxes, mask.pool_size))


def _heatmaps(mdl, pool, boxes):
  """The keypoint head of Mask R-CNN `mdl` on `boxes` [B, N, 4] -> [B, N, J, 56, 56]."""
  kp = mdl.keypoint
  heatmaps = KeypointHead(kp.num_keypoints, kp.convs, kp.width, mdl.dtype,
                          name='keypoint_head')(pool(boxes, kp.pool_size))
  return jnp.moveaxis(heatmaps, -1, -3)


def _own_class(logits, classes):
  """logits [..., S, S, K], classes [...] (1..K; 0 = none) -> the class's channel [..., S, S]."""
  return jnp.take_along_axis(logits, jnp.maximum(classes - 1, 0)[..., None, None, None],
                             axis=-1)[..., 0]


class MaskRCNN(FasterRCNNWithHeads):
  """Faster R-CNN + mask head (`mask.enabled`) and/or keypoint head (`keypoint.num_keypoints` > 0).

  Extra inputs in training: `gt_instance_crops` [B, M, S, S] (the batch's `instance_crops`: each
  box's mask in its frame, read only in training; eval batches need not carry it) and
  `gt_keypoints` [B, M, J, 3]. Extra training outputs: 'mask_logits' [B, F, 28, 28] (the channel
  of each RoI's ground-truth class) with 'mask_targets' (masks [B, F, 28, 28], valid [B, F]), and
  'keypoint_logits' [B, F, J, 56 * 56] with 'keypoint_targets' (index, valid [B, F, J]), over the
  F = int(roi.batch_size * roi.positive_fraction) foreground slots. Inference adds 'detections':
  boxes [B, D, 4], scores, labels, valid [B, D], masks [B, D, 28, 28] (probabilities of the
  detected class) and keypoints [B, D, J, 3] (y, x, score).
  """
  loss_family: ClassVar[str] = 'mask_rcnn'
  batch_inputs: ClassVar[dict] = {**GROUND_TRUTH, 'gt_keypoints': 'keypoints'}
  optional_inputs: ClassVar[dict] = {**FasterRCNNWithHeads.optional_inputs,
                                     'gt_instance_crops': 'instance_crops'}

  mask: MaskOptions = MaskOptions()
  keypoint: KeypointOptions = KeypointOptions()
  # Training runs the heads on the fewest of F, F/2, ... F/2^(head_buckets-1) slots that hold
  # every image's foreground RoIs (a lax.switch; each size compiles once, at the first step), as
  # torchvision and detectron2 run them on the positives only: the mask head's cost follows the
  # number of positives instead of F. 1: always all F slots (one compile). Under vmap (the
  # population's) a batched switch runs every size.
  head_buckets: int = 1

  def __post_init__(self):
    resolve_fields(self, mask=MaskOptions, keypoint=KeypointOptions)
    if self.head_buckets < 1:
      raise ValueError(f'model.head_buckets={self.head_buckets}: give 1 (the heads always run on '
                       'all slots) or more (the R50-FPN configs use 4)')
    super().__post_init__()

  @nn.compact
  def __call__(self, images, gt_boxes=None, gt_labels=None, gt_valid=None, gt_instance_crops=None,
               gt_keypoints=None, *, train: bool, image_hw=None):
    out, pool = self.detect_boxes(images, gt_boxes, gt_labels, gt_valid, train=train,
                                  image_hw=image_hw)
    rois = self.head_rois(out, images.shape[1:3] if image_hw is None else image_hw, train=train)
    if train:
      if self.mask.enabled and gt_instance_crops is None:
        raise ValueError('training the mask head needs the batch key instance_crops (the '
                         'train pipeline adds it for the instance_segmentation task)')
      foreground = rois['valid'] & (rois['classes'] > 0)
      sizes = head_slot_sizes(foreground.shape[1], self.head_buckets)
      branches = [functools.partial(_train_heads, size=size, pool=pool, rois=rois,
                                    gt_boxes=gt_boxes, gt_instance_crops=gt_instance_crops,
                                    gt_keypoints=gt_keypoints) for size in sizes]
      if len(branches) == 1:
        out.update(branches[0](self))
      else:
        most = jnp.max(jnp.sum(foreground, axis=1))
        out.update(nn.switch(jnp.searchsorted(jnp.asarray(sizes), most),
                             [in_loop_body(branch) for branch in branches], self))
      return out

    boxes = rois['boxes']  # Detections carry dataset labels; the heads' channels are the head's.
    classes = jnp.where(rois['classes'] > 0, self.to_head_labels(rois['classes']), 0)
    if self.mask.enabled:
      out['detections']['masks'] = jax.nn.sigmoid(_own_class(_mask_logits(self, pool, boxes),
                                                              classes))

    kp = self.keypoint
    if kp.num_keypoints:
      heatmaps = _heatmaps(self, pool, boxes)
      if kp.decode == 'torchvision':
        size = kp.decode_size or tuple(images.shape[1:3])  # Boxes lie inside the canvas.
        # The whole batch in one call: under vmap each detection would pay for the largest grid.
        flat = torchvision_keypoints(heatmaps.reshape(-1, *heatmaps.shape[2:]),
                                     boxes.reshape(-1, 4), max_size=size)
        out['detections']['keypoints'] = flat.reshape(*boxes.shape[:2], *flat.shape[1:])
      elif kp.decode == 'ours':
        out['detections']['keypoints'] = jax.vmap(heatmaps_to_keypoints)(heatmaps, boxes)
      else:
        raise ValueError(f"unknown model.keypoint.decode {kp.decode!r}; valid: 'ours', "
                         "'torchvision'.")
    return out
