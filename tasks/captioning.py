"""Image captioning: one caption per image from a CNN encoder and an LSTM decoder.

Trains with the caption cross-entropy (teacher forcing) on the batches' `caption` [B, T] (the Shapes
`captions` variants); evaluates the model's own decoded captions (greedy or beam search) with
corpus BLEU-4, METEOR and the exact-match rate (`metrics/captioning.py`). Overlays show the image
with the predicted and the true caption.
"""
import os
import textwrap

import ml_collections
import numpy as np
from PIL import Image, ImageDraw

import data
import models
from losses.captioning import caption_loss
from metrics.captioning import caption_metrics
from tasks import drawing
from tasks.localization import frozen_backbone


class CaptioningTask:
  name = 'captioning'

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.info = data.dataset_info(config.data)
    self.vocab = self.info['vocab']
    if self.vocab is None:
      raise ValueError(f'dataset {config.data.name!r} variant {config.data.get("variant")!r} '
                       "has no captions; use e.g. Shapes variant 'captions'")
    self.num_classes = self.info['num_classes']
    self.model = self.build_model()

  def build_model(self, bn_axis_name=None):
    kwargs = {k: v for k, v in self.config.model.items() if k != 'name'}
    return models.get_model(self.config.model.name, vocab_size=len(self.vocab),
                            frozen_backbone=frozen_backbone(self.config),
                            bn_axis_name=bn_axis_name, **kwargs)

  def model_inputs(self, batch):
    return (batch['image'], batch['caption']), {}

  def loss(self, outputs, batch):
    return caption_loss(outputs['logits'], batch['caption'])

  def postprocess(self, outputs, batch):
    del batch
    return {'tokens': outputs['tokens'], 'log_prob': outputs['log_prob']}

  def make_evaluator(self):
    return CaptioningEvaluator(self.vocab)

  def visualize(self, batch, predictions, out_dir: str, *, max_images: int, start: int = 0):
    """Writes each image with its predicted and true caption under it; returns how many."""
    count = min(max_images, int(np.sum(batch['example_valid'])))
    for i in range(count):
      tile = caption_tile(drawing.to_uint8(batch['image'][i]), [
          ('predicted', self.vocab.decode(predictions['tokens'][i])),
          ('true', self.vocab.decode(batch['caption'][i]))])
      Image.fromarray(tile).save(os.path.join(out_dir, f'overlay_{start + i:03d}.png'))
    return count


def caption_tile(image: np.ndarray, captions: list[tuple[str, str]], *, scale: int = 4,
                 chars_per_line: int = 42) -> np.ndarray:
  """The image upscaled by `scale` above its (label, caption) lines, wrapped to the width."""
  image = drawing.upscale(image, scale)
  lines = [(label if j == 0 else '', text) for label, caption in captions
           for j, text in enumerate(textwrap.wrap(caption, chars_per_line) or [''])]
  line_h, label_w = 13, 62
  canvas = Image.new('RGB', (image.shape[1], image.shape[0] + line_h * len(lines) + 6),
                     (255, 255, 255))
  canvas.paste(Image.fromarray(image), (0, 0))
  draw = ImageDraw.Draw(canvas)
  for k, (label, text) in enumerate(lines):
    y = image.shape[0] + 3 + line_h * k
    draw.text((3, y), label, fill=(120, 120, 120))
    draw.text((label_w, y), text, fill=(0, 0, 0))
  return np.asarray(canvas)


class CaptioningEvaluator:
  """Collects decoded and true captions (as text) of every real image; metrics at the end."""

  def __init__(self, vocab):
    self.vocab = vocab
    self.hypotheses, self.references = [], []

  def add(self, batch, predictions):
    for i in np.flatnonzero(np.asarray(batch['example_valid'])):
      self.hypotheses.append(self.vocab.decode(predictions['tokens'][i]))
      self.references.append([self.vocab.decode(batch['caption'][i])])

  def result(self) -> dict:
    return caption_metrics(self.hypotheses, self.references)
