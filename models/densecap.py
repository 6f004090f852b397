"""DenseCap (Johnson, Karpathy, Fei-Fei, CVPR 2016): localize regions and describe each in words.

The paper's three parts, on our Faster R-CNN pieces:
- Localization layer: an RPN over the backbone's feature map (anchors, objectness, box
  regression), proposals after NMS, and bilinear sampling of a fixed-size grid per region. The
  paper's bilinear sampler is RoIAlign here (`roi.pooling='align'`); its fixed B regions are the
  RoI minibatch in training (positives first) and the top detections at test time.
- Recognition network: two fully-connected layers on each region's features give a region code;
  from it, the box head refines the box and scores the region against background (regions are
  class-agnostic: one foreground class).
- Language model: an LSTM (`models.rnn.CaptionDecoder`) conditioned on the region code, trained
  with teacher forcing on the phrase of the ground-truth region each foreground RoI matched, and
  decoded greedily or with beam search under jit at test time.

Losses (losses/densecap.py): the RPN's objectness and box terms, the region confidence and box
refinement, and the per-region caption cross-entropy. Differences from the paper: the paper's
single recognition network feeds the box refinement, the confidence and the LSTM; here the box
head (Faster R-CNN's) and the caption's recognition layers are separate two-layer MLPs on the same
pooled features, so the box part is exactly Faster R-CNN's; optionally (`context_scale`) the
caption also reads the region's surroundings, a larger box about it (context for relations, in
the spirit of Yang et al., CVPR 2017, "Dense captioning with joint inference and visual
context"); RoIAlign instead of the paper's
bilinear sampler; any of our backbones (the paper: VGG-16).
"""
from typing import ClassVar

import jax.numpy as jnp
from flax import linen as nn

from models.faster_rcnn import FasterRCNNWithHeads
from models.rnn import CaptionDecoder
from models.roi_heads import GROUND_TRUTH


def scale_boxes(boxes, factor: float):
  """(y1, x1, y2, x2) boxes [..., 4] scaled by `factor` about their centres."""
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2
  half = (boxes[..., 2:] - boxes[..., :2]) * (factor / 2)
  return jnp.concatenate([centre - half, centre + half], axis=-1)


class RegionCode(nn.Module):
  """pooled regions [..., s, s, C] -> region codes [..., hidden] (two FC layers + ReLU)."""
  hidden: int = 256
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, pooled):
    x = pooled.reshape(*pooled.shape[:-3], -1)
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x))
    return nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc2')(x)).astype(jnp.float32)


class DenseCap(FasterRCNNWithHeads):
  """Faster R-CNN (two classes: region, background) + a caption for every region.

  Extra input in training: `gt_captions` [B, M, T] (the batch's `captions`). Extra training
  outputs: 'caption_logits' [B, F, T, V] and 'caption_targets' (tokens [B, F, T], valid [B, F])
  over the F = int(roi.batch_size * roi.positive_fraction) foreground slots. Inference adds
  'detections' (boxes, scores, labels, valid) with 'captions' int32 [B, D, T] and
  'caption_log_prob' [B, D].
  """
  loss_family: ClassVar[str] = 'densecap'
  batch_inputs: ClassVar[dict] = {**GROUND_TRUTH, 'gt_captions': 'captions'}

  vocab_size: int = 0  # Set by the task from the dataset's vocabulary.
  max_caption_len: int = 12  # T of the batches' captions.
  region_code: int = 256
  caption_embed: int = 64
  caption_hidden: int = 256
  caption_cell: str = 'lstm'
  beam_size: int = 1
  # > 0: the captioner also sees the region's box scaled by this about its centre (its
  # surroundings: Shapes phrases name the nearest neighbour). 0: the region only, the paper's.
  context_scale: float = 0.0

  @nn.compact
  def __call__(self, images, gt_boxes=None, gt_labels=None, gt_valid=None, gt_captions=None, *,
               train: bool, image_hw=None):
    if self.vocab_size <= 4:
      raise ValueError(f'DenseCap needs the vocabulary size (got {self.vocab_size}); the task '
                       'sets it from the dataset (data.dataset_info(...)["vocab"]).')
    out, pool = self.detect_boxes(images, gt_boxes, gt_labels, gt_valid, train=train,
                                  image_hw=image_hw)
    rois = self.head_rois(out, images.shape[1:3] if image_hw is None else image_hw, train=train)
    pooled = pool(rois['boxes'], self.roi.size)
    if self.context_scale > 0:
      pooled = jnp.concatenate([pooled, pool(scale_boxes(rois['boxes'], self.context_scale),
                                             self.roi.size)], axis=-1)
    code = RegionCode(self.region_code, self.dtype, name='recognition')(pooled)
    captioner = CaptionDecoder(self.vocab_size, self.caption_embed, self.caption_hidden,
                               self.caption_cell, name='captioner')
    lead = code.shape[:2]
    flat_code = code.reshape(-1, code.shape[-1])
    if train:
      targets = jnp.take_along_axis(gt_captions, rois['matched'][..., None], axis=1)
      logits = captioner(flat_code, targets.reshape(-1, targets.shape[-1]), train=True)
      out['caption_logits'] = logits.reshape(*lead, *logits.shape[1:])
      out['caption_targets'] = {'tokens': targets,
                                'valid': rois['valid'] & (rois['classes'] > 0)}
    else:
      tokens, log_prob = captioner.decode(flat_code, max_len=self.max_caption_len,
                                          beam_size=self.beam_size)
      out['detections']['captions'] = tokens.reshape(*lead, -1)
      out['detections']['caption_log_prob'] = log_prob.reshape(lead)
    return out
