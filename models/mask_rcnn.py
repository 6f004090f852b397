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
(`FasterRCNNWithHeads.head_rois`), pooled in the box head's RoIAlign call
(`FasterRCNN.train_head_pools`: one scatter into the pyramid's gradient in the backward pass).
Targets (`ops.masks.crop_targets`, `ops.keypoints.heatmap_targets`) are made inside jit from the
padded ground truth, the masks' from the batch's per-box mask crops. At test time the heads run
on the final detections (selected inside the model, as in detectron2), and the task pastes each
28x28 mask back into the image (`ops.masks.paste_masks`).
"""
import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

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


def _train_heads(mdl, *, rois, head_pooled, gt_boxes, gt_instance_crops, gt_keypoints):
  """The heads' training outputs and targets on the F foreground slots of `rois`.

  The heads run over the slots in chunks of `mdl.head_chunk` and skip the chunks past every
  image's last foreground RoI (those come first, `label_and_sample`), whose outputs are zeros
  that the losses ignore."""
  boxes, classes = rois['boxes'], rois['classes']
  foreground = rois['valid'] & (classes > 0)
  out = _chunked_heads(mdl, _pooled(mdl, head_pooled.__getitem__), classes,
                       jnp.max(jnp.sum(foreground, axis=1)))
  if mdl.keypoint.num_keypoints:
    heatmaps = out.pop('heatmaps')
    out['keypoint_logits'] = heatmaps.reshape(*heatmaps.shape[:3], -1)
  if mdl.mask.enabled:
    targets = jax.vmap(functools.partial(crop_targets, size=out['mask_logits'].shape[-1]))(
        gt_instance_crops, gt_boxes, boxes, rois['matched'])
    out['mask_targets'] = {'masks': targets, 'valid': foreground}
  if mdl.keypoint.num_keypoints:
    keypoints = jnp.take_along_axis(gt_keypoints, rois['matched'][..., None, None], axis=1)
    index, valid = jax.vmap(functools.partial(heatmap_targets, size=heatmaps.shape[-1]))(
        keypoints, boxes)
    out['keypoint_targets'] = {'index': index, 'valid': valid & foreground[..., None]}
  return out


def _chunked_heads(mdl, pooled, classes, num_foreground):
  """`_head_logits` over [B, F] slots in chunks of `mdl.head_chunk` slots (a lax.scan), each run
  only where it holds slots below `num_foreground` (a lax.cond; zeros past it).

  As torchvision and detectron2 run the heads on the positives only, the heads' cost follows
  the number of foreground RoIs instead of F (R50-FPN: 128 slots per image; COCO averages ~7
  objects). The former `lax.switch` over F, F/2, ... slots kept under autodiff the activations
  of every size, their sum, and compiled the heads once per size: Mask R-CNN 800x1344 batch 1,
  XLA's temporaries 2.26 -> 1.64 GB (peak RSS 1.34x -> 1.14x torchvision's), its train compile
  21.7 -> 15.0 s; Keypoint R-CNN 3.36 -> 1.73 GB; the steps no slower (2026-12-07, 2-core box;
  BENCHMARKS.md, sixteenth session).
  """
  size, slots = mdl.head_chunk, classes.shape[1]
  if mdl.is_initializing() or not 0 < size < slots:  # Init creates the heads' parameters.
    return _head_logits(mdl, pooled, classes)
  heads = functools.partial(  # The model's parameters: `_Heads` reads its heads' among them.
      _Heads(mdl.mask, mdl.keypoint, mdl.head_num_classes, mdl.dtype).apply,
      {'params': mdl.variables['params']})
  chunks = -(-slots // size)
  inputs = jax.tree.map(  # [B, F, ...] -> [chunks, B, size, ...], zero-padded.
      lambda x: jnp.swapaxes(jnp.pad(x, [(0, 0), (0, chunks * size - slots)] + [(0, 0)] * (
          x.ndim - 2)).reshape(x.shape[0], chunks, size, *x.shape[2:]), 0, 1), (pooled, classes))
  shapes = jax.eval_shape(heads, *jax.tree.map(lambda x: x[0], inputs))
  zeros = lambda x, c: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # noqa: E731

  # Rematerialised: the backward pass runs each active chunk's forward again. Kept activations
  # would leave the lax.cond as outputs, stacked over the chunks, with the heads' weights.
  @jax.checkpoint
  def run(active, x, c):
    return lax.cond(active, in_loop_body(heads), zeros, x, c)

  def chunk(_, xs):
    i, (x, c) = xs
    return None, run(i * size < num_foreground, x, c)

  _, out = lax.scan(chunk, None, (jnp.arange(chunks), inputs))
  return jax.tree.map(
      lambda x: jnp.swapaxes(x, 0, 1).reshape(x.shape[1], -1, *x.shape[3:])[:, :slots], out)


def _pool_sizes(m) -> dict[str, int]:
  """The RoIAlign output size of each head of `m`."""
  sizes = {}
  if m.mask.enabled:
    sizes['mask'] = m.mask.pool_size
  if m.keypoint.num_keypoints:
    sizes['keypoint'] = m.keypoint.pool_size
  return sizes


def _pooled(m, pool_at):
  """{head: `pool_at(size)` [B, N, s, s, C]} for each head of `m`, once per size."""
  sizes = _pool_sizes(m)
  by_size = {size: pool_at(size) for size in set(sizes.values())}
  return {head: by_size[size] for head, size in sizes.items()}


def _head_logits(m, pooled, classes):
  """The heads of `m` (Mask R-CNN or `_Heads`) on pooled RoIs {'mask', 'keypoint'}: [B, N, s, s,
  C] -> 'mask_logits' [B, N, 28, 28] (the channel of head class `classes` [B, N]) and
  'heatmaps' [B, N, J, 56, 56]."""
  out = {}
  if m.mask.enabled:
    mask = m.mask
    logits = MaskHead(m.head_num_classes - 1, mask.convs, mask.width, m.dtype,
                      name='mask_head')(pooled['mask'])
    out['mask_logits'] = _own_class(logits, classes)
  if m.keypoint.num_keypoints:
    kp = m.keypoint
    heatmaps = KeypointHead(kp.num_keypoints, kp.convs, kp.width, m.dtype,
                            name='keypoint_head')(pooled['keypoint'])
    out['heatmaps'] = jnp.moveaxis(heatmaps, -1, -3)
  return out


class _Heads(nn.Module):
  """Mask R-CNN's heads alone, named as in the model: `_chunked_heads` applies them to the
  model's parameters inside its loop."""
  mask: MaskOptions
  keypoint: KeypointOptions
  head_num_classes: int
  dtype: Any = None

  @nn.compact
  def __call__(self, pooled, classes):
    return _head_logits(self, pooled, classes)


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
  # Training runs the heads over the F foreground slots in chunks of this many slots and skips
  # those past every image's foreground RoIs (`_chunked_heads`). 0: all F slots in one go, always.
  # Under vmap (the population's) a batched lax.cond runs every chunk.
  head_chunk: int = 0

  def __post_init__(self):
    resolve_fields(self, mask=MaskOptions, keypoint=KeypointOptions)
    super().__post_init__()
    if self.head_chunk < 0:
      raise ValueError(f'model.head_chunk={self.head_chunk}: give the slots per chunk of the '
                       'heads in training (16 in the R50-FPN configs), 0 for all at once')

  def train_head_pools(self):
    return tuple((self.num_head_rois, size) for size in sorted(set(_pool_sizes(self).values())))

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
      out.update(_train_heads(self, rois=rois, head_pooled=out.pop('head_pooled', {}),
                              gt_boxes=gt_boxes, gt_instance_crops=gt_instance_crops,
                              gt_keypoints=gt_keypoints))
      return out

    boxes = rois['boxes']  # Detections carry dataset labels; the heads' channels are the head's.
    classes = jnp.where(rois['classes'] > 0, self.to_head_labels(rois['classes']), 0)
    kp = self.keypoint
    logits = _head_logits(self, _pooled(self, lambda size: pool(boxes, size)), classes)
    if self.mask.enabled:
      out['detections']['masks'] = jax.nn.sigmoid(logits['mask_logits'])
    if kp.num_keypoints:
      heatmaps = logits['heatmaps']
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
