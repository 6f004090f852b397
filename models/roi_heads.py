"""The RoI heads shared by R-CNN, Fast R-CNN and Faster R-CNN: sampling, pooling, box head.

Training labels each proposal (ground-truth boxes are added to the proposals, as detectron2 does,
so every object has a perfect RoI from step 0) foreground at IoU >= 0.5 with a ground-truth box,
background below, and samples `roi.batch_size` RoIs per image with at most 25% foreground (the
Shapes configs: 64; Fast R-CNN: 128 RoIs from 2 images). Each RoI is pooled to 7x7 from the
feature map (RoI max pooling as in the paper, or RoIAlign from Mask R-CNN) and a two-layer MLP
predicts C class scores (0 = background) and class-specific box deltas for the C - 1 foreground
classes. The classifier is a softmax
(Fast R-CNN) or one-vs-rest linear SVMs trained with a hinge loss (R-CNN, `classifier='svm'`).

`RoIDetector` is the base of the region-based detectors: a subclass finds proposals and says
how a batch of RoIs becomes class scores and boxes: usually `fast_rcnn_head` on RoI features
(pooled from one shared map, a spatial pyramid of it, or crops of the image through their own
CNN pass), or R-FCN's position-sensitive vote; `roi_outputs` does the rest (sampling, targets,
outputs), so the detectors differ exactly where the papers do.
"""
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from models.options import resolve_fields
from ops import boxes as box_ops
from ops.matching import IGNORE, POSITIVE, match, sample_balanced
from ops.roi import roi_align, roi_pool

ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # The Fast R-CNN code's target normalisation (0.1, 0.2).
# Model keyword -> batch key of the inputs region-based detectors take in training (`batch_inputs`).
GROUND_TRUTH = {'gt_boxes': 'boxes', 'gt_labels': 'labels', 'gt_valid': 'valid'}
PROPOSALS = {'proposals': 'proposals', 'proposal_valid': 'proposal_valid'}  # External ones.


def label_and_sample(proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, rng, *,
                     fg_iou: float = 0.5, batch_size: int = 64,
                     positive_fraction: float = 0.25) -> dict:
  """One image: `batch_size` training RoIs [R, 4] drawn from proposals + ground truth.

  Returns 'boxes' [R, 4], 'valid' [R], 'classes' [R] int32 (0 = background), 'deltas' [R, 4]
  (the regression target to the matched box) and 'matched' [R] int32 (the index of that ground
  truth, for the mask and keypoint targets); the last two are meaningful where classes > 0. The
  foreground RoIs come first (`sample_balanced`'s order), so the first
  int(batch_size * positive_fraction) RoIs hold all of them.
  """
  boxes = jnp.concatenate([proposals, gt_boxes])
  valid = jnp.concatenate([proposal_valid, gt_valid])
  matched, labels = match(box_ops.iou(boxes, gt_boxes), gt_valid, fg_iou, fg_iou)
  labels = jnp.where(valid, labels, IGNORE)  # Padding is never sampled.
  index, sampled = sample_balanced(labels, batch_size, positive_fraction, rng)
  rois, gt_index = boxes[index], matched[index]
  foreground = sampled & (labels[index] == POSITIVE)
  return {'boxes': rois, 'valid': sampled,
          'classes': jnp.where(foreground, gt_labels[gt_index], 0).astype(jnp.int32),
          'deltas': box_ops.encode(gt_boxes[gt_index], rois, ROI_BOX_WEIGHTS),
          'matched': gt_index.astype(jnp.int32)}


def pool_rois(features, rois, *, output_size: int, stride: int, method: str,
              aligned: bool = True, sampling_ratio: int = 2):
  """features [B, H, W, C], rois [B, R, 4] pixels -> [B, R, s, s, C].

  Per image (vmap), so the RoIs of one image never look at the others' feature maps: the
  interpolation matrices of RoIAlign's backward pass stay [R, s, H] instead of [B * R, s, B * H].
  `aligned` and `sampling_ratio` are RoIAlign's (torchvision's detectors: aligned=False).
  """
  size = (output_size, output_size)

  def one_image(fmap, boxes):
    rows = jnp.concatenate([jnp.zeros((len(boxes), 1), boxes.dtype), boxes], axis=1)
    if method == 'align':
      return roi_align(fmap[None], rows, size, 1.0 / stride, sampling_ratio=sampling_ratio,
                       aligned=aligned)
    if method == 'pool':
      return roi_pool(fmap[None], rows, size, 1.0 / stride)
    raise ValueError(f"Unknown RoI pooling {method!r}; valid: 'align' (RoIAlign), 'pool' "
                     "(Fast R-CNN's RoI max pooling).")

  return jax.vmap(one_image)(features, rois)


class BoxHead(nn.Module):
  """pooled RoIs [B, R, ...] -> class logits [B, R, C], class-specific deltas [B, R, C - 1, 4]."""
  num_classes: int  # Including the background.
  hidden: int = 256
  box_regression: bool = True  # False: zero deltas (the sliding-window baseline).
  dtype: Any = None

  @nn.compact
  def __call__(self, pooled: jax.Array) -> tuple[jax.Array, jax.Array]:
    lead = pooled.shape[:2]  # [B, R]; the rest (s x s x C, or a flat SPP vector) is flattened.
    x = pooled.reshape(*lead, -1)
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc6')(x))
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc7')(x))
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                      dtype=self.dtype, name='class_logits')(x)
    if not self.box_regression:
      return logits.astype(jnp.float32), jnp.zeros((*lead, self.num_classes - 1, 4), jnp.float32)
    deltas = nn.Dense((self.num_classes - 1) * 4, kernel_init=nn.initializers.normal(0.001),
                      dtype=self.dtype, name='box_deltas')(x)
    return (logits.astype(jnp.float32),
            deltas.reshape(*lead, self.num_classes - 1, 4).astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class RoIOptions:
  """`config.model.roi`: RoI sampling in training, pooling and the box head."""
  batch_size: int = 128  # Sampled RoIs per image in training.
  positive_fraction: float = 0.25
  head_hidden: int = 4096  # Width of the two FC layers.
  pooling: str = 'pool'  # 'pool' (RoI max pooling) or 'align' (RoIAlign).
  size: int = 7  # Pooled output size of the box head.
  aligned: bool = True  # RoIAlign's half-pixel shift (detectron2); torchvision's detectors: False.
  sampling_ratio: int = 2


class RoIDetector(nn.Module):
  """Base of the region-based detectors (no __call__ of its own); see the module docstring.

  Training outputs: 'roi_logits' [B, R, C], 'roi_deltas' [B, R, C - 1, 4] and 'roi_targets'
  (`label_and_sample`'s boxes, valid, classes, deltas, matched) of the R = roi.batch_size sampled
  RoIs. Inference outputs, for every
  proposal: 'proposals' [B, P, 4], 'proposal_valid' [B, P], 'roi_scores' [B, P, C] (softmax, or
  the SVMs' sigmoid margins) and 'roi_deltas'.

  `head_classes` (imported heads with another label space, e.g. torchvision's 91 COCO ids): the
  head's class of each dataset label, background first; the head then has max + 1 classes, the
  training labels are mapped into them and the inference outputs back to the dataset's.
  `head_size`: the head's class count when the dataset lacks the largest head class (0: max + 1).
  """
  # Read off the class by the detection tasks (tasks/detection.py), so a detector is registered
  # once, in models.MODELS: its loss family, the batch keys it takes as keywords besides the image
  # (model keyword -> batch key), and the decoder of its inference outputs.
  loss_family: ClassVar[str] = 'rcnn'
  batch_inputs: ClassVar[dict] = GROUND_TRUTH

  num_classes: int  # Including the background.
  backbone: str = 'vgg16'
  roi: RoIOptions = RoIOptions()
  head_classes: Sequence[int] = ()
  head_size: int = 0
  classifier: str = 'softmax'  # 'softmax' (Fast R-CNN) or 'svm' (R-CNN's linear SVMs).
  box_regression: bool = True
  dtype: Any = None
  bn_axis_name: str | None = None

  def __post_init__(self):
    resolve_fields(self, roi=RoIOptions)
    if self.head_classes and len(self.head_classes) != self.num_classes:
      raise ValueError(f'model.head_classes has {len(self.head_classes)} entries for '
                       f'{self.num_classes} dataset classes; give one head class per dataset '
                       'class, background (0) first.')
    if self.head_size and max(self.head_classes, default=self.head_size) >= self.head_size:
      raise ValueError(f'model.head_size {self.head_size} needs model.head_classes below it, '
                       f'got {tuple(self.head_classes)}; a torchvision head takes a dataset '
                       'with COCO\'s category ids (1..90), or drop head_size.')
    super().__post_init__()

  @property
  def head_num_classes(self) -> int:
    if self.head_size:
      return self.head_size
    return max(self.head_classes) + 1 if self.head_classes else self.num_classes

  def to_head_labels(self, labels):
    """Dataset labels -> the head's classes (identity without `head_classes`)."""
    return jnp.asarray(self.head_classes, jnp.int32)[labels] if self.head_classes else labels

  @staticmethod
  def decode_outputs(outputs: dict, image_hw: tuple[int, int]):
    return decode(outputs, image_hw)

  def fast_rcnn_head(self, roi_features: Callable[[jax.Array], jax.Array]):
    """Fast R-CNN's head on pooled features: RoIs [B, R, 4] -> (logits, deltas) (`BoxHead`)."""
    box_head = BoxHead(self.head_num_classes, self.roi.head_hidden, self.box_regression,
                       self.dtype, name='box_head')
    return lambda rois: box_head(roi_features(rois))

  def roi_outputs(self, roi_head: Callable[[jax.Array], tuple[jax.Array, jax.Array]], proposals,
                  proposal_valid, gt_boxes, gt_labels, gt_valid, *, train: bool) -> dict:
    """`roi_head(rois [B, R, 4]) -> (logits [B, R, C], deltas [B, R, C - 1, 4])` on the
    proposals (inference) or on the sampled training RoIs."""
    if self.classifier not in ('softmax', 'svm'):
      raise ValueError(f"Unknown classifier {self.classifier!r}; valid: 'softmax', 'svm'.")
    if not train:
      logits, deltas = roi_head(proposals)
      scores = (jax.nn.softmax(logits, -1) if self.classifier == 'softmax'
                else jax.nn.sigmoid(logits))
      if self.head_classes:  # Back to the dataset's classes (the head's extra ones dropped).
        classes = jnp.asarray(self.head_classes, jnp.int32)
        scores, deltas = scores[..., classes], deltas[..., classes[1:] - 1, :]
      return {'proposals': proposals, 'proposal_valid': proposal_valid, 'roi_scores': scores,
              'roi_deltas': deltas}
    if gt_boxes is None:
      raise ValueError(f'{type(self).__name__} needs gt_boxes, gt_labels and gt_valid when '
                       'train=True (the RoI targets are assigned inside the model).')
    b = len(proposals)
    rngs = jax.random.split(self.make_rng('sample'), b)
    rois = jax.lax.stop_gradient(jax.vmap(functools.partial(
        label_and_sample, batch_size=self.roi.batch_size,
        positive_fraction=self.roi.positive_fraction))(
            proposals, proposal_valid, gt_boxes, self.to_head_labels(gt_labels), gt_valid, rngs))
    logits, deltas = roi_head(rois['boxes'])
    return {'roi_logits': logits, 'roi_deltas': deltas,
            'roi_targets': rois}


def decode(outputs: dict, image_hw: tuple[int, int]):
  """-> class-specific boxes [B, P, C - 1, 4] pixels and scores [B, P, C - 1]."""
  del image_hw  # Proposals are in pixels; the detection task clips.
  boxes = box_ops.decode(outputs['roi_deltas'], outputs['proposals'][:, :, None, :],
                         ROI_BOX_WEIGHTS)
  scores = outputs['roi_scores'][..., 1:]
  return boxes, jnp.where(outputs['proposal_valid'][..., None], scores, 0.0)
